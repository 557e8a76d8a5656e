"""Ray: where it runs (an embedded local Ray or a cluster) and the Ray executor.

Where: an explicit ``address`` (``--address`` on the CLI), then the ``RAY_ADDRESS`` environment
variable, then an embedded local Ray started in this process.  A Ray instance that is already
initialised in this process (a notebook, a test fixture) is reused as it is.  An address that
does not answer fails at once with a :class:`~factory.errors.ClusterError` (:func:`probe`),
instead of Ray's minutes of retries.

The executor runs pieces either as Ray tasks (``mode="tasks"``; a task whose worker or node
died is retried ``max_retries`` times) or on long-lived actors (``mode="actors"``): one per CPU
slot (``cpus_per_task`` CPUs and ``gpus_per_task`` GPUs each, so one per GPU with
``gpus_per_task=1``) or one per node (``per="node"``).  An actor is a worker process that
stays up between pieces and between runs of the same executor, so what a piece builds and
caches in its process (a simulator, its FFT plans, device buffers) is built once per actor;
``warm`` builds it on every actor before the first piece.  A piece whose actor died (killed,
its node lost) is retried on a live actor, ``max_retries`` times, and the dead actor replaced
by a new one wherever there is room.

:meth:`RayExecutor.replicas` keeps ``n`` stateful objects (a model each) as Ray actors of their
own (:class:`RayReplicaPool`, see :mod:`.replicas`).
"""

from __future__ import annotations

import concurrent.futures as cf
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .. import logs
from .executor import ExecutorBase, Outcome
from .replicas import ReplicaPoolBase
from .ray_connect import (PROBE_TIMEOUT_S, WORKER_NICENESS, RayTarget, connect, dashboard_missing,  # noqa: F401
                          probe, quiet_ray, ray_running, shutdown, start_dashboard)

log = logs.get_logger(__name__)
MODES = ("tasks", "actors")


def _call(fn, *args):
    """The body of every Ray task and actor call: ``fn(*args)`` (shared objects arrive resolved)."""
    return fn(*args)


class FactoryWorker:
    """A long-lived worker process (a Ray actor); what ``fn`` caches in the process stays warm."""

    def call(self, fn, *args):
        return fn(*args)


class Replica:
    """A long-lived worker process (a Ray actor) holding one ``factory(*args)`` and calling its methods."""

    def __init__(self, factory, *args):
        self.obj = factory(*args)

    def call(self, method: str, *args):
        return getattr(self.obj, method)(*args)

    def __repr__(self) -> str:  # names the actor in Ray's logs
        return f"Replica({type(self.obj).__name__})"


def _noop() -> None:
    return None


def _cancel(refs) -> None:
    """Cancel what is still running when the caller stopped early."""
    import ray

    for ref in refs:
        try:
            ray.cancel(ref)
        except Exception:  # noqa: BLE001 - already finished, or not cancellable
            pass


