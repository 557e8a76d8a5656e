"""The executor seam: where independent pieces of work run.

An :class:`Executor` runs ``fn(*shared, *item)`` for every ``item`` of a list and hands back
each result (or the exception it raised) as an :class:`Outcome`, in the order the pieces
finish.  ``shared`` holds large read-only arguments common to every piece; an executor sends
them to its workers once (a Ray object, a scattered Dask future) instead of once per piece.

Implementations (every algorithm receives one; none imports Ray or Dask itself):

- :class:`LocalExecutor`: in this process, serially or on a thread pool.
- :class:`~factory.compute.ray_executor.RayExecutor`: Ray tasks, or long-lived Ray actors that
  keep a simulator's plans and device state warm between pieces (one per CPU slot, GPU or node).
- :class:`~factory.compute.dask_executor.DaskExecutor`: Dask's local threads, or a
  dask.distributed scheduler at an address.

:func:`resolve_executor` turns the one user-facing option (``parallel``: ``auto``, ``local``,
``ray`` or ``dask``, plus an address) into an executor.  ``executor.replicas(...)`` keeps ``n``
long-lived copies of a stateful object (a model) where the executor runs (:mod:`.replicas`).
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..errors import ConfigError, FactoryError
from .replicas import LocalReplicaPool, ReplicaPool

PARALLEL = ("auto", "local", "ray", "dask")


@dataclass(frozen=True)
class Outcome:
    """One finished piece: ``items[index]`` gave ``value``, or raised ``error``."""

    index: int
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@runtime_checkable
class Executor(Protocol):
    """Runs independent pieces of work somewhere; see the module docstring."""

    kind: str   # "local", "ray" or "dask"
    slots: int  # pieces that run at once

    def describe(self) -> str:
        """Where the pieces run, in words (for reports)."""

    def imap_unordered(self, fn: Callable[..., Any], items: Sequence[tuple], *, shared: tuple = (),
                       name: str = "factory.task", warm: Callable[[], Any] | None = None) -> Iterator[Outcome]:
        """``fn(*shared, *item)`` for every item, each :class:`Outcome` as soon as it finishes.

        ``name`` names the pieces where the executor can (Ray task names); ``warm`` is called
        once in every worker before its first piece (an actor builds its simulator up front)."""

    def map(self, fn: Callable[..., Any], items: Sequence[tuple], *, shared: tuple = (),
            name: str = "factory.task") -> list[Any]:
        """The results in the order of ``items``; the first failure is raised."""

    def replicas(self, factory: Callable[..., Any], args: Sequence[Any], n: int, *,
                 gpus_per_replica: float | None = None) -> ReplicaPool:
        """``n`` long-lived replicas of ``factory(*args)`` (:mod:`.replicas`); ``gpus_per_replica``
        None: one GPU each where there is one for every replica, else none."""

    def close(self) -> None:
        """Release what the executor started (threads, actors, a client); never a cluster it joined."""


class ExecutorBase:
    """``map`` and context-manager support on top of ``imap_unordered``."""

    kind = "base"
    slots = 1

    def map(self, fn, items, *, shared=(), name="factory.task"):
        items = list(items)
        out: list[Any] = [None] * len(items)
        for o in self.imap_unordered(fn, items, shared=shared, name=name):
            if o.error is not None:
                raise o.error
            out[o.index] = o.value
        return out

    def replicas(self, factory, args, n, *, gpus_per_replica=None) -> ReplicaPool:
        raise ConfigError(f"model replicas cannot run on {self.describe()}; use a local or Ray executor")

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _run(fn, shared, item, index) -> Outcome:
    try:
        return Outcome(index, fn(*shared, *item))
    except Exception as exc:  # noqa: BLE001 - handed back to the caller as the piece's outcome
        return Outcome(index, error=exc)


class LocalExecutor(ExecutorBase):
    """In this process: serially (``workers=1``, the default) or on a pool of ``workers`` threads."""

    kind = "local"

    def __init__(self, workers: int | None = 1):
        self.slots = max(1, int(workers or 1))

    def describe(self) -> str:
        return "in-process" if self.slots == 1 else f"in-process, {self.slots} threads"

    def replicas(self, factory, args, n, *, gpus_per_replica=None) -> ReplicaPool:
        return LocalReplicaPool(factory, args, n)

    def imap_unordered(self, fn, items, *, shared=(), name="factory.task", warm=None) -> Iterator[Outcome]:
        items = list(items)
        if warm is not None and items:
            warm()
        if self.slots == 1:
            for i, item in enumerate(items):
                yield _run(fn, shared, item, i)
            return
        with cf.ThreadPoolExecutor(self.slots, thread_name_prefix=name) as pool:
            futures = [pool.submit(_run, fn, shared, item, i) for i, item in enumerate(items)]
            for fut in cf.as_completed(futures):
                yield fut.result()


def describe_error(exc: BaseException) -> str:
    """One line for a failed piece: the project's own errors by their message, others with their type."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(exc, FactoryError):
        return first or type(exc).__name__
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


__all__ = ["PARALLEL", "Executor", "ExecutorBase", "LocalExecutor", "Outcome", "describe_error"]
