"""Training outputs: nothing of the user's is deleted, nothing is written for a refused run,
and bad input is one `error:` line (issue 13, items 3, 8 and 16)."""

import json
import os
import shutil

import pytest

from factory.testing import file_tree
from typer.testing import CliRunner

from factory.app.learning import app
from models.synthetic import make_store
from models.train import MANIFEST, RUN_NAMES, is_run_folder, load_train_config, train

FAST = ["--set", "run.backend=local", "--set", "run.cpus_per_worker=1", "--set", "optim.epochs=1",
        "--set", "optim.lr_drop_epochs=[]"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A small store and one finished run (its model is the base of the model tests)."""
    root = tmp_path_factory.mktemp("safety")
    store = make_store(root / "s.zarr", n=32, chunk=8, shape=(32, 32))
    cfg = load_train_config("pmd-cnn/tiny", [s for s in FAST if s != "--set"])
    res = train(cfg, store.path, root / "run", progress=False)
    return root, store, res


def cli(*args):
    """(exit code, the one `error:` line or None, output) of a models CLI command run in-process."""
    r = CliRunner().invoke(app, [str(a) for a in args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception  # a bug: its traceback
    errors = [l for l in r.output.splitlines() if l.startswith("error: ")]
    assert len(errors) <= 1 and "Traceback" not in r.output, r.output
    return r.exit_code, (errors[0] if errors else None), r.output




def user_folder(path):
    (path / "src").mkdir(parents=True)
    (path / "thesis.tex").write_text("\\documentclass{book} years of work")
    (path / "src" / "main.py").write_text("print('mine')")
    (path / "train.json").write_text("{}")  # the old marker: a user's file of that name proves nothing
    return file_tree(path)


def test_overwrite_never_deletes_a_folder_the_trainer_did_not_make(setup, tmp_path):
    root, store, _ = setup
    mine = tmp_path / "thesis"
    before = user_folder(mine)
    code, err, _ = cli("train", "pmd-cnn/tiny", "--store", store.path, "--out", mine, "--overwrite", *FAST)
    assert code == 2 and "not a training run folder made by factory" in err
    assert file_tree(mine) == before
    # a real run folder to which the user added a file is not replaced either
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    (run / "notes.txt").write_text("mine")
    code, err, _ = cli("train", "pmd-cnn/tiny", "--store", store.path, "--out", run, "--overwrite", *FAST)
    assert code == 2 and "holds other files" in err and (run / "notes.txt").read_text() == "mine"
    # nor is one behind a symbolic link
    (run / "notes.txt").unlink()
    link = tmp_path / "link"
    link.symlink_to(run)
    code, err, _ = cli("train", "pmd-cnn/tiny", "--store", store.path, "--out", link, "--overwrite", *FAST)
    assert code == 2 and "symbolic link" in err and is_run_folder(run)
    # --resume into someone else's folder: refused, nothing written
    code, err, _ = cli("train", "pmd-cnn/tiny", "--store", store.path, "--out", mine, "--resume", *FAST)
    assert code == 2 and "nothing to resume" in err and file_tree(mine) == before


def test_overwrite_replaces_a_run_folder_with_a_complete_new_one(setup, tmp_path):
    root, store, _ = setup
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    old = json.loads((run / MANIFEST).read_text())
    assert old["schema"] == "factory.train-run" and is_run_folder(run)
    code, err, out = cli("train", "pmd-cnn/tiny", "--store", store.path, "--out", run, "--overwrite", *FAST)
    assert code == 0, out
    new = json.loads((run / MANIFEST).read_text())
    assert len(new["attempts"]) == 1 and new["attempts"][0]["started"] >= old["attempts"][0]["started"]
    assert {p.name for p in run.iterdir()} <= RUN_NAMES and is_run_folder(run)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary sibling left behind


def test_a_refused_run_writes_nothing(setup, tmp_path):
    _, store, _ = setup
    out = tmp_path / "new" / "run"
    for bad in (["--set", "run.workers=64"], ["--workers", "64"], ["--set", "data.labels=[nope]"],
                ["--set", "model.options.blocks=0"], ["--set", "optim.min_delta=.inf"]):
        code, err, output = cli("train", "pmd-cnn/tiny", "--store", store.path, "--out", out, *FAST, *bad)
        assert code == 2 and err, (bad, output)
        assert not out.parent.exists(), (bad, list(out.parent.rglob("*")))
    code, err, _ = cli("train", "pmd-cnn/tiny", "--store", store.path, "--out", tmp_path, "--set", "run.workers=64",
                       "--set", "run.backend=local")
    assert code == 2 and "run.workers = 64" in err and "local backend runs one worker" in err


def test_out_that_is_a_file_is_one_error_line(setup, tmp_path):
    _, store, _ = setup
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    for extra in ([], ["--overwrite"], ["--resume"]):
        code, err, _ = cli("train", "pmd-cnn/tiny", "--store", store.path, "--out", f, *FAST, *extra)
        assert code == 2 and str(f) in err, (extra, err)
    assert f.read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_truncated_weights_are_one_error_line_naming_the_file(setup, tmp_path):
    root, store, res = setup
    model = tmp_path / "model"
    shutil.copytree(res.model, model)
    weights = model / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code, err, _ = cli("evaluate", model, store.path, "--out", tmp_path / "eval")
    assert code == 2 and str(weights) in err and "damaged weights" in err
    # transfer learning from it: refused before anything is written
    out = tmp_path / "transfer"
    code, err, _ = cli("transfer", model, store.path, "--out", out, "--epochs", "1", "--no-scratch",
                       "--set", "run.backend=local")
    assert code == 2 and str(weights) in err and not out.exists()


def test_transfer_and_learning_curve_never_replace_a_users_folder(setup, tmp_path):
    _, store, res = setup
    mine = tmp_path / "mine"
    before = user_folder(mine)
    for args in (["transfer", res.model, store.path, "--epochs", "1", "--set", "run.backend=local"],
                 ["learning-curve", "pmd-cnn/tiny", "--store", store.path, "--sizes", "8,16,24", *FAST]):
        code, err, _ = cli(*args, "--out", mine)
        assert code == 2 and "already exists" in err, (args[0], err)
        code, err, _ = cli(*args, "--out", mine, "--overwrite")
        assert code == 2 and "made by factory" in err, (args[0], err)
        assert file_tree(mine) == before
    # an output inside the input store (it would become part of the store) is refused
    code, err, _ = cli("train", "pmd-cnn/tiny", "--store", store.path, "--out", store.path / "run", *FAST)
    assert code == 2 and "inside the input" in err and not (store.path / "run").exists()


def test_a_store_that_lost_its_split_array_is_refused(tmp_path):
    store = make_store(tmp_path / "s.zarr", n=32, chunk=8, shape=(32, 32), split=[0] * 24 + [1] * 8)
    store.update_meta(split={"seed": 0, "fractions": [0.75, 0.25, 0.0], "codes": ["train", "validation", "test"]})
    shutil.rmtree(store.path / "split")  # a kill between creating the store and writing its split
    out = tmp_path / "run"
    code, err, _ = cli("train", "pmd-cnn/tiny", "--store", store.path, "--out", out, *FAST)
    assert code == 2 and "split" in err and not out.exists()  # not a silent random 80/20 split


def test_transfer_folder_appears_complete_and_is_replaceable(setup, tmp_path):
    _, store, res = setup
    out = tmp_path / "tl"
    args = ["transfer", res.model, store.path, "--out", out, "--epochs", "1", "--no-scratch", "--freeze", "1",
            "--set", "run.backend=local", "--set", "run.cpus_per_worker=1"]
    for extra in ([], ["--overwrite"]):
        code, err, output = cli(*args, *extra)
        assert code == 0, output
        assert {p.name for p in out.iterdir()} == {MANIFEST, "transfer", "eval", "transfer.json", "transfer.png"}
        assert is_run_folder(out / "transfer") and [p.name for p in tmp_path.iterdir()] == ["tl"]


def test_a_checkpoint_cut_short_never_becomes_the_model(setup, tmp_path):
    """A kill while a checkpoint was written leaves its weights truncated: --resume goes back
    to the one before, and the model is never made of the damaged one."""
    from models.artifact import load_model
    from models.train import checkpoint_dirs

    _, store, _ = setup
    cfg = load_train_config("pmd-cnn/tiny", [s for s in FAST if s != "--set"] + ["optim.epochs=2"])
    first = train(cfg, store.path, tmp_path / "run", progress=False)
    damaged = next(d for e, _, d in checkpoint_dirs(tmp_path / "run") if e == first.best_epoch)
    weights = damaged / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    res = train(cfg, store.path, tmp_path / "run", resume=True, progress=False)
    load_model(res.model)  # its weights are whole
    assert (tmp_path / "run" / "model" / "weights.safetensors").read_bytes() != weights.read_bytes()
