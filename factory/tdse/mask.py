"""The absorbing mask (Shvetsov-Shilovski & Lein, PRA 2023, eq. 4) and the mask method of Tong, Hino & Toshima (2006).

At every mask application the part removed from the box, ``(1 - M) psi``, is taken to momentum
space and propagated analytically to the end as a Volkov wave.  In velocity gauge (A^2 term
dropped, as in the propagation) a plane wave of canonical momentum k only picks up the phase
``exp(-i [k^2 t / 2 + kx alpha(t)])`` with ``alpha(t) = int_0^t A``; so the amplitude is
accumulated in the interaction picture

    b(k) = sum_j exp(+i theta_j(k)) FFT[(1 - M) psi_j](k),   theta_j = k^2 t_j / 2 + kx alpha_j,

and the Volkov phase from t_j to the final time T is ``exp(-i (theta_T - theta_j))``; the common
factor ``exp(-i theta_T)`` drops out of ``|b|^2``.  ``theta`` is separable, so each mask step costs
one FFT and one pass over the grid.  After the pulse A = 0, so canonical = drift momentum and
the PMD is ``P(k) = |dx dy / (2 pi) b(k)|^2`` (probability per a.u.^2 of momentum).  ``alpha_j``
is the same midpoint sum the propagator uses, so for V = 0 the method is exact to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .grid import Grid


def absorbing_mask(grid: Grid, radius: float, beta: float) -> np.ndarray:
    """M = 1 for r <= radius, exp(-beta (r - radius)^2) beyond (eq. 4), on the (ny, nx) grid."""
    r = grid.radius()
    return np.where(r <= radius, 1.0, np.exp(-beta * np.clip(r - radius, 0.0, None) ** 2))


@dataclass(frozen=True)
class KWindow:
    """The momenta |kx|, |ky| <= k_window of a grid, kept in FFT order as a compact array.

    In FFT order low momenta sit in the four corners; ``rows``/``cols`` pair each source slice of
    the full grid with its destination slice in the compact (ny_c, nx_c) array.  With no
    window (or one beyond pi/dx) the compact array is the full grid.
    """

    rows: tuple[tuple[slice, slice], ...]
    cols: tuple[tuple[slice, slice], ...]
    ky: np.ndarray  # compact, FFT order
    kx: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.ky), len(self.kx))

    @property
    def size(self) -> int:
        return len(self.ky) * len(self.kx)

    @staticmethod
    def _axis(k: np.ndarray, dk: float, kw: float | None):
        n = len(k)
        if kw is None or kw >= n * dk / 2:
            return ((slice(0, n), slice(0, n)),), k
        n_pos = min(n // 2, int(np.floor(kw / dk + 1e-9)) + 1)  # 0, dk, ..., <= kw
        n_neg = min(n // 2, int(np.floor(kw / dk + 1e-9)))  # -dk, ..., >= -kw
        pairs = ((slice(0, n_pos), slice(0, n_pos)), (slice(n - n_neg, n), slice(n_pos, n_pos + n_neg)))
        return pairs, np.concatenate([k[:n_pos], k[n - n_neg :]])

    @classmethod
    def build(cls, grid: Grid, k_window: float | None) -> "KWindow":
        rows, ky = cls._axis(grid.ky, grid.dky, k_window)
        cols, kx = cls._axis(grid.kx, grid.dkx, k_window)
        return cls(rows, cols, ky, kx)


def volkov_phase_factors(grid: Grid, t: float, alpha: np.ndarray, window: KWindow | None = None) -> tuple[np.ndarray, np.ndarray]:
    """exp(+i theta(k, t)) as (py (ny,), px (B, nx)): theta = k^2 t / 2 + kx alpha_b.

    With ``window`` only its (compact) momenta are evaluated.
    """
    ky, kx = (grid.ky, grid.kx) if window is None else (window.ky, window.kx)
    py = np.exp(0.5j * t * ky**2)
    px = np.exp(1j * (0.5 * t * kx[None, :] ** 2 + np.asarray(alpha, dtype=np.float64)[:, None] * kx[None, :]))
    return py, px


@dataclass
class MomentumDistribution:
    """A PMD on its (ky, kx) grid: ``pmd[j, i]`` at (ky[j], kx[i]), ascending axes, a.u."""

    pmd: np.ndarray  # (n_ky, n_kx), probability per a.u.^2
    kx: np.ndarray
    ky: np.ndarray
    total_yield: float  # integral of the full (uncropped) PMD

    @property
    def dp_dkx(self) -> np.ndarray:
        """1D distribution dP/dkx: the PMD integrated over ky (within the stored window)."""
        dky = float(self.ky[1] - self.ky[0]) if len(self.ky) > 1 else 1.0
        return self.pmd.sum(axis=0) * dky


def pmd_from_amplitude(
    grid: Grid, amplitude: np.ndarray, k_out: float | None = None, window: KWindow | None = None
) -> MomentumDistribution:
    """|dx dy / 2pi * b|^2 on ascending axes, cropped to |kx|, |ky| <= k_out.

    ``amplitude`` is on the full FFT-ordered grid, or on ``window`` (compact, FFT order).
    ``total_yield`` integrates over all of ``amplitude``'s momenta.
    """
    kx, ky = (grid.kx, grid.ky) if window is None else (window.kx, window.ky)
    p = np.abs(amplitude) ** 2 * (grid.area_element / (2 * np.pi)) ** 2
    total = float(p.sum() * grid.dkx * grid.dky)
    ix, iy = np.argsort(kx, kind="stable"), np.argsort(ky, kind="stable")
    if k_out is not None:
        ix = ix[np.abs(kx[ix]) <= k_out + 1e-12]
        iy = iy[np.abs(ky[iy]) <= k_out + 1e-12]
    p = p[..., iy, :][..., ix]
    return MomentumDistribution(np.ascontiguousarray(p), kx[ix], ky[iy], total)


def crop_axes(grid: Grid, k_out: float) -> tuple[np.ndarray, np.ndarray]:
    """The (kx, ky) axes of a PMD cropped to |k| <= k_out on ``grid``."""
    kx, ky = grid.kx_shifted, grid.ky_shifted
    return kx[np.abs(kx) <= k_out + 1e-12], ky[np.abs(ky) <= k_out + 1e-12]
