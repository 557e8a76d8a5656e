"""The executor seam and the one block runner: the same bytes on every executor, failures per block."""

import socket
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from factory.compute import (BlockReport, DaskExecutor, Executor, LocalExecutor, RayExecutor, ReplicaPool,
                             fill_missing_blocks, resolve_executor)
from factory.errors import ClusterError, ConfigError, GenerationError
from factory.processing.steps import focal_average_store, preprocess_store
from factory.simulators import Coord
from factory.store import DatasetStore
from factory.testing import make_ladder_store


def square(offset, x):
    if x == 3:
        raise ValueError("three is not allowed")
    return offset + x * x


def every_array(path) -> dict[str, bytes]:
    st = DatasetStore.open(path)
    return {name: np.asarray(obj[...]).tobytes() for name, obj in st.group.members(max_depth=None)
            if not hasattr(obj, "members")}


# -- executors ---------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: LocalExecutor(), lambda: LocalExecutor(3), lambda: DaskExecutor(workers=2)],
                         ids=["serial", "threads", "dask-threads"])
def test_local_executors_hand_back_every_outcome_and_map_keeps_order(make):
    with make() as ex:
        assert isinstance(ex, Executor)
        outs = list(ex.imap_unordered(square, [(x,) for x in range(6)], shared=(100,)))
        assert sorted(o.index for o in outs) == list(range(6))
        bad = [o for o in outs if not o.ok]
        assert [o.index for o in bad] == [3] and "three" in str(bad[0].error)
        assert {o.index: o.value for o in outs if o.ok} == {x: 100 + x * x for x in (0, 1, 2, 4, 5)}
        assert ex.map(square, [(x,) for x in (5, 1, 2)], shared=(0,)) == [25, 1, 4]
        with pytest.raises(ValueError, match="three"):
            ex.map(square, [(1,), (3,)], shared=(0,))


def test_resolve_executor_is_the_one_parallel_option():
    assert resolve_executor("local").kind == "local"
    assert isinstance(resolve_executor("dask"), DaskExecutor)
    ex = LocalExecutor(2)
    assert resolve_executor(ex) is ex  # an executor passes through
    import ray

    if not ray.is_initialized():  # small work is not worth starting Ray for
        assert resolve_executor("auto", work_s=0.5).kind == "local"
    with pytest.raises(ConfigError, match="choose auto, local, ray, dask"):
        resolve_executor("threads")


