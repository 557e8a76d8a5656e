"""The measured detector: valid-pixel mask, central hole, saturation, gain, display scale, orientation.

A simulated pattern (linear intensity on the q grid of :func:`factory.msft.simulator.pattern`
with ``output="linear"``, q = 0 at pixel ``(n // 2, n // 2)``) and a measured 8-bit PNG end in
the same network input space (0..1, zero outside the valid pixels) through one
:class:`DetectorResponse`::

    from factory.msft.detector_response import AG_CLUSTER_DETECTOR as det
    x_sim = det.apply(pattern(shape, R, q, cfg_linear).image)     # numpy or torch (differentiable)
    x_exp = det.measured_input(load_ag_cluster("barke5"))         # float32, masked
    r = masked_correlation(x_sim, x_exp, det.mask())

``apply`` does, in this order: orientation (:func:`to_measured_orientation`), a bilinear shift of
q = 0 from pixel ``(n // 2, n // 2)`` to :attr:`DetectorResponse.centre`, normalisation by the
maximum over the valid pixels, ``gain``, clipping at ``saturation`` (rescaled so the clip level
is 1), the display scale, and the mask.

Evidence: the method authors' public code
-----------------------------------------
Stielow, Schmidt, Peltz, Fennel & Scheel, Mach. Learn.: Sci. Technol. (2020) describe the
training images as a "logarithmic intensity profile of 128 x 128 pixels with random background
noise" and, for their Fig. 5, clip the re-simulated intensity "at a maximum intensity in order to
mimic the nonlinear response of the detector".  Their later public code, repository
``thstielow/scatter-2D3D-nn`` (Stielow & Scheel, Phys. Rev. E 103, 053312 (2021)), read for this
module at commit 52e5cd0:

- ``scatter_utils.py``, ``scatterSim`` and ``physics_loss.py``, ``forwardScatter_tf``: the
  MSFT field is ``fftshift(fft2(slice))`` times the Ewald phase, summed, then
  ``np.flip(field)`` / ``tf.reverse(..., axis=[0, 1])``: **both axes reversed** (not one axis,
  not a transpose), and the display is ``log(|field|^2 + c)`` min-max normalised to 0..1.
- ``datasets/test/scatter/1/{1,2,3}s.png`` against their densities ``real/1/{1,2,3}r.png``
  re-simulated here (192^3, pad 512, central 128 crop, project q grid): Pearson r of the PNG with
  ``log10(I / max + 1e-5)`` is 0.97 / 0.96 / 0.99 for the point reflection q -> -q about pixel
  64 (``img[(128 - i) % 128, (128 - j) % 128]``), 0.90 / 0.92 / 0.91 for a plain 180 degree
  rotation (centre 63.5), 0.93 / 0.88 / 0.68 unflipped, lower for one-axis flips and the
  transpose; a linear display correlates at r = 0.26-0.44 only.  So the authors' images are
  the project's images point-reflected about the q = 0 pixel, which stays at 64 (not 63.5):
  in ``scatterSim`` the grid is odd (171 points, q = 0 in the middle), so ``np.flip`` maps
  q = 0 onto itself, and the crop ``[171 // 8 : 7 * 171 // 8]`` puts it at pixel 64.
- ``scatter_augmentations.py``: ``add_hole`` centres the hole at pixel ``(128 // 2, 128 // 2)``;
  ``add_sat`` is ``min((1 + 0.5 u) x, 1)`` (gain 1..1.5, clip at 1).
- ``main.ipynb``, cell "Experiment": the measured PNGs ``datasets/exp/barke*.png`` (the same
  eight files as :mod:`factory.msft.measured`) are read as ``png / 255`` and mapped by
  ``expScaling``, "compensate the non-linear scaling of the original colormap": piecewise
  linear through (0, 0), (0.3, 0.38), (0.88, 0.7425), (1, 1) (:data:`AUTHORS_EXP_KNOTS`), into
  the space of their log-display training images.

Display and saturation of :data:`AG_CLUSTER_DETECTOR` (measured for this module): the
valid-pixel values of the eight measured patterns after ``expScaling`` have quantiles
10/25/50/75/90 % = 0.005 / 0.05 / 0.22 / 0.46 / 0.61.  Twelve
simulated patterns (``msft/small`` preset, ``output: linear``; icosahedron, decahedron,
truncated octahedron, truncated twinned tetrahedron at R = 60 / 90 / 120 nm, random
orientations) through this model: a linear display is far off (two-sample Kolmogorov-Smirnov
distance 0.77 unclipped, still 0.33 clipped at 2 % of the maximum: most pixels near 0); a log
display fits, best along a valley of floor x clip level (KS 0.09-0.11 for floor 0.01-0.03 with
saturation 0.03-0.07; 0.16 for floor 1e-4 unclipped).  Chosen: ``display="log"``,
``log_floor=0.01``, ``saturation=0.05`` (KS 0.106, quantiles 0.02 / 0.07 / 0.21 / 0.44 / 0.73):
the bright plateau around the hole of the measured images (200-245 of 255) is the saturation.

The project's convention (:func:`to_measured_orientation`): the project's images are in the
physical q = k_out - k_in orientation with q = 0 at pixel ``n // 2``; the measured / authors'
orientation is the point reflection ``q -> -q`` about that pixel.

Geometry of the eight measured patterns (:func:`fit_detector_geometry`, reproduced in
``tests/msft/test_msft_detector_response.py``): the PNGs are resampled figure crops, so dark
detector corners hold resampling noise up to ~12 of 255; the footprint is the union over the
eight images of pixels >= 16 (``FOOTPRINT_LEVEL``).  Its bounding box is rows 33..93, cols
28..99 (``region = (33, 94, 28, 100)``); the bevel is the corner cut that best matches the
footprint (largest intersection over union); the hole is the set of pixels within 6 px of the
image centre darker than a quarter of the median there, its centre the mean centroid over the
images (62.8, 63.75) and its radius ``sqrt(area / pi)`` averaged (2.1 px), rounded up to half a
pixel.  The point-symmetry centre of the patterns themselves (maximum correlation with their
point reflection) is (63.5, 63.5) for the five most symmetric images, within 0.7 px of the hole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

AUTHORS_EXP_KNOTS = ((0.0, 0.3, 0.88, 1.0), (0.0, 0.38, 0.7425, 1.0))
"""``expScaling`` of the authors' ``main.ipynb``: measured PNG / 255 -> their training display."""

