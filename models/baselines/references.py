"""More references for the direct comparisons: images interpolated from the training samples
(leak-free: only training samples are interpolated)."""

from __future__ import annotations

import numpy as np

from factory.errors import StoreError
from factory.store import DatasetStore

from .imagesets import ImageSet


def interpolated_references(train: ImageSet, images: np.ndarray, n: int, axes: tuple[str, ...],
                            seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``n`` references interpolated (Delaunay-linear) from the training samples in the ``axes`` plane."""
    from factory.processing.interpolate import interpolation_weights, sample_inside_hull

    st = DatasetStore.open(train.path)
    missing = [a for a in axes if a not in st.param_names]
    if missing:
        raise StoreError(f"{st.path}: interpolation axes {missing} are not labels of the training store "
                         f"({st.param_names}); set interpolate_axes")
    p = st.params(sorted(set(axes) | set(train.labels)))
    pts = np.column_stack([p[a][train.indices] for a in axes])
    rng = np.random.default_rng([seed, 7])
    targets = sample_inside_hull(pts, n, rng)
    try:
        w = interpolation_weights(pts, targets)
    except ValueError as exc:
        raise StoreError(f"interpolating references: {exc}") from None
    out = np.einsum("mk,mk...->m...", w.weights, images.astype(np.float64)[w.index]).astype(np.float32)
    labels = {}
    for k in train.labels:
        labels[k] = targets[:, axes.index(k)] if k in axes else np.einsum("mk,mk->m", w.weights, train.labels[k][w.index])
    return out, labels


__all__ = ["interpolated_references"]
