"""The one ``parallel`` option of every algorithm, resolved to an executor."""

from __future__ import annotations

from ..errors import ConfigError
from .executor import PARALLEL, Executor, LocalExecutor


def resolve_executor(parallel: str = "auto", address: str | None = None, *, work_s: float | None = None,
                     workers: int | None = None) -> Executor:
    """The executor for the one ``parallel`` option every algorithm takes.

    ``local``: in this process; ``ray``: Ray tasks (``address``, else RAY_ADDRESS, else an
    embedded Ray); ``dask``: dask.distributed at ``address``, else Dask's local threads;
    ``auto``: Ray when it pays, that is when an address is given, or when Ray is already
    running with more than one CPU and the estimated work ``work_s`` (CPU seconds; None:
    unknown, assumed large) exceeds 2 s, or when it is not running and the work exceeds 30 s
    (worth starting an embedded Ray for); else in this process.
    """
    if isinstance(parallel, Executor):
        return parallel
    if parallel not in PARALLEL:
        raise ConfigError(f"parallel {parallel!r}: choose {', '.join(PARALLEL)}")
    if parallel == "local":
        return LocalExecutor(workers or 1)
    if parallel == "dask":
        from .dask_executor import DaskExecutor

        return DaskExecutor(address, workers=workers)
    from .ray_executor import RayExecutor, ray_running

    if parallel == "auto" and not address:
        running, cpus = ray_running()
        threshold = 2.0 if running else 30.0
        if (work_s is not None and work_s < threshold) or (running and cpus <= 1):
            return LocalExecutor(1)
    return RayExecutor(address, workers=workers)
