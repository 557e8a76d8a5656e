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

    The radius error is ``|r_pred - r_true| / (hi - lo)``, each quaternion component's
    ``|q_pred - q_true| / span`` (``component_span``), as in
    Stielow et al., MLST 2020, App. C.

    Parameters
    ----------
    radius_pred, radius_true : array_like
        Predicted and true radii, (N,), nm.
    quat_pred, quat_true : array_like
        Predicted and true scalar-first quaternions, (N, 4).
    radius_range : tuple of float, optional
        ``(lo, hi)`` of the radii of the data set, nm: the radius error's normalisation.
    group : str, optional
        The point group of the fundamental domain (``"I"``, ``"O"``, ...).

    Returns
    -------
    dict of str to numpy.ndarray
        ``"per_param"``: (N, 5) relative errors of radius, w, x, y, z; ``"mean"`` and
        ``"max"``: (N,) over the five.

    Raises
    ------
    ValueError
        ``radius_range`` is not ``(low, high)`` with ``low < high``.
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
