"""Failure injection: a killed driver, killed Ray workers, a lost node of a multi-node cluster."""

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
from factory.engine import compute_block, generate
from factory.store import DatasetStore


def reference(cfg):
    """Every block computed directly in this process, without Ray or a store."""
    parts = [compute_block(cfg, s, min(s + cfg.chunk, cfg.samples)) for s in range(0, cfg.samples, cfg.chunk)]
    images = np.concatenate([p[0] for p in parts])
    labels = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
    return images, labels


def assert_matches(path, ref):
    st = DatasetStore.open(path)
    assert st.done_mask().all(), f"{(~st.done_mask()).sum()} samples not done"
    images = st.images[:]
    assert images.tobytes() == ref[0].tobytes()
    params = st.params()
    for k, v in ref[1].items():
        assert params[k].tobytes() == v.tobytes(), k


def wait_for(pred, timeout=120, every=0.1):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(every)
    raise TimeoutError("condition not reached")


def done_count(path):
    try:
        return int(DatasetStore.open(path).done_mask().sum())
    except Exception:
        return 0


def test_driver_sigkill_then_resume_is_byte_identical(tmp_path):
    overrides = ["simulator.delay_s=0.15", "simulator.noise=0.05"]
    cfg = load_config("blobs/tiny", overrides, samples=48)
    path = tmp_path / "s.zarr"
    sets = [a for o in overrides for a in ("--set", o)]
    cmd = [sys.executable, "-m", "factory.cli", "generate", "blobs/tiny", "--out", str(path),
           "--samples", "48", "--workers", "1", "--no-progress", *sets]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: done_count(path) >= 12)
        os.kill(proc.pid, signal.SIGKILL)  # the driver dies without any chance to clean up
        proc.wait(timeout=30)
    finally:
        time.sleep(1.0)
        try:  # then reap what the dead driver's local Ray left behind
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    done_at_kill = done_count(path)
    assert 12 <= done_at_kill < 48
    resume = subprocess.run([*cmd, "--resume", "--json"], capture_output=True, text=True, timeout=300)
    assert resume.returncode == 0, resume.stderr
    import json

    rep = json.loads(resume.stdout)
    # only the missing blocks were computed on resume: each sample done exactly once overall
    assert rep["blocks_skipped"] * cfg.chunk == done_at_kill
    assert rep["samples_computed"] == 48 - done_at_kill
    assert_matches(path, reference(cfg))


def block_workers():
    """Ray worker processes currently running one of our block tasks."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if cmd.startswith("ray::factory.block"):
            out.append(p)
    return out


def test_killed_ray_workers_lose_and_duplicate_nothing(tmp_path, ray_local):
    cfg = load_config("blobs/tiny", ["simulator.delay_s=0.1", "chunk=2"], samples=40)
    path = tmp_path / "s.zarr"
    killed = []

    def killer():
        for _ in range(3):
            try:
                wait_for(lambda: block_workers(), timeout=30, every=0.02)
            except TimeoutError:
                return
            victims = block_workers()
            for p in victims:
                try:
                    p.kill()
                    killed.append(p.pid)
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.6)

    t = threading.Thread(target=killer)
    t.start()
    rep = generate(cfg, path, workers=2, progress=False)
    t.join()
    assert killed, "no worker was killed: the test did not inject a failure"
    assert rep.done == 40 and rep.failures == []
    assert_matches(path, reference(cfg))


@pytest.mark.cluster
def test_multinode_cluster_survives_losing_a_worker_node(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    try:
        cfg = load_config("blobs/tiny", ["simulator.delay_s=0.2", "chunk=2"], samples=40)
        path = tmp_path / "s.zarr"
        result = {}

        def run():
            try:
                result["report"] = generate(cfg, path, address=cluster.address, progress=False)
            except Exception as exc:  # surfaced by the assertion below
                result["error"] = exc

        t = threading.Thread(target=run)
        t.start()
        wait_for(lambda: done_count(path) >= 8)
        assert done_count(path) < 40
        cluster.remove_node(nodes[0])  # a worker node disappears mid-run
        t.join(timeout=300)
        assert "error" not in result, result.get("error")
        rep = result["report"]
        assert "3 node(s)" in rep.where
        assert rep.done == 40
        assert_matches(path, reference(cfg))
    finally:
        ray.shutdown()
        cluster.shutdown()