FOOTPRINT_LEVEL = 16.0
"""8-bit level separating detector signal from the resampling noise of the dark corners (max 12)."""


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def to_measured_orientation(img):
    """Project orientation -> measured / authors' orientation: point reflection q -> -q about
    pixel ``(n // 2, n // 2)``, ``out[..., i, j] = img[..., (n - i) % n, (m - j) % m]``.

    Row and column 0 (q = -n/2 dq, whose mirror is off the grid) wrap onto themselves.  The
    operation is its own inverse.  numpy arrays or torch tensors ``(..., rows, cols)``.
    """
    if _is_torch(img):
        import torch

        return torch.roll(torch.flip(img, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))
    return np.roll(np.flip(np.asarray(img), axis=(-2, -1)), (1, 1), axis=(-2, -1))


from_measured_orientation = to_measured_orientation


def _roll(x, k: int, axis: int):
    if _is_torch(x):
        import torch

        return torch.roll(x, shifts=k, dims=axis)
    return np.roll(x, k, axis=axis)


def subpixel_shift(img, d_row: float, d_col: float):
    """Move image content by ``(d_row, d_col)`` pixels (bilinear, periodic); numpy or torch."""
    out = img
    for d, axis in ((d_row, -2), (d_col, -1)):
        if d == 0:
            continue
        k = math.floor(d)
        f = d - k
        out = _roll(out, k, axis) if f == 0 else (1 - f) * _roll(out, k, axis) + f * _roll(out, k + 1, axis)
    return out


