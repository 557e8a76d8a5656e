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


def test_a_model_with_nan_weights_is_refused_when_loaded_and_streamed(tmp_path):
    """Issue 24, item 7: a model with NaN weights streamed 'received 8 = predicted 8' of NaN."""
    from safetensors.torch import load_file, save_file

    from models.testing import make_raw_store, make_stream_model

    model = make_stream_model(tmp_path / "m")
    state = load_file(str(model / "weights.safetensors"))
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first][...] = float("nan")
    save_file(state, str(model / "weights.safetensors"))  # as a diverged run or a hostile file would
    frames = make_raw_store(tmp_path / "frames.zarr", 8)
    proc = run_cli("predict", "stream", model, "--source", frames.path, "--out", tmp_path / "p.zarr")
    assert proc.returncode == 2 and "weight tensors hold NaN/Inf" in error_line(proc)
    assert not (tmp_path / "p.zarr").exists()
