"""Shape classifier (issue 15, item 5): the measured and simulated input paths agree, and a small
training run on simulated patterns separates two very different shapes (a sphere's rings from a
platelet's six streaks); the saved artefact reloads to the same predictions."""

import numpy as np
import pytest
import torch

from factory.msft.detector_response import AG_CLUSTER_DETECTOR
from factory.msft.measured import AG_CLUSTER_NAMES, load_ag_cluster
from models import shape_classifier as sc


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_measured_and_simulated_inputs_share_one_space():
    r0, r1, c0, c1 = sc.CROP
    mask = AG_CLUSTER_DETECTOR.mask()
    # the crop holds every valid detector pixel
    assert mask.sum() == mask[r0:r1, c0:c1].sum() > 0
    cmask = mask[r0:r1, c0:c1]
    png = load_ag_cluster("barke7")
    x = sc.measured_input(png)
    assert x.shape == (r1 - r0, c1 - c0) and x.dtype == np.float32
    assert np.all(x[~cmask] == 0) and 0 < x.max() <= 1
    np.testing.assert_array_equal(x, AG_CLUSTER_DETECTOR.measured_input(png)[r0:r1, c0:c1])
    # a simulated pattern: the same shape, zero outside the same mask, display max 1
    lin = np.exp(-np.hypot(*np.mgrid[-64:64, -64:64]) / 10.0)
    s = sc.simulated_input(lin)
    assert s.shape == x.shape and np.all(s[~cmask] == 0) and np.isclose(s.max(), 1.0)
    # with nuisances and any of the eleven filters: still masked, still in 0..1
    rng = np.random.default_rng(0)
    for f in range(11):
        a = sc.simulated_input(lin, rng, sc.Recipe(), augment_filter=f)
        assert a.shape == x.shape and np.all(a[~cmask] == 0) and a.min() >= 0 and a.max() <= 1 + 1e-6
    # the detector's orientation: a bright spot at +q lands at -q about the centre
    spot = np.zeros((128, 128))
    spot[64, 64 + 20] = 1.0
    spot[64, 64] = 0.5
    d = sc.simulated_input(spot)
    assert d[:, : 64 - c0].max() > d[:, 64 - c0 + 1:].max()


def test_small_training_separates_sphere_from_platelet(tmp_path):
    shapes = ("sphere", "truncated_twinned_tetrahedron")
    recipe = sc.Recipe(shapes=shapes, per_class=20, epochs=8, batch=8, lr=2e-3, filters=8, blocks=4,
                       filters_p_identity=1.0, saturation=(0.5, 1.0))
    train = sc.simulate_bank(shapes, 20, seed=1, radius_nm=(60.0, 150.0))
    test = sc.simulate_bank(shapes, 10, seed=2, radius_nm=(60.0, 150.0))
    model, hist = sc.train_classifier(train, recipe)
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    acc, conf = sc.evaluate_bank(model, test, recipe, seed=3)
    assert conf.sum() == 20 and np.trace(conf) >= 16, conf  # chance is 10 of 20
    # the artefact: safetensors + card, reloads to the same outputs
    folder = sc.save_classifier(tmp_path / "m", model, recipe, hist)
    assert (folder / "weights.safetensors").is_file()
    again, names = sc.load_classifier(folder)
    assert names == shapes
    x = np.stack([sc.measured_input(load_ag_cluster(n)) for n in AG_CLUSTER_NAMES])
    np.testing.assert_allclose(sc.predict_proba(again, x), sc.predict_proba(model, x), atol=1e-6)
    out = sc.classify_measured(again, names)
    assert [o["pattern"] for o in out] == list(AG_CLUSTER_NAMES)
    assert {o["true"] for o in out} == {"decahedron", "truncated_octahedron", "icosahedron",
                                        "truncated_twinned_tetrahedron"}
