"""Failure injection: a killed driver, killed Ray workers, a lost node of a multi-node cluster.

Each test injects its fault only into its own run and then proves two things: the fault
really hit work in flight (Ray's own task records show the lost attempt and its retry), and
the finished store is byte-identical, array by array, to a store written without faults.
The driver and worker kills run in both executor modes: Ray tasks (Ray retries the lost
task: a later attempt of the same task) and long-lived Ray actors (the executor retries the
lost block on a live actor: a new task of the same name, and the dead actor is replaced).

Processes are found through Ray's state API of the test's own Ray instance only (its GCS
address, job id and node ids): never by scanning the machine's process list, which on a
shared machine would also find, and kill, other users' Ray workers.
"""

import contextlib
import inspect
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest

from factory.config import load_config
from factory.engine import compute_block, generate, prepare_store, run_block
from factory.store import DatasetStore

# kills of real processes (and clusters): the slow tier; one xdist worker for all (Ray dashboards on port 8265)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray-dashboard")]

BLOCK_TASK = "factory.block"  # the name the engine gives its block tasks (and actor calls)
TITLE = "ray::" + BLOCK_TASK  # a Ray worker's process title while it runs such a task
LOST = {"WORKER_DIED", "NODE_DIED", "ACTOR_DIED", "ACTOR_UNAVAILABLE"}  # how Ray records a killed attempt


# -- reading stores ------------------------------------------------------------------
def open_store(path):
    """Open a store that may still be incomplete (being generated, or left by a kill)."""
    if "partial" in inspect.signature(DatasetStore.open).parameters:
        return DatasetStore.open(path, partial=True)
    return DatasetStore.open(path, mode="r+")


def done_count(path):
    try:
        return int(open_store(path).done_mask().sum())
    except Exception:  # not created yet, or mid-creation
        return 0


def all_arrays(store) -> dict[str, np.ndarray]:
    """Every array of the store's Zarr group (coordinates, done, params, diagnostics, ...)."""
    return {name: np.asarray(obj[...]) for name, obj in store.group.members(max_depth=None)
            if not hasattr(obj, "members")}


def assert_identical(path, tmp_path, spec, overrides, samples):
    """The store at ``path`` is complete and byte-identical, in every array, to the same dataset
    written block by block in this process (no Ray, no faults), and its data are what the
    simulator computes directly (images, labels, diagnostics, sample index).

    ``simulator.delay_s`` only sleeps; it is dropped for the reference so that costs no wall
    time (should it ever change the data, the comparison fails: it cannot hide a difference)."""
    cfg = load_config(spec, [o for o in overrides if not o.startswith("simulator.delay_s=")], samples=samples)
    ref_path = tmp_path / "reference.zarr"
    for s, e in prepare_store(cfg, ref_path).blocks():
        run_block(cfg.resolved(), str(ref_path), s, e)
    st, ref = DatasetStore.open(path), DatasetStore.open(ref_path)  # as a reader: complete, or refused
    assert st.verify() == [], "the store fails its own verify"
    got, want = all_arrays(st), all_arrays(ref)
    assert set(got) == set(want), f"arrays differ: {sorted(set(got) ^ set(want))}"
    expected = {"images", "done", "sample", *st.meta["image_dims"][1:],
                *(f"params/{n}" for n in cfg_names(cfg)[0]), *(f"diagnostics/{n}" for n in cfg_names(cfg)[1])}
    assert expected <= set(got), f"store lacks {sorted(expected - set(got))}"
    for name in sorted(want):
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape, name
        assert got[name].tobytes() == want[name].tobytes(), f"{name} differs from the fault-free store"
    assert got["done"].all(), f"{(~got['done']).sum()} samples not done"
    assert got["sample"].tolist() == list(range(cfg.samples))
    for key in ("n_samples", "chunk", "kind", "param_names", "diagnostic_names", "image_dims", "seed"):
        assert st.meta[key] == ref.meta[key], key
    # and independently of the reference store: the simulator's own output, block by block
    parts = [compute_block(cfg, s, min(s + cfg.chunk, cfg.samples)) for s in range(0, cfg.samples, cfg.chunk)]
    assert got["images"].tobytes() == np.concatenate([p[0] for p in parts]).tobytes()
    for i, sub in ((1, "params"), (2, "diagnostics")):
        for n in parts[0][i]:
            assert got[f"{sub}/{n}"].tobytes() == np.concatenate([p[i][n] for p in parts]).tobytes(), n


