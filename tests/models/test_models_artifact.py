"""Training (in-process backend), model artefacts, resume after a kill, refusals, evaluation."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from factory.errors import OutputError
from models.artifact import ModelError, Predictor, check_compatible, export_model, load_model, read_description
from models.evaluate import evaluate
from models.synthetic import make_store
from models.train import checkpoint_dirs, load_train_config, train

LOCAL = ["run.backend=local", "run.cpus_per_worker=1"]  # one thread: robust on a shared 2-core box


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("art")
    store = make_store(root / "disks.zarr", n=96, chunk=8, shape=(32, 32))
    cfg = load_train_config("pmd-cnn/tiny", LOCAL + ["optim.epochs=6", "optim.lr_drop_epochs=[4]"])
    res = train(cfg, store.path, root / "run", progress=False)
    return root, store, res


def test_training_writes_a_complete_artefact(data):
    root, store, res = data
    run = root / "run"
    assert (run / "loss.png").stat().st_size > 1000 and (run / "history.json").is_file()
    assert [h["epoch"] for h in res.history] == list(range(1, 7))
    desc = read_description(res.model)
    assert desc["architecture"]["name"] == "pmd-cnn" and desc["architecture"]["kwargs"]["input_shape"] == [32, 32]
    assert desc["labels"] == ["R"] and desc["label_scaling"]["methods"] == ["minmax"]
    assert desc["preprocessing"] == store.meta["preprocessing"]
    assert desc["training_set"]["config_hash"] == store.config_hash
    assert desc["training_set"]["split"]["source"] == "seeded-permutation"
    assert desc["training"]["epoch"] == res.best_epoch
    # weights: safetensors (no pickle) that fit the described architecture
    assert (run / "model" / "weights.safetensors").is_file() and not list((run / "model").glob("*.pkl"))
    model, _ = load_model(res.model)
    x = torch.from_numpy(np.asarray(store.images[:4]))
    p = Predictor(res.model, device="cpu")
    scaled = model(x).detach().numpy()
    assert np.allclose(p.predict(x.numpy())["R"], scaled[:, 0] * desc["label_scaling"]["scale"][0]
                       + desc["label_scaling"]["offset"][0], rtol=1e-5)
    # every epoch left a checkpoint holding the optimizer state (the best 3 and the latest are kept)
    assert {e for e, _, _ in checkpoint_dirs(run)} >= {6, res.best_epoch}


def test_learns_far_better_than_the_mean_predictor(data):
    root, store, res = data
    ev = evaluate(res.model, store.path, root / "eval")
    r = ev["per_label"]["R"]
    assert ev["samples"] == 24 and ev["subset"].startswith("the validation split")
    assert r["mae"] < 0.5 * r["mae_mean_predictor"], r
    assert all(os.path.getsize(f) > 1000 for f in ev["figures"].values())


def test_exported_program_matches(data):
    root, store, res = data
    exported = torch.export.load(str(export_model(res.model, root / "model.pt2"))).module()
    model, _ = load_model(res.model)
    x = torch.from_numpy(np.asarray(store.images[:5]))
    assert torch.allclose(exported(x), model(x), atol=1e-5)


def test_incompatible_checkpoints_are_refused(data, tmp_path):
    root, store, res = data
    desc = read_description(res.model)
    with pytest.raises(ModelError, match="is a pmd-cnn.*but this run builds a cnn1d"):
        check_compatible(desc, architecture={"name": "cnn1d", "kwargs": {}})
    # resuming the run with another architecture
    other = load_train_config("pmd-cnn/tiny", LOCAL + ["model.options.filters=16"])
    with pytest.raises(ModelError, match="filters=32.*filters=16"):
        train(other, store.path, root / "run", resume=True, progress=False)
    # resuming it on a store preprocessed differently
    shifted = make_store(tmp_path / "other.zarr", n=96, chunk=8, shape=(32, 32),
                         preprocessing={"mode": "synthetic-disks", "shape": [32, 32], "log_floor": -4})
    cfg = load_train_config("pmd-cnn/tiny", LOCAL + ["optim.epochs=6", "optim.lr_drop_epochs=[4]"])
    with pytest.raises(ModelError, match="preprocessed differently.*log_floor"):
        train(cfg, shifted.path, root / "run", resume=True, progress=False)
    # a fresh run into an existing run folder needs --resume or --overwrite
    with pytest.raises(OutputError, match="--overwrite.*--resume"):
        train(cfg, store.path, root / "run", progress=False)


def test_resume_is_exactly_an_uninterrupted_run(tmp_path):
    store = make_store(tmp_path / "small.zarr", n=32, chunk=8, shape=(32, 32))
    base = LOCAL + ["optim.epochs=3", "optim.lr_drop_epochs=[2]", "run.select=last"]
    full = train(load_train_config("pmd-cnn/tiny", base), store.path, tmp_path / "full", progress=False)
    part = train(load_train_config("pmd-cnn/tiny", base + ["run.stop_after_epoch=1"]), store.path, tmp_path / "cut",
                 progress=False)
    assert part.epochs_done == 1
    rest = train(load_train_config("pmd-cnn/tiny", base), store.path, tmp_path / "cut", resume=True, progress=False)
    assert rest.start_epoch == 1 and [h["epoch"] for h in rest.history] == [1, 2, 3]
    a, b = load_model(full.model)[0].state_dict(), load_model(rest.model)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # weights and optimizer state were restored


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(data, tmp_path):
    _, store, _ = data
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "factory.app.learning", "train", "pmd-cnn/tiny", "--store", str(store.path), "--out", str(out),
           "--set", "run.backend=local", "--set", "optim.epochs=200", "--set", "optim.lr_drop_epochs=[]"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not any(e >= 2 for e, _, _ in checkpoint_dirs(out)):
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    saved = max(e for e, _, _ in checkpoint_dirs(out))
    assert 2 <= saved < 200
    cfg = load_train_config("pmd-cnn/tiny", LOCAL + [f"optim.epochs={saved + 1}", "optim.lr_drop_epochs=[]"])
    res = train(cfg, store.path, out, resume=True, progress=False)
    assert res.start_epoch == saved and res.epochs_done == saved + 1
    assert [h["epoch"] for h in res.history] == list(range(1, saved + 2))
    info = json.loads((out / "factory-run.json").read_text())
    assert info["attempts"][-1]["resumed_from"].endswith(f"epoch-{saved:04d}")


def test_cli_errors_are_one_line(data, tmp_path):
    from typer.testing import CliRunner

    from factory.app.learning import app
    from factory.testing import error_line

    _, store, _ = data
    runner = CliRunner()
    for cmd in ("train", "evaluate", "transfer", "learning-curve", "export-model", "train-presets", "fig5"):
        r = runner.invoke(app, [cmd, "--help"])
        assert r.exit_code == 0, (cmd, r.output)

    def err(*args):
        r = runner.invoke(app, list(args))
        assert r.exit_code == 2, r.output
        lines = [l for l in r.output.splitlines() if l.startswith("error: ")]
        assert len(lines) == 1, r.output
        return lines[0]

    assert "unknown key 'optim.lrr'" in err("train", "pmd-cnn/tiny", "--store", str(store.path), "--out",
                                            str(tmp_path / "x"), "--set", "optim.lrr=1")
    assert "presets" in err("train", "nope/tiny", "--store", str(store.path))
    assert "not a model folder" in err("evaluate", str(tmp_path), str(store.path))
    assert "no label(s) ['radius']" in err("train", "pmd-cnn/tiny", "--store", str(store.path), "--out",
                                           str(tmp_path / "y"), "--set", "data.labels=[radius]")
    # and as a real process: one line on stderr, exit status 2
    p = subprocess.run([sys.executable, "-m", "factory.app.learning", "train", "pmd-cnn/tiny", "--set", "optim.lr=-1"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "optim.lr = -1" in error_line(p)


def test_classifier_variant(data, tmp_path):
    _, store, _ = data
    cfg = load_train_config("pmd-classifier/tiny", LOCAL + ["optim.epochs=1"])
    res = train(cfg, store.path, tmp_path / "cls", progress=False)
    assert "val_accuracy" in res.final
    desc = read_description(res.model)
    assert desc["task"] == "classify" and desc["architecture"]["kwargs"]["outputs"] == 7
    ev = evaluate(res.model, store.path)
    assert 0 <= ev["accuracy"] <= 1 and np.asarray(ev["confusion"]).shape == (7, 7)
    assert np.asarray(ev["confusion"]).sum() == ev["samples"]
    p = Predictor(res.model, device="cpu").predict(np.asarray(store.images[:3]))
    assert p["probabilities"].shape == (3, 7) and np.allclose(p["probabilities"].sum(1), 1, atol=1e-5)


def test_learning_curve_runs_and_fits(data, tmp_path):
    from models.learning_curve import learning_curve

    _, store, _ = data
    cfg = load_train_config("pmd-cnn/tiny", LOCAL + ["optim.epochs=1"])
    res = learning_curve(cfg, store.path, tmp_path / "lc", [16, 32, 48], target=0.5, progress=False)
    assert [p["N"] for p in res["points"]] == [16, 32, 48] and res["held_out"] == 24
    assert set(res["fit"]) == {"a", "b", "c"} and "N" in res["target"]
    assert (tmp_path / "lc" / "learning-curve.png").is_file()


def test_results_never_replace_a_users_file(data, tmp_path):
    """evaluate/export write beside the user's files: a name the project did not write there is
    refused before any work and left as it was; the project's own results are replaced on a rerun."""
    root, store, res = data
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "metrics.json").write_text("my numbers")
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="metrics.json exists and was not written by factory"):
        evaluate(res.model, store.path, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.json", "notes.txt"]
    assert (folder / "metrics.json").read_text() == "my numbers"
    (folder / "metrics.json").unlink()
    first = evaluate(res.model, store.path, folder)
    again = evaluate(res.model, store.path, folder)  # its own files: replaced
    assert first["per_label"] == again["per_label"] and (folder / "notes.txt").read_text() == "mine"
    assert json.loads((folder / "metrics.json").read_text())["samples"] == again["samples"]
    paper = tmp_path / "paper.pt2"
    paper.write_text("not an exported program")
    with pytest.raises(OutputError, match="not a ZIP file"):
        export_model(res.model, paper)
    assert paper.read_text() == "not an exported program"
