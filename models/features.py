"""Hand-made image features for the classical baselines (Shvetsov-Shilovski & Lein, PRA 2023, Sec. V).

- :func:`hog_features`: histograms of oriented gradients (``skimage.feature.hog``), 9
  orientation bins, cells of ``cell`` pixels (the paper: 16 x 32 on its 128 x 256 images;
  ``cell=None`` scales that to any image: an 8 x 8 grid of cells), 2 x 2 cells per block
  (L2-Hys), as MATLAB's ``extractHOGFeatures`` which the paper used.
- :func:`sift_descriptors`: SIFT key points (``skimage.feature.SIFT``): 128 descriptor values,
  position and scale each; an image without key points gives an empty array, never an error.
- :class:`BagOfWords`: a visual vocabulary (``MiniBatchKMeans``) turning an image's SIFT
  descriptors into a normalised word histogram (the SVM + SIFT baseline).
- :func:`store_features`: features of selected samples of a store, one piece of work per
  store chunk, on the executor it is given (in-process by default; :func:`work_s` estimates
  the CPU seconds, for :func:`factory.compute.resolve_executor` to decide whether Ray pays).
  Each piece reads its own chunk from the store, so no images travel through the driver.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from factory.compute import Executor, LocalExecutor
from factory.errors import ConfigError

SIFT_DIM = 128
SIFT_COLS = SIFT_DIM + 3  # descriptor, row / H, column / W, log2 scale


def hog_cell(shape: tuple[int, int], cell: tuple[int, int] | None = None) -> tuple[int, int]:
    """The HOG cell for images of ``shape``: ``cell`` or an 8 x 8 grid (16 x 32 px at 128 x 256)."""
    h, w = int(shape[0]), int(shape[1])
    c = tuple(int(v) for v in cell) if cell else (max(1, h // 8), max(1, w // 8))
    if c[0] < 1 or c[1] < 1 or h < 2 * c[0] or w < 2 * c[1]:
        raise ConfigError(f"HOG cell {c[0]} x {c[1]} px does not fit twice into {h} x {w} images "
                          "(2 x 2 cells per block); choose a smaller cell")
    return c


def hog_features(images: np.ndarray, cell: tuple[int, int] | None = None, orientations: int = 9,
                 block: tuple[int, int] = (2, 2)) -> np.ndarray:
    """(N, F) float32 HOG feature vectors of (N, H, W) images."""
    from skimage.feature import hog

    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    c = hog_cell(images.shape[1:], cell)
    out = [hog(im.astype(np.float64), orientations=orientations, pixels_per_cell=c, cells_per_block=block,
               block_norm="L2-Hys", feature_vector=True) for im in images]
    return np.asarray(out, dtype=np.float32)


def sift_descriptors(image: np.ndarray, upsampling: int = 2, c_dog: float | None = None,
                     max_keypoints: int | None = 256) -> np.ndarray:
    """(k, 131) float32 SIFT key points of one image (scaled to 0..1 first): the 128 descriptor
    values (0..255), then the position (row / H, column / W) and log2 of the scale; (0, 131)
    without key points.

    ``max_keypoints`` keeps the key points of the largest scales (the most stable ones) when
    an image has more.
    """
    from skimage.feature import SIFT

    im = np.asarray(image, dtype=np.float64)
    lo, hi = float(im.min()), float(im.max())
    if not hi > lo:
        return np.zeros((0, SIFT_COLS), dtype=np.float32)
    im = (im - lo) / (hi - lo)
    kw: dict[str, Any] = {"upsampling": upsampling}
    if c_dog is not None:
        kw["c_dog"] = c_dog
    sift = SIFT(**kw)
    try:
        sift.detect_and_extract(im)
    except RuntimeError:  # "SIFT found no features"
        return np.zeros((0, SIFT_COLS), dtype=np.float32)
    d = np.asarray(sift.descriptors, dtype=np.float32)
    pos = np.asarray(sift.keypoints, dtype=np.float32) / np.array(im.shape, dtype=np.float32)
    sig = np.log2(np.asarray(sift.sigmas, dtype=np.float32))[:, None]
    out = np.hstack([d, pos, sig])
    if max_keypoints is not None and len(out) > max_keypoints:
        keep = np.argsort(-np.asarray(sift.sigmas), kind="stable")[:max_keypoints]
        out = out[np.sort(keep)]
    return out


def sift_all(images: np.ndarray, **options) -> list[np.ndarray]:
    return [sift_descriptors(im, **options) for im in np.asarray(images)]


@dataclass
class BagOfWords:
    """A visual vocabulary of ``words`` SIFT cluster centres; ``transform`` gives L1-normalised histograms."""

    words: int = 64
    seed: int = 0
    max_descriptors: int = 20000
    kmeans: Any = None

    def fit(self, descriptors: list[np.ndarray]) -> "BagOfWords":
        from sklearn.cluster import MiniBatchKMeans

        d = np.concatenate([np.asarray(x, dtype=np.float32)[:, :SIFT_DIM] for x in descriptors if len(x)] or
                           [np.zeros((0, SIFT_DIM), np.float32)])
        if len(d) < 2:
            raise ConfigError(f"SIFT found {len(d)} key points in the training images; the bag of visual words "
                              "needs more (images too smooth or too small for SIFT)")
        if len(d) > self.max_descriptors:
            d = d[np.random.default_rng(self.seed).choice(len(d), self.max_descriptors, replace=False)]
        k = int(min(self.words, len(d)))
        self.kmeans = MiniBatchKMeans(n_clusters=k, random_state=self.seed, n_init=3, batch_size=2048).fit(d)
        return self

    def transform(self, descriptors: list[np.ndarray]) -> np.ndarray:
        k = self.kmeans.n_clusters
        out = np.zeros((len(descriptors), k + 1), dtype=np.float32)
        for i, d in enumerate(descriptors):
            if len(d):
                words = self.kmeans.predict(np.asarray(d, dtype=np.float32)[:, :SIFT_DIM])
                out[i, :k] = np.bincount(words, minlength=k) / len(d)
            out[i, k] = np.log1p(len(d))  # how many key points (few key points is itself informative)
        return out


# -- features of store samples, chunk by chunk ---------------------------------------------------
def _chunk_task(path: str, kind: str, options: dict[str, Any], chunk_start: int, chunk_stop: int,
                want: np.ndarray) -> tuple[np.ndarray, Any, float]:
    from factory.store import DatasetStore

    t0 = time.perf_counter()
    st = DatasetStore.open(path)
    block = np.asarray(st.images[chunk_start:chunk_stop])[np.asarray(want) - chunk_start]
    extract = EXTRACTORS.get(kind)
    if extract is None:
        raise ConfigError(f"feature kind {kind!r}: {', '.join(EXTRACTORS)}")
    return np.asarray(want), extract(block, options), time.perf_counter() - t0


EXTRACTORS: dict[str, Any] = {
    "hog": lambda block, options: hog_features(block, **options),
    "sift": lambda block, options: sift_all(block, **options),
    "pixels": lambda block, options: block.astype(np.float32),
}

# rough CPU seconds per 128 x 256 image, to decide whether spreading the work pays
COST_S = {"hog": 0.006, "sift": 0.2, "pixels": 0.0005}


def work_s(kind: str, n_images: int, image_shape: tuple[int, ...]) -> float:
    """Estimated CPU seconds to extract ``kind`` features of ``n_images`` images."""
    return n_images * COST_S.get(kind, 0.01) * float(np.prod(image_shape)) / (128 * 256)


def store_features(path: str | Path, indices: np.ndarray, kind: str, options: dict[str, Any] | None = None,
                   executor: Executor | None = None) -> tuple[Any, float]:
    """Features of ``indices`` of the store at ``path`` in that order, and the CPU seconds spent.

    ``kind``: ``hog`` -> (N, F) array; ``sift`` -> list of (k_i, 131) key-point arrays; ``pixels`` -> (N, H, W).
    One piece of work per store chunk, on ``executor`` (default: in this process).
    """
    from factory.store import DatasetStore

    st = DatasetStore.open(path)
    idx = np.asarray(indices, dtype=np.int64)
    by_chunk: dict[int, list[int]] = {}
    for i in idx:
        by_chunk.setdefault(int(i) // st.chunk, []).append(int(i))
    jobs = [(c * st.chunk, min((c + 1) * st.chunk, st.n_samples), np.unique(v)) for c, v in sorted(by_chunk.items())]
    executor = executor if executor is not None and len(jobs) > 1 else LocalExecutor()
    results = executor.map(_chunk_task, jobs, shared=(str(st.path), kind, dict(options or {})), name="factory.features")
    where: dict[int, tuple[int, int]] = {}
    for r, (want, _, _) in enumerate(results):
        for j, i in enumerate(want):
            where[int(i)] = (r, j)
    cpu_s = float(sum(r[2] for r in results))
    if kind == "sift":
        return [results[where[int(i)][0]][1][where[int(i)][1]] for i in idx], cpu_s
    return np.stack([results[where[int(i)][0]][1][where[int(i)][1]] for i in idx]), cpu_s


__all__ = ["COST_S", "EXTRACTORS", "BagOfWords", "SIFT_COLS", "SIFT_DIM", "hog_cell", "hog_features", "sift_all",
           "sift_descriptors", "store_features", "work_s"]