def cfg_names(cfg):
    from factory.engine import build_simulator

    sim = build_simulator(cfg)
    return list(sim.param_names), list(sim.diagnostic_names)


def wait_for(pred, timeout=120, every=0.1):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(every)
    raise TimeoutError("condition not reached")


# -- this test's own Ray instance -----------------------------------------------------
@contextlib.contextmanager
def fast_task_events():
    """Ray processes started inside report task state every 100 ms (default 1 s), so the state
    API sees a 1 s block as RUNNING while it still runs."""
    key = "RAY_task_events_report_interval_ms"
    old = os.environ.get(key)
    os.environ[key] = "100"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


class OwnRay:
    """The state of the Ray instance this process is connected to, and nothing else: every query
    goes to this instance's GCS (which names its own dashboard) and is filtered by this
    driver's job id and by the instance's node ids, which are random per node."""

    def __init__(self):
        import ray

        ctx = ray.get_runtime_context()
        self.address = ctx.gcs_address
        self.job_id = ctx.get_job_id()
        self.node_ids = {n["NodeID"] for n in ray.nodes()}

    def blocks(self, **filters):
        from ray.util.state import list_tasks

        rows = list_tasks(
            address=self.address,
            filters=[("job_id", "=", self.job_id), ("name", "=", BLOCK_TASK),
                     *((k, "=", v) for k, v in filters.items())],
            detail=True, limit=10_000, raise_on_missing_output=False, timeout=30,
        )
        return [r for r in rows if r.node_id in self.node_ids]

    def running_block(self, node_id=None):
        """(task_id, attempt, pid) of a block this instance reports RUNNING (on ``node_id``) whose
        worker process is, right now, executing a block; None if there is none."""
        try:
            rows = self.blocks(state="RUNNING", **({"node_id": node_id} if node_id else {}))
        except Exception:  # the state API can time out on a loaded machine: ask again
            return None
        for r in rows:
            if r.worker_pid and is_running_block(r.worker_pid):
                return r.task_id, r.attempt_number, r.worker_pid
        return None

    def attempts_when_settled(self, n_blocks, timeout=60):
        """All attempts of this job's blocks once each block has a FINISHED attempt."""
        rows = []

        def settled():
            nonlocal rows
            try:
                rows = self.blocks()
            except Exception:  # the state API can time out on a loaded machine: ask again
                return False
            finished = {r.task_id for r in rows if r.state == "FINISHED"}
            return len(finished) >= n_blocks and all(r.state in ("FINISHED", "FAILED") for r in rows)

        wait_for(settled, timeout=timeout, every=0.5)
        return rows


def is_running_block(pid):
    try:
        return psutil.Process(pid).cmdline()[0] == TITLE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def assert_each_block_finished_once(rows, n_blocks):
    finished = [r.task_id for r in rows if r.state == "FINISHED"]
    assert len(finished) == len(set(finished)) == n_blocks, "a block finished twice or never"


