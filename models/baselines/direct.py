"""Direct comparison: the label of the nearest reference image, by mean squared error
(:class:`DirectMSE`) or by SIFT key-point matches (:class:`DirectSIFT`).

Comparisons of many images are cut into blocks that run on the executor they are given
(in this process by default); the references go to the workers once.
"""

from __future__ import annotations

import numpy as np

from factory.compute import Executor
from factory.errors import ConfigError

from ..features import SIFT_COLS, SIFT_DIM


# -- direct comparison ----------------------------------------------------------------------------
def _nearest_mse_block(refs: np.ndarray, ref_sq: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Index of the nearest reference (squared Euclidean = MSE x pixels) for each test row."""
    t = test.reshape(len(test), -1).astype(np.float32)
    out = np.empty(len(t), dtype=np.int64)
    step = max(1, int(2e7 // max(1, len(refs))))  # bounded (test block x references) distance matrix
    for s in range(0, len(t), step):
        tb = t[s:s + step]
        d = ref_sq[None, :] - 2.0 * (tb @ refs.T)
        out[s:s + step] = np.argmin(d, axis=1)
    return out


class DirectMSE:
    """The nearest reference image by mean squared error gives every label."""

    def fit(self, images: np.ndarray, labels: dict[str, np.ndarray]) -> "DirectMSE":
        self.refs = np.asarray(images, dtype=np.float32).reshape(len(images), -1)
        self.ref_sq = np.einsum("ij,ij->i", self.refs, self.refs, dtype=np.float64).astype(np.float32)
        self.labels = {k: np.asarray(v, dtype=np.float64) for k, v in labels.items()}
        return self

    @property
    def n_references(self) -> int:
        return len(self.refs)

    def work_s(self, images) -> float:
        """Estimated CPU seconds of comparing ``images`` with every reference."""
        return len(images) * self.refs.size * 2e-10

    def nearest(self, images: np.ndarray, executor: Executor | None = None) -> np.ndarray:
        """Index of the nearest reference of each image; blocks of images on ``executor`` (default: here)."""
        images = np.asarray(images, dtype=np.float32)
        blocks = max(1, min(16, len(images) // 16))
        if blocks == 1 or executor is None:
            return _nearest_mse_block(self.refs, self.ref_sq, images)
        parts = np.array_split(np.arange(len(images)), blocks)
        out = executor.map(_nearest_mse_block, [(images[p],) for p in parts], shared=(self.refs, self.ref_sq),
                           name="factory.compare")
        return np.concatenate(out)

    def predict(self, images: np.ndarray, executor: Executor | None = None) -> dict[str, np.ndarray]:
        j = self.nearest(images, executor)
        return {k: v[j] for k, v in self.labels.items()}


def _sift_scores(t: np.ndarray, ref: np.ndarray, ref_sq: np.ndarray, ref_pos: np.ndarray, starts: np.ndarray,
                 owner: np.ndarray, n_ref: int, max_distance: float, ratio: float,
                 tolerance: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(matches per reference, summed matched distance per reference, nearest distance per test key point).

    ``t``: (k, 131) test key points; ``ref`` (M, 128) reference descriptors, ``ref_pos`` (M, 2)
    their positions, grouped by reference (``starts``, ``owner``).  With ``tolerance``, only key
    points within that fraction of the image height and width of each other can match.
    """
    td = t[:, :SIFT_DIM].astype(np.float32)
    d2 = (np.einsum("ij,ij->i", td, td)[:, None] + ref_sq[None, :] - 2.0 * (td @ ref.T))
    d = np.sqrt(np.maximum(d2, 0.0))
    if tolerance is not None:
        far = (np.abs(t[:, None, SIFT_DIM] - ref_pos[None, :, 0]) > tolerance) | \
              (np.abs(t[:, None, SIFT_DIM + 1] - ref_pos[None, :, 1]) > tolerance)
        d = np.where(far, np.inf, d)
    nonempty = np.flatnonzero(np.diff(np.append(starts, ref.shape[0])) > 0)
    s = starts[nonempty]
    d1 = np.full((len(t), n_ref), np.inf, dtype=np.float32)
    d2nd = np.full((len(t), n_ref), np.inf, dtype=np.float32)
    if len(s):
        d1[:, nonempty] = np.minimum.reduceat(d, s, axis=1)
        masked = np.where(d <= d1[:, owner], np.inf, d)
        d2nd[:, nonempty] = np.minimum.reduceat(masked, s, axis=1)
    match = (d1 < max_distance) & (d1 < ratio * d2nd)
    nearest = d.min(1) if d.shape[1] else np.full(len(t), np.inf)
    return match.sum(0), np.where(match, d1, 0.0).sum(0), nearest


def _sift_predict_block(ref: np.ndarray, ref_sq: np.ndarray, ref_pos: np.ndarray, starts: np.ndarray,
                        owner: np.ndarray, n_ref: int, max_distance: float, ratio: float, tolerance: float | None,
                        descs: list[np.ndarray]) -> np.ndarray:
    """Index of the best reference per test image (-1 for an image without key points)."""
    out = np.full(len(descs), -1, dtype=np.int64)
    for i, t in enumerate(descs):
        if len(t) == 0:
            continue
        cnt, dsum, _ = _sift_scores(t, ref, ref_sq, ref_pos, starts, owner, n_ref, max_distance, ratio, tolerance)
        mean_d = np.where(cnt > 0, dsum / np.maximum(cnt, 1), np.inf)
        best = int(np.lexsort((mean_d, -cnt))[0])  # most matches, then the smallest mean matched distance
        if cnt[best] == 0:  # nothing matches anywhere: count nearest key points without thresholds
            cnt2, dsum2, _ = _sift_scores(t, ref, ref_sq, ref_pos, starts, owner, n_ref, np.inf, 1.0, tolerance)
            mean2 = np.where(cnt2 > 0, dsum2 / np.maximum(cnt2, 1), np.inf)
            best = int(np.lexsort((mean2, -cnt2))[0])
        out[i] = best
    return out


class DirectSIFT:
    """The reference with the most SIFT matches gives every label.

    ``max_distance``: descriptor distance below which two key points match (None: the median
    distance from a training key point to its nearest one in another training image);
    ``ratio``: Lowe's ratio test inside each reference; ``tolerance``: only key points within
    this fraction of the image size of each other can match (the images share one momentum
    frame, so this is the usual geometric verification of SIFT matching; None: descriptors only).
    """

    def __init__(self, max_distance: float | None = None, ratio: float = 0.8, tolerance: float | None = 0.05,
                 seed: int = 0):
        self.max_distance = max_distance
        self.ratio = ratio
        self.tolerance = tolerance
        self.seed = seed

    def fit(self, keypoints: list[np.ndarray], labels: dict[str, np.ndarray]) -> "DirectSIFT":
        counts = np.array([len(d) for d in keypoints])
        if counts.sum() == 0:
            raise ConfigError("SIFT found no key points in any reference image; direct comparison by SIFT needs "
                              "structured images (check the preprocessing, or lower sift_c_dog)")
        allk = np.concatenate([np.asarray(d, dtype=np.float32).reshape(-1, SIFT_COLS) for d in keypoints])
        self.ref = np.ascontiguousarray(allk[:, :SIFT_DIM])
        self.ref_pos = np.ascontiguousarray(allk[:, SIFT_DIM:SIFT_DIM + 2])
        self.ref_sq = np.einsum("ij,ij->i", self.ref, self.ref).astype(np.float32)
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.owner = np.repeat(np.arange(len(keypoints)), counts)
        self.n_ref = len(keypoints)
        self.labels = {k: np.asarray(v, dtype=np.float64) for k, v in labels.items()}
        self.fallback = {k: float(np.mean(v)) for k, v in self.labels.items()}
        if self.max_distance is None:
            self.max_distance = self._auto_distance(keypoints)
        return self

    def _auto_distance(self, keypoints: list[np.ndarray]) -> float:
        """The median distance from a key point to its nearest key point in another training image."""
        rng = np.random.default_rng(self.seed)
        have = [i for i, d in enumerate(keypoints) if len(d)]
        pick = rng.choice(have, min(len(have), 50), replace=False)
        near = []
        for i in pick:
            keep = self.owner != i
            m = int(keep.sum())
            _, _, nd = _sift_scores(keypoints[i], self.ref[keep], self.ref_sq[keep], self.ref_pos[keep],
                                    np.array([0]), np.zeros(m, dtype=np.int64), 1, np.inf, 1.0, self.tolerance)
            near.append(nd)
        near = np.concatenate(near) if near else np.zeros(0)
        near = near[np.isfinite(near)]
        return float(np.median(near)) if len(near) else float("inf")

    def _args(self):
        return (self.ref, self.ref_sq, self.ref_pos, self.starts, self.owner, self.n_ref, float(self.max_distance),
                self.ratio, self.tolerance)

    @property
    def n_references(self) -> int:
        return self.n_ref

    def work_s(self, keypoints) -> float:
        """Estimated CPU seconds of matching ``keypoints`` against every reference."""
        return sum(len(d) for d in keypoints) * self.ref.size * 1e-9

    def nearest(self, keypoints: list[np.ndarray], executor: Executor | None = None) -> np.ndarray:
        """Index of the best reference per image (-1: no key points); blocks on ``executor`` (default: here)."""
        args = self._args()
        blocks = max(1, min(16, len(keypoints) // 8))
        if blocks == 1 or executor is None:
            return _sift_predict_block(*args, keypoints)
        parts = np.array_split(np.arange(len(keypoints)), blocks)
        out = executor.map(_sift_predict_block, [([keypoints[i] for i in p],) for p in parts], shared=args,
                           name="factory.compare")
        return np.concatenate(out)

    def predict(self, keypoints: list[np.ndarray], executor: Executor | None = None) -> dict[str, np.ndarray]:
        j = self.nearest(keypoints, executor)
        self.last_no_keypoints = int((j < 0).sum())
        return {k: np.where(j >= 0, v[np.maximum(j, 0)], self.fallback[k]) for k, v in self.labels.items()}

    def prediction_notes(self) -> dict[str, int]:
        return {"no_keypoints": self.last_no_keypoints}


__all__ = ["DirectMSE", "DirectSIFT"]