@dataclass(frozen=True)
class DetectorResponse:
    """A detector model: valid pixels, hole, saturation, gain and display of a 2D pattern.

    ``centre``: (row, col) of the direct beam in the image (default ``(rows // 2, cols // 2)``,
    where the project's q = 0 lies: no shift); ``region``: valid rectangle rows ``[r0, r1)``,
    cols ``[c0, c1)`` (default: the whole image); ``bevel``: a pixel is valid only if (rows to the
    nearest row edge + cols to the nearest col edge) >= bevel, counted from the outermost
    valid row / col (0); ``hole_radius``: pixels with distance <= this from ``centre`` are
    blocked (0: none); ``saturation``: the normalised intensity is clipped at this fraction
    of its maximum over the valid pixels and rescaled so the clip level is 1 (None: no clip);
    ``gain`` multiplies the normalised intensity before clipping (the authors' ``add_sat`` is
    gain 1..1.5 with saturation 1); ``display``: ``linear`` (the clipped value) or ``log``
    (``log10(v + log_floor)`` mapped affinely so 0 -> 0 and 1 -> 1); ``measured_scaling``: how a
    measured PNG / 255 becomes a display value (``authors``: the authors' ``expScaling``,
    :data:`AUTHORS_EXP_KNOTS`; ``identity``: unchanged); ``orient``: apply
    :func:`to_measured_orientation` to simulated patterns.
    """

    shape: tuple[int, int] = (128, 128)
    centre: tuple[float, float] | None = None
    region: tuple[int, int, int, int] | None = None
    bevel: float = 0.0
    hole_radius: float = 0.0
    saturation: float | None = None
    gain: float = 1.0
    display: Literal["linear", "log"] = "linear"
    log_floor: float = 1e-3
    measured_scaling: Literal["authors", "identity"] = "identity"
    orient: bool = True

    def __post_init__(self):
        rows, cols = self.shape
        if self.centre is None:
            object.__setattr__(self, "centre", (float(rows // 2), float(cols // 2)))
        if self.region is None:
            object.__setattr__(self, "region", (0, rows, 0, cols))
        object.__setattr__(self, "shape", (int(rows), int(cols)))
        object.__setattr__(self, "centre", tuple(float(c) for c in self.centre))
        object.__setattr__(self, "region", tuple(int(v) for v in self.region))
        r0, r1, c0, c1 = self.region
        if not (0 <= r0 < r1 <= rows and 0 <= c0 < c1 <= cols):
            raise ValueError(f"region {self.region} must satisfy 0 <= r0 < r1 <= {rows}, 0 <= c0 < c1 <= {cols}")
        if self.bevel < 0 or self.hole_radius < 0:
            raise ValueError("bevel and hole_radius must be >= 0")
        if self.saturation is not None and not 0 < self.saturation <= 1:
            raise ValueError(f"saturation = {self.saturation}: a fraction in (0, 1] or None")
        if not self.gain > 0:
            raise ValueError(f"gain = {self.gain}: must be > 0")
        if self.display not in ("linear", "log"):
            raise ValueError(f"display = {self.display!r}: 'linear' or 'log'")
        if not 0 < self.log_floor < 1:
            raise ValueError(f"log_floor = {self.log_floor}: must be in (0, 1)")
        if self.measured_scaling not in ("authors", "identity"):
            raise ValueError(f"measured_scaling = {self.measured_scaling!r}: 'authors' or 'identity'")

    def replace(self, **changes) -> DetectorResponse:
        return replace(self, **changes)

    # -- geometry --------------------------------------------------------------------
    def mask(self) -> np.ndarray:
        """bool ``(rows, cols)``, True = valid pixel."""
        rows, cols = self.shape
        r0, r1, c0, c1 = self.region
        r = np.arange(rows)[:, None]
        c = np.arange(cols)[None, :]
        m = (r >= r0) & (r < r1) & (c >= c0) & (c < c1)
        if self.bevel > 0:
            dr = np.minimum(r - r0, r1 - 1 - r)
            dc = np.minimum(c - c0, c1 - 1 - c)
            m &= (dr + dc) >= self.bevel
        if self.hole_radius > 0:
            m &= (r - self.centre[0]) ** 2 + (c - self.centre[1]) ** 2 > self.hole_radius**2
        return m

    # -- simulated intensity -> display ----------------------------------------------
    def apply(self, intensity, *, masked: bool = True):
        """Linear intensity ``(..., rows, cols)`` on the project's q grid (q = 0 at ``n // 2``)
        -> display value in 0..1, zero outside the mask.  numpy (float64 out) or torch
        (same dtype/device, differentiable).  ``masked=False`` keeps every pixel (normalised by
        the same maximum over the valid pixels): the pattern before augmentation filters that
        move it relative to the detector's fixed valid pixels (then multiply by :meth:`mask`)."""
        torch_in = _is_torch(intensity)
        x = intensity if torch_in else np.asarray(intensity, dtype=np.float64)
        if tuple(x.shape[-2:]) != tuple(self.shape):
            raise ValueError(f"image shape {tuple(x.shape[-2:])} does not match the detector {self.shape}")
        if self.orient:
            x = to_measured_orientation(x)
        rows, cols = self.shape
        x = subpixel_shift(x, self.centre[0] - rows // 2, self.centre[1] - cols // 2)
        if torch_in:
            import torch

            m = torch.as_tensor(self.mask(), device=x.device).to(x.dtype)
            x = torch.clamp(x, min=0.0)
            peak = torch.amax(x * m, dim=(-2, -1), keepdim=True)
            v = x / torch.where(peak > 0, peak, torch.ones_like(peak)) * self.gain
            if self.saturation is not None:
                v = torch.clamp(v, max=self.saturation) / self.saturation
            if self.display == "log":
                lo, hi = math.log10(self.log_floor), math.log10(1.0 + self.log_floor)
                v = (torch.log10(v + self.log_floor) - lo) / (hi - lo)
            return v * m if masked else v
        m = self.mask().astype(np.float64)
        x = np.clip(x, 0.0, None)
        peak = (x * m).max(axis=(-2, -1), keepdims=True)
        v = x / np.where(peak > 0, peak, 1.0) * self.gain
        if self.saturation is not None:
            v = np.minimum(v, self.saturation) / self.saturation
        if self.display == "log":
            lo, hi = math.log10(self.log_floor), math.log10(1.0 + self.log_floor)
            v = (np.log10(v + self.log_floor) - lo) / (hi - lo)
        return v * m if masked else v

    # -- measured PNG -> display -----------------------------------------------------
    def measured_input(self, png_0_255: np.ndarray) -> np.ndarray:
        """A measured 8-bit pattern (0..255, ``(..., rows, cols)``) -> the display space of
        :meth:`apply` (float32, 0..1, zero outside the mask)."""
        x = np.asarray(png_0_255, dtype=np.float64)
        if tuple(x.shape[-2:]) != tuple(self.shape):
            raise ValueError(f"image shape {tuple(x.shape[-2:])} does not match the detector {self.shape}")
        v = np.clip(x / 255.0, 0.0, 1.0)
        if self.measured_scaling == "authors":
            v = np.interp(v, *AUTHORS_EXP_KNOTS)
        return (v * self.mask()).astype(np.float32)


def masked_correlation(a, b, mask) -> float:
    """Pearson r of two images over the pixels where ``mask`` is True (numpy or torch inputs)."""
    def flat(x):
        if _is_torch(x):
            x = x.detach().cpu().numpy()
        return np.asarray(x, dtype=np.float64)

    m = flat(mask).astype(bool)
    x, y = flat(a)[..., m].ravel(), flat(b)[..., m].ravel()
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else float("nan")


# -- fitting the geometry to measured images --------------------------------------------
def footprint(images, level: float = FOOTPRINT_LEVEL) -> np.ndarray:
    """Union over the images of pixels >= ``level`` (bool)."""
    return np.any(np.stack([np.asarray(im) >= level for im in images]), axis=0)


def fit_detector_geometry(images, level: float = FOOTPRINT_LEVEL, *, hole_search: float = 6.0,
                          hole_fraction: float = 0.25) -> dict:
    """Region, bevel and hole of measured 8-bit images (the recipe of the module docstring).

    Returns ``region`` (bbox of :func:`footprint`), ``bevel`` (integer corner cut with the
    largest intersection over union with the footprint), ``bevel_iou``, ``hole_centre`` (mean
    centroid of the dark central pixels), ``hole_radius_mean`` (mean ``sqrt(area / pi)``).
    """
    ims = [np.asarray(im, dtype=np.float64) for im in images]
    shape = ims[0].shape
    fp = footprint(ims, level)
    rows, cols = np.where(fp.any(1))[0], np.where(fp.any(0))[0]
    region = (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)
    best = (-1.0, 0)
    for b in range(0, 21):
        m = DetectorResponse(shape=shape, region=region, bevel=float(b)).mask()
        iou = float((m & fp).sum() / (m | fp).sum())
        best = max(best, (iou, b))
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = (shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0
    near = np.hypot(yy - cy, xx - cx) < hole_search
    cents, radii = [], []
    for im in ims:
        dark = near & (im < hole_fraction * np.median(im[near]))
        if dark.any():
            cents.append((yy[dark].mean(), xx[dark].mean()))
            radii.append(math.sqrt(dark.sum() / math.pi))
    c = np.mean(cents, axis=0) if cents else (cy, cx)
    return {"region": region, "bevel": float(best[1]), "bevel_iou": best[0],
            "hole_centre": (float(c[0]), float(c[1])), "hole_radius_mean": float(np.mean(radii)) if radii else 0.0}


AG_CLUSTER_DETECTOR = DetectorResponse(
    shape=(128, 128),
    centre=(62.75, 63.75),
    region=(33, 94, 28, 100),
    bevel=10.0,
    hole_radius=2.5,
    saturation=0.05,
    gain=1.0,
    display="log",
    log_floor=0.01,
    measured_scaling="authors",
    orient=True,
)
"""The detector of the eight measured Ag cluster patterns (:mod:`factory.msft.measured`), fitted
as described in the module docstring."""


DETECTORS: dict[str, DetectorResponse] = {"ag-clusters": AG_CLUSTER_DETECTOR}
"""Detector models by name (``factory process augment --detector NAME``, model cards)."""


__all__ = ["AG_CLUSTER_DETECTOR", "DETECTORS", "AUTHORS_EXP_KNOTS", "DetectorResponse", "FOOTPRINT_LEVEL",
           "fit_detector_geometry", "footprint", "from_measured_orientation", "masked_correlation",
           "subpixel_shift", "to_measured_orientation"]
