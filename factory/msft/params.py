"""The options of one MSFT computation and the detector's q grid.

:class:`MSFTParams` holds the physics (wavelength, absorption or refractive index, voxel
size) and numerics (padded width, detector crop, method, backend name, precision) of the
multi-slice Fourier transform of :mod:`factory.msft.multislice`; :func:`q_axis` and
:func:`ewald_qz` give the detector's momentum-transfer grid and the Ewald-sphere phase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from ..backend import BACKENDS

Method = Literal["auto", "reference", "fft", "dft"]
METHODS = ("auto", "reference", "fft", "dft")
PRECISIONS = ("complex64", "complex128")


class Pattern(NamedTuple):
    """A detector image and its axes: ``intensity[iy, ix]`` at ``(qy[iy], qx[ix])`` (1/nm)."""

    intensity: np.ndarray
    qx: np.ndarray
    qy: np.ndarray


@dataclass(frozen=True)
class MSFTParams:
    """Options of one MSFT computation (see :mod:`factory.msft.multislice` for the physics)."""

    voxel_nm: float
    wavelength_nm: float = 13.5
    absorption_length_nm: float | None = 12.5
    delta: float | None = None
    beta: float | None = None
    pad: int = 512
    crop: int = 128
    method: str = "auto"
    backend: str = "auto"
    precision: str = "complex64"

    def __post_init__(self):
        if not (isinstance(self.voxel_nm, (int, float)) and self.voxel_nm > 0):
            raise ValueError(f"voxel_nm = {self.voxel_nm!r}: must be a number > 0")
        if not self.wavelength_nm > 0:
            raise ValueError(f"wavelength_nm = {self.wavelength_nm!r}: must be > 0")
        if self.absorption_length_nm is not None and not self.absorption_length_nm > 0:
            raise ValueError(
                f"absorption_length_nm = {self.absorption_length_nm!r}: must be > 0 (or None for no absorption)"
            )
        if (self.delta is None) != (self.beta is None):
            raise ValueError(f"delta = {self.delta!r}, beta = {self.beta!r}: give both (n = 1 - delta + i beta) or neither")
        if self.beta is not None and self.beta < 0:
            raise ValueError(f"beta = {self.beta!r}: must be >= 0 (absorption)")
        if int(self.pad) != self.pad or self.pad < 2:
            raise ValueError(f"pad = {self.pad!r}: must be an integer >= 2")
        if int(self.crop) != self.crop or self.crop < 1:
            raise ValueError(f"crop = {self.crop!r}: must be an integer >= 1")
        if self.crop > self.pad:
            raise ValueError(
                f"crop = {self.crop} is larger than the padded grid pad = {self.pad}; use crop <= pad"
            )
        if self.method not in METHODS:
            raise ValueError(f"method = {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend = {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision = {self.precision!r}: choose one of {', '.join(PRECISIONS)}")

    @property
    def k(self) -> float:
        return 2.0 * math.pi / self.wavelength_nm

    @property
    def complex_dtype(self) -> np.dtype:
        return np.dtype(self.precision)

    @property
    def real_dtype(self) -> np.dtype:
        return np.dtype(np.float32 if self.precision == "complex64" else np.float64)

    @property
    def transmission(self) -> str:
        """'complex' (delta, beta), 'real' (absorption length) or 'none'."""
        if self.delta is not None:
            return "complex"
        return "real" if self.absorption_length_nm is not None else "none"

    @property
    def susceptibility(self) -> complex:
        """chi = n^2 - 1 used for the absolute scale (1 without absorption)."""
        if self.delta is not None:
            n = complex(1.0 - self.delta, self.beta)
        elif self.absorption_length_nm is not None:
            n = complex(1.0, 1.0 / (self.k * self.absorption_length_nm))
        else:
            return 1.0 + 0j
        return n * n - 1.0

    def prefactor(self) -> complex:
        """C = k^2 / (4 pi) chi dV: |A|^2 in nm^2/sr."""
        return self.k**2 / (4.0 * math.pi) * self.susceptibility * self.voxel_nm**3

    def attenuation_rate(self) -> float | complex | None:
        """The exponent per unit of accumulated density: the local field factor of a voxel behind
        ``s`` voxels' worth of material is ``exp(rate * s)``; None without absorption."""
        if self.transmission == "none":
            return None
        if self.transmission == "real":
            return -self.voxel_nm / self.absorption_length_nm
        return self.k * complex(-self.beta, -self.delta) * self.voxel_nm  # exp(i k (n - 1) d)


def q_axis(pad: int, voxel_nm: float, crop: int) -> np.ndarray:
    """The ``crop`` central momentum-transfer values (1/nm) of a ``pad``-point FFT grid."""
    if crop > pad:
        raise ValueError(f"crop = {crop} is larger than the padded grid pad = {pad}; use crop <= pad")
    m = np.arange(crop) - crop // 2
    return 2.0 * math.pi * m / (pad * voxel_nm)


def ewald_qz(qx: np.ndarray, qy: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
    """(q_z, mask) on the grid ``[qy, qx]``: ``q_z = k - sqrt(k^2 - q_perp^2)``; mask: q_perp < k."""
    q2 = qy[:, None] ** 2 + qx[None, :] ** 2
    mask = q2 < k * k
    qz = np.where(mask, k - np.sqrt(np.where(mask, k * k - q2, 0.0)), 0.0)
    return qz, mask


def check_grid(shape: tuple[int, ...], params: MSFTParams) -> None:
    """ValueError when the density does not fit the padded grid."""
    if len(shape) != 3:
        raise ValueError(f"density must be a 3D array [z, y, x]; got shape {tuple(shape)}")
    nz, ny, nx = shape
    if max(ny, nx) > params.pad:
        raise ValueError(
            f"pad = {params.pad} is smaller than the density's slice size {ny} x {nx}; "
            "the zero-padded width must be at least the box width (use pad >= n)"
        )
    if min(shape) < 1:
        raise ValueError(f"density has an empty axis: shape {tuple(shape)}")


def relative_difference(a, b) -> float:
    """max |a - b| / max |b|: the agreement measure used in tests and benchmarks."""
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


__all__ = ["METHODS", "PRECISIONS", "MSFTParams", "Method", "Pattern", "check_grid", "ewald_qz", "q_axis",
           "relative_difference"]
