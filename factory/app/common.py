"""What every command of the ``factory`` CLI shares: one-line user errors, JSON output, options.

The project's own error types (:class:`factory.errors.FactoryError`) become one ``error:``
line and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Optional

import typer

from factory.errors import FactoryError

Address = Annotated[Optional[str], typer.Option(help="Ray cluster address (default: RAY_ADDRESS, else embedded local Ray)")]
AsJson = Annotated[bool, typer.Option("--json", help="print the result as JSON")]


def fail(message: str, code: int = 2) -> None:
    """Print one line naming the problem and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(func):
    """Turn FactoryError (and bad values) raised by the library into a one-line error."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except FactoryError as exc:
            fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except KeyboardInterrupt:
            fail("interrupted; rerun with --resume to continue", code=130)

    return wrapper


def emit_json(data) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def register_commands(target: typer.Typer, commands) -> typer.Typer:
    """Add (name, function) commands at the top level of ``target``, with one-line user errors."""
    for name, func in commands:
        target.command(name)(user_errors(func))
    return target
