"""The multi-slice Fourier transform, written once against a :class:`~factory.backend.Backend`.

The same code runs on numpy arrays (numpy.fft or pyFFTW, matrix products in numpy or
torch/MKL) and on torch tensors (CPU or GPU); on torch every step is differentiable, so
autograd runs from the density to the pattern (for forward fitting by gradient descent).
The physics is described in :mod:`factory.msft.multislice`; here is how it is computed for a
batch of densities ``rho[b, z, y, x]``:

1. ``effective_density``: ``rho * T`` with the transmission of the material already passed
   (a running sum over slices: one pass per slice that stays in cache).
2. The in-plane transform of every slice onto the detector's ``2h + 1`` momenta per axis,
   restricted to the particle's bounding box (``prune``): ``dft`` by two matrix products,
   ``W_y @ slice @ W_x`` (for real slices the x stage only for ``qx >= 0``, as one real GEMM);
   ``fft`` by pruned FFTs of the ``pad``-point zero-padded slices (fixed chunk shapes, so
   that pyFFTW's plans are reused).
3. ``sum_slices``: multiply by the Ewald phase of each slice, sum over slices, mask
   ``q_perp >= k``; for real slices the ``qx < 0`` half follows from
   ``A(-q) = sum_j P_j(q) conj U_j(q)`` (``F(-q) = conj F(q)``, ``q_z(-q) = q_z(q)``).

Pruning to the bounding box is exact for the values but not for gradients with respect to
empty voxels, so it is off when the input requires a gradient.
"""

from __future__ import annotations

from ..backend import Backend
from .grid import MSFTGrid, grid_for
from .params import MSFTParams, check_grid

FFT_CHUNK = 16  # slices per pruned-FFT call (fixed shapes keep the plans cached)


def effective_density(backend: Backend, rho, params: MSFTParams):
    """``rho * T`` for a batch ``rho[b, z, y, x]`` (real; complex for delta/beta).

    Slice ``j`` sees the path ``voxel * (sum_{i<j} rho_i + rho_j / 2)`` of material before its
    midpoint; ``T = exp(rate * path / voxel)`` with :meth:`MSFTParams.attenuation_rate`.  One
    pass per slice keeps the running sum in cache (a cumulative sum over the volume followed
    by one exponential is several times slower on the CPU).
    """
    rate = params.attenuation_rate()
    if rate is None:
        return rho
    xp = backend.xp
    dtype = params.precision if isinstance(rate, complex) else params.real_dtype.name
    rho = backend.contiguous(rho)  # a box cut from a larger grid: one copy, then every pass reads it in order
    out = backend.empty(rho.shape, dtype)
    half = backend.asarray(0.5 * rate, dtype)  # a scalar of the working dtype (no casts per slice)
    # slice-major views: src[j] is slice j of every density (2D when there is one: cheaper to index)
    src, dst = (rho[0], out[0]) if rho.shape[0] == 1 else (xp.moveaxis(rho, 1, 0), xp.moveaxis(out, 1, 0))
    if getattr(rho, "requires_grad", False):  # autograd: the same steps without in-place updates
        acc = 0.0
        for j in range(src.shape[0]):
            r = src[j]
            e = acc + half * r
            dst[j] = r * xp.exp(e)
            acc = e + half * r
        return out
    acc, e = backend.zeros(src.shape[1:], dtype), backend.empty(src.shape[1:], dtype)  # rate * sum_{i<j} rho_i
    for j in range(src.shape[0]):
        r = src[j]
        hr = half * r
        xp.add(acc, hr, out=e)
        o = dst[j]
        xp.exp(e, out=o)
        o *= r
        e += hr
        acc, e = e, acc
    return out


def slice_span(backend: Backend, rho) -> slice:
    """The slices ``z`` of a batch ``rho[b, z, y, x]`` (>= 0) that are not empty."""
    return backend.nonzero_span(backend.xp.amax(rho, axis=(0, 2, 3)) > 0)


def bounding_box(backend: Backend, rho, zspan: slice | None = None) -> tuple[slice, slice, slice]:
    """(z, y, x) slices of the part of a batch ``rho[b, z, y, x]`` (>= 0) that is not zero
    (``zspan``: the occupied slices when already known)."""
    xp = backend.xp
    bz = slice_span(backend, rho) if zspan is None else zspan
    plane = xp.amax(rho[:, bz], axis=(0, 1))
    return bz, backend.nonzero_span(xp.amax(plane, axis=1) > 0), backend.nonzero_span(xp.amax(plane, axis=0) > 0)


def _dft_stages(backend: Backend, f, g: MSFTGrid, by: slice, bx: slice):
    """U[ky, b, z, kx] of the slices ``f[b, z, y, x]`` (already cut to the box ``by``, ``bx``)."""
    B, nz, ny, nx = f.shape
    rows = f.reshape(B * nz * ny, nx)
    t = backend.matmul(rows, g.wx[bx])
    if g.real:
        t = backend.as_complex(t)  # interleaved (re, im) columns -> complex
    t = backend.contiguous(backend.xp.moveaxis(t.reshape(B * nz, ny, g.ncols), 1, 0)).reshape(ny, B * nz * g.ncols)
    u = backend.matmul(g.wy[:, by], t)
    return u.reshape(2 * g.h + 1, B, nz, g.ncols)


