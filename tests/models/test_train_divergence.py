"""A diverging training run stops with one error line and publishes nothing (issue 24, item 7)."""

from factory.testing import error_line, run_cli
from models.synthetic import make_store


def test_nan_loss_stops_training_with_one_line_and_no_model(tmp_path, torch_one_thread):
    store = make_store(tmp_path / "s.zarr", n=32, chunk=8, shape=(32, 32))
    run = tmp_path / "run"
    proc = run_cli("train", "pmd-cnn/tiny", "--store", store.path, "--out", run, "--set", "run.backend=local",
                   "--set", "run.cpus_per_worker=1", "--set", "optim.epochs=3", "--set", "optim.lr=10",
                   "--set", "optim.optimizer=sgd", "--set", "optim.momentum=0.99")
    line = error_line(proc)
    assert proc.returncode == 2, proc.stderr
    assert "training diverged at epoch 1: non-finite" in line and "optim.lr = 10 with optim.momentum = 0.99" in line
    assert not (run / "model").exists()  # nothing published
    assert not list(run.glob("checkpoints/*/epoch-*"))  # no checkpoint of a non-finite model
