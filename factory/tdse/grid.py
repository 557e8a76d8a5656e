"""The Cartesian box of the 2D TDSE and its momentum grid.

The box is ``x in [-x_max, x_max)``, ``y in [-y_max, y_max)`` with ``nx`` x ``ny`` points
(both even): ``x_i = -x_max + i dx``, so x = 0 is point ``nx // 2``.  Arrays are indexed
``[y, x]`` (rows = y), i.e. images are (H, W) = (ky, kx) with x the polarisation axis.
Momenta follow the FFT order ``kx = 2 pi fftfreq(nx, dx)``; ``*_shifted`` gives them
ascending, as stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np


def fft_size(n: int) -> int:
    """Smallest even integer >= n whose prime factors are 2, 3, 5 only (fast FFTs)."""
    m = max(2, int(n) + (int(n) % 2))
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 2


@dataclass(frozen=True)
class Grid:
    nx: int
    ny: int
    x_max: float
    y_max: float

    def __post_init__(self) -> None:
        for name in ("nx", "ny"):
            v = getattr(self, name)
            if v < 4 or v % 2:
                raise ValueError(f"grid {name} = {v!r}: must be an even integer >= 4")
        for name in ("x_max", "y_max"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"grid {name} = {v!r}: must be > 0")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.ny, self.nx)

    @property
    def dx(self) -> float:
        return 2 * self.x_max / self.nx

    @property
    def dy(self) -> float:
        return 2 * self.y_max / self.ny

    @property
    def area_element(self) -> float:
        return self.dx * self.dy

    @cached_property
    def x(self) -> np.ndarray:
        return -self.x_max + self.dx * np.arange(self.nx)

    @cached_property
    def y(self) -> np.ndarray:
        return -self.y_max + self.dy * np.arange(self.ny)

    @cached_property
    def kx(self) -> np.ndarray:
        return 2 * np.pi * np.fft.fftfreq(self.nx, self.dx)

    @cached_property
    def ky(self) -> np.ndarray:
        return 2 * np.pi * np.fft.fftfreq(self.ny, self.dy)

    @property
    def dkx(self) -> float:
        return 2 * np.pi / (self.nx * self.dx)

    @property
    def dky(self) -> float:
        return 2 * np.pi / (self.ny * self.dy)

    @property
    def kx_max(self) -> float:
        """Nyquist momentum pi/dx."""
        return math.pi / self.dx

    @property
    def ky_max(self) -> float:
        return math.pi / self.dy

    @cached_property
    def kx_shifted(self) -> np.ndarray:
        return np.fft.fftshift(self.kx)

    @cached_property
    def ky_shifted(self) -> np.ndarray:
        return np.fft.fftshift(self.ky)

    def radius(self) -> np.ndarray:
        """r = sqrt(x^2 + y^2) on the (ny, nx) grid."""
        return np.sqrt(self.x[None, :] ** 2 + self.y[:, None] ** 2)

    def window(self, half_x: float, half_y: float) -> tuple["Grid", tuple[slice, slice]]:
        """A centred sub-box with the same spacing holding [-half, half] in each direction.

        Returns the sub-grid and the (row, column) slices of the full grid it occupies.
        Sizes are FFT-friendly and never exceed the full grid.
        """
        mx = min(self.nx, fft_size(2 * math.ceil(half_x / self.dx) + 2))
        my = min(self.ny, fft_size(2 * math.ceil(half_y / self.dy) + 2))
        mx, my = mx - mx % 2, my - my % 2
        sub = Grid(mx, my, mx * self.dx / 2, my * self.dy / 2)
        cols = slice(self.nx // 2 - mx // 2, self.nx // 2 + mx // 2)
        rows = slice(self.ny // 2 - my // 2, self.ny // 2 + my // 2)
        return sub, (rows, cols)
