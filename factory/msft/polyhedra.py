"""The particle shapes' catalogue and their body-frame polyhedra (circumradius 1).

``SHAPES`` names the shapes, ``SYMMETRY`` their rotation groups (scipy names),
:class:`ShapeOptions` the parameters beyond size and orientation; :func:`polyhedron` builds the
half-spaces ``A r <= b`` (and the Marks notches) of each shape in its body frame.  The
conventions and the shapes are described in :mod:`factory.msft.shapes`, which voxelises them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

SHAPES = (
    "sphere",
    "icosahedron",
    "cube",
    "octahedron",
    "truncated_octahedron",
    "cuboctahedron",
    "decahedron",
    "ino_decahedron",
    "marks_decahedron",
    "truncated_twinned_tetrahedron",
)

# rotation group of each shape's body frame (scipy names); None: every rotation (sphere)
SYMMETRY = {
    "sphere": None,
    "icosahedron": "I",
    "cube": "O",
    "octahedron": "O",
    "truncated_octahedron": "O",
    "cuboctahedron": "O",
    "decahedron": "D5",
    "ino_decahedron": "D5",
    "marks_decahedron": "D5",
    "truncated_twinned_tetrahedron": "D6",
}

PHI = (1.0 + 5.0**0.5) / 2.0
# decahedron half-height / equatorial vertex radius (ShapeOptions.decahedron_aspect)
DECAHEDRON_FCC_ASPECT = float(1.0 / np.sqrt(3.0))  # the default: five tetrahedra closing the pentagon
DECAHEDRON_EQUILATERAL_ASPECT = float(np.sqrt(4.0 * np.sin(np.radians(36.0)) ** 2 - 1.0))  # = 1/phi: all edges equal


@dataclass(frozen=True)
class ShapeOptions:
    """Shape parameters beyond size and orientation (decahedra only).

    ino_truncation: depth of the (100) facets cut at the equator, as a fraction of the
        inradius of the equatorial pentagon (0 = the plain decahedron).
    marks_notch_depth: depth of the re-entrant notches at the twin boundaries, as a fraction
        of the waist's vertex radius.
    marks_notch_angle_deg: full opening angle of each V-shaped notch (a groove parallel to
        the 5-fold axis).
    decahedron_aspect: half-height / equatorial vertex radius of the (plain, Ino and Marks)
        decahedron before truncation.  Default 1/sqrt(3) = 0.577: five tetrahedra closing the
        pentagon (the fcc value is 0.572, five regular tetrahedra leave a 7.35 deg gap).  The
        method authors' training decahedra are the equilateral pentagonal bipyramid (all edges
        equal, Johnson solid J13), aspect 1/phi = 0.618 (:data:`DECAHEDRON_EQUILATERAL_ASPECT`),
        7 % taller: V/Rc^3 = 0.980 against 0.915 here.
    ttt_half_thickness: half the thickness of the truncated twinned tetrahedron (the distance
        of its (111) faces from the twin plane) as a fraction of the circumradius, in (0, 0.7)
        (above 12 / (7 sqrt 6) = 0.6999 the top corners would set the circumradius).
    """

    ino_truncation: float = 0.25
    marks_notch_depth: float = 0.15
    marks_notch_angle_deg: float = 100.0
    decahedron_aspect: float = DECAHEDRON_FCC_ASPECT
    ttt_half_thickness: float = 0.24


@dataclass(frozen=True)
class Polyhedron:
    """A convex body ``A r <= b`` (unit rows) of circumradius 1, minus convex notches."""

    A: np.ndarray
    b: np.ndarray
    vertices: np.ndarray
    notches: tuple[tuple[np.ndarray, np.ndarray], ...] = field(default=())


def _perms(points) -> np.ndarray:
    import itertools

    out = set()
    for p in points:
        for perm in itertools.permutations(p):
            out.add(tuple(float(c) for c in perm))
    return np.array(sorted(out))


def _signs(points) -> np.ndarray:
    import itertools

    out = set()
    for p in points:
        for s in itertools.product((1.0, -1.0), repeat=3):
            out.add(tuple(float(c * si) for c, si in zip(p, s)))
    return np.array(sorted(out))


def _hull_planes(vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import ConvexHull

    eq = ConvexHull(vertices).equations  # n . r + d <= 0, unit n
    A, b = eq[:, :3], -eq[:, 3]
    _, idx = np.unique(np.round(np.hstack([A, b[:, None]]), 9), axis=0, return_index=True)
    return A[np.sort(idx)], b[np.sort(idx)]


def _halfspace_vertices(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.spatial import HalfspaceIntersection

    hs = HalfspaceIntersection(np.hstack([A, -b[:, None]]), np.zeros(3))
    v = hs.intersections
    return v[np.unique(np.round(v, 9), axis=0, return_index=True)[1]]


def _decahedron_vertices(aspect: float = DECAHEDRON_FCC_ASPECT) -> np.ndarray:
    # five tetrahedra sharing the 5-fold axis edge (z), equatorial vertices at 72 k degrees
    # (scipy's D5 has a 2-fold axis along x); half-height / equatorial radius = aspect
    # (default 1/sqrt(3); the method authors' decahedra are the equilateral 1/phi)
    if not 0.0 < aspect <= 2.0:
        raise ValueError(f"decahedron_aspect = {aspect}: must be in (0, 2]")
    ang = np.radians(72.0 * np.arange(5))
    eq = np.stack([np.cos(ang), np.sin(ang), np.zeros(5)], axis=1)
    apex = np.array([[0.0, 0.0, aspect], [0.0, 0.0, -aspect]])
    return np.vstack([eq, apex])


def _ttt_planes(t: float) -> tuple[np.ndarray, np.ndarray]:
    """Half-spaces of the truncated twinned tetrahedron with circumradius 1 (6-fold axis z).

    Twelve {111} side facets, normals (sqrt(8)/3 u_k, +-1/3) with u_k at 60 k degrees (scipy's
    D6 2-fold axis x is one ridge's direction), at distance sqrt(6)/3: the ridges meet in the
    twin plane z = 0 along a regular hexagon of apothem sqrt(3)/2 and corner radius 1.  Two
    (111) faces z = +-t cut the tops.  The cross-section at height z is a regular hexagon of
    apothem (sqrt(6) - |z|) / sqrt(8).
    """
    if not 0.0 < t < 12.0 / (7.0 * 6.0**0.5):
        raise ValueError(f"ttt_half_thickness = {t}: must be in (0, 0.6999)")
    ang = np.radians(60.0 * np.arange(6))
    side = [np.array([8.0**0.5 / 3 * np.cos(a), 8.0**0.5 / 3 * np.sin(a), sz / 3.0]) for a in ang for sz in (1.0, -1.0)]
    A = np.vstack([np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]), np.stack(side)])
    b = np.concatenate([[t, t], np.full(12, 6.0**0.5 / 3.0)])
    return A, b


def _scaled(A, b, vertices, notches=()) -> Polyhedron:
    r = np.linalg.norm(vertices, axis=1).max()
    notches = tuple((nA, nb / r) for nA, nb in notches)
    for arr in (A, b):
        arr.setflags(write=False)
    return Polyhedron(A, b / r, vertices / r, notches)


@functools.cache
def polyhedron(shape: str, options: ShapeOptions = ShapeOptions()) -> Polyhedron:
    """The body-frame polyhedron of ``shape`` with circumradius 1."""
    if shape == "icosahedron":
        base = np.array([[0.0, s1, s2 * PHI] for s1 in (1, -1) for s2 in (1, -1)])
        verts = np.vstack([np.roll(base, k, axis=1) for k in range(3)])
    elif shape == "cube":
        verts = _signs([(1, 1, 1)])
    elif shape == "octahedron":
        verts = _perms([(1, 0, 0), (-1, 0, 0)])
    elif shape == "cuboctahedron":
        verts = _perms(_signs([(1, 1, 0)]))
    elif shape == "truncated_octahedron":
        verts = _perms(_signs([(0, 1, 2)]))
    elif shape in ("decahedron", "ino_decahedron", "marks_decahedron"):
        verts = _decahedron_vertices(float(options.decahedron_aspect))
    elif shape == "truncated_twinned_tetrahedron":
        A, b = _ttt_planes(float(options.ttt_half_thickness))
        return _scaled(A, b, _halfspace_vertices(A, b))
    else:
        raise ValueError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}")
    A, b = _hull_planes(verts)
    notches: list[tuple[np.ndarray, np.ndarray]] = []
    if shape in ("ino_decahedron", "marks_decahedron"):
        t = options.ino_truncation
        if not 0.0 <= t < 1.0:
            raise ValueError(f"ino_truncation = {t}: must be in [0, 1)")
        ang = np.radians(36.0 + 72.0 * np.arange(5))  # towards the equatorial edge midpoints
        normals = np.stack([np.cos(ang), np.sin(ang), np.zeros(5)], axis=1)
        d = np.cos(np.radians(36.0)) * (1.0 - t)
        A = np.vstack([A, normals])
        b = np.concatenate([b, np.full(5, d)])
        verts = _halfspace_vertices(A, b)
    if shape == "marks_decahedron":
        depth, half = options.marks_notch_depth, np.radians(options.marks_notch_angle_deg / 2)
        if not 0.0 <= depth < 1.0:
            raise ValueError(f"marks_notch_depth = {depth}: must be in [0, 1)")
        if not 0.0 < half < np.pi / 2:
            raise ValueError(f"marks_notch_angle_deg = {options.marks_notch_angle_deg}: must be in (0, 180)")
        # radius of the waist (z = 0) along the twin-boundary directions (72 k degrees)
        au = A @ np.array([1.0, 0.0, 0.0])
        rv = float(np.min(b[au > 1e-12] / au[au > 1e-12]))
        for k in range(5):
            a = np.radians(72.0 * k)
            u = np.array([np.cos(a), np.sin(a), 0.0])
            t_ = np.array([-np.sin(a), np.cos(a), 0.0])
            p = u * rv * (1.0 - depth)  # the groove's bottom line (parallel to z) passes here
            # wedge {v = r - p : v . n_pm >= 0}; as half-spaces -n . r <= -n . p
            n_plus = u * np.sin(half) - t_ * np.cos(half)
            n_minus = u * np.sin(half) + t_ * np.cos(half)
            nA = -np.stack([n_plus, n_minus])
            nb = np.array([-n_plus @ p, -n_minus @ p])
            notches.append((nA, nb))
    return _scaled(A, b, verts, notches)
