"""Batched MSFT and voxelisation with torch (GPU when present, CPU otherwise).

The same algorithm as :mod:`factory.msft.multislice` (``dft``: two matrix products per
slice restricted to the batch's common bounding box; ``fft``: pruned ``torch.fft``),
run on a whole batch ``(B, nz, ny, nx)`` at once.  :func:`density_batch_torch` voxelises a
batch of shapes on the device so that nothing but labels travels to it.
"""

from __future__ import annotations

import functools

import numpy as np

from .. import backend as backends
from .multislice import MSFTParams, _grid_cache
from .shapes import SHAPES, ShapeOptions, check_fits, polyhedron


def _torch():
    import torch

    return torch


def _device(device=None):
    torch = _torch()
    return torch.device(device or backends.torch_device())


@functools.lru_cache(maxsize=16)
def _grid_torch(shape, voxel_nm, pad, crop, k, precision, device: str):
    torch = _torch()
    g = _grid_cache(shape, voxel_nm, pad, crop, k, precision)
    dev = torch.device(device)
    out = {"h": g["h"], "dq": g["dq"]}
    for key in ("wx_pos_ri", "wx_sym", "wy_sym", "mask_half", "mask_full"):
        out[key] = torch.from_numpy(np.array(g[key])).to(dev)
    # phases as (j, ky, kx) to broadcast against U (B, j, ky, kx)
    out["ph_half"] = torch.from_numpy(np.ascontiguousarray(g["ph_half"].transpose(1, 0, 2))).to(dev)
    out["ph_full"] = torch.from_numpy(np.ascontiguousarray(g["ph_full"].transpose(1, 0, 2))).to(dev)
    return out


def effective_density_torch(rho, params: MSFTParams):
    """rho * T on a batch (B, nz, ny, nx): the torch twin of ``scatter.effective_density``."""
    torch = _torch()
    if params.transmission == "none":
        return rho
    d = torch.cumsum(rho, dim=1) - 0.5 * rho
    d = d * params.voxel_nm
    if params.transmission == "real":
        return rho * torch.exp(d * (-1.0 / params.absorption_length_nm))
    cdt = torch.complex64 if params.precision == "complex64" else torch.complex128
    phase = torch.tensor(params.k * complex(-params.beta, -params.delta), dtype=cdt, device=rho.device)
    return rho.to(cdt) * torch.exp(phase * d.to(cdt))


def _union_bbox(f):
    torch = _torch()
    nzm = f != 0
    out = []
    for dim in (1, 2, 3):
        m = nzm
        for od in (3, 2, 1, 0):  # reduce every other dimension, highest first
            if od != dim:
                m = m.any(dim=od)
        idx = torch.nonzero(m).flatten()
        out.append(slice(int(idx[0]), int(idx[-1]) + 1) if idx.numel() else slice(0, 1))
    return tuple(out)


def amplitude_batch_torch(rho, params: MSFTParams, *, method: str = "dft", device=None) -> np.ndarray:
    """Amplitudes ``(B, crop, crop)`` (numpy, complex) of a batch of real densities ``[b, z, y, x]``."""
    torch = _torch()
    dev = _device(device)
    rdt = torch.float32 if params.precision == "complex64" else torch.float64
    x = torch.as_tensor(np.asarray(rho) if not torch.is_tensor(rho) else rho).to(device=dev, dtype=rdt)
    amp = amplitude_batch_tensor(x, params, method=method)
    return amp.cpu().numpy()


