"""--overwrite is a transaction (issue 24, item 1): the new output is built and filled beside the
old one, which is replaced only when the new one is complete; a failure or a kill at any moment
leaves the old output byte-identical, and the temporaries of a killed run are removed by the next.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import factory.processing.runner as runner
from factory.compute import LocalExecutor
from factory.config import load_config
from factory.engine import generate
from factory.errors import GenerationError
from factory.outputs import TMP_TAG
from factory.processing.steps import preprocess_store
from factory.store import DatasetStore
from factory.testing import file_tree


def temporaries(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if TMP_TAG in p.name)


def make(path, seed=0, samples=32, sets=()):
    cfg = load_config("blobs/tiny", list(sets), samples=samples, seed=seed)
    return generate(cfg, path, executor=LocalExecutor(), progress=False, overwrite=path.exists())


def test_failed_generate_overwrite_keeps_the_old_store(tmp_path):
    path = tmp_path / "s.zarr"
    make(path, seed=0)
    before = file_tree(path)
    with pytest.raises(GenerationError, match=r"1 of 8 blocks failed.*s\.zarr is unchanged"):
        make(path, seed=1, sets=["simulator.nan_at=[5]"])
    assert file_tree(path) == before and temporaries(path) == []
    assert DatasetStore.open(path).meta["seed"] == 0
    rep = make(path, seed=1)  # the same overwrite without the fault: published whole
    assert rep.path == str(path) and DatasetStore.open(path).meta["seed"] == 1 and temporaries(path) == []


def test_interrupted_processing_overwrite_keeps_the_old_output(tmp_path, monkeypatch):
    src = tmp_path / "raw.zarr"
    make(src)
    out = tmp_path / "net.zarr"
    preprocess_store([src], out, mode="scatter", executor=LocalExecutor(), progress=False)
    before = file_tree(out)
    real = runner.fill_missing_blocks

    def killed_after_writing(store, *args, **kwargs):  # every block written, then the run dies
        real(store, *args, **kwargs)
        assert store.path != out  # the new output is filled beside the old one
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "fill_missing_blocks", killed_after_writing)
    with pytest.raises(KeyboardInterrupt):
        preprocess_store([src], out, mode="scatter", executor=LocalExecutor(), progress=False, overwrite=True,
                         log_floor=-3.0)
    assert file_tree(out) == before and temporaries(out) == []
    monkeypatch.setattr(runner, "fill_missing_blocks", real)
    preprocess_store([src], out, mode="scatter", executor=LocalExecutor(), progress=False, overwrite=True,
                     log_floor=-3.0)
    assert file_tree(out) != before and temporaries(out) == []


@pytest.mark.slow
def test_sigkill_at_random_moments_of_generate_overwrite_loses_nothing(tmp_path):
    """SIGKILL of `factory generate --overwrite` at 3 random moments: the old store is
    byte-identical each time; the next --overwrite removes the killed run's temporaries."""
    path = tmp_path / "s.zarr"
    make(path, seed=0, samples=96)
    before = file_tree(path)
    rng = random.Random(24)
    cmd = [sys.executable, "-m", "factory.cli", "--quiet", "generate", "blobs/tiny", "--out", str(path),
           "--samples", "96", "--seed", "1", "--overwrite", "--workers", "1", "--set", "simulator.delay_s=0.05"]
    env = {**os.environ, "RAY_ADDRESS": ""}
    for _ in range(3):
        proc = subprocess.Popen(cmd, start_new_session=True, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        while not temporaries(path) and proc.poll() is None and time.monotonic() - t0 < 120:
            time.sleep(0.05)  # the new store is being built beside the old one
        time.sleep(rng.uniform(0.0, 3.0))  # then a random moment of the run
        os.kill(proc.pid, signal.SIGKILL)  # the driver dies without any chance to clean up
        proc.wait(timeout=30)
        time.sleep(1.0)
        try:  # then reap what the dead driver's local Ray left behind (its own session only)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        assert file_tree(path) == before
    again = cmd[:cmd.index("--workers")] + ["--no-progress"]  # the same overwrite, not killed: published whole
    subprocess.run(again, check=True, env=env, capture_output=True, timeout=600)
    assert DatasetStore.open(path).meta["seed"] == 1 and temporaries(path) == []


def test_interrupted_train_overwrite_keeps_the_old_run(tmp_path, monkeypatch, torch_one_thread):
    import models.train as train_module
    from models.synthetic import make_store
    from models.train import load_train_config, train

    store = make_store(tmp_path / "s.zarr", n=32, chunk=8, shape=(32, 32))
    cfg = load_train_config("pmd-cnn/tiny", ["run.backend=local", "run.cpus_per_worker=1", "optim.epochs=1",
                                             "model.options.blocks=2"])
    run = tmp_path / "run"
    train(cfg, store.path, run, progress=False)
    before = file_tree(run)
    real = train_module.train_local

    def killed_after_an_epoch(job):  # the new run writes its checkpoint, then dies
        real(job)
        assert not job.storage.startswith(str(run) + os.sep)  # beside the old run, not in it
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "train_local", killed_after_an_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, store.path, run, overwrite=True, progress=False)
    assert file_tree(run) == before and temporaries(run) == []
    monkeypatch.setattr(train_module, "train_local", real)
    res = train(cfg, store.path, run, overwrite=True, progress=False)
    assert res.out == str(run) and (run / "model").is_dir() and temporaries(run) == []


