"""Ray Train: TorchTrainer with 2 CPU workers (data parallel), checkpoints, interrupted run resumed."""

import json
import os
from pathlib import Path

import pytest

from models.artifact import read_description
from models.synthetic import make_store
from models.train import checkpoint_dirs, load_train_config, train


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("ray") / "disks.zarr", n=64, chunk=8, shape=(32, 32))


@pytest.mark.slow
def test_two_workers_checkpoint_every_epoch_and_resume(ray_local, store, tmp_path, monkeypatch):
    # relative paths, as a user types them: the Ray Train workers run in another directory
    monkeypatch.chdir(tmp_path)
    rel_store, rel_out = Path(os.path.relpath(store.path, tmp_path)), Path("run")
    out = tmp_path / "run"
    base = ["run.workers=2", "optim.epochs=3", "optim.lr_drop_epochs=[2]"]
    cut = train(load_train_config("pmd-cnn/tiny", base + ["run.stop_after_epoch=2"]), rel_store, rel_out, progress=False)
    assert "Ray Train, 2 worker(s)" in cut.where
    assert [h["epoch"] for h in cut.history] == [1, 2] and all(h["workers"] == 2 for h in cut.history)
    ckpts = checkpoint_dirs(out)
    assert [(e, a) for e, a, _ in ckpts] == [(1, 0), (2, 0)]  # one checkpoint per epoch, stored by Ray
    desc = read_description(ckpts[-1][2])
    assert desc["preprocessing"] == store.meta["preprocessing"] and desc["training_set"]["config_hash"] == store.config_hash
    assert (ckpts[-1][2] / "optimizer.pt").is_file()

    res = train(load_train_config("pmd-cnn/tiny", base), rel_store, rel_out, resume=True, progress=False)
    assert res.start_epoch == 2 and [h["epoch"] for h in res.history] == [1, 2, 3]
    assert res.history[:2] == json.loads(json.dumps(cut.history))  # carried over from the checkpoint
    assert [(e, a) for e, a, _ in checkpoint_dirs(out)][-1] == (3, 1)
    assert res.history[-1]["lr"] == pytest.approx(3e-4)  # the schedule continues at epoch 3
    assert (out / "loss.png").is_file() and read_description(res.model)["training"]["epoch"] == res.best_epoch
    assert res.model == str(out / "model")  # reported where it is, not relative to a worker's directory
