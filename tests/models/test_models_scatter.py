"""The scattering chain end to end at tiny size: MSFT store -> scatter preprocessing -> ResNet (tanh)
-> App. C relative errors (Fig. 4a) -> the measured icosahedra re-simulated (Fig. 5)."""

import json

import numpy as np
import pytest

from factory.config import load_config
from factory.engine import compute_block, prepare_store
from factory.processing.steps import preprocess_store
from factory.store import DatasetStore
from models.evaluate import evaluate
from models.experimental import DATA_DIR, reconstruct_experimental
from models.train import load_train_config, train


@pytest.fixture(scope="module")
def scatter_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("scatter")
    cfg = load_config("msft/tiny", samples=32)
    raw = prepare_store(cfg, root / "raw.zarr")
    for s, e in raw.blocks():  # in-process, no Ray: the engine's block function
        raw.write_block(s, *compute_block(cfg, s, e))
    assert raw.meta["simulator"]["image_scale"] == "log10"
    preprocess_store([raw.path], root / "net.zarr", mode="scatter", split=(0.75, 0.25, 0.0), chunk=8, progress=False)
    return root, DatasetStore.open(root / "net.zarr")


def test_resnet_on_msft_with_app_c_errors_and_fig5(scatter_store):
    root, store = scatter_store
    cfg = load_train_config("resnet-scatter/tiny", ["run.backend=local", "run.cpus_per_worker=1", "optim.epochs=2"])
    res = train(cfg, store.path, root / "run", progress=False)
    desc = json.loads((root / "run" / "model" / "model.json").read_text())
    assert desc["postprocess"] == {"group": "I", "quaternion": ["q0", "q1", "q2", "q3"]}
    assert desc["label_scaling"]["methods"] == ["minmax", "minmax", "none", "none", "none"]
    assert desc["preprocessing"]["name"] == "scatter"
    ev = evaluate(res.model, store.path, root / "eval")
    rel = ev["relative_error"]
    assert rel["radius_range"] == [30.0, 160.0] and 0 < rel["median_mean"] <= rel["median_max"]
    assert (root / "eval" / "relative-errors.png").stat().st_size > 1000
    pred = np.load(root / "eval" / "predictions.npz")
    q = np.column_stack([pred[f"pred_q{i}"] for i in range(4)])
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0) and (q[:, 0] > 0.9).all()  # normalised, in the domain
    if not (DATA_DIR / "barke5.png").is_file():
        pytest.skip("measured patterns not available")
    f5 = reconstruct_experimental(res.model, root / "fig5", refine_steps=2)
    assert [r["name"] for r in f5["images"]] == ["barke5", "barke6"]
    assert all(np.isfinite(r["radius_nm"]) and np.isfinite(r["correlation"]) for r in f5["images"])
    # trained without the detector model: said so; re-simulated on the measured q grid (the small preset's)
    assert f5["trained_through_detector"] is False and f5["simulator"]["crop"] == 128
    for r in f5["images"]:
        ref = r["refined"]
        assert ref["passes"] == 2 and 30.0 <= ref["radius_nm"] <= 160.0 and np.isfinite(ref["correlation"])
        assert abs(np.linalg.norm(ref["quaternion"]) - 1) < 1e-9
    assert (root / "fig5" / "fig5.png").stat().st_size > 10_000 and "Barke" in f5["attribution"]
