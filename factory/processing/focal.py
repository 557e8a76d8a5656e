"""Focal-volume averaging of PMDs (Shvetsov-Shilovski & Lein, Phys. Rev. A 107, 033106 (2023), eqs. 5-6).

With x = I / I0 the focal-volume element of a beam that is Lorentzian along the propagation
and Gaussian across it is (eq. 6, up to a constant)

    w(x) = (1/x) (1/x + 2) sqrt(1/x - 1),         0 < x <= 1,

and the averaged distribution is P_avg(k; I0) = int P(k; x I0) w(x) dx (eq. 5, dI = I0 dx
absorbed into the constant).

**The divergence at I -> 0.** w grows like x^(-5/2) as x -> 0, so int_0^1 w dx diverges; the
integral is finite only because P(k; I) vanishes faster (multiphoton ionisation, P ~ I^n with
n >= 6 at 800 nm).  We therefore never evaluate w at I = 0: the integral runs from the lowest
computed intensity x_1 of the ladder (by default x_k = k / n, so x_1 = 1/n) to x = 1, and the
part below x_1 is dropped.  ``tail_fraction`` estimates the dropped part per image by
extending the two lowest ladder points as a power law, so the truncation can be checked.

**Quadrature.** ``method="trapezoid"`` is the paper's trapezoidal rule on the products
P(x_k) w(x_k).  ``method="product"`` (default) is the product trapezoidal rule: P is taken
piecewise linear between ladder points and integrated exactly against w with the closed-form
moments below, which is exact for an intensity-independent P (the result is then the exact
integral of w over [x_1, 1]) and handles the square-root zero of w at x = 1 without error.
With t = sqrt(1/x - 1):

    int w dx   = -[ (2/3) t^3 + 4 (t - arctan t) ]
    int w x dx = -[ 2 t^3 / (1 + t^2) ]
"""

from __future__ import annotations

import numpy as np

METHODS = ("product", "trapezoid")


def focal_weight(x: np.ndarray) -> np.ndarray:
    """w(x) of eq. 6 for x = I / I0 in (0, 1]; refuses x <= 0 (the divergence) and x > 1."""
    x = np.asarray(x, dtype=np.float64)
    if np.any(x <= 0) or np.any(x > 1 + 1e-12):
        raise ValueError(f"focal weight needs 0 < I/I0 <= 1, got {x.min():g}..{x.max():g}")
    u = 1.0 / x
    return u * (u + 2.0) * np.sqrt(np.maximum(u - 1.0, 0.0))


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Antiderivatives F0(x) = int w dx and F1(x) = int w x dx (up to constants)."""
    t = np.sqrt(np.maximum(1.0 / x - 1.0, 0.0))
    f0 = -((2.0 / 3.0) * t**3 + 4.0 * (t - np.arctan(t)))
    f1 = -(2.0 * t**3 / (1.0 + t**2))
    return f0, f1


def weight_integral(a: float, b: float) -> float:
    """Exact int_a^b w(x) dx for 0 < a <= b <= 1."""
    f0, _ = _moments(np.array([a, b], dtype=np.float64))
    return float(f0[1] - f0[0])


def quadrature_weights(x: np.ndarray, method: str = "product") -> np.ndarray:
    """Weights c_k such that P_avg = sum_k c_k P(x_k) for the ladder ``x`` (ascending, <= 1)."""
    x = np.asarray(x, dtype=np.float64)
    if method not in METHODS:
        raise ValueError(f"focal averaging method {method!r}: choose one of {', '.join(METHODS)}")
    if x.ndim != 1 or len(x) < 2:
        raise ValueError("an intensity ladder needs at least 2 intensities")
    if np.any(np.diff(x) <= 0):
        raise ValueError("the intensity ladder must be strictly ascending")
    if x[0] <= 0 or x[-1] > 1 + 1e-12:
        raise ValueError(f"the ladder's I/I0 must lie in (0, 1], got {x[0]:g}..{x[-1]:g}")
    c = np.zeros_like(x)
    if method == "trapezoid":
        w = focal_weight(x)
        h = np.diff(x)
        c[:-1] += 0.5 * h * w[:-1]
        c[1:] += 0.5 * h * w[1:]
        return c
    f0, f1 = _moments(x)
    for k in range(len(x) - 1):
        a, b = x[k], x[k + 1]
        m0 = f0[k + 1] - f0[k]
        m1 = f1[k + 1] - f1[k]
        c[k] += (b * m0 - m1) / (b - a)
        c[k + 1] += (m1 - a * m0) / (b - a)
    return c


def focal_average(stack: np.ndarray, x: np.ndarray, method: str = "product") -> np.ndarray:
    """Average a ladder of PMDs ``stack`` (n, ...) taken at I/I0 = ``x`` (n,)."""
    stack = np.asarray(stack)
    c = quadrature_weights(x, method)
    if stack.shape[0] != len(c):
        raise ValueError(f"{stack.shape[0]} images for a ladder of {len(c)} intensities")
    return np.tensordot(c, stack.astype(np.float64, copy=False), axes=(0, 0))


def tail_fraction(stack: np.ndarray, x: np.ndarray, method: str = "product") -> float:
    """Estimated share of the integral below x_1 that the truncation drops.

    The total yields of the two lowest ladder points define a power law P ~ x^n, integrated
    against w from 0 to x_1 in closed form; for n <= 3/2 that tail diverges and 1.0 is returned
    (the truncation cannot be bounded: use a ladder reaching lower intensities).
    """
    y = np.asarray(stack, dtype=np.float64).reshape(len(x), -1).sum(axis=1)
    kept = float(np.dot(quadrature_weights(x, method), y))
    if y[0] <= 0 or y[1] <= 0 or kept <= 0:
        return 0.0
    n = np.log(y[1] / y[0]) / np.log(x[1] / x[0])
    if n <= 1.5:
        return 1.0
    # w(x) <= (1/x)(1/x + 2)/sqrt(x) ~ x^(-5/2) (1 + 2x): bound int_0^{x1} A x^n w dx from above
    x1, a = x[0], y[0] / x[0] ** n
    tail = a * (x1 ** (n - 1.5) / (n - 1.5) + 2 * x1 ** (n - 0.5) / (n - 0.5))
    return float(tail / (kept + tail))
