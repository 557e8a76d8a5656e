"""The project's log lines from Ray workers, shown by the driver.

By default Ray does not forward its worker processes' output to the driver here
(:func:`factory.compute.ray_executor.connect` starts Ray with ``log_to_driver`` off unless
``factory --verbose``): the output of Ray's own actors (Ray Train's controller and placement
group cleaner, their tracebacks and C++ warnings) never reaches the terminal.  What the
project's own code logs on a worker (a training epoch's line) comes through a
:class:`LogRelay` instead: a small actor that the workers' log handler puts each record into
and that a thread of the driver empties into the driver's loggers, so every line is printed
once, plain, at the driver's level (``--quiet`` hides it there).
"""

from __future__ import annotations

import logging
import threading

from ..logs import PACKAGES, level

Record = tuple[str, int, str]  # (logger name, level, message)


class LogBox:
    """The actor between the workers and the driver: records in, in order, until drained."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def put(self, record: Record) -> None:
        self.records.append(record)

    def drain(self) -> list[Record]:
        out, self.records = self.records, []
        return out


class RelayHandler(logging.Handler):
    """A worker's handler of the project's loggers: each record goes to the :class:`LogBox`."""

    def __init__(self, box) -> None:
        super().__init__()
        self.box = box

    def emit(self, record: logging.LogRecord) -> None:
        import ray

        try:
            ray.get(self.box.put.remote((record.name, record.levelno, self.format(record))))
        except Exception:  # noqa: BLE001 - the driver (and its box) is gone: nobody to tell
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        pass  # a lost progress line is not worth a traceback in the worker's log


def forward_to(box, at: int) -> None:
    """In a Ray worker: send the project's log records at level ``at`` and above to ``box``,
    and nowhere else (not to the worker's stderr, which Ray may also forward)."""
    handler = RelayHandler(box)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in PACKAGES:
        log = logging.getLogger(name)
        for h in list(log.handlers):
            log.removeHandler(h)
        log.addHandler(handler)
        log.setLevel(at)
        log.propagate = False


class LogRelay:
    """``with LogRelay() as relay:`` workers given ``relay.box`` and ``relay.level`` (and calling
    :func:`forward_to`) log through the driver while the block runs."""

    def __init__(self, interval_s: float = 0.25) -> None:
        import ray

        self.box = ray.remote(LogBox).options(num_cpus=0).remote()  # 0 CPUs: never waits for a slot
        self.level = level()
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="factory-log-relay", daemon=True)

    def __enter__(self) -> "LogRelay":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import ray

        self._stop.set()
        self._thread.join()
        try:
            self._emit(ray.get(self.box.drain.remote()))
            ray.kill(self.box)
        except Exception:  # noqa: BLE001 - Ray is already down: what was left is lost with it
            pass

    def _pump(self) -> None:
        import ray

        while not self._stop.wait(self.interval_s):
            try:
                self._emit(ray.get(self.box.drain.remote()))
            except Exception:  # noqa: BLE001 - Ray shut down under us; __exit__ tries once more
                return

    @staticmethod
    def _emit(records: list[Record]) -> None:
        for name, levelno, message in records:
            log = logging.getLogger(name)
            if log.isEnabledFor(levelno):
                log.log(levelno, "%s", message)


__all__ = ["LogBox", "LogRelay", "RelayHandler", "forward_to"]
