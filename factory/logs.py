"""The project's log: progress and warnings through the standard :mod:`logging` module.

Every module logs to its own logger (``log = get_logger(__name__)``), under ``factory`` or
``models``; both write plain lines to stderr (no colour, no timestamps: what a
terminal or a log file shows is the message), warnings as ``warning: ...``.  Results go to
stdout through the CLI, never through the log, so ``--json`` output stays parseable.

The level is :data:`NORMAL` (INFO: progress lines) until :func:`configure` sets another: the
CLI's ``factory --quiet`` (:data:`QUIET`: warnings and errors only) and ``factory --verbose``
(:data:`VERBOSE`: debug lines, and the logs of Ray's own processes, see
:mod:`factory.compute.ray_executor`).  A notebook changes it the same way:
``factory.logs.configure(logging.WARNING)``.
"""

from __future__ import annotations

import logging
import sys

PACKAGES = ("factory", "models")  # the loggers configured here (every module logs below one of them)
QUIET, NORMAL, VERBOSE = logging.WARNING, logging.INFO, logging.DEBUG


class PlainFormatter(logging.Formatter):
    """The message alone; ``warning: `` / ``error: `` in front of the ones that are."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.ERROR:
            return f"error: {text}"
        if record.levelno >= logging.WARNING:
            return f"warning: {text}"
        return text


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (a live progress display
    replaces it to print log lines above its bar)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # noqa: D401 - the stream of the moment
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # set by StreamHandler.__init__; the property always follows sys.stderr
        pass


def configure(level: int = NORMAL) -> None:
    """Plain stderr lines at ``level`` for every project logger (idempotent)."""
    for name in PACKAGES:
        log = logging.getLogger(name)
        for h in [h for h in log.handlers if isinstance(h, StderrHandler)]:
            log.removeHandler(h)
        handler = StderrHandler()
        handler.setFormatter(PlainFormatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(level)
        log.propagate = False  # one line per record, whatever the root logger has


def level() -> int:
    """The level the project's loggers are at."""
    return logging.getLogger(PACKAGES[0]).getEffectiveLevel()


def verbose() -> bool:
    """Whether debug lines (and the logs of Ray's own processes) are wanted."""
    return level() <= VERBOSE


def quiet() -> bool:
    """Whether progress (INFO) is hidden: only warnings, errors and results."""
    return level() > NORMAL


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)``, with the project's loggers configured (``name`` is a module's
    ``__name__``: it lies under ``factory`` or ``models``)."""
    return logging.getLogger(name)


configure()


__all__ = ["NORMAL", "PACKAGES", "QUIET", "VERBOSE", "PlainFormatter", "StderrHandler", "configure", "get_logger", "level",
           "quiet", "verbose"]
