"""Densities of a batch of particles computed on a backend's device (nothing but labels travel).

:func:`density_batch` evaluates the per-voxel formula of :func:`factory.msft.shapes.density`
(the signed-distance ramp, clipped to [0, 1]) on the full grid with the backend's array
module: on a GPU the voxelisation then costs less than copying densities to it.  On the CPU
:func:`factory.msft.shapes.density`, which skips the blocks far from the surface, is faster.
"""

from __future__ import annotations

import numpy as np

from ..backend import Backend
from ..geometry.quaternions import normalize, rotation_matrix
from .polyhedra import SHAPES, ShapeOptions, polyhedron
from .shapes import check_fits


def density_batch(
    backend: Backend,
    shape: str,
    radii_nm,
    quats,
    *,
    n: int,
    voxel_nm: float,
    options: ShapeOptions = ShapeOptions(),
    dtype: str = "float32",
):
    """Antialiased densities ``(B, n, n, n)`` ``[b, z, y, x]`` of one shape for radii and orientations."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}")
    xp = backend.xp
    radii = np.atleast_1d(np.asarray(radii_nm, dtype=np.float64))
    quats = normalize(np.atleast_2d(quats))
    if len(radii) != len(quats):
        raise ValueError(f"{len(radii)} radii but {len(quats)} orientations")
    for r, q in zip(radii, quats):
        check_fits(shape, float(r), q, n, voxel_nm, options)
    c = backend.asarray(np.arange(n) - (n - 1) / 2.0, dtype)  # voxel units
    zz, yy, xx = c[:, None, None], c[None, :, None], c[None, None, :]
    out = backend.empty((len(radii), n, n, n), dtype)
    with backend.activated():
        for i, (r, q) in enumerate(zip(radii, quats)):
            rv = r / voxel_nm
            if shape == "sphere":
                rr = xp.sqrt(zz * zz + yy * yy + xx * xx)
                ones = xp.abs(zz) + xp.abs(yy) + xp.abs(xx)
                width = xp.where(rr > 1e-12, ones / xp.clip(rr, 1e-12, None), xp.ones_like(rr))
                s = (rr - rv) / width
            else:
                poly = polyhedron(shape, options)
                rot = rotation_matrix(q)
                s = _plane_max(xp, poly.A @ rot.T, poly.b * rv, zz, yy, xx)
                for nA, nb in poly.notches:  # inside a notch is outside the particle
                    s = xp.maximum(s, -_plane_max(xp, nA @ rot.T, nb * rv, zz, yy, xx))
            out[i] = xp.clip(0.5 - s, 0.0, 1.0)
    return out


def _plane_max(xp, A: np.ndarray, b: np.ndarray, zz, yy, xx):
    """max_i (A_i . r - b_i) / |A_i|_1 on the grid (broadcast z, y, x)."""
    w = np.abs(A).sum(axis=1)
    An, bn = A / w[:, None], b / w
    s = None
    for (ax, ay, az), bi in zip(An, bn):
        term = (zz * float(az) - float(bi)) + yy * float(ay) + xx * float(ax)
        s = term if s is None else xp.maximum(s, term)
    return s


__all__ = ["density_batch"]
