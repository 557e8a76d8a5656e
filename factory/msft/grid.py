"""Everything of the MSFT that depends only on the grid, built once and kept per backend.

For a box ``(nz, ny, nx)`` of voxels (centres at ``(i - (n - 1) / 2) * voxel``) and a detector
of ``2h + 1`` momenta per axis (``q_m = m dq``, ``m = -h..h``, ``dq = 2 pi / (pad voxel)``):

- the DFT matrices of the two in-plane stages, ``W_x[x, m] = exp(-i q_m x)`` and
  ``W_y[m, y] = exp(-i q_m y)``; for real slices only ``m >= 0`` of the x stage is needed
  (Hermitian symmetry) and it is kept as a real matrix with interleaved (re, im) columns, so
  that one real matrix product gives the complex result;
- the Ewald phases ``exp(+i q_z(qx, qy) z_j)`` of every slice and the mask ``q_perp < k``;
- the phase ``exp(-i q . o)`` that moves an FFT's origin (voxel 0) to the box centre.

:func:`grid_for` returns them as arrays of a given :class:`~factory.backend.Backend`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..backend import Backend
from .params import MSFTParams, ewald_qz


@dataclass(frozen=True)
class MSFTGrid:
    """The cached arrays of one (box shape, detector, wavelength, precision, real/complex slices).

    Shapes with ``K = h + 1`` columns for real slices (``kx >= 0``) or ``2h + 1`` for complex:
    ``wx`` (nx, 2K) real interleaved or (nx, K) complex; ``wy`` (2h+1, ny); ``phase_re``,
    ``phase_im`` (real slices) or ``phase`` (complex) as (ky, z, kx); ``mask`` and
    ``origin`` (ky, kx).  ``fft_rows`` (and ``fft_cols``) are the detector's rows (columns) in
    a ``pad``-point FFT's order.
    """

    h: int
    dq: float
    real: bool
    wx: Any
    wy: Any
    phase_re: Any
    phase_im: Any
    phase: Any
    mask: Any
    origin: Any
    fft_rows: np.ndarray
    fft_cols: Any

    @property
    def ncols(self) -> int:
        return self.h + 1 if self.real else 2 * self.h + 1


@functools.lru_cache(maxsize=16)
def _numpy_grid(shape: tuple[int, int, int], voxel_nm: float, pad: int, crop: int, k: float, precision: str,
                real: bool) -> MSFTGrid:
    nz, ny, nx = shape
    cdt = np.dtype(precision)
    rdt = np.float32 if cdt == np.complex64 else np.float64
    h = crop // 2
    dq = 2.0 * math.pi / (pad * voxel_nm)
    ky = np.arange(-h, h + 1) * dq
    kx = np.arange(0, h + 1) * dq if real else ky
    xs, ys, zs = ((np.arange(n) - (n - 1) / 2.0) * voxel_nm for n in (nx, ny, nz))
    wx_c = np.exp(-1j * np.outer(xs, kx))
    if real:
        wx = np.empty((nx, 2 * len(kx)), dtype=rdt)
        wx[:, 0::2], wx[:, 1::2] = wx_c.real, wx_c.imag
    else:
        wx = wx_c.astype(cdt)
    wy = np.exp(-1j * np.outer(ky, ys)).astype(cdt)
    qz, mask = ewald_qz(kx, ky, k)
    phase = np.exp(1j * qz[:, None, :] * zs[None, :, None]).astype(cdt)  # (ky, z, kx)
    oy, ox = -(ny - 1) / 2.0 * voxel_nm, -(nx - 1) / 2.0 * voxel_nm  # voxel 0 relative to the centre
    origin = np.exp(-1j * (ky[:, None] * oy + kx[None, :] * ox)).astype(cdt)
    rows = np.r_[pad - h : pad, 0 : h + 1]
    grid = MSFTGrid(
        h=h, dq=dq, real=real, wx=wx, wy=wy,
        phase_re=np.ascontiguousarray(phase.real) if real else None,
        phase_im=np.ascontiguousarray(phase.imag) if real else None,
        phase=None if real else phase,
        mask=mask.astype(cdt), origin=origin, fft_rows=rows,
        fft_cols=slice(0, h + 1) if real else rows,
    )
    return grid  # shared by every call: never written to (writable, so torch can wrap it without a copy)


_DEVICE_GRIDS: dict[tuple, MSFTGrid] = {}


def grid_for(backend: Backend, shape: tuple[int, int, int], params: MSFTParams) -> MSFTGrid:
    """The grid of a box ``shape`` for ``params``, as ``backend``'s arrays (cached)."""
    real = params.transmission != "complex"
    g = _numpy_grid(tuple(int(s) for s in shape), float(params.voxel_nm), int(params.pad), int(params.crop),
                    params.k, params.precision, real)
    if not backend.is_torch:
        return g
    key = (backend.device, tuple(shape), params.voxel_nm, params.pad, params.crop, params.k, params.precision, real)
    out = _DEVICE_GRIDS.get(key)
    if out is None:
        moved = {f.name: backend.asarray(np.array(getattr(g, f.name)))
                 for f in fields(g) if isinstance(getattr(g, f.name), np.ndarray) and f.name not in ("fft_rows", "fft_cols")}
        out = MSFTGrid(**{f.name: moved.get(f.name, getattr(g, f.name)) for f in fields(g)})
        if len(_DEVICE_GRIDS) >= 16:
            _DEVICE_GRIDS.pop(next(iter(_DEVICE_GRIDS)))
        _DEVICE_GRIDS[key] = out
    return out


__all__ = ["MSFTGrid", "grid_for"]
