"""Dask post-processing: focal averaging, interpolation, preprocessing, splits, chains, resume."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
from scipy.integrate import quad

from factory.errors import ConfigError, StoreError
from factory.processing import focal, preprocess
from factory.processing.chain import run_chain
from factory.processing.description import Pmd2d, parse
from factory.processing.splits import TEST, assign_splits
from factory.processing.steps import (focal_average_store, interpolate_store, preprocess_store,
                                      read_split, split_store)
from factory.simulators import Coord
from factory.store import DatasetStore
from factory.testing import error_line, ladder_pmd, make_ladder_store, run_cli

KY = np.linspace(-3, 3, 33)
KX = np.linspace(-4, 4, 41)


def pmd(R, intensity, ky=KY, kx=KX):
    """A smooth synthetic PMD whose width grows with intensity and fringes with R."""
    return ladder_pmd(R, intensity, ky, kx)


# -- focal averaging --------------------------------------------------------------------
def test_product_rule_equals_direct_quadrature_of_eqs_5_6():
    x = np.array([0.1, 0.25, 0.4, 0.6, 0.8, 0.9, 1.0])
    p = np.array([0.01, 0.3, 1.1, 2.0, 2.6, 3.3, 4.1])
    direct = quad(lambda s: np.interp(s, x, p) * focal.focal_weight(s), x[0], 1, points=x[1:-1], limit=500,
                  epsabs=0, epsrel=1e-12)[0]
    ours = focal.focal_average(p[:, None], x)[0]
    assert abs(ours - direct) / direct < 1e-6


def test_constant_p_gives_the_integral_of_the_weight():
    x = np.arange(1, 11) / 10
    exact = focal.weight_integral(0.1, 1.0)
    assert abs(quad(focal.focal_weight, 0.1, 1, limit=500, epsrel=1e-12)[0] - exact) / exact < 1e-9
    stack = np.full((10, 4, 3), 2.5)
    np.testing.assert_allclose(focal.focal_average(stack, x), 2.5 * exact, rtol=1e-12)
    with pytest.raises(ValueError, match="0 < I/I0"):
        focal.focal_weight(np.array([0.0, 0.5]))


def test_focal_store_equals_direct_numpy_loop(tmp_path):
    src = make_ladder_store(tmp_path / "raw.zarr")
    for method in ("product", "trapezoid"):
        out = tmp_path / f"focal-{method}.zarr"
        rep = focal_average_store(src.path, out, method=method, progress=False)
        assert rep.samples == 6
        st = DatasetStore.open(out)
        assert st.param_names == ["R", "cep", "alpha", "molecule", "I0"]
        assert st.meta["lineage"][0]["config_hash"] == src.config_hash
        raw = src.images[:].astype(np.float64)
        p = src.params()
        for g in range(6):
            sl = slice(5 * g, 5 * g + 5)
            x = p["intensity"][sl] / p["I0"][sl]
            if method == "trapezoid":  # eqs. 5-6 by the trapezoidal rule, written out
                f = raw[sl] * (((1 / x) * (1 / x + 2) * np.sqrt(1 / x - 1))[:, None, None])
                direct = sum(0.5 * (x[j + 1] - x[j]) * (f[j] + f[j + 1]) for j in range(4))
            else:
                direct = focal.focal_average(raw[sl], x, "product")
            np.testing.assert_allclose(st.images[g], direct, rtol=1e-6)
            assert st.params()["R"][g] == p["R"][5 * g]


def test_focal_refuses_stores_without_ladders(tmp_path):
    st = make_ladder_store(tmp_path / "raw.zarr")
    st.update_meta(simulator={"ladder": 1})
    with pytest.raises(StoreError, match="no intensity ladder"):
        focal_average_store(st.path, tmp_path / "f.zarr", progress=False)
    assert not (tmp_path / "f.zarr").exists()


# -- interpolation ----------------------------------------------------------------------
def linear_image(R, I0):
    yy, xx = np.meshgrid(KY, KX, indexing="ij")
    return 1.0 + 0.3 * R * np.cos(xx) + (I0 / 1e14) * (yy**2 + 0.5)


def make_points_store(path, n=30, seed=0):
    rng = np.random.default_rng(seed)
    R, I0 = rng.uniform(1, 8, n), rng.uniform(1e14, 4e14, n)
    st = DatasetStore.create(path, kind="tdse", n_samples=n, chunk=8,
                             coords=(Coord("ky", KY, "a.u."), Coord("kx", KX, "a.u.")),
                             param_names=["R", "I0"], config_hash=f"points-{seed}")
    imgs = np.stack([linear_image(r, i) for r, i in zip(R, I0)]).astype(np.float32)
    for s, e in st.blocks():
        st.write_block(s, imgs[s:e], {"R": R[s:e], "I0": I0[s:e]})
    return st, R, I0


@pytest.mark.parametrize("method", ["linear", "rbf"])
def test_interpolation_exact_at_sources_and_for_linear_functions(tmp_path, method):
    st, R, I0 = make_points_store(tmp_path / "src.zarr")
    own = tmp_path / f"own-{method}.zarr"
    interpolate_store([st.path], own, axes=["R", "I0"], targets=np.column_stack([R, I0]), method=method, progress=False)
    np.testing.assert_allclose(DatasetStore.open(own).images[:], st.images[:], rtol=1e-6)
    new = tmp_path / f"new-{method}.zarr"
    interpolate_store([st.path], new, axes=["R", "I0"], samples=40, method=method, seed=3, progress=False)
    out = DatasetStore.open(new)
    p = out.params()
    assert (p["interpolated"] == 1).all() and out.n_samples == 40
    expect = np.stack([linear_image(r, i) for r, i in zip(p["R"], p["I0"])])
    np.testing.assert_allclose(out.images[:], expect, rtol=2e-6, atol=1e-6 * np.abs(expect).max())  # float32 storage


def test_interpolation_never_extrapolates(tmp_path):
    st, R, I0 = make_points_store(tmp_path / "src.zarr")
    with pytest.raises(StoreError, match="outside the convex hull"):
        interpolate_store([st.path], tmp_path / "x.zarr", axes=["R", "I0"], targets=np.array([[0.2, 2e14]]),
                          progress=False)
    assert not (tmp_path / "x.zarr").exists()
    targets = np.array([[0.2, 2e14], [np.median(R), np.median(I0)]])
    interpolate_store([st.path], tmp_path / "f.zarr", axes=["R", "I0"], targets=targets, outside="flag", progress=False)
    flagged = DatasetStore.open(tmp_path / "f.zarr")
    assert flagged.n_samples == 1 and flagged.meta["interpolation"]["dropped_outside"] == 1
    with pytest.raises(StoreError, match="not labels"):
        interpolate_store([st.path], tmp_path / "y.zarr", axes=["R", "cep"], samples=3, progress=False)


def test_mismatched_sources_are_refused(tmp_path):
    a, _, _ = make_points_store(tmp_path / "a.zarr")
    b = make_ladder_store(tmp_path / "b.zarr", kx=np.linspace(-5, 5, 41))
    with pytest.raises(StoreError, match="different kx grid|labels"):
        preprocess_store([a.path, b.path], tmp_path / "o.zarr", mode="pmd2d", progress=False)
    c = make_ladder_store(tmp_path / "c.zarr", kind="blobs")
    d = make_ladder_store(tmp_path / "d.zarr")
    with pytest.raises(StoreError, match="kind 'tdse' != 'blobs'"):
        preprocess_store([c.path, d.path], tmp_path / "o.zarr", mode="pmd2d", progress=False)
    proc = run_cli("process", "preprocess", str(c.path), str(d.path), "--out", str(tmp_path / "o.zarr"))
    assert proc.returncode == 2 and "does not match" in error_line(proc)
    assert not (tmp_path / "o.zarr").exists()


# -- preprocessing ----------------------------------------------------------------------
def test_pmd2d_network_input(tmp_path):
    src = make_ladder_store(tmp_path / "raw.zarr")
    preprocess_store([src.path], tmp_path / "net.zarr", mode="pmd2d", progress=False)
    st = DatasetStore.open(tmp_path / "net.zarr")
    imgs = st.images[:]
    assert imgs.shape == (30, 128, 256)                     # kx (polarisation) along the 256 columns
    assert imgs.min() >= 0 and imgs.max() <= 255
    np.testing.assert_allclose(imgs.max(axis=(1, 2)), 255, atol=3)  # the maximum maps to 255 (cubic overshoot clipped)
    desc = parse(st.meta["preprocessing"])
    assert isinstance(desc, Pmd2d) and desc.window == "global" and desc.to_dict() == st.meta["preprocessing"]
    assert desc.kx_range[0] == -desc.kx_range[1]            # one symmetric window for the whole set
    # the recorded description reproduces the stored images from a raw frame (what streaming does)
    frame = src.images[7]
    again = preprocess.apply(desc, frame, {"ky": KY, "kx": KX})
    np.testing.assert_array_equal(again, imgs[7])
    # the floor: pixels where P < 1e-5 max are 0
    raw = src.images[7].astype(np.float64)
    assert (again == 0).any() and (raw < 1e-5 * raw.max()).any()
    per = preprocess.apply(Pmd2d(window="per-image"), frame, {"ky": KY, "kx": KX})
    assert per.shape == (128, 256) and per.max() > 250


def test_an_invalid_preprocessing_is_refused_before_anything_is_written(tmp_path):
    src = make_ladder_store(tmp_path / "raw.zarr")
    for kw, message in [({"mode": "pmd2d", "window": "sliding"}, "window 'sliding': choose"),
                        ({"mode": "pmd1d", "log_floor": 1.0}, "log_floor 1.0: must be a finite number of decades"),
                        ({"mode": "pmd3d"}, "preprocessing mode 'pmd3d': choose one of pmd2d, pmd1d, scatter")]:
        with pytest.raises(StoreError, match=message):
            preprocess_store([src.path], tmp_path / "net.zarr", progress=False, **kw)
        assert not (tmp_path / "net.zarr").exists()


def test_pmd1d_is_dp_dkx(tmp_path):
    src = make_ladder_store(tmp_path / "raw.zarr")
    preprocess_store([src.path], tmp_path / "d1.zarr", mode="pmd1d", progress=False)
    st = DatasetStore.open(tmp_path / "d1.zarr")
    assert st.images.shape == (30, 256) and st.meta["image_dims"] == ["sample", "kx"]
    desc = parse(st.meta["preprocessing"])
    kx_out = np.linspace(*desc.kx_range, 256)
    raw = src.images[3].astype(np.float64)
    dp = np.interp(kx_out, KX, raw.sum(axis=0))
    np.testing.assert_allclose(st.images[3], dp / dp.max(), rtol=1e-5, atol=1e-7)


def test_scatter_log_normalisation():
    img = np.outer(np.logspace(0, 8, 128), np.ones(128))
    out = preprocess.apply({"name": "scatter", "input": "intensity", "log_floor": -6.0, "out_shape": [128, 128]},
                           img, {})
    assert out.max() == 1.0 and out.min() == 0.0
    np.testing.assert_allclose(out[-1], 1.0)
    assert (out[:32] == 0).all()  # more than 6 decades below the max


# -- splits -----------------------------------------------------------------------------
def test_splits_are_seeded_and_test_is_computed_only():
    computed = np.zeros(100, bool)
    computed[:20] = True
    a = assign_splits(100, (0.7, 0.2, 0.1), seed=4, computed=computed)
    np.testing.assert_array_equal(a, assign_splits(100, (0.7, 0.2, 0.1), seed=4, computed=computed))
    assert not np.array_equal(a, assign_splits(100, (0.7, 0.2, 0.1), seed=5, computed=computed))
    assert (a == TEST).sum() == 2 and computed[a == TEST].all()
    with pytest.raises(ValueError, match="summing to 1"):
        assign_splits(10, (0.5, 0.5, 0.5), 0)


def test_split_store_in_place(tmp_path):
    st, _, _ = make_points_store(tmp_path / "s.zarr")
    counts = split_store(st.path, fractions=(0.5, 0.3, 0.2), seed=1)
    assert counts == {"train": 15, "validation": 9, "test": 6}
    assert (read_split(DatasetStore.open(st.path)) == 2).sum() == 6


# -- chains, resume, memory -------------------------------------------------------------
def test_chain_file_runs_all_steps_and_is_idempotent(tmp_path):
    make_ladder_store(tmp_path / "raw.zarr")
    chain = tmp_path / "chain.yaml"
    chain.write_text(
        "steps:\n"
        "  - focal-average: {source: raw.zarr, out: focal.zarr}\n"
        "  - interpolate: {sources: [focal.zarr], out: interp.zarr, axes: [R, I0], samples: 20}\n"
        "  - preprocess: {sources: [interp.zarr], out: net.zarr, mode: pmd2d, split: [0.8, 0.2, 0.0]}\n"
        "  - augment: {source: net.zarr, out: aug.zarr, factor: 3}\n"
    )
    reps = run_chain(chain, progress=False)
    assert [r.step for r in reps] == ["focal-average", "interpolate", "preprocess", "augment"]
    aug = DatasetStore.open(tmp_path / "aug.zarr")
    n_train = int((read_split(DatasetStore.open(tmp_path / "net.zarr")) == 0).sum())
    assert aug.n_samples == 3 * n_train + (20 - n_train)
    lineage = aug.meta["lineage"][0]
    assert lineage["lineage"][0]["lineage"][0]["lineage"][0]["kind"] == "tdse"  # augment <- net <- interp <- focal <- raw
    again = run_chain(chain, progress=False)
    assert all(r.blocks_computed == 0 for r in again)
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  - preprocess: {sources: [x.zarr], out: y.zarr, mode: fancy}\n")
    with pytest.raises(ConfigError, match="steps\\[0\\].preprocess.mode"):
        run_chain(bad)


def test_rerun_with_other_arguments_is_refused(tmp_path):
    src = make_ladder_store(tmp_path / "raw.zarr")
    preprocess_store([src.path], tmp_path / "net.zarr", mode="pmd2d", progress=False)
    before = DatasetStore.open(tmp_path / "net.zarr").images[:]
    with pytest.raises(StoreError, match="other arguments"):
        preprocess_store([src.path], tmp_path / "net.zarr", mode="pmd2d", window="per-image", progress=False)
    np.testing.assert_array_equal(DatasetStore.open(tmp_path / "net.zarr").images[:], before)


def big_pmd(R, intensity, ky, kx):
    yy, xx = np.meshgrid(ky, kx, indexing="ij")
    return np.exp(-(xx**2 + yy**2) / (0.5 + intensity / 2e14)) * (1.5 + np.sin(R * xx))


@pytest.mark.slow
def test_killed_step_reruns_without_recomputing_and_identically(tmp_path):
    ky, kx = np.linspace(-3, 3, 512), np.linspace(-3, 3, 512)
    src = make_ladder_store(tmp_path / "raw.zarr", groups=48, ladder=2, chunk=2, fn=big_pmd, ky=ky, kx=kx)
    ref = tmp_path / "ref.zarr"
    preprocess_store([src.path], ref, mode="pmd2d", chunk=2, progress=False)
    out = tmp_path / "out.zarr"
    cmd = [sys.executable, "-m", "factory.cli", "process", "preprocess", str(src.path), "--out", str(out),
           "--workers", "1", "--json"]
    # chunk of 2: the CLI uses 32 by default, so run it through the library with the same chunking
    code = ("import sys; from factory.processing.steps import preprocess_store as p; "
            f"p([{str(src.path)!r}], {str(out)!r}, mode='pmd2d', chunk=2, workers=1, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code])

    def done():
        try:
            return int(DatasetStore.open(out, partial=True).done_mask().sum())
        except Exception:
            return 0

    t0 = time.time()
    while done() < 20 and time.time() - t0 < 120:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = done()
    assert 20 <= at_kill < 96, at_kill
    rep = preprocess_store([src.path], out, mode="pmd2d", chunk=2, progress=False)
    assert rep.blocks_skipped * 2 == at_kill and rep.blocks_computed == (96 - at_kill) // 2
    assert DatasetStore.open(out).images[:].tobytes() == DatasetStore.open(ref).images[:].tobytes()
    del cmd


def test_bounded_memory_on_a_store_larger_than_the_limit(tmp_path):
    """~400 MB of raw images through preprocessing with 2 threads: peak RSS growth stays far below."""
    ky, kx = np.linspace(-3, 3, 512), np.linspace(-3, 3, 512)
    src = make_ladder_store(tmp_path / "raw.zarr", groups=200, ladder=2, chunk=4, fn=big_pmd, ky=ky, kx=kx)
    nbytes = src.images.nbytes
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    t = threading.Thread(target=sample)
    t.start()
    preprocess_store([src.path], tmp_path / "net.zarr", mode="pmd2d", chunk=4, workers=2, progress=False)
    stop.set()
    t.join()
    growth = peak[0] - base
    print(f"\nstore {nbytes / 2**20:.0f} MiB of images, peak RSS growth {growth / 2**20:.0f} MiB")
    assert nbytes > 350 * 2**20
    assert growth < 150 * 2**20


def test_description_alone_preprocesses_a_raw_frame(tmp_path):
    src = make_ladder_store(tmp_path / "raw.zarr")
    preprocess_store([src.path], tmp_path / "net.zarr", mode="pmd2d", progress=False)
    st = DatasetStore.open(tmp_path / "net.zarr")
    desc = parse(st.meta["preprocessing"])
    assert st.meta["preprocessing"]["input_axes"] == {"ky": [-3.0, 3.0, 33], "kx": [-4.0, 4.0, 41]}  # the stored form
    assert desc.frame_shape == (33, 41)
    np.testing.assert_array_equal(preprocess.apply(desc, src.images[4]), st.images[4])
    np.testing.assert_array_equal(preprocess.apply(st.meta["preprocessing"], src.images[4]), st.images[4])
    with pytest.raises(ValueError, match="raw input shape"):
        preprocess.apply(desc, np.ones((33, 40)))


def test_bicubic_resampling_is_exact_for_identity_and_quadratics():
    y, x = np.linspace(-2, 2, 41), np.linspace(-3, 3, 61)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    img = 1 + 0.5 * yy - 0.2 * xx + 0.1 * yy * xx
    np.testing.assert_allclose(preprocess._resample(img, y, x, y, x), img, atol=1e-12)
    ny, nx = np.linspace(-1.5, 1.7, 17), np.linspace(-2.2, 2.9, 23)
    ey, ex = np.meshgrid(ny, nx, indexing="ij")
    q = lambda a, b: 1 + 0.3 * a**2 - 0.2 * b**2 + 0.1 * a * b  # noqa: E731  Keys (a=-1/2) is exact for quadratics
    np.testing.assert_allclose(preprocess._resample(q(yy, xx), y, x, ny, nx), q(ey, ex), atol=1e-10)
