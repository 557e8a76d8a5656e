"""Particle shapes as antialiased density volumes on a cubic voxel grid.

Conventions
- The grid has ``n`` voxels per side of ``voxel_nm``; voxel centres sit at
  ``(i - (n - 1) / 2) * voxel_nm`` so the particle centre is the box centre.  Arrays are
  indexed ``[z, y, x]``; the beam travels along +z (increasing first index).
- ``radius_nm`` is the circumradius (largest centre-to-vertex distance) of every polyhedron
  and the radius of the sphere; for the Marks decahedron it is that of its convex hull
  (the Ino decahedron it is notched from).
- ``quat`` (scalar first ``w, x, y, z``) is the active rotation from the body frame to the
  lab frame.  Body frames follow scipy's ``Rotation.create_group`` axes, so an icosahedron
  with orientation ``q`` and ``q s`` (``s`` in group ``I``) gives the same density.
- Antialiasing by a signed-distance ramp: for half-space ``n . r <= h`` the distance is
  scaled by the voxel's width across that plane, ``|n_x| + |n_y| + |n_z|`` voxels, and the
  fill fraction is ``clip(1/2 - s, 0, 1)`` with ``s`` the largest scaled distance over the
  faces (the partial volume of a voxel cut by one plane, to first order).  Spheres use the
  same ramp with the local normal.  Values lie in [0, 1] (the fill fraction).

Shapes: sphere, icosahedron, cube, octahedron, truncated_octahedron, cuboctahedron,
decahedron (pentagonal bipyramid of five tetrahedra), ino_decahedron (equatorial (100)
truncation), marks_decahedron (Ino plus re-entrant notches at the five twin boundaries),
truncated_twinned_tetrahedron (a (111) platelet with a central twin plane; see
:func:`factory.msft.polyhedra._ttt_planes`).

The truncated twinned tetrahedron follows the method authors' density volumes (the "Truncated
Twinned Tetrahedron" of their public 21-polyhedra training set, point group D6h there; Barke et
al., Nat. Commun. 6, 6187 (2015) identify the shape in two measured patterns): a hexagonal
platelet bounded by two (111) faces at z = +-t and, on each of the six sides, a convex ridge of
two {111} facets tilted by +-19.47 deg (normals at arccos(1/3) = 70.53 deg from the plate
normal) that meet in the twin plane z = 0.  The six ridges are equidistant, so the twin-plane
section is a regular hexagon whose corners carry the circumradius.  Measured on the authors'
least-stretched example (192^3, stretch 1.004): t = 0.241 Rc and side-facet distance 0.80-0.82 Rc
(regular-hexagon value sqrt(6)/3 = 0.816); hence the default ``ttt_half_thickness = 0.24``.
"""

from __future__ import annotations

import numpy as np

from ..geometry.quaternions import normalize, rotation_matrix
from .polyhedra import (DECAHEDRON_EQUILATERAL_ASPECT, DECAHEDRON_FCC_ASPECT, PHI, SHAPES, SYMMETRY, Polyhedron,
                        ShapeOptions, polyhedron)


def box_half_width(n: int, voxel_nm: float) -> float:
    """Half the box edge: the particle's extent along x, y, z must stay within this (+ half a voxel)."""
    return n * voxel_nm / 2.0


def extent_nm(shape: str, radius_nm: float, quat=None, options: ShapeOptions = ShapeOptions()) -> np.ndarray:
    """Largest |x|, |y|, |z| (nm) reached by the rotated particle."""
    if shape == "sphere":
        return np.full(3, float(radius_nm))
    poly = polyhedron(shape, options)
    rot = rotation_matrix([1.0, 0, 0, 0] if quat is None else quat)
    return np.abs(poly.vertices @ rot.T).max(axis=0) * radius_nm


def check_fits(shape: str, radius_nm: float, quat, n: int, voxel_nm: float, options: ShapeOptions = ShapeOptions()) -> None:
    """ValueError naming the overshoot when the rotated particle does not fit in the box.

    A vertex may poke out by at most half a voxel (its volume there is negligible; the
    paper's R = 160 nm icosahedron in a 318.75 nm box does so by < 0.7 nm).
    """
    if not radius_nm > 0:
        raise ValueError(f"radius = {radius_nm} nm: must be > 0")
    ext = extent_nm(shape, radius_nm, quat, options)
    limit = box_half_width(n, voxel_nm) + 0.5 * voxel_nm
    if ext.max() > limit:
        axis = "xyz"[int(np.argmax(ext))]
        raise ValueError(
            f"particle larger than the box: {shape} of radius {radius_nm:g} nm reaches "
            f"{ext.max():.2f} nm from the centre along {axis}, but the box half-width is "
            f"{box_half_width(n, voxel_nm):.2f} nm ({n} voxels x {voxel_nm:g} nm / 2); "
            "use more voxels, larger voxels or a smaller radius"
        )


_BLOCK = 4  # voxels per block edge for the coarse inside/outside classification


