"""Data factory for machine learning on ultrafast imaging data.

Library entry points (a notebook can call them without the CLI):
``factory.config.load_config``, ``factory.engine.generate``, ``factory.store.DatasetStore``.
"""

__version__ = "0.1.0"