def assert_retried(rows, lost, error_types, mode="tasks"):
    """Each lost attempt (task_id, attempt) FAILED with one of ``error_types`` and the block was
    finished by another attempt: a later attempt of the same task (tasks: Ray retries it), or,
    on actors, a new call (the executor retries it): every block finished once, and there are
    exactly as many block calls as blocks plus lost attempts."""
    by_attempt = {(r.task_id, r.attempt_number): r for r in rows}
    for task_id, attempt in lost:
        r = by_attempt.get((task_id, attempt))
        assert r is not None and r.state == "FAILED", f"attempt {attempt} of {task_id} was not lost: {r and (r.state, r.node_id, r.worker_pid)}"
        assert r.error_type in error_types, f"{task_id} attempt {attempt} failed with {r.error_type}"
        if mode == "tasks":
            retries = [x for (t, a), x in by_attempt.items() if t == task_id and a > attempt]
            assert any(x.state == "FINISHED" for x in retries), f"{task_id} was never retried to completion"
    if mode == "actors":
        finished = {r.task_id for r in rows if r.state == "FINISHED"}
        assert len(by_attempt) == len(finished) + len(lost), "a lost block was not retried exactly once"


@pytest.fixture
def own_ray():
    """An embedded local Ray with 2 CPUs and its state API (the dashboard process serves it)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    with fast_task_events():
        ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1",
                 configure_logging=False)  # never a cluster another test started (ray start, in parallel)
    try:
        yield OwnRay()
    finally:
        ray.shutdown()


# -- the tests -------------------------------------------------------------------------
MODES = ["tasks", "actors"]

# the driver in actor mode: the library call (the CLI runs tasks); prints the report as --json does
ACTOR_DRIVER = """
import json, sys
from factory.config import load_config
from factory.engine import generate