def signed_distance(shape: str, points: np.ndarray, radius_vox: float, quat, options: ShapeOptions = ShapeOptions()) -> np.ndarray:
    """Scaled signed distance ``s`` (voxels) at ``points`` (M, 3) in (x, y, z) voxel units.

    Fill fraction = ``clip(1/2 - s, 0, 1)``.  For polyhedra ``s`` is the largest of the
    face distances, each divided by the voxel's width ``|n|_1`` across that face; it is
    1-Lipschitz in the max-norm (what the block classification in :func:`density` uses).
    """
    if shape == "sphere":
        rr = np.linalg.norm(points, axis=1)
        safe = np.maximum(rr, 1e-12)
        width = np.where(rr > 1e-12, np.abs(points).sum(axis=1) / safe, 1.0)
        return (rr - radius_vox) / width
    poly = polyhedron(shape, options)
    rot = rotation_matrix(quat)
    s = _plane_max(points, poly.A @ rot.T, poly.b * radius_vox)
    for nA, nb in poly.notches:  # inside a notch (a convex wedge) is outside the particle
        np.maximum(s, -_plane_max(points, nA @ rot.T, nb * radius_vox), out=s)
    return s


def _block_signed_distance(shape, centres, offsets, radius_vox, quat, options) -> np.ndarray:
    """``signed_distance`` at ``centres[k] + offsets[m]``, shape (K, M), float32.

    A plane's distance is affine, so it is its value at the block centre plus a per-offset
    term: one broadcast add and max per face instead of a (K M, 3) x (3, faces) product.
    """
    if shape == "sphere":
        pts = (centres[:, None, :] + offsets[None, :, :]).reshape(-1, 3)
        return signed_distance(shape, pts, radius_vox, quat, options).astype(np.float32).reshape(len(centres), -1)
    poly = polyhedron(shape, options)
    rot = rotation_matrix(quat)

    def plane_max(A, b):
        w = np.abs(A).sum(axis=1)
        An = A / w[:, None]
        c = (centres @ An.T - b / w).astype(np.float32)  # (K, faces)
        o = (offsets @ An.T).astype(np.float32)  # (M, faces)
        s = c[:, 0, None] + o[None, :, 0]
        for i in range(1, len(b)):
            np.maximum(s, c[:, i, None] + o[None, :, i], out=s)
        return s

    s = plane_max(poly.A @ rot.T, poly.b * radius_vox)
    for nA, nb in poly.notches:
        np.maximum(s, -plane_max(nA @ rot.T, nb * radius_vox), out=s)
    return s