def test_unreachable_dask_scheduler_fails_fast_in_one_line():
    with socket.socket() as s:  # a port nobody listens on: bind, never listen
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        t0 = time.perf_counter()
        with pytest.raises(ClusterError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"):
            DaskExecutor(f"tcp://127.0.0.1:{port}")
        assert time.perf_counter() - t0 < 5


# -- replica pools ---------------------------------------------------------------------------
class Tally:
    """A stateful replica: a running total that refuses to be used by two threads at once."""

    def __init__(self, start):
        self.total, self.threads, self.busy = start, set(), False

    def add(self, x):
        assert not self.busy, "used by two threads at once"
        self.busy = True
        self.threads.add(threading.get_ident())
        time.sleep(0.002)
        self.total += x
        self.busy = False
        return self.total

    def fail(self):
        raise ValueError("refused (injected)")


def replica_threads():
    return [t for t in threading.enumerate() if t.name.startswith("replica-")]


@pytest.mark.parametrize("make", [lambda: LocalExecutor(), lambda: DaskExecutor(workers=2)], ids=["local", "dask-threads"])
def test_local_replicas_keep_state_one_thread_each_and_hand_back_failures(make):
    with make() as ex, ex.replicas(Tally, (0,), 1) as one:  # one replica: its calls run in the order submitted
        assert [f.result(timeout=10) for f in [one.submit("add", 1) for _ in range(20)]] == list(range(1, 21))
    with make() as ex, ex.replicas(Tally, (100,), 2) as pool:
        assert isinstance(pool, ReplicaPool) and len(pool) == 2 and pool.gpus_per_replica == 0
        totals = [f.result(timeout=10) for f in [pool.submit("add", 1) for _ in range(40)]]
        calls = [o.total - 100 for o in pool.objects]
        assert sum(calls) == 40 and min(calls) > 0  # the least busy replica is picked: both work
        assert sorted(totals) == sorted([*range(101, 101 + calls[0]), *range(101, 101 + calls[1])])
        for o in pool.objects:  # each object served by its own single thread, never two at once
            assert len(o.threads) == 1
        assert len({next(iter(o.threads)) for o in pool.objects}) == 2
        failed = pool.submit("fail")
        with pytest.raises(ValueError, match="refused"):
            failed.result(timeout=10)
        assert pool.submit("add", 0).result(timeout=10) in {o.total for o in pool.objects}  # still serving
        assert len(replica_threads()) == 2
    assert not replica_threads()  # close() stopped the threads
    with pytest.raises(RuntimeError):
        pool.submit("add", 1)


def test_replicas_on_dask_distributed_are_a_clear_error():
    ex = DaskExecutor(workers=1)
    ex._client = object()  # as if at an address: no stateful replicas there
    with pytest.raises(ConfigError, match="model replicas cannot run on dask.distributed"):
        ex.replicas(Tally, (0,), 1)
    ex._client = None


def test_ray_replicas_are_actors_with_state_and_their_own_errors(ray_local):
    import ray

    with RayExecutor() as ex, ex.replicas(list, ([1, 2],), 2) as pool:  # list: a class Ray's workers can import
        assert len(pool) == 2 and pool.gpus_per_replica == 0 and "2 Ray actor replica(s), CPU each" == pool.describe()
        first, second = pool.submit("append", 3), pool.submit("append", 4)  # one on each replica
        assert first.result(timeout=60) is None and second.result(timeout=60) is None
        copies = sorted(pool.submit("copy").result(timeout=60) for _ in range(2))
        assert copies == [[1, 2, 3], [1, 2, 4]]
        bad = pool.submit("index", 99)
        with pytest.raises(ValueError, match="99 is not in list") as info:
            bad.result(timeout=60)
        assert not isinstance(info.value, ray.exceptions.RayError)  # the method's own exception
        actors = list(pool.actors)
    assert not pool.actors
    deadline = time.monotonic() + 60  # ray.kill is asynchronous: a call sent at once may still be served
    with pytest.raises(ray.exceptions.RayActorError):
        while time.monotonic() < deadline:
            ray.get(actors[0].call.remote("copy"), timeout=60)
            time.sleep(0.05)


# -- the block runner ----------------------------------------------------------------------
@dataclass(frozen=True)
class Ramp:
    """A block function: sample i is an image full of i; block [8, 12) fails."""

    fail_at: int = 8

    def __call__(self, start, stop):
        if start == self.fail_at:
            raise GenerationError(f"block at {start} refused (injected)")
        imgs = np.repeat(np.arange(start, stop, dtype=np.float32)[:, None, None], 3, axis=1).repeat(2, axis=2)
        return imgs, {"i": np.arange(start, stop, dtype=np.float64)}, {}


def ramp_store(path):
    return DatasetStore.create(path, kind="ramp", n_samples=16, chunk=4,
                               coords=(Coord("y", np.arange(3.0)), Coord("x", np.arange(2.0))),
                               param_names=["i"], config={"ramp": True}, config_hash="ramp")


@pytest.mark.parametrize("make", [lambda: LocalExecutor(), lambda: LocalExecutor(2), lambda: DaskExecutor(workers=2)],
                         ids=["serial", "threads", "dask-threads"])
def test_a_failed_block_is_reported_not_stored_and_the_rest_is_written(tmp_path, make):
    st = ramp_store(tmp_path / "r.zarr")
    with make() as ex:
        rep = fill_missing_blocks(st, Ramp(), ex, progress=False, step="ramp")
    assert isinstance(rep, BlockReport)
    assert rep.blocks_computed == 3 and rep.samples_computed == 12 and rep.done == 12 and rep.blocks_skipped == 0
    assert rep.failures == ["block [8, 12): block at 8 refused (injected)"]
    assert rep.as_dict()["samples_per_s"] > 0 and "errors" not in rep.as_dict()
    with pytest.raises(GenerationError, match=r"1 of 4 blocks failed, 12/16 samples done; first: block \[8, 12\)"):
        rep.raise_failures(GenerationError)
    done = DatasetStore.open(st.path, partial=True).done_mask()
    assert done.tolist() == [True] * 8 + [False] * 4 + [True] * 4
    rep2 = fill_missing_blocks(DatasetStore.open(st.path, mode="r+"), Ramp(fail_at=-1), LocalExecutor(), progress=False)
    assert rep2.blocks_computed == 1 and rep2.blocks_skipped == 3 and rep2.done == 16 and not rep2.failures
    assert DatasetStore.open(st.path).images[:][:, 0, 0].tolist() == list(range(16))


# -- one processing step on every executor ---------------------------------------------------
def test_a_processing_step_gives_the_same_bytes_on_local_ray_and_dask(tmp_path, ray_local):
    from distributed import LocalCluster

    src = make_ladder_store(tmp_path / "raw.zarr", groups=6, ladder=5, chunk=5)

    def run(name, executor):
        focal_average_store(src.path, tmp_path / f"focal-{name}.zarr", chunk=2, executor=executor, progress=False)
        return preprocess_store([tmp_path / f"focal-{name}.zarr"], tmp_path / f"net-{name}.zarr", mode="pmd2d",
                                chunk=2, executor=executor, progress=False)

    reports = {"default": run("default", None)}  # Dask's local threads
    assert reports["default"].where.startswith("dask threads")
    reports["local"] = run("local", LocalExecutor())
    with RayExecutor(workers=2) as ex:
        reports["ray-tasks"] = run("ray-tasks", ex)
    with RayExecutor(workers=2, mode="actors") as ex:
        reports["ray-actors"] = run("ray-actors", ex)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        with DaskExecutor(cluster.scheduler_address) as ex:
            reports["dask-distributed"] = run("dask-distributed", ex)
    assert "Ray" in reports["ray-tasks"].where and "actor" in reports["ray-actors"].where
    assert "dask.distributed" in reports["dask-distributed"].where
    for step in ("focal", "net"):
        ref = every_array(tmp_path / f"{step}-default.zarr")
        assert "images" in ref and len(ref) > 4
        for name in reports:
            assert every_array(tmp_path / f"{step}-{name}.zarr") == ref, (step, name)
    assert all(r.blocks_computed == 3 and r.samples == 6 for r in reports.values())


def test_embedded_ray_runs_its_workers_at_the_drivers_priority(monkeypatch):
    import ray

    from factory.compute import ray_executor

    calls = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0, "GPU": 1.0})
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}])
    target = ray_executor.connect(num_cpus=2)
    assert calls[-1]["_system_config"] == {"worker_niceness": 0} and calls[-1]["num_cpus"] == 2
    assert target.describe() == "embedded local Ray: 1 node(s), 2 CPU(s), 1 GPU(s)"


