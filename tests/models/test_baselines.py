"""Classical baselines (seed 000 Sec. V) and the transferability table (Table I) on small PMD-like stores."""

import csv
import subprocess
import sys

import numpy as np
import pytest

from factory.errors import ConfigError, StoreError
from models.baselines import (BaselineOptions, Baselines, DirectMSE, DirectSIFT, interpolated_references,
                              run_baselines, training_set)
from models.features import hog_cell, hog_features, sift_descriptors
from models.shifted_synthetic import make_pmd_store, pmd_like
from models.table import PAPER_TABLE, load_table_config, transferability_table

LOCAL = BaselineOptions(parallel="local")
QUICK = BaselineOptions(parallel="local", sift_upsampling=1, xgb_estimators=60)  # seconds, not minutes, on 2 cores


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("baselines")
    train = make_pmd_store(d / "train.zarr", n=96, shape=(32, 64), seed=0, split=(0.8, 0.2, 0.0))
    test = make_pmd_store(d / "test.zarr", n=24, shape=(32, 64), seed=1)
    return {"dir": d, "train": train.path, "test": test.path}


def test_hog_cells_are_the_papers_at_128_x_256():
    assert hog_cell((128, 256)) == (16, 32)
    f = hog_features(np.random.default_rng(0).uniform(0, 255, (2, 128, 256)))
    assert f.shape == (2, 7 * 7 * 2 * 2 * 9)  # 8 x 8 cells, 2 x 2 blocks of 9 bins (MATLAB's extractHOGFeatures)
    with pytest.raises(ConfigError, match="does not fit"):
        hog_cell((32, 64), (20, 40))


def test_sift_keypoints_carry_position_and_an_empty_image_gives_none():
    k = sift_descriptors(pmd_like(3.0, 2e14, shape=(64, 128)))
    assert k.shape[1] == 131 and len(k) > 5
    assert np.all((k[:, 128:130] >= 0) & (k[:, 128:130] <= 1))
    assert sift_descriptors(np.zeros((32, 64))).shape == (0, 131)


def test_direct_comparison_finds_an_identical_reference():
    rng = np.random.default_rng(0)
    refs = rng.uniform(0, 255, (50, 16, 32)).astype(np.float32)
    labels = {"R": rng.uniform(1, 8, 50)}
    m = DirectMSE().fit(refs, labels)
    pick = [3, 17, 42]
    noisy = refs[pick] + rng.normal(0, 1.0, (3, 16, 32)).astype(np.float32)
    assert np.array_equal(m.predict(noisy)["R"], labels["R"][pick])
    kp = [sift_descriptors(pmd_like(r, 2e14, shape=(64, 128), rng=rng)) for r in (2.0, 5.0, 7.5)]
    s = DirectSIFT(tolerance=0.05).fit(kp, {"R": np.array([2.0, 5.0, 7.5])})
    assert np.array_equal(s.predict(kp)["R"], [2.0, 5.0, 7.5])  # each image matches itself best


def test_methods_are_one_protocol_in_one_registry():
    from models.baselines import FEATURES, METHODS, REGISTRY, Method, register
    from models.baselines.methods import MSEComparison

    assert set(REGISTRY) == set(METHODS) == set(FEATURES)
    assert all(isinstance(m, Method) for m in REGISTRY.values())
    assert {m: REGISTRY[m].more_references for m in ("mse", "mse+refs", "sift+refs")} == {
        "mse": False, "mse+refs": True, "sift+refs": True}
    with pytest.raises(ValueError, match="registered already"):
        register(MSEComparison("mse", "again"))


def test_every_method_reports_mae_and_times_and_beats_the_mean(stores, tmp_path):
    rep = run_baselines(stores["train"], stores["test"], labels=["R"], out=tmp_path, options=QUICK)
    assert rep["n_train"] == 96 and rep["n_test"] == 24
    mean = rep["mean_predictor"]["R"]
    for m, r in rep["methods"].items():
        assert r["train_s"] > 0 and r["predict_s"] > 0 and np.isfinite(r["scores"]["R"]["mae"]), m
    for m in ("mse", "svr-hog", "dt-hog", "xgb-hog"):
        assert rep["methods"][m]["scores"]["R"]["mae"] < 0.5 * mean, (m, rep["methods"][m]["scores"], mean)
    for m in ("sift", "svr-sift"):  # weak on these images (as in the paper for SVM + SIFT) but informative
        assert rep["methods"][m]["scores"]["R"]["mae"] < mean, (m, rep["methods"][m]["scores"], mean)
    md = (tmp_path / "baselines.md").read_text()
    assert "direct comparison + MSE" in md and "SVM + HOG" in md and "training s" in md
    z = np.load(tmp_path / "predictions.npz")
    assert z["pred_mse_R"].shape == (24,) and (tmp_path / "pred-vs-true.png").is_file()


def test_interpolated_references_are_leak_free_and_exact_for_linear_labels(stores):
    train = training_set(stores["train"], ["R"])
    imgs = train.images()
    new, lab = interpolated_references(train, imgs, 40, ("R", "intensity"), seed=1)
    assert new.shape == (40, 32, 64) and np.isfinite(new).all()
    assert lab["R"].min() >= train.labels["R"].min() and lab["R"].max() <= train.labels["R"].max()
    b = Baselines(["mse", "mse+refs"], ["R"], BaselineOptions(parallel="local", interpolate=40)).fit(train)
    assert b.timing["mse+refs"].n_train == len(train) + 40 and b.timing["mse"].n_train == len(train)
    with pytest.raises(ConfigError, match="more references"):
        Baselines(["mse+refs"], ["R"], LOCAL).fit(train)