def _plane_max(points: np.ndarray, A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """max_i (A_i . r - b_i) / |A_i|_1 at ``points`` (M, 3)."""
    w = np.abs(A).sum(axis=1)
    return ((points @ (A / w[:, None]).T) - b / w).max(axis=1)


def density(
    shape: str,
    radius_nm: float,
    quat=(1.0, 0.0, 0.0, 0.0),
    *,
    n: int,
    voxel_nm: float,
    options: ShapeOptions = ShapeOptions(),
    dtype=np.float32,
) -> np.ndarray:
    """Antialiased fill fraction of the rotated particle on an ``(n, n, n)`` grid ``[z, y, x]``.

    The signed distance is first evaluated at the centres of 4 x 4 x 4 voxel blocks; blocks
    farther than their half-width from the surface are filled with 0 or 1 at once (``s`` is
    1-Lipschitz in the max-norm, 1.6 for the sphere's ramp), and only blocks that straddle
    the surface are evaluated voxel by voxel.  The result equals the per-voxel formula (to float32 rounding).

    Parameters
    ----------
    shape : str
        One of ``SHAPES`` (``"sphere"``, ``"icosahedron"``, ``"cube"``, ...).
    radius_nm : float
        Circumradius of the particle (radius of the sphere), nm.
    quat : array_like, optional
        Orientation: scalar-first quaternion ``(w, x, y, z)``, normalised here.
    n : int
        Voxels per side of the cubic box (>= 2).
    voxel_nm : float
        Voxel edge, nm; the box is ``n * voxel_nm`` wide, centred on the particle.
    options : ShapeOptions, optional
        Shape parameters beyond size and orientation (decahedra only).
    dtype : numpy dtype, optional
        The result's dtype.

    Returns
    -------
    numpy.ndarray
        ``(n, n, n)`` fill fraction in [0, 1], indexed ``[z, y, x]`` (the input of
        ``scatter``).

    Raises
    ------
    ValueError
        An unknown shape, ``n`` or ``voxel_nm`` out of range, or a particle that does not fit
        in the box.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}")
    if int(n) != n or n < 2:
        raise ValueError(f"n = {n}: need an integer >= 2 voxels per side")
    if not voxel_nm > 0:
        raise ValueError(f"voxel_nm = {voxel_nm}: must be > 0")
    quat = normalize(quat)
    check_fits(shape, radius_nm, quat, n, voxel_nm, options)
    B = _BLOCK
    nb = -(-n // B)
    r_vox = radius_nm / voxel_nm
    c = (n - 1) / 2.0
    # blocks covering the particle's bounding box (+ one voxel for the ramp), per axis z, y, x
    ext = extent_nm(shape, radius_nm, quat, options)[::-1] / voxel_nm + 1.0
    lo = [max(0, int(np.floor((c - e) / B))) for e in ext]
    hi = [min(nb, int(np.floor((c + e) / B)) + 1) for e in ext]
    cen = [np.arange(lo[k], hi[k]) * B + (B - 1) / 2.0 - c for k in range(3)]
    cz, cy, cx = np.meshgrid(*cen, indexing="ij")
    centres = np.stack([cx.ravel(), cy.ravel(), cz.ravel()], axis=1)  # (x, y, z) voxel units
    s_c = signed_distance(shape, centres, r_vox, quat, options)
    lip = 1.6 if shape == "sphere" else 1.0  # Lipschitz bound of s in the max-norm (sphere: safe)
    margin = 0.5 + lip * (B - 1) / 2.0
    inside = s_c < -margin
    edge = np.flatnonzero(~inside & (s_c <= margin))
    blocks = np.zeros((len(centres), B, B, B), dtype=dtype)
    blocks[inside] = 1.0
    if len(edge):
        off = np.arange(B) - (B - 1) / 2.0
        oz, oy, ox = np.meshgrid(off, off, off, indexing="ij")
        offsets = np.stack([ox.ravel(), oy.ravel(), oz.ravel()], axis=1)  # (B^3, 3), block order (z, y, x)
        for start in range(0, len(edge), 8192):
            sel = edge[start : start + 8192]
            s = _block_signed_distance(shape, centres[sel], offsets, r_vox, quat, options)
            np.clip(0.5 - s, 0.0, 1.0, out=s)
            blocks[sel] = s.reshape(len(sel), B, B, B)
    nbz, nby, nbx = (hi[k] - lo[k] for k in range(3))
    sub = blocks.reshape(nbz, nby, nbx, B, B, B).transpose(0, 3, 1, 4, 2, 5).reshape(nbz * B, nby * B, nbx * B)
    out = np.zeros((n, n, n), dtype=dtype)
    z0, y0, x0 = (lo[k] * B for k in range(3))
    z1, y1, x1 = (min(n, hi[k] * B) for k in range(3))
    out[z0:z1, y0:y1, x0:x1] = sub[: z1 - z0, : y1 - y0, : x1 - x0]
    return out


def density_direct(shape: str, radius_nm: float, quat=(1.0, 0.0, 0.0, 0.0), *, n: int, voxel_nm: float,
                   options: ShapeOptions = ShapeOptions(), dtype=np.float32) -> np.ndarray:
    """The per-voxel formula on every voxel (slow; the reference for :func:`density`)."""
    quat = normalize(quat)
    check_fits(shape, radius_nm, quat, n, voxel_nm, options)
    g = np.arange(n) - (n - 1) / 2.0
    zz, yy, xx = np.meshgrid(g, g, g, indexing="ij")
    pts = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)
    s = signed_distance(shape, pts, radius_nm / voxel_nm, quat, options)
    return np.clip(0.5 - s, 0.0, 1.0).reshape(n, n, n).astype(dtype)


def user_density(arr, *, return_zmax: bool = False):
    """Validate a user-supplied density: a finite real non-negative 3D array ``[z, y, x]``.

    With ``return_zmax`` also returns the per-slice maximum (the engine's bounding-box
    profile along the beam), computed in the same two passes as the checks.
    """
    a = np.asarray(arr)
    if a.ndim != 3:
        raise ValueError(f"density must be a 3D array [z, y, x]; got {a.ndim}D with shape {a.shape}")
    if np.iscomplexobj(a):
        raise ValueError("density must be real (the material enters through absorption_length or delta/beta)")
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"density must be numeric; got dtype {a.dtype}")
    if a.size == 0:
        raise ValueError(f"density is empty: shape {a.shape}")
    flat = a.reshape(a.shape[0], -1)
    zmin, zmax = flat.min(axis=1), flat.max(axis=1)  # NaN propagates into min, Inf into max
    if not (np.all(np.isfinite(zmin)) and np.all(np.isfinite(zmax))):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"density holds {bad} NaN/Inf values; replace them (e.g. np.nan_to_num)")
    if zmin.min() < 0:
        raise ValueError(f"density must be >= 0 (a fill fraction / relative density); min is {zmin.min():g}")
    return (a, zmax) if return_zmax else a


__all__ = ["DECAHEDRON_EQUILATERAL_ASPECT", "DECAHEDRON_FCC_ASPECT", "PHI", "SHAPES", "SYMMETRY", "Polyhedron",
           "ShapeOptions", "box_half_width", "check_fits", "density", "density_direct", "extent_nm", "polyhedron",
           "signed_distance", "user_density"]
