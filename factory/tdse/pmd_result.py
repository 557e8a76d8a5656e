"""A computed momentum distribution (:class:`PMDResult`) and the checks of whether its grid resolves it.

:func:`resolution_warnings` says, in words, why a PMD is not resolved (too little of the
absorbed norm in it as free electrons, or dP/dkx ending on a flat floor at the window's edge);
:func:`factory.tdse.api.momentum_distribution` logs each as a warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .mask import MomentumDistribution


@dataclass
class PMDResult:
    """One momentum distribution with its axes and diagnostics."""

    pmd: np.ndarray  # (n_ky, n_kx) probability per a.u.^2, |k| <= k_out window
    kx: np.ndarray  # ascending, a.u. (polarisation axis)
    ky: np.ndarray
    energy: float  # ground-state energy E0, a.u.
    norm_left: float  # norm in the box at the end
    absorbed: float  # the norm the mask removed (= 1 - norm_left up to the single-precision drift)
    total_yield: float  # integral of the mask-method PMD over |kx|, |ky| <= k_out (the stored window)
    params: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    background: float = float("nan")  # field-free background of the run (see field_free_background)

    @property
    def dp_dkx(self) -> np.ndarray:
        """dP/dkx: the stored PMD integrated over ky."""
        return MomentumDistribution(self.pmd, self.kx, self.ky, self.total_yield).dp_dkx

    def diagnostics(self) -> dict[str, float]:
        return {"E0": self.energy, "norm_left": self.norm_left, "absorbed": self.absorbed, "yield": self.total_yield,
                "background": self.background}


#: a PMD whose mask-method yield is below this fraction of the norm the mask absorbed is not
#: resolved: most of what left the box is not in it as free electrons (the `tiny` grid's known
#: gap at 1e14 W/cm^2 is 3-5x, docs/tdse.md "Validation"; HeH+ on `tiny` gives 1e-4..2e-3)
MIN_YIELD_FRACTION = 0.1
#: an edge floor: dP/dkx falls by less than FLOOR_FALL_DECADES over the outer FLOOR_BAND of the
#: window while still above FLOOR_LEVEL of its peak (a resolved PMD falls by several decades there)
FLOOR_BAND, FLOOR_FALL_DECADES, FLOOR_LEVEL = 0.2, 1.0, 1e-6


def resolution_warnings(result: PMDResult) -> list[str]:
    """Why a PMD is not resolved by its grid, in words (empty when nothing says so): its
    mask-method yield is under :data:`MIN_YIELD_FRACTION` of the absorbed norm, or dP/dkx ends
    on a flat floor at the window's edge (see ``FLOOR_BAND``).

    Parameters
    ----------
    result : PMDResult
        A computed momentum distribution (``momentum_distribution``).

    Returns
    -------
    list of str
        One sentence per sign that the grid does not resolve the PMD; empty when none.
        ``momentum_distribution`` logs each as a warning.
    """
    out = []
    if result.absorbed > 0 and result.total_yield < MIN_YIELD_FRACTION * result.absorbed:
        out.append(f"the mask-method yield {result.total_yield:.2e} is {result.total_yield / result.absorbed:.2g} of the "
                   f"norm the mask absorbed ({result.absorbed:.2e}): most of what left the box is not in the PMD "
                   "as free electrons")
    d, kx = result.dp_dkx, result.kx
    peak = float(d.max()) if d.size else 0.0
    if peak > 0 and len(kx) > 4:
        kmax = float(np.abs(kx).max())
        for side, edge in (("-", 0), ("+", len(kx) - 1)):
            inner = int(np.argmin(np.abs(kx - np.sign(kx[edge]) * (1 - FLOOR_BAND) * kmax)))
            level, start = float(d[edge]) / peak, float(d[inner]) / peak
            if level > FLOOR_LEVEL and start < level * 10**FLOOR_FALL_DECADES:
                out.append(f"dP/dkx ends on a floor at kx = {kx[edge]:+.2f} a.u. ({level:.1e} of its peak, down only "
                           f"{math.log10(max(start, 1e-300) / level):.1f} decades from kx = {kx[inner]:+.2f})")
    return out
