"""Relative errors of (radius, q0..q3) predictions, normalised as in Stielow et al., MLST 2020, App. C.

Each of the five parameters' absolute error is divided by its allowed range: the radius
range of the data set, and for the quaternion components the span of the fundamental
domain in that component (:func:`factory.geometry.symmetry.component_span`).  Per image,
the mean and the maximum of the five relative errors are reported.
"""

from __future__ import annotations

import numpy as np

from .quaternions import canonical
from .symmetry import component_span


def relative_errors(
    radius_pred,
    quat_pred,
    radius_true,
    quat_true,
    radius_range: tuple[float, float] = (30.0, 160.0),
    group: str = "I",
) -> dict[str, np.ndarray]:
    """Per-image relative errors: ``{"per_param": (N, 5), "mean": (N,), "max": (N,)}``.

    Quaternions are scalar first and are compared after sign canonicalisation (``w >= 0``);
    project them into the fundamental domain first if the prediction may leave it.
    """
    rp = np.atleast_1d(np.asarray(radius_pred, dtype=np.float64))
    rt = np.atleast_1d(np.asarray(radius_true, dtype=np.float64))
    qp = canonical(np.atleast_2d(quat_pred))
    qt = canonical(np.atleast_2d(quat_true))
    lo, hi = radius_range
    if not hi > lo:
        raise ValueError(f"radius_range = {radius_range}: expected (low, high) with low < high")
    span = component_span(group)
    per = np.column_stack([np.abs(rp - rt) / (hi - lo), np.abs(qp - qt) / span])
    return {"per_param": per, "mean": per.mean(axis=1), "max": per.max(axis=1)}
