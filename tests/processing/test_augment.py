"""Each augmentation filter of seed 003 App. D has its defining property; all are seeded."""

import numpy as np
import pytest

from factory.processing import augment as A
from factory.processing.steps import augment_store
from factory.simulators import Coord
from factory.store import DatasetStore


def image(n=64):
    yy, xx = np.meshgrid(np.arange(n) - 31.5, np.arange(n) - 31.5, indexing="ij")
    r = np.hypot(yy, xx)
    return 0.2 + 0.8 * np.exp(-r / 20) * (1 + np.cos(r / 2)) / 2


def rng(k=0):
    return np.random.default_rng(k)


def test_there_are_eleven_filters():
    assert len(A.FILTERS) == 11
    assert A.FILTER_NAMES[0] == "identity" and A.FILTER_NAMES[-2:] == ["random_combination", "experimental"]


def test_identity_is_exact():
    img = image()
    np.testing.assert_array_equal(A.augment(img, 0, rng()), img.astype(np.float32))


@pytest.mark.parametrize("seed", range(5))
def test_uniform_noise_stays_within_half_the_max(seed):
    img = image()
    out = A.uniform_noise(img, rng(seed))
    assert np.all(np.abs(out - img) <= A.NOISE_MAX * img.max() + 1e-12)
    assert out.min() >= 0 and out.max() <= img.max()
    assert not np.array_equal(out, img)


def test_salt_and_pepper_only_sets_extremes():
    img = image()
    out = A.salt_pepper(img, rng(3))
    changed = out != img
    assert changed.any() and changed.mean() <= A.SP_MAX
    assert np.isin(out[changed], [img.min(), img.max()]).all()


def test_blur_keeps_mass_and_lowers_peaks():
    img = np.zeros((64, 64))
    img[32, 32] = 1.0
    out = A.gaussian_blur(img, rng(1))
    assert abs(out.sum() - 1.0) < 1e-6 and out.max() < 1.0
    # sigma <= 5 px: more than 1/(2 pi 25) of the mass stays in the central pixel's neighbourhood
    assert out[32, 32] >= 1 / (2 * np.pi * A.BLUR_MAX**2) * 0.9


def test_jitter_moves_pixels_by_at_most_its_bound():
    img = np.zeros((64, 64))
    img[:, 20] = 1.0
    out = A.jitter(img, rng(2))
    cols = np.flatnonzero(out.max(axis=0) > 0)
    assert cols.min() >= 20 - np.ceil(A.JITTER_MAX) and cols.max() <= 20 + np.ceil(A.JITTER_MAX)
    assert not np.array_equal(out, img)


def test_center_crop_zeroes_outside_a_central_square():
    img = np.ones((64, 64))
    out = A.center_crop(img, rng(4))
    rows = np.flatnonzero(out.any(axis=1))
    cols = np.flatnonzero(out.any(axis=0))
    assert rows.min() == 63 - rows.max() and cols.min() == 63 - cols.max()  # centred
    assert (out[rows.min():rows.max() + 1, cols.min():cols.max() + 1] == 1).all()
    assert len(rows) >= 2 * A.CROP_MIN * 64 - 2


@pytest.mark.parametrize("seed", range(5))
def test_central_hole_is_zero_inside_its_radius(seed):
    img = image()
    out = A.central_hole(img, rng(seed))
    yy, xx = np.meshgrid(np.arange(64) - 31.5, np.arange(64) - 31.5, indexing="ij")
    r = np.hypot(yy, xx)
    hole = out == 0
    radius = r[hole].max()
    assert (out[r <= radius] == 0).all() and radius <= A.HOLE_MAX * 64
    np.testing.assert_array_equal(out[r > radius], img[r > radius])


def test_shift_is_a_translation_with_zero_fill():
    img = image()
    out = A.shift(img, rng(7))
    found = [(dy, dx) for dy in range(-6, 7) for dx in range(-6, 7)
             if np.allclose(out[max(dy, 0):64 + min(dy, 0), max(dx, 0):64 + min(dx, 0)],
                            img[max(-dy, 0):64 - max(dy, 0), max(-dx, 0):64 - max(dx, 0)])]
    assert len(found) == 1 and found[0] != (0, 0)


def test_uneven_sensitivity_only_attenuates():
    img = image()
    out = A.uneven_sensitivity(img, rng(5))
    ratio = out / img
    assert (ratio <= 1 + 1e-12).all() and (ratio >= 0.1**4 - 1e-12).all() and (ratio < 1).any()


def test_combinations_are_seeded_and_differ_from_input():
    img = image()
    for f in (9, 10):
        a = A.augment(img, f, rng(11))
        np.testing.assert_array_equal(a, A.augment(img, f, rng(11)))
        assert not np.array_equal(a, img.astype(np.float32))
    with pytest.raises(ValueError, match="choose 0..10"):
        A.augment(img, 11, rng())


