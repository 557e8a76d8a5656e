"""Replicas: ``n`` copies of one stateful object (a model on a GPU), each answering one call at a time.

``executor.replicas(factory, args, n)`` builds ``factory(*args)`` ``n`` times where the executor
runs work and hands back a :class:`ReplicaPool`; ``pool.submit("method", *args)`` calls that
method on the replica with the fewest calls outstanding and returns a
:class:`concurrent.futures.Future` (whose exception is the one the method raised), so the
caller waits on replicas exactly as on a thread pool.

- :class:`LocalReplicaPool` (``LocalExecutor``, Dask's local threads): the objects live in this
  process, each served by a thread of its own, so no object is ever used by two threads at once.
- :class:`~factory.compute.ray_executor.RayReplicaPool` (``RayExecutor``): one Ray actor per
  replica, one GPU each when the cluster has a GPU for every replica, else one CPU each.

A pool never outlives :meth:`ReplicaPool.close`, which stops its threads or actors.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ReplicaPool(Protocol):
    """``n`` replicas of one object; see the module docstring."""

    gpus_per_replica: float

    def submit(self, method: str, *args: Any) -> cf.Future:
        """``replica.method(*args)`` on the least busy replica, as a future."""

    def describe(self) -> str:
        """Where the replicas run, in words."""

    def __len__(self) -> int: ...

    def close(self) -> None:
        """Stop the replicas (threads or actors); calls still queued are cancelled."""


class ReplicaPoolBase:
    """Picks the replica with the fewest calls outstanding (ties: the next one round the ring)."""

    gpus_per_replica: float = 0.0

    def __init__(self, n: int):
        if n < 1:
            raise ValueError(f"a replica pool needs at least one replica, not {n}")
        self._busy = [0] * n
        self._next = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._busy)

    def _pick(self) -> int:
        with self._lock:
            n = len(self._busy)
            order = [(self._next + k) % n for k in range(n)]
            i = min(order, key=self._busy.__getitem__)
            self._busy[i] += 1
            self._next = (i + 1) % n
            return i

    def _track(self, i: int, fut: cf.Future) -> cf.Future:
        def done(_):
            with self._lock:
                self._busy[i] -= 1

        fut.add_done_callback(done)
        return fut

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalReplicaPool(ReplicaPoolBase):
    """The replicas in this process, each served by one thread of its own."""

    def __init__(self, factory: Callable[..., Any], args: Sequence[Any], n: int, *, name: str = "replica"):
        super().__init__(n)
        self.objects = [factory(*args) for _ in range(n)]
        self._threads = [cf.ThreadPoolExecutor(1, thread_name_prefix=f"{name}-{i}") for i in range(n)]

    def describe(self) -> str:
        return f"{len(self)} in-process replica(s), one thread each"

    def submit(self, method: str, *args: Any) -> cf.Future:
        i = self._pick()
        try:
            fut = self._threads[i].submit(getattr(self.objects[i], method), *args)
        except BaseException:
            with self._lock:
                self._busy[i] -= 1
            raise
        return self._track(i, fut)

    def close(self) -> None:
        for t in self._threads:
            t.shutdown(wait=True, cancel_futures=True)


__all__ = ["LocalReplicaPool", "ReplicaPool", "ReplicaPoolBase"]
