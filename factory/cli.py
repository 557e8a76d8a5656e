"""``python -m factory.cli``: the ``factory`` command (defined in :mod:`factory.app.main`)."""

import sys

from factory.app.main import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