def test_overwrite_replaces_only_an_output_of_the_same_kind(tmp_path):
    """Issue 24, item 2: a dataset store and a predictions store are both Zarr groups of the
    project's, but neither --overwrite may replace the other kind."""
    from factory.testing import error_line, run_cli
    from models.testing import make_raw_store, make_stream_model

    model = make_stream_model(tmp_path / "model")
    frames = make_raw_store(tmp_path / "frames.zarr", 8)
    before = file_tree(frames.path)
    data = tmp_path / "data.zarr"
    make(data)
    kept = file_tree(data)
    proc = run_cli("predict", "stream", model, "--source", frames.path, "--out", data, "--overwrite")
    assert proc.returncode == 2 and "is not a predictions store made by factory" in error_line(proc)
    assert file_tree(data) == kept and file_tree(frames.path) == before
    preds = tmp_path / "p.zarr"
    run_cli("predict", "stream", model, "--source", frames.path, "--out", preds, check=True)
    proc = run_cli("generate", "blobs/tiny", "--out", preds, "--overwrite")
    assert proc.returncode == 2 and "is not a dataset store made by factory" in error_line(proc)


def test_interrupted_stream_overwrite_keeps_the_old_predictions(tmp_path, monkeypatch):
    """`predict stream --out P --overwrite`: the new predictions replace P only when the run ends."""
    from factory.testing import run_cli
    from models.stream.pipeline import StreamPredictor
    from models.testing import make_raw_store, make_stream_model

    model = make_stream_model(tmp_path / "model")
    frames = make_raw_store(tmp_path / "frames.zarr", 8)
    preds = tmp_path / "p.zarr"
    run_cli("predict", "stream", model, "--source", frames.path, "--out", preds, check=True)
    before = file_tree(preds)
    real = StreamPredictor._loop

    def interrupted(self, *args):  # every frame predicted, then Ctrl-C
        real(self, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(StreamPredictor, "_loop", interrupted)
    proc = run_cli("predict", "stream", model, "--source", frames.path, "--out", preds, "--overwrite")
    assert proc.returncode == 130 and file_tree(preds) == before and temporaries(preds) == []
    monkeypatch.setattr(StreamPredictor, "_loop", real)
    run_cli("predict", "stream", model, "--source", frames.path, "--out", preds, "--overwrite", check=True)
    assert file_tree(preds) != before and temporaries(preds) == []


def test_a_killed_exports_temporary_file_is_removed_by_the_next_export(tmp_path):
    """Issue 24 (also noticed): a killed export left .factory-tmp-* files no later export removed."""
    from factory.testing import run_cli

    src = tmp_path / "s.zarr"
    make(src, samples=8)
    out = tmp_path / "s.nc"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".s.nc{TMP_TAG}{int(dead.stdout)}-0badc0de"  # as a SIGKILLed export leaves it
    stale.write_bytes(b"half an HDF5 file")
    run_cli("export", src, "--out", out, "--format", "netcdf", check=True)
    assert out.is_file() and not stale.exists() and temporaries(out) == []
