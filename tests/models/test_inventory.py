"""`factory ls`: stores, runs and models recognised by their own markers, as a lineage tree."""

import json
import shutil

import numpy as np
import pytest

from factory.app.main import main
from factory.processing.steps import interpolate_store
from models.inventory import inventory, render, scan
from models.stream.sinks import ZarrSink
from models.synthetic import make_store
from models.train import load_train_config, train


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """raw store -> interpolated store; a training run on the raw store (with its model); a
    copy of the model outside the run; decoys named like the project's outputs."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("lab")
    raw = make_store(root / "data" / "raw.zarr", n=48, chunk=8, shape=(32, 32))
    interpolate_store([raw.path], root / "data" / "interp.zarr", axes=["R", "I"], samples=16, chunk=8)
    cfg = load_train_config("pmd-cnn/tiny", ["run.backend=local", "run.cpus_per_worker=1", "optim.epochs=1",
                                             "optim.lr_drop_epochs=[]"])
    res = train(cfg, raw.path, root / "runs" / "cnn", progress=False)
    shutil.copytree(res.model, root / "shipped" / "cnn-v1")
    sink = ZarrSink(root / "preds" / "live.zarr", ["R"], {"model": str(res.model), "source": "test", "labels": ["R"]})
    sink.write(np.arange(3), np.ones(3), {"R": np.array([2.0, 3.0, 4.0])})
    sink.flush({"received": 3, "predicted": 3, "rejected": 0, "dropped": 0})
    # decoys: the names of the project's outputs without their markers
    (root / "decoys" / "fake.zarr").mkdir(parents=True)
    (root / "decoys" / "fake.zarr" / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group",
                                                                          "attributes": {"title": "not ours"}}))
    (root / "decoys" / "run").mkdir()
    (root / "decoys" / "run" / "factory-run.json").write_text(json.dumps({"schema": "something-else", "version": 1}))
    (root / "decoys" / "model").mkdir()
    (root / "decoys" / "model" / "model.json").write_text(json.dumps({"format": "other"}))
    # a damaged store: its attributes say 0 samples
    shutil.copytree(raw.path, root / "decoys" / "broken.zarr")
    meta = json.loads((root / "decoys" / "broken.zarr" / "zarr.json").read_text())
    meta["attributes"]["factory"]["n_samples"] = 0
    (root / "decoys" / "broken.zarr" / "zarr.json").write_text(json.dumps(meta))
    torch.set_num_threads(n)
    return root, raw, res


def test_everything_is_recognised_by_its_marker(lab):
    root, raw, res = lab
    found = {str(e.path).removeprefix(str(root) + "/"): e for e in scan(root)}
    assert set(found) == {"data/raw.zarr", "data/interp.zarr", "runs/cnn", "runs/cnn/model", "shipped/cnn-v1",
                          "preds/live.zarr", "decoys/broken.zarr"}
    assert found["preds/live.zarr"].kind == "predictions" and found["preds/live.zarr"].progress == "3 frames predicted"
    assert found["data/raw.zarr"].kind == "store" and found["data/raw.zarr"].progress == "48/48 samples"
    assert found["data/raw.zarr"].config_hash == raw.config_hash
    assert found["data/interp.zarr"].what == "synthetic-disks (interpolate)"
    assert found["runs/cnn"].kind == "run" and found["runs/cnn"].progress.startswith("epoch 1")
    assert found["runs/cnn/model"].kind == "model" and found["runs/cnn/model"].what == "pmd-cnn -> R"
    # the run and its model record the same training config
    assert found["runs/cnn"].config_hash == found["runs/cnn/model"].config_hash
    assert found["decoys/broken.zarr"].what == "damaged" and "n_samples" in found["decoys/broken.zarr"].notes[0]
    size = sum(p.stat().st_size for p in (root / "data" / "raw.zarr").rglob("*") if p.is_file())
    assert found["data/raw.zarr"].size == size


def test_lineage_tree(lab):
    root, raw, res = lab
    roots = {e.path.removeprefix(str(root) + "/"): e for e in inventory(root)}
    assert set(roots) == {"data/raw.zarr", "decoys/broken.zarr"}
    kids = {c.path.removeprefix(str(root) + "/"): c for c in roots["data/raw.zarr"].children}
    assert set(kids) == {"data/interp.zarr", "runs/cnn", "shipped/cnn-v1"}  # made from the raw store
    (model,) = kids["runs/cnn"].children
    assert model.path == str(root / "runs" / "cnn" / "model")
    assert [c.path for c in model.children] == [str(root / "preds" / "live.zarr")]  # predictions under their model
    lines = render(inventory(root), root)
    assert lines[0].startswith("data/raw.zarr  store: synthetic-disks, 48/48 samples")
    assert any(line.startswith("├── data/interp.zarr  store") for line in lines), lines
    assert any(line.startswith("│   └── runs/cnn/model  model: pmd-cnn -> R") for line in lines), lines


def test_sources_outside_the_folder_and_changed_sources_are_named(lab, tmp_path):
    root, raw, res = lab
    (only,) = inventory(root / "runs")
    assert only.path == str(root / "runs" / "cnn") and only.parent is None
    assert only.notes[-1] == f"from {raw.path} (not under this folder)"
    # the raw store made again with another seed: what was made from it is flagged
    make_store(tmp_path / "raw.zarr", n=24, chunk=8, shape=(16, 16))
    interpolate_store([tmp_path / "raw.zarr"], tmp_path / "interp.zarr", axes=["R", "I"], samples=8, chunk=8)
    make_store(tmp_path / "raw.zarr", n=24, chunk=8, shape=(16, 16), seed=1)
    (new_raw,) = inventory(tmp_path)
    (interp,) = new_raw.children
    assert "changed since" in " ".join(interp.notes), interp.notes


def test_cli_text_and_json(lab, capsys):
    root, raw, res = lab
    assert main(["ls", str(root / "data"), "--json"]) == 0
    (tree,) = json.loads(capsys.readouterr().out)
    assert tree["kind"] == "store" and tree["children"][0]["path"] == str(root / "data" / "interp.zarr")
    assert tree["children"][0]["parent"] == tree["path"]
    assert main(["ls", str(root / "shipped")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cnn-v1  model: pmd-cnn -> R") and f"from {raw.path} (not under this folder)" in out
    assert main(["ls", str(root / "nothing-here")]) == 2
    assert "error:" in capsys.readouterr().err
