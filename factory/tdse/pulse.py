"""The few-cycle laser pulse of Shvetsov-Shilovski & Lein, Phys. Rev. A 107, 033106 (2023), eq. (1), in atomic units.

``A(t) = (-1)^np (F0 / w) sin^2(w t / (2 np)) sin(w t + cep)`` along x for
``0 <= t <= t_f = 2 pi np / w`` and zero outside; the field is ``F = -dA/dt``.
Intensities are in W/cm^2, wavelengths in nm, everything else in atomic units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Intensity of one atomic unit of field amplitude, W/cm^2 (F0 = sqrt(I / AU_INTENSITY)).
AU_INTENSITY = 3.50945e16
#: omega [a.u.] = NM_OMEGA / lambda [nm].
NM_OMEGA = 45.5634


@dataclass(frozen=True)
class Pulse:
    """Linearly polarised sin^2 pulse (eq. 1); ``cycles`` is the integer n_p."""

    intensity: float  # peak intensity, W/cm^2
    wavelength_nm: float = 800.0
    cycles: int = 2
    cep: float = 0.0  # carrier-envelope phase, rad

    def __post_init__(self) -> None:
        if not (math.isfinite(self.intensity) and self.intensity >= 0):
            raise ValueError(f"pulse intensity = {self.intensity!r} W/cm^2: must be finite and >= 0")
        if not (math.isfinite(self.wavelength_nm) and self.wavelength_nm > 0):
            raise ValueError(f"pulse wavelength_nm = {self.wavelength_nm!r}: must be > 0")
        if int(self.cycles) != self.cycles or self.cycles < 1:
            raise ValueError(f"pulse cycles = {self.cycles!r}: must be an integer >= 1")
        if not math.isfinite(self.cep):
            raise ValueError(f"pulse cep = {self.cep!r}: must be finite")

    @property
    def omega(self) -> float:
        return NM_OMEGA / self.wavelength_nm

    @property
    def f0(self) -> float:
        """Peak field amplitude F0 in a.u."""
        return math.sqrt(self.intensity / AU_INTENSITY)

    @property
    def duration(self) -> float:
        """t_f = 2 pi n_p / omega: the pulse is on for 0 <= t <= t_f."""
        return 2 * math.pi * self.cycles / self.omega

    @property
    def up(self) -> float:
        """Ponderomotive energy F0^2 / (4 w^2) of the carrier (a.u.)."""
        return self.f0**2 / (4 * self.omega**2)

    def vector_potential(self, t) -> np.ndarray:
        """A_x(t), zero outside [0, t_f]."""
        t = np.asarray(t, dtype=np.float64)
        w, n = self.omega, self.cycles
        a = (-1.0) ** n * (self.f0 / w) * np.sin(w * t / (2 * n)) ** 2 * np.sin(w * t + self.cep)
        return np.where((t >= 0) & (t <= self.duration), a, 0.0)

    def field(self, t) -> np.ndarray:
        """F_x(t) = -dA/dt (analytic), zero outside [0, t_f]."""
        t = np.asarray(t, dtype=np.float64)
        w, n = self.omega, self.cycles
        s = (-1.0) ** n * self.f0 / w
        env = np.sin(w * t / (2 * n)) ** 2
        denv = (w / (2 * n)) * np.sin(w * t / n)
        f = -s * (denv * np.sin(w * t + self.cep) + env * w * np.cos(w * t + self.cep))
        return np.where((t >= 0) & (t <= self.duration), f, 0.0)

    def excursion(self, t) -> np.ndarray:
        """alpha(t) = int_0^t A dt' (the free-electron displacement), by fine quadrature."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        tf = self.duration
        n = 20000
        ts = np.linspace(0.0, tf, n + 1)
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (self.vector_potential(ts[1:]) + self.vector_potential(ts[:-1])))])
        cum *= tf / n
        return np.interp(np.clip(t, 0.0, tf), ts, cum)

    def a_max(self) -> float:
        """max_t |A(t)| (sampled finely)."""
        ts = np.linspace(0.0, self.duration, 4001)
        return float(np.max(np.abs(self.vector_potential(ts))))

    def midpoint_potential(self, dt: float, n_steps: int, t0: float = 0.0) -> np.ndarray:
        """A at the step midpoints t0 + (n + 1/2) dt, n = 0..n_steps-1 (what the propagator uses)."""
        return self.vector_potential(t0 + (np.arange(n_steps) + 0.5) * dt)


def max_momentum_needed(a_max: float) -> float:
    """Largest canonical momentum a PMD holds: the 10 Up rescattering cutoff, sqrt(20 Up) = sqrt(5) A_max."""
    return math.sqrt(5.0) * a_max
