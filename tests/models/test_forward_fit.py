"""Forward fitting (seed 003 Sec. 3, Fig. 4b): Monte Carlo simplex on the MSFT forward model, over Ray.

This module also holds the checks of the baselines' Ray paths, so that one Ray instance serves both.
"""

import numpy as np
import pytest

from factory.errors import StoreError
from factory.geometry import component_span, sample_fundamental
from models.forward_fit import (FitSettings, ForwardModel, fit_image, forward_fit, forward_fit_store,
                                relative_error, simulate_targets, to_params, to_vector)

BODY = np.array([[1.0, 0.0, 0.0], [0.0, 0.6, 0.0], [0.0, 0.0, 0.35]])  # three unequal arms: no symmetry


def stand_in(radius, q):
    """A cheap forward model with no symmetry: three rotated arms drawn as blobs, depth as brightness."""
    from factory.geometry.quaternions import rotation_matrix

    y, x = np.mgrid[-1:1:32j, -1:1:32j]
    img = np.zeros((32, 32))
    for p in BODY @ rotation_matrix(q).T * (radius / 160.0):
        img += (1.5 + p[2]) * np.exp(-((x - p[0]) ** 2 + (y - p[1]) ** 2) / 0.02)
    return np.log10(img / img.max() + 1e-6)


def test_search_vector_round_trip():
    rng = np.random.default_rng(1)
    for q in sample_fundamental(rng, 5):
        r, q2 = to_params(to_vector(77.0, q, (30.0, 160.0)), (30.0, 160.0))
        assert r == pytest.approx(77.0) and abs(abs(np.dot(q, q2)) - 1) < 1e-12


def test_stand_in_forward_model_is_recovered_in_process():
    fm = ForwardModel(function=stand_in, radius_range=(30.0, 160.0), group="C1")
    rng = np.random.default_rng(3)
    from scipy.spatial.transform import Rotation

    from factory.geometry import from_rotation

    q = from_rotation(Rotation.from_rotvec(rng.normal(0, 0.4, 3)))
    res = fit_image(fm(110.0, q), fm, FitSettings(starts=4, iterations=80, polish=300, parallel="local"))
    err = relative_error(res.radius, res.quaternion, 110.0, q, fm.radius_range, "C1")
    assert err.max() < 0.01, err
    assert res.simulations == sum(res.start_evaluations) and len(res.trace_objective) == res.simulations
    assert np.all(np.diff(res.trace_objective) <= 0)  # best so far never gets worse


def test_real_msft_noiseless_image_recovered_within_1pct_on_ray(ray_local, tmp_path):
    """Acceptance: the tiny MSFT grid, random starts as Ray tasks; every parameter within 1 % of its range."""
    fm = ForwardModel("tiny")  # 48^3 voxels -> 128 pad -> 64 x 64, noise off
    images, truth = simulate_targets(fm, 1, seed=4)
    rep = forward_fit(images, fm, FitSettings(starts=4, iterations=50, polish=150, parallel="ray"), truths=truth,
                      out=tmp_path)
    per = np.array(list(rep["fits"][0]["relative_error"].values()))
    assert per.max() < 0.01, rep["fits"][0]
    assert rep["final"]["fraction_max_below_1pct"] == 1.0
    curve = np.asarray(rep["curve"]["median"])
    assert curve[-1] < curve[0] and (tmp_path / "fig4b.png").is_file() and (tmp_path / "forward_fit.json").is_file()
    assert rep["simulations_per_image"] > 4 * 50  # every evaluation is one simulation, counted
    assert rep["forward_model"]["seconds_per_simulation"] > 0


def test_network_cost_beside_the_fit(tmp_path):
    """A (barely trained) scattering network: its cost in simulations and its error on the same images."""
    from factory.simulators import Coord
    from factory.store import DatasetStore
    from models.train import load_train_config, train

    fm = ForwardModel("tiny")
    images, truth = simulate_targets(fm, 16, seed=1)
    q = np.linspace(-1, 1, 64)
    st = DatasetStore.create(tmp_path / "msft.zarr", kind="msft", n_samples=16, chunk=16,
                             coords=(Coord("qy", q, "1/nm"), Coord("qx", q, "1/nm")),
                             param_names=["radius", "q0", "q1", "q2", "q3"], config_hash="ff-test",
                             extra_attrs={"radius_range_nm": [30.0, 160.0]})
    st.write_block(0, images.astype(np.float32), truth)
    cfg = load_train_config("resnet-scatter/tiny", ["run.backend=local", "run.cpus_per_worker=1", "optim.epochs=1"])
    model = train(cfg, st.path, tmp_path / "run", overwrite=True, progress=False).model
    rep = forward_fit(images[:1], fm, FitSettings(starts=1, iterations=5, parallel="local"),
                      truths={k: v[:1] for k, v in truth.items()}, network=model)
    nw = rep["network"]
    assert nw["training_images"] == 16 and nw["total_simulations"] > 16
    assert 0 <= nw["median_mean_error"] < 1 and nw["seconds_per_image"] > 0