def _fft_stages(backend: Backend, f, g: MSFTGrid, pad: int):
    """U[ky, b, z, kx] by pruned FFTs of the zero-padded slices (origin at voxel 0)."""
    xp = backend.xp
    B, nz, ny, nx = f.shape
    chunk = min(FFT_CHUNK, nz)
    parts = []
    for a in range(0, nz, chunk):
        c = f[:, a : a + chunk]
        if c.shape[1] < chunk:  # zero-fill the last chunk: the plan's shape stays the same
            c = backend.concat([c, backend.zeros((B, chunk - c.shape[1], ny, nx), _dtype_name(c))], axis=1)
        x = backend.fft(c, pad, axis=-1, real=g.real, keep=g.fft_cols)
        y = backend.fft(x, pad, axis=-2, keep=g.fft_rows)  # (B, chunk, ky, kx)
        parts.append(xp.moveaxis(y, 2, 0))
    return backend.concat(parts, axis=2)[:, :, :nz]


def _dtype_name(a) -> str:
    return str(a.dtype).removeprefix("torch.")


def sum_slices(backend: Backend, u, g: MSFTGrid, bz: slice, crop: int, origin: bool):
    """The amplitude ``(B, crop, crop)`` from ``u[ky, b, z, kx]`` of the slices ``bz``."""
    xp = backend.xp
    if not g.real:
        a = xp.einsum("yjx,ybjx->byx", g.phase[:, bz], u)
        if origin:
            a = a * g.origin
        return (a * g.mask)[:, :crop, :crop]
    ur, ui = backend.real_part(u), backend.imag_part(u)
    pr, pi = g.phase_re[:, bz], g.phase_im[:, bz]
    s1 = xp.einsum("yjx,ybjx->byx", pr, ur)
    s2 = xp.einsum("yjx,ybjx->byx", pi, ui)
    s3 = xp.einsum("yjx,ybjx->byx", pr, ui)
    s4 = xp.einsum("yjx,ybjx->byx", pi, ur)
    a = (s1 - s2) + 1j * (s3 + s4)  # sum_j P_j U_j, kx >= 0
    b = (s1 + s2) + 1j * (s4 - s3)  # sum_j P_j conj(U_j): A at (-ky, -kx)
    if origin:
        a, b = a * g.origin, b * xp.conj(g.origin)
    a, b = a * g.mask, b * g.mask
    h = g.h
    full = backend.concat([backend.flip(b, (1, 2))[:, :, :h], a], axis=2)  # kx = -h..-1 from b[-ky, h..1]
    return full[:, :crop, :crop]


def amplitude_array(rho, params: MSFTParams, backend: Backend, *, method: str = "dft", prune: bool | None = None,
                    zspan: slice | None = None):
    """Complex amplitudes ``A[b, qy, qx]`` (nm / sr^0.5) of a batch of densities ``rho[b, z, y, x]``.

    Arrays of ``backend`` in and out (a torch tensor stays on its device, and gradients flow
    through it); ``method`` is 'dft' or 'fft'.  ``prune`` (default: unless ``rho`` requires a
    gradient) restricts the work to the particle's bounding box; ``zspan``, the slices that
    hold any density when the caller knows them already, saves a pass over the volume.
    """
    if method not in ("dft", "fft"):
        raise ValueError(f"MSFT method {method!r}: choose 'dft' or 'fft' (or use amplitude() for 'reference')")
    if len(rho.shape) != 4:
        raise ValueError(f"a batch of densities must be 4D [batch, z, y, x]; got shape {tuple(rho.shape)}")
    check_grid(tuple(rho.shape[1:]), params)
    if prune is None:
        prune = not bool(getattr(rho, "requires_grad", False))
    with backend.activated():
        rho = backend.asarray(rho, params.real_dtype.name)
        g = grid_for(backend, tuple(rho.shape[1:]), params)
        full = slice(None)
        if method == "dft":
            bz, by, bx = bounding_box(backend, rho, zspan) if prune else (slice(0, rho.shape[1]), full, full)
            f = effective_density(backend, rho[:, bz, by, bx], params)  # nothing before bz: empty
            u = _dft_stages(backend, f, g, by, bx)
        else:
            bz = (zspan or slice_span(backend, rho)) if prune else slice(0, rho.shape[1])
            f = effective_density(backend, rho[:, bz], params)
            u = _fft_stages(backend, f, g, params.pad)
        return sum_slices(backend, u, g, bz, params.crop, origin=method == "fft") * params.prefactor()


__all__ = ["FFT_CHUNK", "amplitude_array", "bounding_box", "effective_density", "slice_span", "sum_slices"]
