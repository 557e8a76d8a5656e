"""Soft-core 2D molecular potentials: H2+ (Shvetsov-Shilovski & Lein, PRA 2023, eq. 3), HeH+ (eq. 7),
or any list of centres.

A molecule is a tuple of :class:`Centre` s placed on the molecular axis at ``position * R``
from the origin, the axis making the angle ``alpha`` with the polarisation (x) axis.  Each
centre contributes ``-(Z + Zs exp(-b d^2)) / sqrt(d^2 + a)`` with ``d`` the distance to the
centre, ``a`` the soft-core parameter and the optional Gaussian term (``Zs``, ``b``) the
screening term of eq. (7).

- ``H2+``: two protons at +-R/2 with soft-core ``a`` (the paper does not state it; the default
  ``a = 0.5`` is our choice, see docs/tdse.md for the resulting E0).
- ``HeH+``: proton at +R/2 (along (cos alpha, sin alpha)), He at -R/2 with ``Z = 1``,
  ``Zs = 1``, ``b = 1.063``, ``a = 1/2``: E0(R = 1.4) = -1.66 a.u. (the paper's calibration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_SOFT_CORE = 0.5
HEH_BETA = 1.063


@dataclass(frozen=True)
class Centre:
    """One soft-core Coulomb centre at ``position * R`` along the molecular axis."""

    position: float
    charge: float = 1.0
    soft_core: float = DEFAULT_SOFT_CORE
    screening_charge: float = 0.0
    screening_beta: float = 0.0

    def __post_init__(self) -> None:
        if not self.soft_core > 0:
            raise ValueError(f"centre soft_core = {self.soft_core!r}: must be > 0")
        if self.screening_beta < 0:
            raise ValueError(f"centre screening_beta = {self.screening_beta!r}: must be >= 0")


@dataclass(frozen=True)
class Molecule:
    name: str
    centres: tuple[Centre, ...]

    def positions(self, R: float, alpha: float) -> list[tuple[float, float]]:
        """(x, y) of every centre for internuclear distance R and orientation alpha (rad)."""
        c, s = math.cos(alpha), math.sin(alpha)
        return [(ctr.position * R * c, ctr.position * R * s) for ctr in self.centres]

    def extent(self, R: float) -> float:
        """Largest distance of a centre from the origin."""
        return max(abs(c.position) * R for c in self.centres)

    def parity_symmetric(self) -> bool:
        """True if V(-r) = V(r) (centres symmetric about the origin)."""
        key = lambda c: (c.charge, c.soft_core, c.screening_charge, c.screening_beta)  # noqa: E731
        items = sorted((round(c.position, 12), key(c)) for c in self.centres)
        mirrored = sorted((round(-c.position, 12), key(c)) for c in self.centres)
        return items == mirrored


def h2plus(soft_core: float = DEFAULT_SOFT_CORE) -> Molecule:
    """Eq. (3): two protons at +-R/2 (cos alpha, sin alpha)."""
    return Molecule("H2+", (Centre(0.5, 1.0, soft_core), Centre(-0.5, 1.0, soft_core)))


def hehplus(beta: float = HEH_BETA) -> Molecule:
    """Eq. (7): proton r1 at +R/2 (cos alpha, sin alpha), He r2 at -R/2 with screening term."""
    return Molecule(
        "HeH+",
        (
            Centre(0.5, 1.0, 0.5),
            Centre(-0.5, 1.0, 0.5, screening_charge=1.0, screening_beta=beta),
        ),
    )


def potential(molecule: Molecule, R: float, alpha: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """V on the (len(y), len(x)) grid spanned by the 1D axes ``x`` and ``y`` (alpha in rad)."""
    X = np.asarray(x, dtype=np.float64)[None, :]
    Y = np.asarray(y, dtype=np.float64)[:, None]
    V = np.zeros((Y.shape[0], X.shape[1]))
    for (cx, cy), ctr in zip(molecule.positions(R, alpha), molecule.centres):
        d2 = (X - cx) ** 2 + (Y - cy) ** 2
        z = ctr.charge
        if ctr.screening_charge:
            z = z + ctr.screening_charge * np.exp(-ctr.screening_beta * d2)
        V -= z / np.sqrt(d2 + ctr.soft_core)
    return V


def initial_guess(molecule: Molecule, R: float, alpha: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A nodeless, parity-respecting start for imaginary time: Gaussians on the centres."""
    X = np.asarray(x)[None, :]
    Y = np.asarray(y)[:, None]
    g = np.zeros((Y.shape[0], X.shape[1]))
    for (cx, cy), ctr in zip(molecule.positions(R, alpha), molecule.centres):
        z = ctr.charge + ctr.screening_charge
        g += z * np.exp(-0.5 * ((X - cx) ** 2 + (Y - cy) ** 2))
    return g
