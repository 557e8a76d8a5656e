"""Point-group symmetry of particle orientations: groups, fundamental domain, sampling, spans.

A particle whose body-frame shape is invariant under the rotation group ``G`` looks the
same with orientation ``q`` and with ``q s`` for every ``s`` in ``G`` (``s`` acts first, in
the body frame).  The *fundamental domain* is the set of orientations closer to the
identity than to any other group element: ``|w(q)| >= |w(q s)|`` for all ``s`` (``w`` the
scalar part, i.e. the smallest rotation angle).  For the icosahedral group ``I`` (60
rotations) it is a dodecahedron in Rodrigues space ``rho = (x, y, z) / w`` (Frank 1986;
Stielow et al., MLST 2020, App. A); its faces lie at ``tan(pi/10)`` along the twelve 5-fold axes.

Groups come from :meth:`scipy.spatial.transform.Rotation.create_group` (``"I"``, ``"O"``,
``"D5"``, ...), so the body-frame shapes in :mod:`factory.msft.shapes` are built in scipy's
axis convention: icosahedron vertices at the cyclic permutations of ``(0, +-1, +-phi)``,
cube faces normal to x, y, z, the decahedron's 5-fold axis along z with a 2-fold axis
along x.  All quaternions are scalar first ``(w, x, y, z)``.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.spatial.transform import Rotation

from .quaternions import canonical, from_rotation, multiply, normalize, rotation_angle

# A tie between the identity and another group element (a point on the domain's boundary)
# is resolved in favour of the identity, so that projection is idempotent.
_TIE_TOL = 1e-9


@functools.cache
def symmetry_group(name: str = "I") -> np.ndarray:
    """The group's elements as canonical scalar-first quaternions, shape (order, 4), identity first."""
    if name in ("C1", "1", "none"):
        return np.array([[1.0, 0.0, 0.0, 0.0]])
    try:
        rot = Rotation.create_group(name)
    except (ValueError, NotImplementedError) as exc:
        raise ValueError(f"unknown symmetry group {name!r}: {exc}") from None
    quats = from_rotation(rot)
    order = np.argsort(-np.abs(quats[:, 0]), kind="stable")  # identity (|w| = 1) first
    quats = quats[order]
    quats.setflags(write=False)
    return quats


def icosahedral_group() -> np.ndarray:
    """The 60 rotations of the icosahedral group ``I`` as (60, 4) scalar-first quaternions."""
    return symmetry_group("I")


def equivalent_orientations(q, group: str = "I") -> np.ndarray:
    """All orientations ``q s`` (s in the group) of the same particle: shape (..., order, 4)."""
    q = normalize(q)
    g = symmetry_group(group)
    return canonical(multiply(q[..., None, :], g))


def project_to_fundamental(q, group: str = "I") -> np.ndarray:
    """The equivalent orientation ``q s`` with the smallest rotation angle (canonical, ``w >= 0``).

    Applies all group rotations and keeps the one closest to the identity (Stielow et al., MLST 2020, App. A).
    Idempotent: an orientation already in the domain is returned unchanged (ties on the
    boundary go to the identity).  Works on (4,) or (N, 4) arrays.

    Parameters
    ----------
    q : array_like
        Scalar-first quaternion(s) ``(w, x, y, z)``, shape (4,) or (N, 4); normalised here.
    group : str, optional
        The point group: ``"I"`` (icosahedral), ``"O"`` (octahedral), ``"T"``, ``"Dn"``,
        ``"Cn"`` (scipy's names), or ``"C1"`` for none.

    Returns
    -------
    numpy.ndarray
        The projected unit quaternion(s), same shape as ``q``, ``w >= 0``.

    Raises
    ------
    ValueError
        An unknown group.
    """
    q = normalize(q)
    flat = q.reshape(-1, 4)
    g = symmetry_group(group)
    # scalar part of q s = q . (s_w, -s_x, -s_y, -s_z)
    w = np.abs(flat @ (g * np.array([1.0, -1.0, -1.0, -1.0])).T)
    best = np.argmax(w, axis=1)
    keep = w[:, 0] >= w[np.arange(len(flat)), best] - _TIE_TOL  # identity is g[0]
    best = np.where(keep, 0, best)
    out = canonical(multiply(flat, g[best]))
    return out.reshape(q.shape)