def amplitude_batch_tensor(x, params: MSFTParams, *, method: str = "dft"):
    """Like :func:`amplitude_batch_torch` but tensor in, tensor out (stays on the device)."""
    torch = _torch()
    B, nz, ny, nx = x.shape
    g = _grid_torch((nz, ny, nx), params.voxel_nm, params.pad, params.crop, params.k, params.precision, str(x.device))
    h, pad = g["h"], params.pad
    cdt = torch.complex64 if params.precision == "complex64" else torch.complex128
    f = effective_density_torch(x, params)
    real = not torch.is_complex(f)
    if method == "dft":
        bz, by, bx = _union_bbox(f)
        sub = f[:, bz, by, bx]
        _, nzb, nyb, nxb = sub.shape
        rows = sub.reshape(B * nzb * nyb, nxb)
        if real:
            T = rows @ g["wx_pos_ri"][bx]
            T = torch.view_as_complex(T.reshape(B * nzb * nyb, h + 1, 2))
            ncols = h + 1
        else:
            T = rows @ g["wx_sym"][bx]
            ncols = 2 * h + 1
        T = T.reshape(B, nzb, nyb, ncols)
        U = torch.matmul(g["wy_sym"][:, by], T)  # (B, nzb, 2h+1, ncols)
        j = bz
        off = None
    elif method == "fft":
        occ = torch.nonzero((f != 0).any(dim=3).any(dim=2).any(dim=0)).flatten()
        j = slice(int(occ[0]), int(occ[-1]) + 1) if occ.numel() else slice(0, 1)
        sub = f[:, j]
        if real:
            X = torch.fft.rfft(sub, n=pad, dim=-1)[..., : h + 1]
            ncols = h + 1
        else:
            X = torch.fft.fft(sub, n=pad, dim=-1)
            X = torch.cat([X[..., pad - h :], X[..., : h + 1]], dim=-1)
            ncols = 2 * h + 1
        Y = torch.fft.fft(X, n=pad, dim=-2)
        U = torch.cat([Y[..., pad - h :, :], Y[..., : h + 1, :]], dim=-2).to(cdt)
        dq = g["dq"]
        ky = torch.arange(-h, h + 1, device=x.device, dtype=torch.float64) * dq
        kx = ky if not real else torch.arange(0, h + 1, device=x.device, dtype=torch.float64) * dq
        oy = -(ny - 1) / 2.0 * params.voxel_nm
        ox = -(nx - 1) / 2.0 * params.voxel_nm
        off = torch.exp(-1j * (ky[:, None] * oy + kx[None, :] * ox)).to(cdt)
    else:
        raise ValueError(f"torch MSFT method {method!r}: choose 'dft' or 'fft'")
    if real:
        P = g["ph_half"][j]  # (nzb, 2h+1, h+1)
        a_half = (P * U).sum(dim=1)
        b_half = (P * U.conj()).sum(dim=1)
        if off is not None:
            a_half = a_half * off
            b_half = b_half * off.conj()
        a_half = a_half * g["mask_half"]
        b_half = b_half * g["mask_half"]
        full = torch.empty((B, 2 * h + 1, 2 * h + 1), dtype=a_half.dtype, device=x.device)
        full[:, :, h:] = a_half
        full[:, :, :h] = torch.flip(b_half, dims=(1, 2))[:, :, :h]
    else:
        P = g["ph_full"][j]
        full = (P * U).sum(dim=1)
        if off is not None:
            full = full * off
        full = full * g["mask_full"]
    crop = params.crop
    return full[:, :crop, :crop] * params.prefactor()


# --- voxelisation on the device ------------------------------------------------------------


def density_batch_torch(
    shape: str,
    radii_nm,
    quats,
    *,
    n: int,
    voxel_nm: float,
    options: ShapeOptions = ShapeOptions(),
    device=None,
    dtype=None,
):
    """Antialiased densities ``(B, n, n, n)`` of one shape for a batch of radii and orientations.

    Same formula as :func:`factory.msft.shapes.density`, evaluated on the full grid.
    """
    torch = _torch()
    from ..geometry.quaternions import normalize, rotation_matrix

    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}")
    dev = _device(device)
    dtype = dtype or torch.float32
    radii = np.atleast_1d(np.asarray(radii_nm, dtype=np.float64))
    quats = normalize(np.atleast_2d(quats))
    for r, q in zip(radii, quats):
        check_fits(shape, float(r), q, n, voxel_nm, options)
    c = (torch.arange(n, device=dev, dtype=torch.float64) - (n - 1) / 2.0).to(dtype)  # voxel units
    zz, yy, xx = c[:, None, None], c[None, :, None], c[None, None, :]
    out = []
    for r, q in zip(radii, quats):
        rv = r / voxel_nm
        if shape == "sphere":
            rr = torch.sqrt(zz * zz + yy * yy + xx * xx)
            width = torch.where(rr > 1e-12, (zz.abs() + yy.abs() + xx.abs()) / rr.clamp_min(1e-12), torch.ones_like(rr))
            s = (rr - rv) / width
        else:
            poly = polyhedron(shape, options)
            rot = rotation_matrix(q)
            s = _plane_max(poly.A @ rot.T, poly.b * rv, zz, yy, xx)
            for nA, nb in poly.notches:
                s = torch.maximum(s, -_plane_max(nA @ rot.T, nb * rv, zz, yy, xx))
        out.append(torch.clamp(0.5 - s, 0.0, 1.0))
    return torch.stack(out)


def _plane_max(A, b, zz, yy, xx):
    torch = _torch()
    w = np.abs(A).sum(axis=1)
    An = A / w[:, None]
    bn = b / w
    s = None
    for (ax, ay, az), bi in zip(An, bn):
        term = (zz * float(az) - float(bi)) + yy * float(ay) + xx * float(ax)
        s = term if s is None else torch.maximum(s, term)
    return s
