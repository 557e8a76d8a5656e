"""One writer per store and run folder (issue 24, item 3): a second writer is refused in one line
naming the holder; readers never wait; the lock dies with its holder."""

import os
import signal
import subprocess
import sys
import time

import pytest

from factory.errors import OutputError
from factory.testing import error_line, file_tree, run_cli
from factory.writer_lock import lock_path, writer_lock

HOLD = """
import sys, time
from factory.writer_lock import writer_lock
with writer_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
    """Another process holding the writer lock of a path; killed at the end."""
    procs = []

    def hold(path):
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"  # an event, not a sleep
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def test_second_writer_of_a_store_is_refused_naming_the_holder(tmp_path, holder):
    path = tmp_path / "s.zarr"
    nan = ["--set", "simulator.nan_at=[5]"]  # one block fails: a store that --resume would continue
    assert run_cli("--quiet", "generate", "blobs/tiny", "--out", path, "--samples", "8", *nan).returncode == 2
    before = file_tree(path)
    proc = holder(path)
    for args in (["generate", "blobs/tiny", "--out", path, "--samples", "8", "--seed", "1", "--overwrite"],
                 ["generate", "blobs/tiny", "--out", path, "--samples", "8", *nan, "--resume"],
                 ["process", "preprocess", tmp_path / "raw.zarr", "--out", path, "--mode", "scatter", "--overwrite"]):
        if args[0] == "process":
            run_cli("--quiet", "generate", "blobs/tiny", "--out", tmp_path / "raw.zarr", "--samples", "8",
                    "--no-progress", check=True)
        got = run_cli(*args)
        assert got.returncode == 2, got.stderr
        assert f"is being written by pid {proc.pid} on" in error_line(got)
    assert file_tree(path) == before
    assert "done: 4" in run_cli("info", path).stdout  # a reader does not wait


def test_lock_dies_with_its_holder_and_is_not_left_behind(tmp_path, holder):
    path = tmp_path / "s.zarr"
    proc = holder(path)
    with pytest.raises(OutputError, match=f"pid {proc.pid}"):
        with writer_lock(path):
            pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with writer_lock(path):  # the kernel released it: no staleness rule to get wrong
        assert lock_path(path).exists()
    assert not lock_path(path).exists()


def test_second_training_run_in_one_folder_is_refused(tmp_path, holder):
    from models.synthetic import make_store

    store = make_store(tmp_path / "d.zarr", n=16, chunk=8, shape=(16, 16))
    proc = holder(tmp_path / "run")
    t0 = time.monotonic()
    got = run_cli("train", "pmd-cnn/tiny", "--store", store.path, "--out", tmp_path / "run", "--set",
                  "run.backend=local")
    assert got.returncode == 2 and f"is being written by pid {proc.pid}" in error_line(got)
    assert time.monotonic() - t0 < 30 and not (tmp_path / "run").exists()