@dataclass(frozen=True)
class Broken:
    """A block function that fails every block with ``error``."""

    error: type

    def __call__(self, start, stop):
        raise self.error(f"chunk at {start} unreadable (injected)")


def test_a_processing_step_raises_its_own_errors_in_one_line_and_bugs_as_they_are(tmp_path):
    from factory.errors import StoreError
    from factory.processing.runner import run_blocks

    st = ramp_store(tmp_path / "r.zarr")
    with pytest.raises(StoreError, match=r"4 of 4 chunks failed, 0/16 samples done; first: block \[\d+, \d+\): "
                                         r"chunk at \d+ unreadable"):
        run_blocks(st, Broken(StoreError), "ramp", executor=LocalExecutor(), progress=False)
    with pytest.raises(ZeroDivisionError, match="unreadable"):  # a bug keeps its type and traceback
        run_blocks(st, Broken(ZeroDivisionError), "ramp", executor=LocalExecutor(), progress=False)


def test_ray_actors_one_per_node_run_and_hand_back_failures(ray_local):
    import operator  # a function Ray's workers can import (they do not see this test module)

    with RayExecutor(mode="actors", per="node") as ex:
        assert len(ex.actors()) == 1 and ex.slots == 1  # the embedded Ray is one node
        outs = {o.index: o for o in ex.imap_unordered(operator.truediv, [(x,) for x in range(4)], shared=(12,))}
        assert {i: o.value for i, o in outs.items() if o.ok} == {1: 12.0, 2: 6.0, 3: 4.0}
        assert isinstance(outs[0].error, ZeroDivisionError)
        assert "1 actor(s)" in ex.describe()