def test_bad_inputs_are_refused_before_any_work(stores, tmp_path):
    small = make_pmd_store(tmp_path / "small.zarr", n=8, shape=(16, 32), seed=3)
    with pytest.raises(StoreError, match="image sizes differ"):
        run_baselines(stores["train"], small.path, options=LOCAL)
    with pytest.raises(StoreError, match=r"no label\(s\) \['radius'\]"):
        run_baselines(stores["train"], stores["test"], labels=["radius"], options=LOCAL)
    with pytest.raises(StoreError, match="no test split"):
        run_baselines(stores["train"], options=LOCAL)
    with pytest.raises(ConfigError, match="unknown method"):
        Baselines(["knn"])
    # the command line: one line, exit status 2
    proc = subprocess.run([sys.executable, "-m", "factory.app.baselines", "baselines", str(stores["train"]),
                           str(small.path), "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert proc.returncode == 2 and len(errors) == 1 and "image sizes differ" in errors[0], proc.stderr


@pytest.fixture(scope="module")
def table_inputs(stores):
    """A tiny CNN trained on the unshifted store, and transfer-learned on two shifted stores."""
    from models.train import load_train_config, train
    from models.transfer import transfer

    d = stores["dir"]
    shifted = {name: make_pmd_store(d / f"{slug}.zarr", name, n=40, shape=(32, 64), seed=0, split=(0.5, 0.1, 0.4)).path
               for name, slug in (("R in [8, 12]", "large-R"), ("alpha", "alpha"))}
    sets = ["run.backend=local", "run.cpus_per_worker=1", "optim.epochs=2", "optim.lr_drop_epochs=[1]"]
    cnn = train(load_train_config("pmd-cnn/tiny", sets), stores["train"], d / "cnn", overwrite=True, progress=False).model
    tl = {}
    for name, path in shifted.items():
        out = d / f"tl-{name[:5].strip()}"
        transfer(cnn, path, out, freeze=3, lr=3e-3, epochs=1, scratch=False, overwrite=True, progress=False,
                 overrides={"run.cpus_per_worker": 1})
        tl[name] = out / "transfer" / "model"
    return {"shifted": shifted, "cnn": cnn, "transfer": tl}


def test_table_has_every_row_the_papers_values_and_held_out_samples(stores, table_inputs, tmp_path):
    from models.artifact import read_description
    from models.data import make_split

    res = transferability_table(stores["train"], stores["test"], {"large-R": table_inputs["shifted"]["R in [8, 12]"],
                                                                  "alpha": table_inputs["shifted"]["alpha"]},
                                cnn_model=table_inputs["cnn"],
                                transfer_models={"large-R": table_inputs["transfer"]["R in [8, 12]"],
                                                 "alpha": table_inputs["transfer"]["alpha"]},
                                methods=["mse", "dt-hog"], options=LOCAL, out=tmp_path)
    assert res["rows"] == ["cnn", "cnn+transfer", "mse", "dt-hog"]
    assert set(res["sets"]) == {"unshifted", "R in [8, 12]", "alpha"}
    # scored on what the transfer learning held out, never on its training images
    from factory.store import DatasetStore

    ds = DatasetStore.open(table_inputs["shifted"]["alpha"])
    held = make_split(ds).held_out()
    assert res["sets"]["alpha"]["samples"] == len(held)
    desc = read_description(table_inputs["transfer"]["alpha"])
    assert desc["training_set"]["split"]["n_train"] + len(held) <= ds.n_samples
    # the alternatives trained on R in [1, 8] cannot reach R in [8, 12]
    assert res["cells"]["mse"]["R in [8, 12]"]["mae"] > 1.0
    md = (tmp_path / "table.md").read_text()
    assert f"({PAPER_TABLE['mse']['R in [8, 12]']:.3g})" in md and "CNN + transfer learning" in md
    rows = list(csv.reader(open(tmp_path / "table.csv")))
    head = rows[0]
    assert head[:2] == ["method", "key"] and "R in [8, 12] paper" in head
    mse = next(r for r in rows if r[1] == "mse")
    assert float(mse[head.index("R in [8, 12] paper")]) == 5.10
    assert "transfer_beats_every_alternative" in res["checks"]


def test_table_config_file_and_its_errors(stores, table_inputs, tmp_path):
    cfg = tmp_path / "table.yaml"
    cfg.write_text(f"train: {stores['train']}\ntest: {stores['test']}\n"
                   f"shifted: {{alpha: {table_inputs['shifted']['alpha']}}}\nmethods: [mse]\nlabel: R\n")
    kw = load_table_config(cfg)
    res = transferability_table(**kw, out=tmp_path / "t")
    assert (tmp_path / "t" / "table.csv").is_file() and res["rows"] == ["mse"]
    cfg.write_text("train: x.zarr\nshiftd: {}\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_table_config(cfg)
    with pytest.raises(ConfigError, match="no shifted store"):
        transferability_table(stores["train"], stores["test"], {}, transfer_models={"alpha": table_inputs["cnn"]})
    with pytest.raises(ConfigError, match="overlap"):  # explicit samples (a store without a test split)
        transferability_table(stores["train"], methods=["mse"], train_indices=np.arange(0, 60),
                              test_indices=np.arange(50, 96))
    res = transferability_table(stores["train"], methods=["mse"], train_indices=np.arange(0, 70),
                                test_indices=np.arange(70, 96), options=LOCAL)
    assert res["n_train"] == 70 and res["sets"]["unshifted"]["samples"] == 26