def test_augment_store_is_reproducible_and_grows_train_only(tmp_path):
    st = DatasetStore.create(tmp_path / "net.zarr", kind="msft", n_samples=6, chunk=3,
                             coords=(Coord("row", np.arange(64.0)), Coord("col", np.arange(64.0))),
                             param_names=["radius"], config_hash="net")
    imgs = np.stack([image() * (1 + k / 10) for k in range(6)]).astype(np.float32)
    for s, e in st.blocks():
        st.write_block(s, imgs[s:e], {"radius": np.arange(s, e, dtype=float)})
    from factory.processing.steps import write_split

    write_split(st, np.array([0, 0, 0, 0, 1, 2], np.int8))
    a = augment_store(st.path, tmp_path / "a.zarr", factor=11, seed=9, progress=False)
    b = augment_store(st.path, tmp_path / "b.zarr", factor=11, seed=9, progress=False)
    assert a.samples == 4 * 11 + 2
    sa, sb = DatasetStore.open(a.path), DatasetStore.open(b.path)
    assert sa.images[:].tobytes() == sb.images[:].tobytes()
    p = sa.params()
    assert sorted(np.unique(p["augmentation"][p["source_index"] < 4])) == list(range(11))
    assert (p["augmentation"][p["source_index"] >= 4] == 0).all()
    np.testing.assert_array_equal(p["radius"], p["source_index"])
    ident = np.flatnonzero(p["augmentation"] == 0)
    np.testing.assert_array_equal(sa.images[:][ident], imgs[p["source_index"][ident].astype(int)])
    c = augment_store(st.path, tmp_path / "c.zarr", factor=11, seed=10, progress=False)
    assert DatasetStore.open(c.path).images[:].tobytes() != sa.images[:].tobytes()


def test_augment_through_the_measured_detector(tmp_path):
    """--detector: every image of every split is shown by the measured detector (valid pixels only,
    0..1); the identity copies are exactly the detector's display of the stored intensities, and
    the filters act on the pattern before the detector's fixed valid pixels cut it."""
    from factory.msft.detector_response import AG_CLUSTER_DETECTOR as det
    from factory.processing.steps import write_split
    from factory.errors import StoreError

    n, floor = 4, -6.0
    coords = (Coord("row", np.arange(128.0)), Coord("col", np.arange(128.0)))
    yy, xx = np.meshgrid(np.arange(128) - 64.0, np.arange(128) - 64.0, indexing="ij")
    r = np.hypot(yy, xx)
    intensity = np.stack([np.exp(-r / (8 + 4 * k)) * (1.5 + np.cos(r / (2 + k))) + 1e-6 for k in range(n)])
    log01 = np.clip((np.log10(intensity / intensity.max(axis=(1, 2), keepdims=True)) - floor) / -floor, 0, 1)
    st = DatasetStore.create(tmp_path / "net.zarr", kind="msft", n_samples=n, chunk=2, coords=coords,
                             param_names=["radius"], config_hash="net",
                             extra_attrs={"preprocessing": {"name": "scatter", "log_floor": floor}})
    for s, e in st.blocks():
        st.write_block(s, log01[s:e].astype(np.float32), {"radius": np.arange(s, e, dtype=float)})
    write_split(st, np.array([0, 0, 1, 2], np.int8))
    rep = augment_store(st.path, tmp_path / "d.zarr", factor=11, seed=1, detector="ag-clusters", progress=False)
    out = DatasetStore.open(rep.path)
    imgs, p = out.images[:], out.params()
    assert rep.samples == 2 * 11 + 2 and out.meta["augmentation"]["detector"] == "ag-clusters"
    assert out.meta["config"]["detector"] == "ag-clusters"
    mask = det.mask()
    assert (imgs[:, ~mask] == 0).all() and imgs.min() >= 0 and imgs.max() <= 1 + 1e-6
    ident = np.flatnonzero(p["augmentation"] == 0)
    src = p["source_index"][ident].astype(int)
    stored = 10.0 ** (floor * (1.0 - log01[src].astype(np.float32).astype(np.float64)))
    np.testing.assert_allclose(imgs[ident], det.apply(stored), atol=2e-6)
    # the shift filter moves the pattern, not the valid pixels
    shifted = np.flatnonzero(p["augmentation"] == A.FILTER_NAMES.index("shift"))
    assert (imgs[shifted][:, ~mask] == 0).all() and not np.allclose(imgs[shifted], imgs[ident[:len(shifted)]])
    # a source that is not a log-scaled scattering store, or of another size, is refused before writing
    plain = DatasetStore.create(tmp_path / "plain.zarr", kind="msft", n_samples=2, chunk=2, coords=coords,
                                param_names=["radius"], config_hash="p")
    plain.write_block(0, log01[:2].astype(np.float32), {"radius": np.zeros(2)})
    with pytest.raises(StoreError, match="--mode scatter"):
        augment_store(plain.path, tmp_path / "e.zarr", detector="ag-clusters", progress=False)
    with pytest.raises(StoreError, match="unknown detector"):
        augment_store(st.path, tmp_path / "f.zarr", detector="agipd", progress=False)
    assert not (tmp_path / "e.zarr").exists() and not (tmp_path / "f.zarr").exists()