def test_mismatched_images_and_missing_labels_are_refused(tmp_path):
    fm = ForwardModel(function=stand_in, group="C1")
    with pytest.raises(StoreError, match="32 x 32"):
        forward_fit(np.zeros((1, 16, 16)), fm, FitSettings(starts=1, iterations=1, parallel="local"))
    with pytest.raises(StoreError, match="radius, q0..q3"):
        forward_fit(np.zeros((1, 32, 32)), fm, FitSettings(starts=1, iterations=1, parallel="local"),
                    truths={"radius": np.ones(1)})
    from models.shifted_synthetic import make_pmd_store

    pmd = make_pmd_store(tmp_path / "pmd.zarr", n=4, shape=(16, 32))
    with pytest.raises(StoreError, match="no label"):
        forward_fit_store(pmd.path, n=1)


def test_app_c_errors_use_the_fundamental_domain():
    """An orientation and its symmetry-equivalent copy are the same answer (error 0)."""
    from factory.geometry import icosahedral_group, multiply

    q = sample_fundamental(np.random.default_rng(0))
    g = icosahedral_group()[7]
    err = relative_error(80.0, multiply(q, g), 80.0, q, (30.0, 160.0), "I")
    assert err.max() < 1e-9
    span = component_span("I")
    assert span[0] < 0.1 and np.allclose(span[1:], span[1])


# -- the baselines' Ray paths (share this module's Ray) ------------------------------------------------
def test_baselines_ray_tasks_give_the_same_features_and_comparisons(ray_local, tmp_path):
    from factory.compute import DaskExecutor, RayExecutor
    from models.baselines import DirectMSE, evaluation_set, training_set
    from models.features import store_features
    from models.shifted_synthetic import make_pmd_store

    tr = make_pmd_store(tmp_path / "train.zarr", n=64, shape=(32, 64), seed=0, chunk=16)
    te = make_pmd_store(tmp_path / "test.zarr", n=32, shape=(32, 64), seed=1, chunk=16)
    train = training_set(tr.path, ["R"])
    ray = RayExecutor()
    a, _ = store_features(train.path, train.indices, "hog", {"cell": (8, 16)})
    b, _ = store_features(train.path, train.indices, "hog", {"cell": (8, 16)}, executor=ray)
    assert np.array_equal(a, b)
    m = DirectMSE().fit(train.images(), train.labels)
    x = evaluation_set(te.path, ["R"]).images()
    assert np.array_equal(m.nearest(x), m.nearest(x, ray))
    assert np.array_equal(m.nearest(x), m.nearest(x, DaskExecutor(workers=2)))


def test_store_images_raw_and_processed_find_their_simulator(tmp_path):
    """The MSFT settings come from the store (or, for a processed store, its lineage); few iterations only."""
    from factory.config import resolve_simulator_config
    from factory.processing.steps import preprocess_store
    from factory.simulators import Coord
    from factory.store import DatasetStore

    cfg = resolve_simulator_config("msft", "tiny")
    fm = ForwardModel(cfg)
    images, truth = simulate_targets(fm, 2, seed=9)
    q = np.linspace(-0.23, 0.23, 64)
    raw = DatasetStore.create(tmp_path / "raw.zarr", kind="msft", n_samples=2, chunk=2,
                              coords=(Coord("qy", q, "1/nm"), Coord("qx", q, "1/nm")),
                              param_names=["radius", "q0", "q1", "q2", "q3"], config_hash="raw-ff",
                              config={"kind": "msft", "simulator": cfg.model_dump(mode="json")},
                              extra_attrs={"simulator": {"radius_range_nm": [30.0, 160.0]}})
    raw.write_block(0, images.astype(np.float32), truth)
    preprocess_store([raw.path], tmp_path / "net.zarr", mode="scatter", progress=False)
    quick = FitSettings(starts=1, iterations=3, parallel="local")
    for path in (raw.path, tmp_path / "net.zarr"):
        rep = forward_fit_store(path, n=1, settings=quick)
        assert rep["forward_model"]["radius_range"] == [30.0, 160.0] and len(rep["fits"]) == 1
