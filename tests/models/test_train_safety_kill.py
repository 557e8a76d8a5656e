"""SIGKILL of a `factory train` driver (embedded Ray): no worker writes into the run folder
afterwards, the workers end, and --resume continues the run (issue 13, item 14)."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from models.synthetic import make_store
from models.train import checkpoint_dirs, load_train_config, train

pytestmark = pytest.mark.slow  # kills of real processes (and clusters): the slow tier


def files(folder):
    """The run folder's files (size, mtime) but for the Ray Train controller's bookkeeping of
    a report already in flight (it may still record the last checkpoint after the kill)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() and p.name != "checkpoint_manager_snapshot.json"}


def gone(p: psutil.Process) -> bool:
    try:
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_killed_driver_leaves_nothing_writing_and_resumes(tmp_path):
    store = make_store(tmp_path / "s.zarr", n=64, chunk=8, shape=(32, 32))
    out = tmp_path / "run"
    log = tmp_path / "driver.log"
    cmd = [sys.executable, "-m", "factory.cli", "train", "pmd-cnn/tiny", "--store", str(store.path), "--out", str(out),
           "--set", "optim.epochs=1000", "--set", "optim.lr_drop_epochs=[]", "--set", "run.cpus_per_worker=1"]
    with open(log, "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    family: list[psutil.Process] = []
    try:
        deadline = time.time() + 300
        while not checkpoint_dirs(out):  # the first checkpoint: the workers are in epoch 2 now
            assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        # this driver and what it started (its Ray: GCS, raylet, the Train controller and workers)
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        at_kill = files(out)
        end = time.time() + 60
        while not all(gone(p) for p in family) and time.time() < end:
            time.sleep(0.2)
        survivors = [p.pid for p in family if not gone(p)]
        time.sleep(2.0)  # a few more epochs' time
        assert files(out) == at_kill, sorted(set(files(out)) - set(at_kill))  # no checkpoint after the kill
        assert not survivors, f"processes of the killed run still alive after 60 s: {survivors}"
    finally:
        for p in family:  # only what this test started
            if not gone(p):
                p.kill()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    saved = max(e for e, _, _ in checkpoint_dirs(out))
    cfg = load_train_config("pmd-cnn/tiny", ["run.backend=local", "run.cpus_per_worker=1",
                                             f"optim.epochs={saved + 1}", "optim.lr_drop_epochs=[]"])
    res = train(cfg, store.path, out, resume=True, progress=False)
    assert res.start_epoch == saved and [h["epoch"] for h in res.history] == list(range(1, saved + 2))
