"""Errors the CLI turns into a one-line message and a non-zero exit."""


class FactoryError(Exception):
    """Base of all user-facing errors: the message is one line naming the problem."""


class ConfigError(FactoryError, ValueError):
    """A config file, preset or override is malformed or out of range."""


class StoreError(FactoryError):
    """A dataset store is missing, damaged, or does not match what was asked."""


class GenerationError(FactoryError):
    """A generation run failed (e.g. a simulator returned NaN/Inf)."""


class OutputError(FactoryError):
    """An output path is unsafe: it overlaps an input, is not ours to replace, or cannot be written."""


class ClusterError(FactoryError):
    """A Ray or Dask cluster address cannot be reached."""
