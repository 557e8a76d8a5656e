"""Network-ready preprocessing of single images, as a typed description says.

The description (:mod:`.description`: :class:`Pmd2d`, :class:`Pmd1d`, :class:`Scatter`) is
stored in the processed store (``meta["preprocessing"]``, its JSON form) and copied into
trained models, so the streaming predictor applies exactly the same function to new detector
frames: ``apply(description, image, coords)``, with a description or its JSON form.

- ``pmd2d`` (Shvetsov-Shilovski & Lein, PRA 2023, Sec. II A): W = log10(P / max P) clipped at ``log_floor`` (-5); the
  momentum window where W > -5, either one symmetric window for the whole set (default: the
  momentum scale stays the same for every image) or the bounding box of each image (the
  paper's per-image crop); bicubic resampling to ``out_shape`` = (128, 256)
  with kx, the polarisation axis, along the 256 columns; scaled to 0..255.  Resampling is
  separable bicubic convolution (Keys kernel, a = -0.5, as in image libraries' bicubic
  resize) by two sparse matrix products, cached per grid.
- ``pmd1d``: dP/dkx = sum_ky P dky inside the window, on ``n`` = 256 points, divided by its max.
- ``scatter`` (Stielow et al., MLST 2020): log10(I / max I) clipped at ``log_floor`` decades, scaled to 0..1,
  at ``out_shape`` = (128, 128) (resampled only when the detector differs).
"""

from __future__ import annotations

from typing import Any

import functools

import numpy as np
from scipy import sparse

from .description import NAMES, Description, DescriptionError, Pmd1d, Pmd2d, Scatter, input_axes, parse


def _log_relative(image: np.ndarray, floor: float, is_log: bool = False, peak: float | None = None) -> np.ndarray:
    """log10(I / max I) clipped below at ``floor`` (float64); zeros and negatives give ``floor``.
    ``peak``: max I when ``image`` is a cut-out of the frame."""
    image = np.asarray(image)
    peak = float(image.max()) if peak is None else float(peak)
    if is_log:
        w = image.astype(np.float64) - peak
    else:
        if not peak > 0:
            raise ValueError("image has no positive value; cannot take log10(P / max P)")
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.log10(image, dtype=np.float64)
        w -= np.log10(peak)
    return np.fmax(w, floor, out=w)  # fmax: NaN (log of a negative) -> floor


def _keys(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """The bicubic convolution kernel (Keys 1981) used by image libraries' bicubic resize."""
    t = np.abs(t)
    return np.where(t <= 1, (a + 2) * t**3 - (a + 3) * t**2 + 1,
                    np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0))


@functools.lru_cache(maxsize=64)
def _cubic_matrix(first: float, step: float, n_in: int, new: tuple[float, ...]) -> sparse.csr_matrix:
    """(n_out, n_in) weights of 1D bicubic interpolation from a uniform axis to ``new`` points."""
    u = (np.asarray(new) - first) / step
    base = np.floor(u).astype(np.int64)
    rows, cols, vals = [], [], []
    for k in range(-1, 3):
        idx = base + k
        rows.append(np.arange(len(u)))
        cols.append(np.clip(idx, 0, n_in - 1))  # edge pixels repeat beyond the border
        vals.append(_keys(u - idx))
    m = sparse.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(u), n_in))
    return m.tocsr()


@functools.lru_cache(maxsize=64)
def _cubic_support(first: float, step: float, n_in: int, new: tuple[float, ...]) -> tuple[int, int, sparse.csr_matrix]:
    """The input samples [lo, hi) the resampling to ``new`` reads, and its matrix on them only."""
    m = _cubic_matrix(first, step, n_in, new)
    lo, hi = int(m.indices.min()), int(m.indices.max()) + 1
    return lo, hi, m[:, lo:hi].tocsr()


def _plan(y: np.ndarray, x: np.ndarray, ny: np.ndarray, nx: np.ndarray):
    ky = (float(y[0]), float(y[1] - y[0]), len(y), tuple(np.round(ny, 12)))
    kx = (float(x[0]), float(x[1] - x[0]), len(x), tuple(np.round(nx, 12)))
    return _cubic_support(*ky), _cubic_support(*kx)


def _resample(img: np.ndarray, y: np.ndarray, x: np.ndarray, ny: np.ndarray, nx: np.ndarray) -> np.ndarray:
    """Separable bicubic resampling of ``img`` on uniform axes (y, x) to the points (ny, nx)."""
    (y0, y1, wy), (x0, x1, wx) = _plan(y, x, ny, nx)
    return _resample_cut(img[y0:y1, x0:x1], wy, wx)