def _unwrap(exc: BaseException) -> BaseException:
    """The exception a piece raised (Ray wraps it), or Ray's own error (a worker or node died)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


class RayExecutor(ExecutorBase):
    """Ray tasks or long-lived actors; see the module docstring."""

    kind = "ray"

    def __init__(self, address: str | None = None, *, workers: int | None = None, cpus_per_task: int = 1,
                 gpus_per_task: float = 0, mode: str = "tasks", per: str = "slot", max_retries: int = 5):
        if mode not in MODES:
            raise ValueError(f"Ray executor mode {mode!r}: choose {' or '.join(MODES)}")
        if per not in ("slot", "node"):
            raise ValueError(f"actors per {per!r}: choose slot or node")
        self.target = connect(address, num_cpus=(workers * cpus_per_task) if workers else None)
        self.mode, self.per, self.max_retries = mode, per, int(max_retries)
        self.cpus_per_task, self.gpus_per_task = cpus_per_task, gpus_per_task
        if workers:
            self.slots = int(workers)
        elif gpus_per_task:
            self.slots = max(1, int(self.target.gpus // gpus_per_task))
        else:
            self.slots = max(1, self.target.cpus // cpus_per_task)
        self._actors: list[Any] = []

    def describe(self) -> str:
        how = f"{len(self._actors) or self.slots} actor(s)" if self.mode == "actors" else f"tasks, {self.slots} at once"
        return f"{self.target.describe()}; {how}"

    # -- tasks ---------------------------------------------------------------------------------
    def _task(self, name: str):
        import ray

        return ray.remote(_call).options(num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task,
                                         max_retries=self.max_retries, retry_exceptions=False, name=name)

    # -- actors --------------------------------------------------------------------------------
    def _actor_class(self, cls: type = FactoryWorker, **options):
        import ray

        options = {"num_cpus": self.cpus_per_task, "num_gpus": self.gpus_per_task, "max_restarts": 0,
                   "max_task_retries": 0, **options}
        return ray.remote(cls).options(**{k: v for k, v in options.items() if v is not None})  # None: Ray's default

    def actors(self) -> list[Any]:
        """The actor pool, started on first use and kept until :meth:`close`."""
        if self._actors:
            return self._actors
        import ray

        if self.per == "node":
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
            self._actors = [self._actor_class(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=True)).remote()
                            for n in nodes]
            self.slots = len(self._actors)
        else:
            cls = self._actor_class()
            self._actors = [cls.remote() for _ in range(self.slots)]
        return self._actors

    def _replace(self, dead) -> Any:
        """A new actor in place of ``dead`` (killed for good), scheduled wherever there is room."""
        import ray

        try:
            ray.kill(dead, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        new = self._actor_class().remote()
        self._actors = [new if a is dead else a for a in self._actors]
        return new

    def _imap_actors(self, fn, items, refs, name, warm) -> Iterator[Outcome]:
        """Each actor runs one piece at a time; a piece whose actor died is retried on a live one
        (``max_retries`` times), and the dead actor replaced.  An actor (new or replaced) gets
        pieces only once its ``warm`` call (or a no-op) has come back, so a replacement that finds
        no room never holds a piece."""
        import ray

        queue = deque(enumerate(items))
        attempts = [0] * len(items)
        starting: dict[Any, Any] = {}  # ready-call ref -> actor
        pending: dict[Any, tuple[int, Any]] = {}  # piece ref -> (index, actor)
        idle: deque = deque()

        def start(actor):
            starting[actor.call.options(name=f"{name}.warm").remote(warm or _noop)] = actor

        for actor in self.actors():
            start(actor)
        try:
            while queue or pending:
                while queue and idle:
                    i, item = queue.popleft()
                    actor = idle.popleft()
                    pending[actor.call.options(name=name).remote(fn, *refs, *item)] = (i, actor)
                if not pending and not starting:
                    while queue:
                        yield Outcome(queue.popleft()[0], error=RuntimeError("no live Ray actor left to run this piece"))
                    break
                ready, _ = ray.wait([*pending, *starting], num_returns=1)
                ref = ready[0]
                if ref in starting:
                    actor = starting.pop(ref)
                    try:
                        ray.get(ref)
                    except ray.exceptions.RayActorError:
                        start(self._replace(actor))
                        continue
                    except Exception:  # noqa: BLE001 - warm failed: the pieces will fail with their own error
                        pass
                    idle.append(actor)
                    continue
                i, actor = pending.pop(ref)
                try:
                    outcome = Outcome(i, ray.get(ref))
                except ray.exceptions.RayActorError as exc:  # the actor died (killed, its node lost)
                    attempts[i] += 1
                    start(self._replace(actor))
                    if attempts[i] <= self.max_retries:
                        queue.appendleft((i, items[i]))
                        continue
                    outcome = Outcome(i, error=exc)
                except Exception as exc:  # noqa: BLE001 - the piece's outcome
                    outcome = Outcome(i, error=_unwrap(exc))
                    idle.append(actor)
                else:
                    idle.append(actor)
                yield outcome
        finally:
            _cancel(pending)

    # -- replicas ------------------------------------------------------------------------------
    def replicas(self, factory, args, n, *, gpus_per_replica=None) -> RayReplicaPool:
        """``n`` actors holding ``factory(*args)`` each: ``gpus_per_replica`` GPUs each (None: one
        when the cluster has a GPU for every replica, else none: ``cpus_per_task`` CPUs each)."""
        import ray

        if gpus_per_replica is None:
            gpus_per_replica = 1 if ray.cluster_resources().get("GPU", 0) >= n else 0
        per = {"num_gpus": gpus_per_replica, "num_cpus": None} if gpus_per_replica else {"num_gpus": 0}
        return RayReplicaPool(self._actor_class(Replica, **per), factory, args, n, gpus_per_replica)

    # -- both ----------------------------------------------------------------------------------
    def imap_unordered(self, fn, items, *, shared=(), name="factory.task", warm=None) -> Iterator[Outcome]:
        import ray

        items = list(items)
        if not items:
            return
        refs = [ray.put(s) for s in shared]
        if self.mode == "actors":
            yield from self._imap_actors(fn, items, refs, name, warm)
            return
        task = self._task(name)
        queue = deque(enumerate(items))
        pending: dict[Any, int] = {}
        try:
            while queue or pending:
                while queue and len(pending) < self.slots:
                    i, item = queue.popleft()
                    pending[task.remote(fn, *refs, *item)] = i
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    i = pending.pop(ref)
                    try:
                        yield Outcome(i, ray.get(ref))
                    except Exception as exc:  # noqa: BLE001 - the piece's outcome
                        yield Outcome(i, error=_unwrap(exc))
        finally:
            _cancel(pending)

    def close(self) -> None:
        if self._actors:
            import ray

            for a in self._actors:
                ray.kill(a)
            self._actors = []


class RayReplicaPool(ReplicaPoolBase):
    """Ray actors of :class:`Replica`, one call at a time each; made by :meth:`RayExecutor.replicas`."""

    def __init__(self, actor_class, factory: Callable[..., Any], args: Sequence[Any], n: int, gpus_per_replica: float):
        super().__init__(n)
        self.gpus_per_replica = float(gpus_per_replica)
        self.actors = [actor_class.remote(factory, *args) for _ in range(n)]

    def describe(self) -> str:
        each = f"{self.gpus_per_replica:g} GPU(s)" if self.gpus_per_replica else "CPU"
        return f"{len(self)} Ray actor replica(s), {each} each"

    def submit(self, method: str, *args: Any) -> cf.Future:
        i = self._pick()
        out: cf.Future = cf.Future()
        self._track(i, out)
        try:
            ray_future = self.actors[i].call.remote(method, *args).future()
        except BaseException as exc:  # noqa: BLE001 - the call could not be made: its future says why
            out.set_exception(exc)
            return out

        def settle(f: cf.Future) -> None:  # the method's own exception, not Ray's wrapper
            exc = f.exception()
            if exc is None:
                out.set_result(f.result())
            else:
                out.set_exception(_unwrap(exc))

        ray_future.add_done_callback(settle)
        return out

    def close(self) -> None:
        import ray

        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []


__all__ = ["MODES", "PROBE_TIMEOUT_S", "FactoryWorker", "RayExecutor", "RayReplicaPool", "Replica", "RayTarget", "connect",
           "dashboard_missing", "probe", "quiet_ray", "ray_running", "shutdown", "start_dashboard"]
