"""Dask: its local threaded scheduler, or a dask.distributed scheduler at an address (never dask-on-Ray).

Pieces are independent Dask tasks; results come back as each one finishes (a scheduler
callback on local threads, ``as_completed`` on a cluster), so progress bars show true rates.
Shared arguments are scattered to the cluster's workers once.
"""

from __future__ import annotations

import functools
import queue
import threading
import uuid
from collections.abc import Iterator

from .executor import ExecutorBase, Outcome, _run
from .replicas import LocalReplicaPool, ReplicaPool


class DaskExecutor(ExecutorBase):
    """Dask's local threads (``workers`` of them, default: one per CPU) or dask.distributed at ``address``."""

    kind = "dask"

    def __init__(self, address: str | None = None, *, workers: int | None = None):
        import os

        self.address = address
        self.workers = workers
        self._client = None
        if address:
            from distributed import Client

            from .ray_executor import probe

            probe(address, service="Dask scheduler", hint="check --address, or leave it unset for local threads")
            self._client = Client(address, set_as_default=False)  # other Dask work here stays local
            self.slots = max(1, sum(w.get("nthreads", 1) for w in self._client.scheduler_info()["workers"].values()))
        else:
            self.slots = max(1, int(workers or os.cpu_count() or 1))

    def describe(self) -> str:
        if self._client is not None:
            return f"dask.distributed at {self.address}"
        return f"dask threads ({self.workers or 'all'} workers)"

    def imap_unordered(self, fn, items, *, shared=(), name="factory.task", warm=None) -> Iterator[Outcome]:
        items = list(items)
        if not items:
            return
        if self._client is not None:
            yield from self._distributed(fn, items, shared, name)
        else:
            if warm is not None:
                warm()
            yield from self._threads(fn, items, shared, name)

    def replicas(self, factory, args, n, *, gpus_per_replica=None) -> ReplicaPool:
        """In this process on Dask's local threads (one thread each); not on a dask.distributed cluster."""
        if self._client is None:
            return LocalReplicaPool(factory, args, n)
        return super().replicas(factory, args, n, gpus_per_replica=gpus_per_replica)

    def _distributed(self, fn, items, shared, name) -> Iterator[Outcome]:
        from distributed import as_completed

        client = self._client
        shared_f = client.scatter(list(shared), broadcast=True) if shared else []
        token = uuid.uuid4().hex[:8]
        futures = {client.submit(fn, *shared_f, *item, pure=False, key=f"{name}-{token}-{i}"): i
                   for i, item in enumerate(items)}
        try:
            for fut in as_completed(futures, loop=client.loop):
                i = futures[fut]
                try:
                    yield Outcome(i, fut.result())
                except Exception as exc:  # noqa: BLE001 - the piece's outcome
                    yield Outcome(i, error=exc)
        finally:
            client.cancel([f for f in futures if not f.done()])

    def _threads(self, fn, items, shared, name) -> Iterator[Outcome]:
        import dask
        from dask.callbacks import Callback

        done: queue.Queue = queue.Queue()
        failure: list[BaseException] = []

        class _Push(Callback):
            def _posttask(self, key, result, dsk, state, worker_id):
                if isinstance(result, Outcome):
                    done.put(result)

        tasks = [dask.delayed(functools.partial(_run, fn, shared, item, i), pure=False, name=f"{name}-{i}")()
                 for i, item in enumerate(items)]

        def compute():
            try:
                dask.compute(*tasks, scheduler="threads", num_workers=self.slots, callbacks=[_Push()._callback])
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                failure.append(exc)
            finally:
                done.put(None)

        thread = threading.Thread(target=compute, name=f"{name}-dask", daemon=True)
        thread.start()
        seen = 0
        while seen < len(items):
            o = done.get()
            if o is None:
                break
            seen += 1
            yield o
        thread.join()
        if failure:
            raise failure[0]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


__all__ = ["DaskExecutor"]
