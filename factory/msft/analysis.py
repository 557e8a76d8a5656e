"""Measurements on computed scattering patterns (validation and quick looks)."""

from __future__ import annotations

import numpy as np


def profile_minima(I: np.ndarray, q: np.ndarray, count: int = 3) -> np.ndarray:
    """First ``count`` local minima of a 1D profile I(q), refined by a parabola through three samples."""
    out = []
    for i in range(1, len(I) - 1):
        if I[i] < I[i - 1] and I[i] <= I[i + 1]:
            y0, y1, y2 = I[i - 1], I[i], I[i + 1]
            den = y0 - 2 * y1 + y2
            out.append(q[i] + (0.5 * (y0 - y2) / den if den > 0 else 0.0) * (q[1] - q[0]))
            if len(out) == count:
                break
    return np.array(out)


def centro_asymmetry(I: np.ndarray, q: np.ndarray, k: float, lo: float, hi: float) -> float:
    """sum |I(q) - I(-q)| / mean over the annulus lo k <= |q| < hi k of a pattern on the
    symmetric q grid ``q`` (the first row and column, which have no mirror, are left out)."""
    S = I[1:, 1:]
    F = S[::-1, ::-1]
    qq = np.sqrt(q[1:, None] ** 2 + q[None, 1:] ** 2)
    m = (qq >= lo * k) & (qq < hi * k)
    return float(2 * np.abs(S - F)[m].sum() / (S + F)[m].sum())