def in_fundamental_domain(q, group: str = "I", tol: float = 1e-9) -> np.ndarray:
    """True where ``q`` (up to sign) lies in the fundamental domain."""
    flat = normalize(q).reshape(-1, 4)
    g = symmetry_group(group)
    w = np.abs(flat @ (g * np.array([1.0, -1.0, -1.0, -1.0])).T)
    inside = w[:, 0] >= w.max(axis=1) - tol
    return inside.reshape(np.shape(q)[:-1])


def sample_fundamental(rng: np.random.Generator, n: int | None = None, group: str = "I") -> np.ndarray:
    """Orientations uniform (Haar measure) inside the fundamental domain, scalar first.

    A uniform random rotation projected into the domain is uniform within it: right
    multiplication by a group element preserves the Haar measure and maps the domain's
    copies onto each other.  ``n=None`` returns one (4,) quaternion.

    Parameters
    ----------
    rng : numpy.random.Generator
        The source of randomness.
    n : int, optional
        Number of orientations; None for a single one.
    group : str, optional
        The point group (``"I"``, ``"O"``, ... as in ``project_to_fundamental``).

    Returns
    -------
    numpy.ndarray
        Scalar-first unit quaternions ``(w, x, y, z)``: shape (n, 4), or (4,) for ``n=None``.
    """
    count = 1 if n is None else int(n)
    rot = Rotation.random(count, rng)  # positional: random_state (old scipy) or rng
    q = project_to_fundamental(from_rotation(rot), group)
    return q[0] if n is None else q


def are_equivalent(a, b, group: str = "I", tol: float = 1e-6) -> np.ndarray:
    """True where ``b = a s`` for some group element ``s`` (up to quaternion sign)."""
    a = normalize(a)
    b = normalize(b)
    eq = equivalent_orientations(a, group)  # (..., order, 4)
    dots = np.abs(np.einsum("...gk,...k->...g", eq, b))
    return np.max(dots, axis=-1) >= 1.0 - tol


# --- the domain as a polytope in Rodrigues space ---------------------------------------------


@functools.cache
def rodrigues_halfspaces(group: str = "I") -> tuple[np.ndarray, np.ndarray]:
    """(A, b) with the fundamental domain = {rho : A rho <= b}, ``rho = (x, y, z) / w``.

    ``|w(q s)| <= |w(q)|`` with ``w(q s) = w (s_w - rho . s_v)`` gives the two inequalities
    ``-/+ rho . s_v <= 1 -/+ s_w`` for every non-identity ``s``.
    """
    g = symmetry_group(group)[1:]
    rows, rhs = [], []
    for s in g:
        sw, sv = s[0], s[1:]
        rows += [-sv, sv]
        rhs += [1.0 - sw, 1.0 + sw]
    A = np.array(rows)
    b = np.array(rhs)
    # drop near-duplicate and non-binding (pi rotations give b = 1, both signs) rows by normal
    key = np.round(np.hstack([A / b[:, None]]), 9)
    _, idx = np.unique(key, axis=0, return_index=True)
    A, b = A[np.sort(idx)], b[np.sort(idx)]
    A.setflags(write=False)
    b.setflags(write=False)
    return A, b


@functools.cache
def domain_vertices(group: str = "I") -> np.ndarray:
    """Vertices of the fundamental domain in Rodrigues space, shape (V, 3)."""
    from scipy.spatial import HalfspaceIntersection

    A, b = rodrigues_halfspaces(group)
    hs = HalfspaceIntersection(np.hstack([A, -b[:, None]]), np.zeros(3))
    v = hs.intersections
    v = v[np.unique(np.round(v, 9), axis=0, return_index=True)[1]]
    return v


def domain_max_angle(group: str = "I") -> float:
    """The largest rotation angle (radians) inside the fundamental domain (at its vertices)."""
    r = np.linalg.norm(domain_vertices(group), axis=1).max()
    return float(2.0 * np.arctan(r))


