"""From the far-field cross section to a detector image: geometry, photons, noise, log scale.

Two detector geometries:

- the **q grid** (default, as in Stielow et al., MLST 2020): the central ``crop x crop`` of the MSFT's
  momentum-transfer grid, pixel ``(qy, qx)``.  A q pixel of size ``dq x dq`` covers the
  solid angle ``dq^2 / (k^2 cos theta)`` (``cos theta = sqrt(1 - q_perp^2 / k^2)``); with
  ``solid_angle=False`` the constant small-angle value ``dq^2 / k^2`` is used (the authors
  store ``|A|^2`` on the q grid directly, i.e. without the obliquity factor).
- a **flat detector** perpendicular to the beam at ``distance_mm`` with ``pixels x pixels``
  square pixels of ``pixel_mm``: a pixel at ``(x, y)`` sees ``q_perp = k (x, y) / r``,
  ``r = sqrt(x^2 + y^2 + D^2)``, and the solid angle ``p^2 D / r^3``; the cross section is
  interpolated (bilinear) from the q grid, which must cover the detector.

The image before noise is the expected signal per pixel per unit fluence
``dsigma/dOmega * dOmega`` (nm^2).  With ``fluence`` (photons/nm^2) it becomes expected
photon counts and is Poisson-sampled.  ``background`` adds uniform random noise up to that
fraction of the image maximum.  ``output="log"`` stores ``log10(I / max I + log_floor)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FlatDetector:
    """A flat, square detector centred on the beam, perpendicular to it."""

    distance_mm: float
    pixel_mm: float
    pixels: int

    def __post_init__(self):
        if not self.distance_mm > 0:
            raise ValueError(f"distance_mm = {self.distance_mm}: must be > 0")
        if not self.pixel_mm > 0:
            raise ValueError(f"pixel_mm = {self.pixel_mm}: must be > 0")
        if int(self.pixels) != self.pixels or self.pixels < 2:
            raise ValueError(f"pixels = {self.pixels}: must be an integer >= 2")

    def axis_mm(self) -> np.ndarray:
        """Pixel centres (mm) along x or y."""
        return (np.arange(self.pixels) - (self.pixels - 1) / 2.0) * self.pixel_mm

    def q_perp(self, k: float) -> tuple[np.ndarray, np.ndarray]:
        """(qx, qy) maps (1/nm) of the pixel centres, shape (pixels, pixels), image order [y, x]."""
        a = self.axis_mm()
        x, y = a[None, :], a[:, None]
        r = np.sqrt(x * x + y * y + self.distance_mm**2)
        return k * x / r * np.ones_like(y), k * y / r * np.ones_like(x)

    def max_q(self, k: float) -> float:
        """Largest |qx| or |qy| over the pixels (1/nm)."""
        a = np.abs(self.axis_mm()).max()
        return float(k * a / math.sqrt(a * a + self.distance_mm**2))

    def solid_angle(self) -> np.ndarray:
        """Solid angle (sr) of each pixel, ``p^2 D / r^3``."""
        a = self.axis_mm()
        r2 = a[None, :] ** 2 + a[:, None] ** 2 + self.distance_mm**2
        return self.pixel_mm**2 * self.distance_mm / r2**1.5


def q_grid_solid_angle(qx: np.ndarray, qy: np.ndarray, k: float, *, obliquity: bool = True) -> np.ndarray:
    """Solid angle (sr) of each q-grid pixel ``[qy, qx]``; 0 beyond ``q_perp = k``."""
    dqx = float(qx[1] - qx[0]) if len(qx) > 1 else 1.0
    dqy = float(qy[1] - qy[0]) if len(qy) > 1 else 1.0
    base = dqx * dqy / (k * k)
    q2 = qy[:, None] ** 2 + qx[None, :] ** 2
    inside = q2 < k * k
    if not obliquity:
        return np.where(inside, base, 0.0)
    cos = np.sqrt(np.clip(1.0 - q2 / (k * k), 0.0, None))
    with np.errstate(divide="ignore"):
        return np.where(inside & (cos > 0), base / np.where(cos > 0, cos, 1.0), 0.0)


def to_flat_detector(dsdo: np.ndarray, qx: np.ndarray, qy: np.ndarray, det: FlatDetector, k: float) -> np.ndarray:
    """Bilinear interpolation of ``dsigma/dOmega[qy, qx]`` to the flat detector's pixels."""
    from scipy.ndimage import map_coordinates

    qmax_grid = min(abs(qx[0]), abs(qx[-1]), abs(qy[0]), abs(qy[-1]))
    if det.max_q(k) > qmax_grid + 1e-12:
        raise ValueError(
            f"the flat detector reaches q = {det.max_q(k):.4f} 1/nm but the computed q grid only "
            f"{qmax_grid:.4f} 1/nm; raise crop (or move the detector back / use fewer pixels)"
        )
    pqx, pqy = det.q_perp(k)
    ix = (pqx - qx[0]) / (qx[1] - qx[0])
    iy = (pqy - qy[0]) / (qy[1] - qy[0])
    return map_coordinates(dsdo, [iy, ix], order=1, mode="nearest")


def add_background(img: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """``img + level * max(img) * U(0, 1)`` per pixel (random background, Stielow et al., MLST 2020, App. B)."""
    if level <= 0:
        return img
    peak = float(img.max()) if img.size else 0.0
    return img + level * peak * rng.random(img.shape)


def poisson_counts(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson photon counts for the expected counts per pixel."""
    lam = np.clip(np.nan_to_num(expected, nan=0.0), 0.0, None)
    return rng.poisson(lam).astype(np.float64)


def log_image(img: np.ndarray, floor: float) -> np.ndarray:
    """``log10(img / max(img) + floor)``: values in [log10(floor), log10(1 + floor)]."""
    peak = float(img.max()) if img.size else 0.0
    if not peak > 0:
        return np.full(img.shape, math.log10(floor))
    return np.log10(np.clip(img, 0.0, None) / peak + floor)
