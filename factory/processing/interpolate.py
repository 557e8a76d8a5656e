"""Irregular-grid interpolation in a parameter space (the (R, I0) plane of Shvetsov-Shilovski & Lein, PRA 2023).

An image at a new parameter point is a weighted sum of computed images.  The weights are
computed once for all targets and applied chunk-wise to the image stack:

- ``linear`` (default): Delaunay triangulation of the source points (scipy.spatial), the
  barycentric coordinates of each target inside its simplex -> d+1 non-zero weights.  Exact
  at the source points and for functions linear in the parameters.
- ``rbf``: scipy.interpolate.RBFInterpolator (thin-plate spline + linear polynomial) applied
  to the identity, giving a dense (M, N) weight matrix; also exact at the source points and
  for linear functions.

Parameters are scaled to [0, 1] per axis (by the source range) before triangulating, so
axes with different units (a.u. and W/cm^2) do not distort the simplices.  Targets outside
the convex hull of the sources are never extrapolated: they are refused, or (``outside=
"flag"``) reported through the ``inside`` mask so the caller can drop them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import RBFInterpolator
from scipy.spatial import Delaunay, QhullError

METHODS = ("linear", "rbf")


@dataclass(frozen=True)
class InterpolationWeights:
    """out[m] = sum_j weights[m, j] * source[index[m, j]] for the targets that are inside."""

    index: np.ndarray    # (M, K) int source indices
    weights: np.ndarray  # (M, K) float64
    inside: np.ndarray   # (M,) bool

    def apply(self, source: np.ndarray, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """Interpolate a stack (N, ...) for targets ``rows``; outside targets give NaN."""
        idx, w = self.index[rows], self.weights[rows]
        out = np.einsum("mk,mk...->m...", w, np.asarray(source, dtype=np.float64)[idx])
        out[~self.inside[rows]] = np.nan
        return out

    def sources_for(self, rows: slice) -> np.ndarray:
        """The source indices a block of targets needs (to read only those images)."""
        return np.unique(self.index[rows][self.weights[rows] != 0])


class OutsideHullError(ValueError):
    pass


def _scale(points: np.ndarray, lo: np.ndarray, span: np.ndarray) -> np.ndarray:
    return (points - lo) / span


def check_axes(axes: list[str]) -> None:
    """Refuse (ValueError) axes a triangulation cannot span: fewer than two, or one twice."""
    if len(axes) < 2:
        raise ValueError(f"interpolation axes {axes}: give at least two labels (e.g. R,intensity); "
                         "the hull of one label is an interval, not a triangulation")
    twice = sorted({a for a in axes if axes.count(a) > 1})
    if twice:
        raise ValueError(f"interpolation axes {axes}: {', '.join(twice)} given more than once")


def _delaunay(points: np.ndarray) -> Delaunay:
    """The triangulation of (N, d) points; degenerate points are a ValueError, not QhullError."""
    if points.shape[1] < 2:
        raise ValueError(f"interpolation needs at least two axes, got {points.shape[1]}")
    try:
        return Delaunay(points)
    except QhullError:
        raise ValueError(f"the {len(points)} source points do not span a {points.shape[1]}-dimensional hull "
                         "in these axes (all on one line or plane: is one label a function of another?)") from None


def interpolation_weights(
    sources: np.ndarray, targets: np.ndarray, method: str = "linear", outside: str = "refuse"
) -> InterpolationWeights:
    """Weights from source points (N, d) to target points (M, d)."""
    sources = np.asarray(sources, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if method not in METHODS:
        raise ValueError(f"interpolation method {method!r}: choose one of {', '.join(METHODS)}")
    if outside not in ("refuse", "flag"):
        raise ValueError(f"outside={outside!r}: choose 'refuse' or 'flag'")
    if sources.ndim != 2 or targets.ndim != 2 or sources.shape[1] != targets.shape[1]:
        raise ValueError(f"points must be (N, d) and (M, d), got {sources.shape} and {targets.shape}")
    n, d = sources.shape
    if n < d + 1:
        raise ValueError(f"{n} source points cannot span a {d}-dimensional hull")
    lo = sources.min(axis=0)
    span = np.where(np.ptp(sources, axis=0) > 0, np.ptp(sources, axis=0), 1.0)
    s, t = _scale(sources, lo, span), _scale(targets, lo, span)
    tri = _delaunay(s)
    simplex = tri.find_simplex(t, tol=1e-12)
    inside = simplex >= 0
    if not inside.all() and outside == "refuse":
        bad = np.flatnonzero(~inside)
        raise OutsideHullError(
            f"{len(bad)} of {len(t)} target points lie outside the convex hull of the sources "
            f"(first: {targets[bad[0]].tolist()}); interpolation never extrapolates"
        )
    if method == "linear":
        idx = np.zeros((len(t), d + 1), dtype=np.int64)
        w = np.zeros((len(t), d + 1))
        ok = np.flatnonzero(inside)
        trans = tri.transform[simplex[ok]]
        bary = np.einsum("mij,mj->mi", trans[:, :d], t[ok] - trans[:, d])
        w[ok] = np.column_stack([bary, 1.0 - bary.sum(axis=1)])
        idx[ok] = tri.simplices[simplex[ok]]
        return InterpolationWeights(idx, w, inside)
    rbf = RBFInterpolator(s, np.eye(n), kernel="thin_plate_spline", degree=1)
    w = np.zeros((len(t), n))
    w[inside] = rbf(t[inside])
    idx = np.broadcast_to(np.arange(n), (len(t), n)).copy()
    return InterpolationWeights(idx, w, inside)


def sample_inside_hull(sources: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """``m`` points uniform in the convex hull of ``sources`` (rejection from the bounding box)."""
    sources = np.asarray(sources, dtype=np.float64)
    lo, hi = sources.min(axis=0), sources.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    tri = _delaunay((sources - lo) / span)
    out = []
    while sum(len(o) for o in out) < m:
        cand = rng.uniform(0, 1, size=(max(2 * m, 64), sources.shape[1]))
        out.append(cand[tri.find_simplex(cand) >= 0])
    return np.concatenate(out)[:m] * span + lo