@functools.cache
def _domain_spans(group: str) -> tuple[float, float, float, float]:
    from scipy.optimize import minimize

    A, b = rodrigues_halfspaces(group)
    w_min = 1.0 / np.sqrt(1.0 + np.max(np.sum(domain_vertices(group) ** 2, axis=1)))
    spans = [1.0 - w_min]
    cons = [{"type": "ineq", "fun": lambda r: b - A @ r, "jac": lambda r: -A}]
    for axis in range(3):
        # x_axis = rho_axis / sqrt(1 + |rho|^2) is quasi-concave on the convex domain, so the
        # local maximum SLSQP finds is global; start from the vertex with the largest rho_axis.
        start = domain_vertices(group)[np.argmax(domain_vertices(group)[:, axis])] * 0.99

        def neg(r, axis=axis):
            return -r[axis] / np.sqrt(1.0 + r @ r)

        res = minimize(neg, start, constraints=cons, method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
        spans.append(2.0 * float(-res.fun))  # the domain is symmetric under rho -> -rho
    return tuple(spans)


def component_span(group: str = "I") -> np.ndarray:
    """Span (max - min) of each quaternion component (w, x, y, z) over the fundamental domain.

    The normalisation of the per-component orientation errors in Stielow et al., MLST 2020, App. C
    (canonical sign ``w >= 0``; the domain is symmetric, so x, y, z span ``[-m, m]``).

    Parameters
    ----------
    group : str, optional
        The point group (``"I"``, ``"O"``, ... as in ``project_to_fundamental``).

    Returns
    -------
    numpy.ndarray
        (4,) spans of w, x, y, z (dimensionless).
    """
    return np.array(_domain_spans(group))


def component_range(group: str = "I") -> np.ndarray:
    """(4, 2) array of [min, max] of each component (w, x, y, z) over the domain."""
    s = component_span(group)
    return np.array([[1.0 - s[0], 1.0], [-s[1] / 2, s[1] / 2], [-s[2] / 2, s[2] / 2], [-s[3] / 2, s[3] / 2]])


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + 5**0.5) * i
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


@functools.cache
def _max_angle_by_direction(group: str, n_dirs: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted largest angles t_max(u) over an equal-area grid of axes, and prefix sums of G."""
    A, b = rodrigues_halfspaces(group)
    u = _fibonacci_sphere(n_dirs)
    au = u @ A.T
    with np.errstate(divide="ignore"):
        t = np.where(au > 1e-15, b / np.where(au > 1e-15, au, 1.0), np.inf)
    tmax = np.sort(2.0 * np.arctan(t.min(axis=1)))
    prefix = np.concatenate([[0.0], np.cumsum(tmax - np.sin(tmax))])
    return tmax, prefix


def rotation_angle_cdf(theta, group: str = "I", n_dirs: int = 200_000) -> np.ndarray:
    """CDF of the rotation angle of orientations uniform in the fundamental domain.

    Haar measure: density ``(1 - cos t) / pi`` in the angle ``t`` times uniform axes; inside
    the domain the axis ``u`` allows ``t <= t_max(u)`` (the radial function of the Rodrigues
    polytope), so ``F(t) = <G(min(t, t_max(u)))>_u / <G(t_max(u))>_u`` with
    ``G(a) = a - sin a``, averaged over an equal-area Fibonacci grid of axes.
    """
    tmax, prefix = _max_angle_by_direction(group, n_dirs)
    theta = np.asarray(theta, dtype=np.float64)
    t = np.clip(theta, 0.0, None)
    below = np.searchsorted(tmax, t, side="right")  # axes whose t_max < t contribute G(t_max)
    num = prefix[below] + (len(tmax) - below) * (t - np.sin(t))
    return num / prefix[-1]


def domain_volume_fraction(group: str = "I", n_dirs: int = 200_000) -> float:
    """Haar volume of the fundamental domain (must be 1 / order): a self-check."""
    tmax, prefix = _max_angle_by_direction(group, n_dirs)
    return float(prefix[-1] / len(tmax) / np.pi)


__all__ = [
    "are_equivalent",
    "component_range",
    "component_span",
    "domain_max_angle",
    "domain_vertices",
    "domain_volume_fraction",
    "equivalent_orientations",
    "icosahedral_group",
    "in_fundamental_domain",
    "project_to_fundamental",
    "rodrigues_halfspaces",
    "rotation_angle",
    "rotation_angle_cdf",
    "sample_fundamental",
    "symmetry_group",
]
