"""Small synthetic network-ready stores with learnable labels (tests, benchmarks, demos).

``disks``: 2D images (0..255) of a ring whose radius is set by ``R`` in [1, 8] and whose
brightness by ``I`` in [1, 4], plus noise; ``profiles``: 1D curves (sample, L) of a Gaussian
pair whose separation is set by ``R``.  Both are written through DatasetStore like a
processed store, with a ``preprocessing`` description and an optional ``split`` array.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from factory.simulators import Coord
from factory.store import DatasetStore


def disk_images(R: np.ndarray, I: np.ndarray, shape=(32, 64), noise: float = 5.0, rng=None) -> np.ndarray:
    rng = rng or np.random.default_rng(0)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy - (h - 1) / 2) / (h / 2), (xx - (w - 1) / 2) / (w / 2))[None]
    radius = (0.1 + 0.1 * np.asarray(R, dtype=np.float64))[:, None, None]
    img = (60 * np.asarray(I)[:, None, None]) * np.exp(-((r - radius) ** 2) / 0.005)
    img = img + rng.normal(0.0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.float32)


def profiles(R: np.ndarray, length: int = 256, noise: float = 0.01, rng=None) -> np.ndarray:
    rng = rng or np.random.default_rng(0)
    x = np.linspace(-1, 1, length)[None]
    d = (0.08 * np.asarray(R, dtype=np.float64))[:, None]
    y = np.exp(-((x - d) ** 2) / 0.01) + np.exp(-((x + d) ** 2) / 0.01)
    return (y + rng.normal(0, noise, y.shape)).astype(np.float32)


def make_store(path: str | Path, *, kind: str = "disks", n: int = 64, chunk: int = 8, shape=(32, 64), seed: int = 0,
               R_range=(1.0, 8.0), preprocessing: dict | None = None, split: np.ndarray | None = None,
               overwrite: bool = True) -> DatasetStore:
    """A store of ``n`` synthetic samples with labels ``R`` and ``I`` (``kind``: disks or profiles)."""
    rng = np.random.default_rng(seed)
    R = rng.uniform(*R_range, n)
    I = rng.uniform(1.0, 4.0, n)
    if kind == "disks":
        images = disk_images(R, I, shape, rng=rng)
        coords = (Coord("ky", np.linspace(-1, 1, shape[0]), "a.u."), Coord("kx", np.linspace(-1, 1, shape[1]), "a.u."))
    elif kind == "profiles":
        length = shape[-1]
        images = profiles(R, length, rng=rng)
        coords = (Coord("kx", np.linspace(-1, 1, length), "a.u."),)
    else:
        raise ValueError(f"kind {kind!r}: disks or profiles")
    pre = preprocessing if preprocessing is not None else {"mode": f"synthetic-{kind}", "shape": list(images.shape[1:])}
    store = DatasetStore.create(
        path, kind=f"synthetic-{kind}", n_samples=n, chunk=chunk, coords=coords, param_names=["R", "I"],
        config={"kind": kind, "n": n, "seed": seed, "R_range": list(R_range)}, config_hash=f"synthetic-{kind}-{n}-{seed}-{R_range}",
        seed=seed, extra_attrs={"preprocessing": pre}, overwrite=overwrite,
        sample_arrays=None if split is None else {"split": (np.asarray(split, dtype=np.int8), {})},
    )
    for s, e in store.blocks():
        store.write_block(s, images[s:e], {"R": R[s:e], "I": I[s:e]})
    return store
