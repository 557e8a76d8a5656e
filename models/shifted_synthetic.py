"""PMD-like synthetic stores with the five shifted test sets of Table I of
Shvetsov-Shilovski & Lein, PRA 2023 (tests, demos).

Not physics: a cheap stand-in with the same structure as the TDSE stores, so that the
baselines, the transferability table and the explanations can be exercised and timed
without hours of TDSE.  An image is a two-centre interference pattern (fringes
``cos^2(k . R / 2)`` along the molecular axis at angle ``alpha``) under a Gaussian envelope
whose width grows with the vector-potential amplitude ``A0 ~ sqrt(I)`` and whose centre is
pushed along kx by the CEP (with a left-right asymmetry), ATI-like rings that move with the
ponderomotive energy; HeH+ has unequal centres (fringe contrast 0.5) and a shifted
envelope; focal averaging integrates over intensities with the weight of Shvetsov-Shilovski & Lein,
PRA 2023 (eq. 6).  It is turned into a network-ready image like ``pmd2d``: log10(P / max P) clipped at -5, scaled to
0..255, rows = ky, columns = kx.

Sets (``SHIFTS``; the labels ``R``, ``intensity`` (W/cm^2), ``cep``, ``alpha`` (deg),
``molecule`` (0 H2+, 1 HeH+), ``I0``):

- ``unshifted``: R in [1, 8], I in [1, 4] x 10^14, alpha = 0, CEP = 0 (the training set)
- ``focal-averaged``, ``R in [8, 12]``, ``alpha``, ``CEP``, ``HeH+``: the shifted test sets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from factory.processing.description import Pmd2d
from factory.simulators import Coord
from factory.store import DatasetStore

KX_MAX, KY_MAX = 2.5, 1.5
OMEGA = 45.5634 / 800.0
SHIFTS = ("focal-averaged", "R in [8, 12]", "alpha", "CEP", "HeH+")
SLUG = {"focal-averaged": "focal", "R in [8, 12]": "large-R", "alpha": "alpha", "CEP": "cep", "HeH+": "heh"}
PARAMS = ["R", "intensity", "cep", "alpha", "molecule", "I0"]


def _raw(R, I, cep, alpha, molecule, shape):
    h, w = shape
    ky = np.linspace(-KY_MAX, KY_MAX, h)[:, None]
    kx = np.linspace(-KX_MAX, KX_MAX, w)[None, :]
    a0 = np.sqrt(I / 3.50945e16) / OMEGA  # vector-potential amplitude (a.u.)
    c = 0.5 * a0 * np.sin(cep) + (0.25 if molecule else 0.0)
    env = np.exp(-((kx - c) ** 2) / (2 * (0.55 * a0) ** 2) - ky**2 / (2 * 0.45**2))
    env = env * (1.0 + 0.9 * np.sin(cep) * np.tanh(kx / 0.3))  # the CEP's left-right asymmetry
    up = a0**2 / 4.0  # ponderomotive energy: the ATI-like rings (exaggerated spacing) move with I
    env = env * (0.15 + np.cos(np.pi * ((kx**2 + ky**2) / 2.0 + up) / 0.35) ** 8)
    ph = R * (kx * np.cos(np.radians(alpha)) + ky * np.sin(np.radians(alpha)))
    if molecule:
        fr = np.abs(1.0 + 0.5 * np.exp(1j * (ph + 0.6))) ** 2 / 2.25
    else:
        fr = np.cos(ph / 2) ** 2
    return env * (fr + 1e-3)


def _weight(x):
    return (1 / x) * (1 / x + 2) * np.sqrt(np.maximum(1 / x - 1, 0.0))


def pmd_like(R: float, I: float, *, cep: float = 0.0, alpha: float = 0.0, molecule: int = 0, focal: bool = False,
             shape=(64, 128), noise: float = 0.02, rng: np.random.Generator | None = None) -> np.ndarray:
    """One network-ready image (0..255, float32)."""
    rng = rng or np.random.default_rng(0)
    if focal:
        xs = np.arange(1, 11) / 10.0
        wts = _weight(xs)
        wts[-1] = wts[-2] * 0.5  # the weight vanishes at x = 1; keep a little of the peak intensity
        P = sum(wt * _raw(R, I * x, cep, alpha, molecule, shape) for x, wt in zip(xs, wts)) / wts.sum()
    else:
        P = _raw(R, I, cep, alpha, molecule, shape)
    P = P * np.exp(noise * rng.standard_normal(P.shape))
    W = np.maximum(np.log10(P / P.max()), -5.0)
    return ((W + 5.0) / 5.0 * 255.0).astype(np.float32)


def sample_params(kind: str, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    R = rng.uniform(8.0, 12.0, n) if kind == "R in [8, 12]" else rng.uniform(1.0, 8.0, n)
    I = rng.uniform(1e14, 4e14, n)
    return {"R": R, "intensity": I, "I0": I.copy(),
            "cep": rng.uniform(0, 2 * np.pi, n) if kind == "CEP" else np.zeros(n),
            "alpha": rng.uniform(0, 180.0, n) if kind == "alpha" else np.zeros(n),
            "molecule": np.ones(n) if kind == "HeH+" else np.zeros(n)}


def make_pmd_store(path: str | Path, kind: str = "unshifted", *, n: int = 64, shape=(64, 128), seed: int = 0,
                   split: tuple[float, float, float] | None = None, chunk: int = 32, noise: float = 0.02,
                   overwrite: bool = True) -> DatasetStore:
    """A processed-like store of ``n`` PMD-like images of set ``kind`` (``unshifted`` or one of ``SHIFTS``)."""
    if kind != "unshifted" and kind not in SHIFTS:
        raise ValueError(f"kind {kind!r}: unshifted or one of {SHIFTS}")
    rng = np.random.default_rng([seed, (["unshifted", *SHIFTS]).index(kind)])
    p = sample_params(kind, n, rng)
    images = np.stack([pmd_like(p["R"][i], p["intensity"][i], cep=p["cep"][i], alpha=p["alpha"][i],
                                molecule=int(p["molecule"][i]), focal=kind == "focal-averaged", shape=shape,
                                noise=noise, rng=rng) for i in range(n)])
    h, w = shape
    coords = (Coord("ky", np.linspace(-KY_MAX, KY_MAX, h), "a.u."), Coord("kx", np.linspace(-KX_MAX, KX_MAX, w), "a.u."))
    # images made directly as the pmd2d preprocessing of a (KY_MAX, KX_MAX) window would give them
    pre = Pmd2d(out_shape=(h, w), ky_range=(-KY_MAX, KY_MAX), kx_range=(-KX_MAX, KX_MAX), synthetic="pmd-like")
    arrays = None if split is None else {"split": (_codes(split, n, seed), {})}
    st = DatasetStore.create(path, kind="synthetic-pmd", n_samples=n, chunk=min(chunk, n), coords=coords,
                             param_names=PARAMS, config={"kind": kind, "n": n, "seed": seed, "shape": list(shape)},
                             config_hash=f"pmd-like-{SLUG.get(kind, kind)}-{n}-{seed}-{h}x{w}", seed=seed,
                             extra_attrs={"preprocessing": pre.to_dict(), "synthetic_set": kind}, sample_arrays=arrays,
                             overwrite=overwrite)
    for s, e in st.blocks():
        st.write_block(s, images[s:e], {k: v[s:e] for k, v in p.items()})
    return st


def make_table_stores(folder: str | Path, *, n_train: int = 400, n_test: int = 100, n_shift: int = 160,
                      shape=(64, 128), seed: int = 0) -> dict[str, object]:
    """The unshifted training store (80/20 train/validation), an unshifted test store and the five
    shifted stores (60 % for transfer learning, 40 % held out: split 0.5/0.1/0.4)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train = make_pmd_store(folder / "train.zarr", n=n_train, shape=shape, seed=seed, split=(0.8, 0.2, 0.0))
    test = make_pmd_store(folder / "test.zarr", n=n_test, shape=shape, seed=seed + 1, split=(0.0, 0.0, 1.0))
    shifted = {k: str(make_pmd_store(folder / f"shift-{SLUG[k]}.zarr", k, n=n_shift, shape=shape, seed=seed,
                                     split=(0.5, 0.1, 0.4)).path) for k in SHIFTS}
    return {"train": str(train.path), "test": str(test.path), "shifted": shifted}


