"""Compute: where work runs (one executor seam) and the one block runner.

- :mod:`.executor`: the :class:`Executor` protocol and :class:`LocalExecutor`;
  :mod:`.resolve`: :func:`resolve_executor` (the one ``parallel`` option of every algorithm).
- :mod:`.ray_executor`: :class:`RayExecutor` (tasks, or long-lived actors that keep a
  simulator warm) and where Ray runs (:func:`connect`, :func:`probe`).
- :mod:`.dask_executor`: :class:`DaskExecutor` (local threads or dask.distributed).
- :mod:`.replicas`: :class:`ReplicaPool`, ``n`` long-lived copies of a stateful object (a model)
  made by ``executor.replicas(...)``: threads of this process, or Ray actors.
- :mod:`.blocks`: :func:`fill_missing_blocks`, used by generation and every processing step.

Ray and Dask are imported only when an executor of theirs is made.
"""

from .blocks import TASK_NAME, BlockFn, BlockReport, BlockWriter, fill_missing_blocks, finish_replacement
from .executor import PARALLEL, Executor, LocalExecutor, Outcome, describe_error
from .replicas import LocalReplicaPool, ReplicaPool
from .resolve import resolve_executor


def __getattr__(name: str):  # RayExecutor / DaskExecutor without importing ray or dask up front
    if name == "RayExecutor":
        from .ray_executor import RayExecutor

        return RayExecutor
    if name == "DaskExecutor":
        from .dask_executor import DaskExecutor

        return DaskExecutor
    raise AttributeError(name)


__all__ = ["PARALLEL", "TASK_NAME", "BlockFn", "BlockReport", "BlockWriter", "DaskExecutor", "Executor",
           "LocalExecutor", "LocalReplicaPool", "Outcome", "RayExecutor", "ReplicaPool", "describe_error",
           "fill_missing_blocks", "finish_replacement", "resolve_executor"]
