"""Scoring: App. C errors with fundamental-domain projection, learning-curve fits, transfer learning."""

import json

import numpy as np
import pytest
import torch

from factory.geometry import icosahedral_group, multiply, relative_errors, sample_fundamental
from models.artifact import load_state, project_quaternions
from models.learning_curve import PAPER_FIT, fit_power_law, n_for_target, plot_learning_curve
from models.synthetic import make_store
from models.train import load_train_config, train
from models.transfer import transfer


def test_symmetry_equivalent_unnormalised_prediction_scores_zero():
    rng = np.random.default_rng(0)
    q = sample_fundamental(rng, 20)
    g = icosahedral_group()[rng.integers(0, 60, 20)]
    raw = multiply(q, g) * rng.choice([-1.0, 1.0], (20, 1)) * rng.uniform(0.5, 2.0, (20, 1))
    proj = project_quaternions(raw)
    assert np.allclose(proj, q, atol=1e-9)
    rel = relative_errors(np.full(20, 80.0), proj, np.full(20, 80.0), q)
    assert rel["mean"].max() < 1e-8
    # an unprojected equivalent rotation would be scored as badly wrong
    assert relative_errors(np.full(20, 80.0), raw / np.linalg.norm(raw, axis=1, keepdims=True),
                           np.full(20, 80.0), q)["max"].max() > 0.1
    # the radius error is relative to the range: 13 nm of [30, 160] is 10 %
    assert np.isclose(relative_errors([93.0], q[:1], [80.0], q[:1])["per_param"][0, 0], 0.1)


def test_learning_curve_fit_and_target(tmp_path):
    a, b, c = PAPER_FIT
    n = np.array([500, 1000, 1500, 2000, 2500])
    fit = fit_power_law(n, a * n**b + c)
    assert np.allclose(fit, PAPER_FIT, rtol=1e-3)
    # the paper: about 50,000 images for an MAE below 0.1 a.u.
    assert 40_000 < n_for_target(a, b, c, 0.1) < 60_000
    assert n_for_target(a, b, c, 0.07) == float("inf")
    summary = {"label": "R", "points": [{"N": int(k), "mae": float(a * k**b + c)} for k in n],
               "fit": dict(zip("abc", fit)), "target": {"mae": 0.1, "N": n_for_target(*fit, 0.1)}}
    assert plot_learning_curve(summary, tmp_path / "lc.png").stat().st_size > 1000


def test_transfer_freezes_layers_and_compares_three_models(tmp_path):
    base_store = make_store(tmp_path / "base.zarr", n=64, chunk=8, shape=(32, 32))
    shifted = make_store(tmp_path / "shifted.zarr", n=48, chunk=8, shape=(32, 32), seed=1, R_range=(8.0, 12.0))
    cfg = load_train_config("pmd-cnn/tiny", ["run.backend=local", "run.cpus_per_worker=1", "optim.epochs=2"])
    base = train(cfg, base_store.path, tmp_path / "base", progress=False)
    table = transfer(base.model, shifted.path, tmp_path / "tl", freeze=3, lr=1e-3, epochs=2, progress=False)
    assert set(table["models"]) == {"original", "transfer", "scratch"}
    assert table["held_out"] == 12 and (tmp_path / "tl" / "transfer.png").is_file()
    a, b = load_state(base.model), load_state(tmp_path / "tl" / "transfer" / "model")
    for k in a:  # the first three conv blocks are the base model's, the rest was retrained
        if k.startswith(("features.0.", "features.1.", "features.2.", "norm.")):
            assert torch.equal(a[k], b[k]), k
    assert not torch.equal(a["head.weight"], b["head.weight"])
    desc = json.loads((tmp_path / "tl" / "transfer" / "model" / "model.json").read_text())
    assert desc["transfer"]["freeze"] == 3 and desc["label_scaling"] == json.loads(
        (tmp_path / "base" / "model" / "model.json").read_text())["label_scaling"]
    with pytest.raises(Exception, match="feature blocks"):
        transfer(base.model, shifted.path, tmp_path / "tl2", freeze=9, progress=False)


def test_d4_augmentation_is_the_exact_pattern_of_the_rotated_particle():
    from factory.geometry import multiply, normalize
    from factory.config import resolve_simulator_config
    from factory.msft.simulator import pattern
    from models.data import D4Augment, LabelScaling, d4_image, d4_quaternion

    cfg = resolve_simulator_config("msft", "tiny").model_copy(update={"background": 0.0})
    q = normalize(np.array([0.95, 0.2, -0.1, 0.15]))
    base = pattern("icosahedron", 80.0, q, cfg).image
    for s in range(1, 8):
        rot, flip = s % 4, bool(s // 4)
        want = pattern("icosahedron", 80.0, multiply(d4_quaternion(rot, flip), q), cfg).image
        got = d4_image(base, rot, flip)
        assert np.abs(got - want)[1:, 1:].max() < 1e-4, (rot, flip)  # (row/column 0 wrap around)
    # the augmentation keeps labels in the fundamental domain and consistent with the image
    names = ["radius", "q0", "q1", "q2", "q3"]
    y = np.array([[80.0, *q]] * 16)
    sc = LabelScaling.fit(names, np.vstack([y, y + 0.01]), {"radius": "minmax", "q0": "minmax"})
    x2, y2 = D4Augment(names, sc.to_dict())(np.repeat(base[None], 16, 0), sc.transform(y).astype(np.float32),
                                           np.random.default_rng(0))
    lab = sc.inverse(y2)
    assert np.allclose(lab[:, 0], 80.0, atol=1e-3)
    assert np.allclose(project_quaternions(lab[:, 1:]), lab[:, 1:], atol=1e-4)
    j = int(np.argmax(np.abs(lab[:, 1:] - q).sum(1)))  # an image that was transformed
    again = pattern("icosahedron", 80.0, lab[j, 1:], cfg).image
    assert np.abs(again - x2[j])[1:, 1:].max() < 1e-3