def _resample_cut(cut: np.ndarray, wy: sparse.csr_matrix, wx: sparse.csr_matrix) -> np.ndarray:
    return np.asarray((wx @ (wy @ cut).T).T)


def signal_window(image: np.ndarray, ky: np.ndarray, kx: np.ndarray, floor: float) -> list[float]:
    """[ky0, ky1, kx0, kx1]: bounding box of log10(P / max P) > floor."""
    w = _log_relative(image, floor)
    rows = np.flatnonzero((w > floor).any(axis=1))
    cols = np.flatnonzero((w > floor).any(axis=0))
    return [float(ky[rows[0]]), float(ky[rows[-1]]), float(kx[cols[0]]), float(kx[cols[-1]])]


def pmd2d_description(window: str = "global", kmax: tuple[float, float] | None = None,
                      log_floor: float = -5.0, out_shape: tuple[int, int] = (128, 256)) -> dict[str, Any]:
    """The JSON form of :meth:`Pmd2d.build` (a plain dict, for callers that extend it)."""
    return Pmd2d.build(window, kmax, log_floor, out_shape).to_dict()


def output_coords(desc: Description | dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The momentum axes of the network input when they are the same for every image."""
    return parse(desc).output_coords()


def frame_coords(desc: Description | dict[str, Any]) -> dict[str, np.ndarray]:
    """The raw image axes recorded in the description ({} if none)."""
    return parse(desc).frame_coords()


def apply(desc: Description | dict[str, Any], image: np.ndarray,
          coords: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Preprocess one raw image (H, W) with axes ``coords`` as ``desc`` says; float32 out.

    ``desc``: a description or its JSON form (a store's ``meta["preprocessing"]``, a model
    card's ``preprocessing``).  Without ``coords`` the raw axes recorded in its ``input_axes``
    are used, and a frame whose shape differs from them is refused.
    """
    return _apply(parse(desc), image, coords)


def _apply(desc: Description, image: np.ndarray, coords: dict[str, np.ndarray] | None) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {image.shape}")
    if coords is None:
        coords = desc.frame_coords()
        expect = desc.frame_shape
        if expect and image.shape != expect:
            raise ValueError(f"frame shape {image.shape} != the model's raw input shape {expect}")
    if not np.isfinite(image).all():
        raise ValueError("image holds NaN/Inf")
    if isinstance(desc, Pmd2d):
        ky, kx = coords["ky"], coords["kx"]
        floor = desc.log_floor
        if desc.window == "global":
            y0, y1 = desc.ky_range
            x0, x1 = desc.kx_range
        else:
            y0, y1, x0, x1 = signal_window(image, ky, kx, floor)
        h, wd = desc.out_shape
        (r0, r1, wy), (c0, c1, wx) = _plan(ky, kx, np.linspace(y0, y1, h), np.linspace(x0, x1, wd))
        # only the pixels the resampling reads are taken to log scale (relative to the frame's peak)
        w = _log_relative(image[r0:r1, c0:c1], floor, peak=image.max())
        out = _resample_cut(w, wy, wx)
        lo, hi = desc.scale
        return np.clip((out - floor) / -floor * (hi - lo) + lo, lo, hi).astype(np.float32)
    if isinstance(desc, Pmd1d):
        ky, kx = coords["ky"], coords["kx"]
        dp = np.asarray(image, dtype=np.float64).sum(axis=0) * abs(ky[1] - ky[0])
        out = np.interp(np.linspace(*desc.kx_range, desc.n), kx, dp)
        peak = out.max()
        return (out / peak if peak > 0 else out).astype(np.float32)
    floor = desc.log_floor  # Scatter
    w = _log_relative(image, floor, is_log=desc.input == "log10")
    h, wd = desc.out_shape
    if w.shape != (h, wd):
        y = np.arange(w.shape[0], dtype=float)
        x = np.arange(w.shape[1], dtype=float)
        w = _resample(w, y, x, np.linspace(0, y[-1], h), np.linspace(0, x[-1], wd))
    return np.clip((w - floor) / -floor, 0.0, 1.0).astype(np.float32)


def apply_batch(desc: Description | dict[str, Any], images: np.ndarray, coords: dict[str, np.ndarray]) -> np.ndarray:
    d = parse(desc)
    return np.stack([_apply(d, im, coords) for im in images])


__all__ = ["NAMES", "Description", "DescriptionError", "Pmd1d", "Pmd2d", "Scatter", "apply", "apply_batch",
           "frame_coords", "input_axes", "output_coords", "parse", "pmd2d_description", "signal_window"]