__all__ = ["PARAMS", "SHIFTS", "SLUG", "make_local_evidence_store", "make_pmd_store", "make_table_stores", "pmd_like", "sample_params"]


def make_local_evidence_store(path: str | Path, *, n: int = 480, shape=(32, 64), seed: int = 0,
                              split: tuple[float, float, float] = (0.6, 0.4, 0.0), chunk: int = 32,
                              overwrite: bool = True) -> DatasetStore:
    """Images whose R evidence sits in one known patch (a check of the explanation methods).

    Everywhere a strong smooth random texture that does not depend on the labels; in the patch
    (rows H/4..3H/4, columns 5W/8..7W/8) fringes whose period grows with ``R`` in [1, 8] and
    whose contrast grows with ``intensity``.  A classifier must look at the patch, so an
    occlusion map should find it and a random region of the same area should not.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng([seed, 41])
    h, w = shape
    R = rng.uniform(1.0, 8.0, n)
    I = rng.uniform(1e14, 4e14, n)
    r0, r1, c0, c1 = h // 4, 3 * h // 4, 5 * w // 8, 7 * w // 8
    x = np.arange(c1 - c0)[None, :]
    images = np.empty((n, h, w), dtype=np.float32)
    for i in range(n):
        tex = gaussian_filter(rng.standard_normal(shape), 1.5)
        img = 120.0 + 60.0 * tex / tex.std()
        fr = np.cos(np.pi * x / (2.0 + R[i])) ** 2
        img[r0:r1, c0:c1] = 60.0 + (60.0 + 30.0 * I[i] / 1e14) * fr + 5.0 * rng.standard_normal((r1 - r0, c1 - c0))
        images[i] = np.clip(img, 0.0, 255.0)
    coords = (Coord("ky", np.linspace(-1, 1, h), "a.u."), Coord("kx", np.linspace(-1, 1, w), "a.u."))
    st = DatasetStore.create(path, kind="synthetic-local-evidence", n_samples=n, chunk=min(chunk, n), coords=coords,
                             param_names=["R", "intensity"], config={"kind": "local-evidence", "n": n, "seed": seed},
                             config_hash=f"local-evidence-{n}-{seed}-{h}x{w}", seed=seed,
                             extra_attrs={"preprocessing": {"name": "synthetic-local-evidence", "out_shape": [h, w]},
                                          "evidence_patch": [r0, r1, c0, c1]},
                             sample_arrays={"split": (_codes(split, n, seed), {})}, overwrite=overwrite)
    for s, e in st.blocks():
        st.write_block(s, images[s:e], {"R": R[s:e], "intensity": I[s:e]})
    return st


def _codes(split, n: int, seed: int) -> np.ndarray:
    """Seeded split codes (0 train, 1 validation, 2 test) drawn with the given fractions."""
    return np.random.default_rng([seed, 99]).choice(3, size=n, p=np.asarray(split) / np.sum(split)).astype(np.int8)
