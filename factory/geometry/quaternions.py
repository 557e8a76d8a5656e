"""Unit quaternions in the project's convention: scalar first, ``q = (w, x, y, z)``.

``q = (cos(a/2), sin(a/2) n)`` is the *active* rotation by the angle ``a`` about the unit
axis ``n``: a particle with orientation ``q`` is its body-frame shape rotated by ``q``.
scipy's :class:`~scipy.spatial.transform.Rotation` stores quaternions scalar *last*
``(x, y, z, w)``; :func:`to_rotation` and :func:`from_rotation` are the only conversions
and every other function here takes and returns ``(w, x, y, z)``.  ``q`` and ``-q`` are the
same rotation; :func:`canonical` picks ``w >= 0``.

Importable without torch (the scoring code uses it).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def as_quat_array(q) -> np.ndarray:
    """``q`` as a float64 array of shape (..., 4); raises ValueError if not finite / not 4-vectors."""
    arr = np.asarray(q, dtype=np.float64)
    if arr.shape[-1:] != (4,):
        raise ValueError(f"a quaternion has 4 components (w, x, y, z); got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"quaternion holds NaN or Inf: {arr.tolist()}")
    norm = np.linalg.norm(arr, axis=-1)
    if np.any(norm < 1e-12):
        raise ValueError("the zero quaternion is not a rotation")
    return arr


def normalize(q) -> np.ndarray:
    """``q / |q|``."""
    arr = as_quat_array(q)
    norm = np.linalg.norm(arr, axis=-1, keepdims=True)
    if np.all(np.abs(norm - 1.0) <= 5e-16):  # already unit: keep the bits (projection is idempotent)
        return arr
    return arr / norm


def canonical(q) -> np.ndarray:
    """Normalized ``q`` with the sign fixed: ``w > 0``, or the first non-zero component > 0."""
    arr = normalize(q)
    flat = arr.reshape(-1, 4)
    first = np.argmax(np.abs(flat) > 1e-12, axis=1)  # first clearly non-zero component
    sign = np.where(flat[np.arange(len(flat)), first] < 0, -1.0, 1.0)
    return (flat * sign[:, None]).reshape(arr.shape)


def to_rotation(q) -> Rotation:
    """scipy Rotation from scalar-first quaternion(s).

    Parameters
    ----------
    q : array_like
        Quaternion(s) ``(w, x, y, z)``, shape (4,) or (N, 4); normalised here.

    Returns
    -------
    scipy.spatial.transform.Rotation
        The rotation(s).
    """
    arr = normalize(q)
    return Rotation.from_quat(arr[..., [1, 2, 3, 0]])


def from_rotation(rot: Rotation) -> np.ndarray:
    """Scalar-first canonical quaternion(s) (``w >= 0``) of a scipy Rotation.

    Parameters
    ----------
    rot : scipy.spatial.transform.Rotation
        One rotation or several.

    Returns
    -------
    numpy.ndarray
        Unit quaternion(s) ``(w, x, y, z)``: (4,) or (N, 4).
    """
    xyzw = rot.as_quat()
    return canonical(xyzw[..., [3, 0, 1, 2]])


def multiply(a, b) -> np.ndarray:
    """Hamilton product ``a b`` (apply ``b`` first, then ``a``), scalar-first, broadcasting."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


def conjugate(q) -> np.ndarray:
    """``(w, -x, -y, -z)``: the inverse of a unit quaternion."""
    q = np.asarray(q, dtype=np.float64)
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def rotation_angle(q) -> np.ndarray:
    """Rotation angle in [0, pi] (radians) of unit quaternion(s)."""
    w = np.abs(normalize(q)[..., 0])
    return 2.0 * np.arccos(np.clip(w, 0.0, 1.0))


def rotation_matrix(q) -> np.ndarray:
    """3x3 matrix (or (..., 3, 3)) of the active rotation ``q``: ``r_lab = M @ r_body``."""
    return to_rotation(q).as_matrix()


def parse_quat(text: str) -> np.ndarray:
    """``"w,x,y,z"`` -> normalized quaternion; ValueError with the expected form otherwise."""
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"quaternion {text!r}: expected four numbers 'w,x,y,z'") from None
    if len(values) != 4:
        raise ValueError(f"quaternion {text!r}: expected four numbers 'w,x,y,z', got {len(values)}")
    return normalize(values)