cfg = load_config("blobs/tiny", sys.argv[3:], samples=48)
rep = generate(cfg, sys.argv[1], resume=sys.argv[2] == "resume", workers=1, mode="actors", progress=False)
print(json.dumps(rep.as_dict()))
"""


@pytest.mark.parametrize("mode", MODES)
def test_driver_sigkill_then_resume_is_byte_identical(tmp_path, mode):
    overrides = ["simulator.delay_s=0.15", "simulator.noise=0.05"]
    cfg = load_config("blobs/tiny", overrides, samples=48)
    path = tmp_path / "s.zarr"
    sets = [a for o in overrides for a in ("--set", o)]
    cmd = [sys.executable, "-m", "factory.cli", "generate", "blobs/tiny", "--out", str(path),
           "--samples", "48", "--workers", "1", "--no-progress", *sets]
    resume_cmd = [*cmd, "--resume", "--json"]
    if mode == "actors":
        cmd = [sys.executable, "-c", ACTOR_DRIVER, str(path), "new", *overrides]
        resume_cmd = [sys.executable, "-c", ACTOR_DRIVER, str(path), "resume", *overrides]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: done_count(path) >= 12)
        os.kill(proc.pid, signal.SIGKILL)  # the driver dies without any chance to clean up
        proc.wait(timeout=30)
    finally:
        time.sleep(1.0)
        try:  # then reap what the dead driver's local Ray left behind (its own session only)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    done_at_kill = done_count(path)
    assert 12 <= done_at_kill < 48
    resume = subprocess.run(resume_cmd, capture_output=True, text=True, timeout=300)
    assert resume.returncode == 0, resume.stderr
    rep = json.loads(resume.stdout)
    # only the missing blocks were computed on resume: each sample done exactly once overall
    assert rep["blocks_skipped"] * cfg.chunk == done_at_kill
    assert rep["samples_computed"] == 48 - done_at_kill
    assert_identical(path, tmp_path, "blobs/tiny", overrides, 48)


@pytest.mark.parametrize("mode", MODES)
def test_killed_ray_workers_lose_and_duplicate_nothing(tmp_path, own_ray, mode):
    overrides = ["simulator.delay_s=0.3", "chunk=2"]  # 0.6 s per block, 20 blocks
    cfg = load_config("blobs/tiny", overrides, samples=40)
    path = tmp_path / "s.zarr"
    killed: dict[int, tuple[str, int]] = {}  # pid -> the block attempt it was running
    run_over = threading.Event()

    def killer():
        while len(killed) < 3 and not run_over.is_set():
            victim = own_ray.running_block()
            if victim is None or victim[2] in killed:
                time.sleep(0.05)
                continue
            task_id, attempt, pid = victim
            try:
                os.kill(pid, signal.SIGKILL)  # a worker of this instance's job, mid-block
            except ProcessLookupError:
                continue
            killed[pid] = (task_id, attempt)
            time.sleep(0.5)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        rep = generate(cfg, path, workers=2, mode=mode, progress=False)
    finally:
        run_over.set()
        t.join(timeout=60)
    assert killed, "no worker of this run was killed: the test did not inject a failure"
    assert rep.done == 40 and rep.failures == [] and rep.blocks_computed == 20

    rows = own_ray.attempts_when_settled(n_blocks=20)
    assert_each_block_finished_once(rows, 20)
    failed = [r for r in rows if r.state == "FAILED"]
    # every lost attempt is one this test killed, and at least one kill hit a running block
    assert failed, f"killed {sorted(killed)} but Ray records no lost attempt: nothing was retried"
    assert {r.worker_pid for r in failed} <= set(killed), "an attempt failed that this test did not kill"
    assert_retried(rows, [(r.task_id, r.attempt_number) for r in failed], LOST, mode)
    assert_identical(path, tmp_path, "blobs/tiny", overrides, 40)


@pytest.mark.cluster
@pytest.mark.parametrize("mode", MODES)
def test_multinode_cluster_survives_losing_a_worker_node(tmp_path, mode):
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    with fast_task_events():
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "include_dashboard": True, "dashboard_host": "127.0.0.1"})
        nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address)
    try:
        own = OwnRay()
        assert len(own.node_ids) == 3
        # 2.4 s per block (20 blocks on 3 nodes): the block found running is still running when its node
        # is removed a fraction of a second later, also on a loaded machine
        overrides = ["simulator.delay_s=1.2", "chunk=2"]
        cfg = load_config("blobs/tiny", overrides, samples=40)
        path = tmp_path / "s.zarr"
        result = {}

        def run():
            try:
                result["report"] = generate(cfg, path, address=cluster.address, mode=mode, progress=False)
            except Exception as exc:  # surfaced by the assertion below
                result["error"] = exc

        t = threading.Thread(target=run)
        t.start()
        victim_node = nodes[0].node_id
        wait_for(lambda: done_count(path) >= 6)
        victim, t0 = None, time.time()
        while victim is None and t.is_alive() and time.time() - t0 < 120:
            victim = own.running_block(victim_node)  # its worker process is running a block now
        assert victim is not None, "no block was running on the node to remove"
        cluster.remove_node(nodes[0])  # a worker node disappears mid-block
        assert done_count(path) < 40
        t.join(timeout=300)
        assert "error" not in result, result.get("error")
        rep = result["report"]
        assert "3 node(s)" in rep.where
        assert rep.done == 40 and rep.failures == []

        rows = own.attempts_when_settled(n_blocks=20)
        assert_each_block_finished_once(rows, 20)
        # the work the removed node was running was lost with it and finished elsewhere. The lost
        # attempts are read from Ray's records, not from the RUNNING row seen before the removal:
        # a worker runs block after block, and the state API can still report the previous block
        # RUNNING while the worker process already runs the next one.
        failed = [r for r in rows if r.state == "FAILED"]
        assert failed, "no attempt was lost with the removed node: the fault hit no work in flight"
        assert {r.node_id for r in failed} == {victim_node}, "an attempt failed off the removed node"
        assert_retried(rows, [(r.task_id, r.attempt_number) for r in failed], LOST, mode)
        for r in failed:
            assert all(x.node_id != victim_node for x in rows
                       if x.task_id == r.task_id and x.attempt_number > r.attempt_number)
        assert_identical(path, tmp_path, "blobs/tiny", overrides, 40)
    finally:
        ray.shutdown()
        cluster.shutdown()
