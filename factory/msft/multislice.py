"""Multi-slice Fourier transform (MSFT) of a 3D density: the wide-angle scattered far field.

Physics (Stielow, Schmidt, Peltz, Fennel & Scheel, Mach. Learn.: Sci. Technol. (2020), App. B).
The beam travels along +z; the density
``rho[z, y, x]`` (fill fraction, >= 0) sits on a cubic voxel grid of edge ``voxel_nm``
with voxel centres at ``(i - (n - 1) / 2) * voxel_nm``.  Slice ``j`` at depth ``z_j`` is
illuminated by the field left over after the material already passed along its line of
sight: with the accumulated path ``d_j(x, y) = voxel * (sum_{i<j} rho_i + rho_j / 2)``
(midpoint rule: half of the slice itself), the local field is

- ``exp(-d_j / absorption_length)`` (``absorption_length_nm``, the *field* attenuation
  length as in the authors' code; intensity falls off twice as fast), or
- ``exp(i k (n - 1) d_j)`` with the complex refractive index ``n = 1 - delta + i beta``
  (``delta``, ``beta`` given: phase retardation and absorption), or
- 1 (``absorption_length_nm=None``: no absorption, the first Born approximation).

Each slice's 2D Fourier transform is multiplied by the exact Ewald-sphere phase and the
slices are summed coherently::

    A(qx, qy) = C * sum_j exp(+i q_z z_j) * sum_{y,x} rho_j T_j exp(-i (qx x + qy y)) dV
    q_z = k - sqrt(k^2 - qx^2 - qy^2),   A = 0 where qx^2 + qy^2 >= k^2,

i.e. the 3D transform of ``rho T`` at the scattering vector ``q = k_out - k_in``
(whose z component is ``-q_z``).  ``C = k^2 / (4 pi) * chi`` with the susceptibility
``chi = n^2 - 1``, so ``|A|^2`` is the differential cross section ``dsigma/dOmega`` in
nm^2/sr (no polarisation factor).  With only ``absorption_length_nm`` given,
``chi`` is that of a pure absorber with ``beta = 1 / (k a)``; without absorption
``chi = 1`` (cross section per unit susceptibility squared).  Image axes: ``[qy, qx]`` with
``q = 2 pi m / (pad * voxel)``, the central ``crop`` values of the zero-padded grid
(``m = -crop//2 ... crop - crop//2 - 1``).

Methods (all give the same amplitude to float rounding; ``auto`` picks the fastest):

- ``reference``: the straightforward implementation: numpy ``fft2`` of every slice
  zero-padded to ``pad x pad``, Ewald phase on the full grid, sum, crop.
- ``fft``: pruned FFTs (numpy.fft, pyFFTW plans, or torch.fft by ``backend``): real FFT
  along x keeping only the detector columns, FFT along y keeping only the detector rows,
  empty slices skipped.
- ``dft``: pruned DFT by two matrix products (numpy BLAS; with ``backend="auto"`` on a
  CPU the GEMMs run in torch/MKL; torch.matmul batched on a GPU) restricted to the
  particle's bounding box: ``W_y[crop, ny] @ slice @ W_x[nx, crop/2+1]``, using the
  Hermitian symmetry of a real slice (only ``qx >= 0`` computed).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from .. import backend as backends
from .shapes import user_density

Method = Literal["auto", "reference", "fft", "dft"]
METHODS = ("auto", "reference", "fft", "dft")
PRECISIONS = ("complex64", "complex128")


class Pattern(NamedTuple):
    """A detector image and its axes: ``intensity[iy, ix]`` at ``(qy[iy], qx[ix])`` (1/nm)."""

    intensity: np.ndarray
    qx: np.ndarray
    qy: np.ndarray


@dataclass(frozen=True)
class MSFTParams:
    """Options of one MSFT computation (see the module docstring for the physics)."""

    voxel_nm: float
    wavelength_nm: float = 13.5
    absorption_length_nm: float | None = 12.5
    delta: float | None = None
    beta: float | None = None
    pad: int = 512
    crop: int = 128
    method: str = "auto"
    backend: str = "auto"
    precision: str = "complex64"

    def __post_init__(self):
        if not (isinstance(self.voxel_nm, (int, float)) and self.voxel_nm > 0):
            raise ValueError(f"voxel_nm = {self.voxel_nm!r}: must be a number > 0")
        if not self.wavelength_nm > 0:
            raise ValueError(f"wavelength_nm = {self.wavelength_nm!r}: must be > 0")
        if self.absorption_length_nm is not None and not self.absorption_length_nm > 0:
            raise ValueError(
                f"absorption_length_nm = {self.absorption_length_nm!r}: must be > 0 (or None for no absorption)"
            )
        if (self.delta is None) != (self.beta is None):
            raise ValueError(f"delta = {self.delta!r}, beta = {self.beta!r}: give both (n = 1 - delta + i beta) or neither")
        if self.beta is not None and self.beta < 0:
            raise ValueError(f"beta = {self.beta!r}: must be >= 0 (absorption)")
        if int(self.pad) != self.pad or self.pad < 2:
            raise ValueError(f"pad = {self.pad!r}: must be an integer >= 2")
        if int(self.crop) != self.crop or self.crop < 1:
            raise ValueError(f"crop = {self.crop!r}: must be an integer >= 1")
        if self.crop > self.pad:
            raise ValueError(
                f"crop = {self.crop} is larger than the padded grid pad = {self.pad}; use crop <= pad"
            )
        if self.method not in METHODS:
            raise ValueError(f"method = {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.backend not in backends.BACKENDS:
            raise ValueError(f"backend = {self.backend!r}: choose one of {', '.join(backends.BACKENDS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision = {self.precision!r}: choose one of {', '.join(PRECISIONS)}")

    @property
    def k(self) -> float:
        return 2.0 * math.pi / self.wavelength_nm

    @property
    def complex_dtype(self):
        return np.dtype(self.precision)

    @property
    def real_dtype(self):
        return np.dtype(np.float32 if self.precision == "complex64" else np.float64)

    @property
    def transmission(self) -> str:
        """'complex' (delta, beta), 'real' (absorption length) or 'none'."""
        if self.delta is not None:
            return "complex"
        return "real" if self.absorption_length_nm is not None else "none"

    @property
    def susceptibility(self) -> complex:
        """chi = n^2 - 1 used for the absolute scale (1 without absorption)."""
        if self.delta is not None:
            n = complex(1.0 - self.delta, self.beta)
        elif self.absorption_length_nm is not None:
            n = complex(1.0, 1.0 / (self.k * self.absorption_length_nm))
        else:
            return 1.0 + 0j
        return n * n - 1.0

    def prefactor(self) -> complex:
        """C = k^2 / (4 pi) chi dV: |A|^2 in nm^2/sr."""
        return self.k**2 / (4.0 * math.pi) * self.susceptibility * self.voxel_nm**3


def q_axis(pad: int, voxel_nm: float, crop: int) -> np.ndarray:
    """The ``crop`` central momentum-transfer values (1/nm) of a ``pad``-point FFT grid."""
    if crop > pad:
        raise ValueError(f"crop = {crop} is larger than the padded grid pad = {pad}; use crop <= pad")
    m = np.arange(crop) - crop // 2
    return 2.0 * math.pi * m / (pad * voxel_nm)


def ewald_qz(qx: np.ndarray, qy: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
    """(q_z, mask) on the grid ``[qy, qx]``: ``q_z = k - sqrt(k^2 - q_perp^2)``; mask: q_perp < k."""
    q2 = qy[:, None] ** 2 + qx[None, :] ** 2
    mask = q2 < k * k
    qz = np.where(mask, k - np.sqrt(np.where(mask, k * k - q2, 0.0)), 0.0)
    return qz, mask


def check_grid(shape: tuple[int, ...], params: MSFTParams) -> None:
    """ValueError when the density does not fit the padded grid."""
    if len(shape) != 3:
        raise ValueError(f"density must be a 3D array [z, y, x]; got shape {shape}")
    nz, ny, nx = shape
    if max(ny, nx) > params.pad:
        raise ValueError(
            f"pad = {params.pad} is smaller than the density's slice size {ny} x {nx}; "
            "the zero-padded width must be at least the box width (use pad >= n)"
        )
    if min(shape) < 1:
        raise ValueError(f"density has an empty axis: shape {shape}")


# --- the effective (attenuated) density ------------------------------------------------------


def effective_density(rho: np.ndarray, params: MSFTParams) -> np.ndarray:
    """``rho * T`` with the transmission T of the material already passed (real or complex).

    The accumulated path of slice ``j`` is ``voxel * (sum_{i<j} rho_i + rho_j / 2)``.  One
    fused pass per slice (running sum, exponent, product) keeps the work in cache; this is
    3x faster than cumsum + exp over the whole volume.
    """
    rho = np.ascontiguousarray(rho, dtype=params.real_dtype)
    if params.transmission == "none":
        return rho
    if params.transmission == "real":
        rate = -params.voxel_nm / params.absorption_length_nm  # exponent per unit of rho
        out = np.empty_like(rho)
        tmp = np.empty(rho.shape[1:], dtype=rho.dtype)
    else:  # exp(i k (n - 1) d) = exp(k (-beta - i delta) d)
        rate = params.k * complex(-params.beta, -params.delta) * params.voxel_nm
        out = np.empty(rho.shape, dtype=params.complex_dtype)
        tmp = np.empty(rho.shape[1:], dtype=params.complex_dtype)
    rate = np.array(rate, dtype=tmp.dtype)
    half = np.array(0.5 * rate, dtype=tmp.dtype)
    acc = np.zeros(rho.shape[1:], dtype=tmp.dtype)  # rate * sum_{i<j} rho_i
    for j in range(rho.shape[0]):
        r = rho[j]
        np.multiply(r, half, out=tmp)
        tmp += acc
        np.exp(tmp, out=tmp)
        np.multiply(r, tmp, out=out[j])
        acc += r * rate
    return out


def _bbox(rho: np.ndarray, zmax: np.ndarray | None = None) -> tuple[slice, slice, slice]:
    """Bounding box (z, y, x slices) of the non-zero part of ``rho`` (>= 0); empty -> one voxel."""

    def span(profile):
        idx = np.flatnonzero(profile > 0)
        return slice(int(idx[0]), int(idx[-1]) + 1) if len(idx) else slice(0, 1)

    bz = span(rho.reshape(rho.shape[0], -1).max(axis=1) if zmax is None else zmax)
    plane = rho[bz].max(axis=0)
    by = span(plane.max(axis=1))
    bx = span(plane.max(axis=0))
    return bz, by, bx


# --- cached geometry: DFT matrices, Ewald phases -------------------------------------------


@functools.lru_cache(maxsize=32)
def _grid_cache(shape: tuple[int, int, int], voxel_nm: float, pad: int, crop: int, k: float, precision: str):
    """Everything that depends only on the grid: q values, DFT matrices, Ewald phases."""
    nz, ny, nx = shape
    cdt = np.dtype(precision)
    h = crop // 2
    dq = 2.0 * math.pi / (pad * voxel_nm)
    m_sym = np.arange(-h, h + 1)  # symmetric set of detector indices
    m_pos = np.arange(0, h + 1)
    xs = (np.arange(nx) - (nx - 1) / 2.0) * voxel_nm
    ys = (np.arange(ny) - (ny - 1) / 2.0) * voxel_nm
    zs = (np.arange(nz) - (nz - 1) / 2.0) * voxel_nm
    # DFT matrices (centred coordinates): Wx[x, m] = exp(-i q_m x), Wy[m, y] = exp(-i q_m y)
    wx_pos = np.exp(-1j * np.outer(xs, m_pos * dq))
    wx_sym = np.exp(-1j * np.outer(xs, m_sym * dq))
    wy_sym = np.exp(-1j * np.outer(m_sym * dq, ys)).astype(cdt)
    # real-input x-stage as a real matrix with interleaved (re, im) columns: the real GEMM's
    # output viewed as complex is the complex result
    rdt = np.float32 if cdt == np.complex64 else np.float64
    wx_pos_ri = np.empty((nx, 2 * (h + 1)), dtype=rdt)
    wx_pos_ri[:, 0::2] = wx_pos.real
    wx_pos_ri[:, 1::2] = wx_pos.imag
    # Ewald phases on the half grid [ky in -h..h, j, kx in 0..h] and the symmetric grid
    qy_s, qx_s, qx_p = m_sym * dq, m_sym * dq, m_pos * dq
    qz_half, mask_half = ewald_qz(qx_p, qy_s, k)
    qz_full, mask_full = ewald_qz(qx_s, qy_s, k)
    ph_half = np.exp(1j * qz_half[:, None, :] * zs[None, :, None]).astype(cdt)  # (ky, j, kx)
    ph_full = np.exp(1j * qz_full[:, None, :] * zs[None, :, None]).astype(cdt)
    out = dict(
        h=h,
        dq=dq,
        xs=xs,
        ys=ys,
        zs=zs,
        wx_pos=wx_pos.astype(cdt),
        wx_sym=wx_sym.astype(cdt),
        wx_pos_ri=wx_pos_ri,
        wy_sym=wy_sym,
        ph_half=ph_half,
        ph_half_re=np.ascontiguousarray(ph_half.real),
        ph_half_im=np.ascontiguousarray(ph_half.imag),
        ph_full=ph_full,
        mask_half=mask_half,
        mask_full=mask_full,
    )
    for v in out.values():
        if isinstance(v, np.ndarray):
            v.setflags(write=False)
    return out


def _assemble(a_half: np.ndarray, b_half: np.ndarray, h: int, crop: int) -> np.ndarray:
    """Full [-h..h]^2 amplitude from qx >= 0 (a_half) and the mirrored sums (b_half), cropped.

    For a real slice F(-q) = conj F(q) and q_z(-q) = q_z(q), so
    A(ky, kx < 0) = sum_j P_j(-ky, -kx) conj U_j(-ky, -kx) = b_half[-ky, -kx].
    """
    full = np.empty((2 * h + 1, 2 * h + 1), dtype=a_half.dtype)
    full[:, h:] = a_half
    full[:, :h] = b_half[::-1, :0:-1]  # rows -ky, columns kx = -h..-1 <- b_half[., h..1]
    return full[:crop, :crop]


def _finish_half(U: np.ndarray, g: dict, j: slice, params: MSFTParams, offset_phase=None) -> np.ndarray:
    """Ewald phase and slice sum on the half grid; U is (ky, j, kx>=0); returns the crop."""
    h = g["h"]
    Ur = np.ascontiguousarray(U.real)
    Ui = np.ascontiguousarray(U.imag)
    Pr = g["ph_half_re"][:, j, :]
    Pi = g["ph_half_im"][:, j, :]
    s1 = np.einsum("yjx,yjx->yx", Pr, Ur)
    s2 = np.einsum("yjx,yjx->yx", Pi, Ui)
    s3 = np.einsum("yjx,yjx->yx", Pr, Ui)
    s4 = np.einsum("yjx,yjx->yx", Pi, Ur)
    a_half = (s1 - s2) + 1j * (s3 + s4)
    b_half = (s1 + s2) + 1j * (s4 - s3)
    if offset_phase is not None:
        a_half = a_half * offset_phase
        b_half = b_half * np.conj(offset_phase)
    a_half = a_half * g["mask_half"]
    b_half = b_half * g["mask_half"]
    return _assemble(a_half, b_half, h, params.crop)


def _finish_full(U: np.ndarray, g: dict, j: slice, params: MSFTParams, offset_phase=None) -> np.ndarray:
    """Ewald phase and slice sum on the symmetric grid (complex slices); U is (ky, j, kx)."""
    a = np.einsum("yjx,yjx->yx", g["ph_full"][:, j, :], U)
    if offset_phase is not None:
        a = a * offset_phase
    return (a * g["mask_full"])[: params.crop, : params.crop]


# --- methods ---------------------------------------------------------------------------------


def _amp_reference(rho: np.ndarray, params: MSFTParams) -> np.ndarray:
    """Straightforward: numpy fft2 of each zero-padded slice, Ewald phase, sum, crop."""
    f = effective_density(rho, params)
    nz, ny, nx = f.shape
    pad, crop, cdt = params.pad, params.crop, params.complex_dtype
    dq = 2.0 * math.pi / (pad * params.voxel_nm)
    q = (np.arange(pad) - pad // 2) * dq  # fftshifted axis
    qz, mask = ewald_qz(q, q, params.k)
    zs = (np.arange(nz) - (nz - 1) / 2.0) * params.voxel_nm
    total = np.zeros((pad, pad), dtype=cdt)
    buf = np.zeros((pad, pad), dtype=cdt)
    for j in range(nz):
        buf[:ny, :nx] = f[j]
        F = np.fft.fftshift(np.fft.fft2(buf))
        total += F * np.exp(1j * qz * zs[j]).astype(cdt)
    # the FFT puts voxel 0 at the origin: shift to the box centre
    shift = np.exp(1j * (q[None, :] * (nx - 1) / 2.0 + q[:, None] * (ny - 1) / 2.0) * params.voxel_nm)
    total = total * shift * mask
    c0 = pad // 2 - crop // 2
    return total[c0 : c0 + crop, c0 : c0 + crop].astype(cdt)


def _offset_phase(g: dict, y0: int, x0: int, shape, params: MSFTParams, full: bool) -> np.ndarray:
    """exp(-i q . o): moves the FFT origin (voxel (y0, x0)) to the box centre."""
    nz, ny, nx = shape
    h, dq = g["h"], g["dq"]
    oy = (y0 - (ny - 1) / 2.0) * params.voxel_nm
    ox = (x0 - (nx - 1) / 2.0) * params.voxel_nm
    ky = np.arange(-h, h + 1) * dq
    kx = ky if full else np.arange(0, h + 1) * dq
    return np.exp(-1j * (ky[:, None] * oy + kx[None, :] * ox)).astype(params.complex_dtype)


@functools.lru_cache(maxsize=16)
def _fftw_plans(shape: tuple[int, int, int], pad: int, h: int, dtype: str, real: bool):
    """Cached pyFFTW plans for one slice chunk: x-stage (r)fft, then y-stage fft."""
    import pyfftw

    backends.setup_pyfftw()
    threads = backends.fftw_threads()
    effort = pyfftw.config.PLANNER_EFFORT
    a = pyfftw.empty_aligned(shape, dtype=dtype)
    if real:
        px = pyfftw.builders.rfft(a, n=pad, axis=-1, threads=threads, planner_effort=effort)
        ncols = h + 1
    else:
        px = pyfftw.builders.fft(a, n=pad, axis=-1, threads=threads, planner_effort=effort)
        ncols = 2 * h + 1
    cdt = np.complex64 if np.dtype(dtype) in (np.float32, np.complex64) else np.complex128
    b = pyfftw.empty_aligned((shape[0], shape[1], ncols), dtype=cdt)
    py = pyfftw.builders.fft(b, n=pad, axis=1, threads=threads, planner_effort=effort)
    return px, py, ncols


def _amp_fft(rho: np.ndarray, params: MSFTParams, backend: str) -> np.ndarray:
    """Pruned FFTs: x-stage keeps the detector columns, y-stage the detector rows."""
    nz, ny, nx = rho.shape
    g = _grid_cache(rho.shape, params.voxel_nm, params.pad, params.crop, params.k, params.precision)
    h, pad = g["h"], params.pad
    real = params.transmission != "complex"
    rows = np.r_[pad - h : pad, 0 : h + 1]  # ky = -h..h in FFT order
    occupied = np.flatnonzero(rho.reshape(nz, -1).max(axis=1) > 0)
    j0, j1 = (int(occupied[0]), int(occupied[-1]) + 1) if len(occupied) else (0, 1)
    f = np.zeros(rho.shape, dtype=params.complex_dtype if not real else params.real_dtype)
    f[j0:j1] = effective_density(rho[j0:j1], params)  # the material before j0 is empty
    if backend == "fftw":
        chunk = min(16, nz)
        # fixed chunk shapes keep the plans cached; chunks start at j0 and may reach past nz
        px, py, ncols = _fftw_plans((chunk, ny, nx), pad, h, str(f.dtype), real)
        nchunks = -(-(j1 - j0) // chunk)
        U = np.empty((2 * h + 1, nchunks * chunk, ncols), dtype=params.complex_dtype)
        buf = np.zeros((chunk, ny, nx), dtype=f.dtype)
        for c in range(nchunks):
            a, b = j0 + c * chunk, min(j0 + (c + 1) * chunk, nz)
            buf[: b - a] = f[a:b]
            buf[b - a :] = 0
            X = px(buf)
            if real:
                Xc = X[:, :, : h + 1]
            else:
                Xc = np.concatenate([X[:, :, pad - h :], X[:, :, : h + 1]], axis=2)
            Y = py(np.ascontiguousarray(Xc))
            U[:, c * chunk : (c + 1) * chunk, :] = Y[:, rows, :].transpose(1, 0, 2)
        j = slice(j0, j0 + nchunks * chunk)
        if j.stop > nz:  # the zero-filled tail of the last chunk: drop it
            U = U[:, : nz - j0, :]
            j = slice(j0, nz)
    else:
        sub = f[j0:j1]
        if real:
            X = np.fft.rfft(sub, n=pad, axis=-1)[:, :, : h + 1]
        else:
            X = np.fft.fft(sub, n=pad, axis=-1)
            X = np.concatenate([X[:, :, pad - h :], X[:, :, : h + 1]], axis=2)
        Y = np.fft.fft(X, n=pad, axis=1)[:, rows, :]
        U = Y.transpose(1, 0, 2).astype(params.complex_dtype)
        j = slice(j0, j1)
    off = _offset_phase(g, 0, 0, f.shape, params, full=not real)
    if real:
        return _finish_half(U, g, j, params, off)
    return _finish_full(U, g, j, params, off)


def _amp_dft(rho: np.ndarray, params: MSFTParams, zmax: np.ndarray | None = None, blas: str = "numpy") -> np.ndarray:
    """Pruned DFT by matrix products over the bounding box of the particle.

    ``blas="torch"`` runs the two GEMMs with torch on CPU (MKL; ~20 % faster than numpy's
    OpenBLAS here) on the same numpy buffers; everything else stays numpy.
    """
    g = _grid_cache(rho.shape, params.voxel_nm, params.pad, params.crop, params.k, params.precision)
    h = g["h"]
    bz, by, bx = _bbox(rho, zmax)
    sub = effective_density(rho[bz, by, bx], params)  # the material before the box is empty
    nzb, nyb, nxb = sub.shape
    rows = sub.reshape(nzb * nyb, nxb)
    real = not np.iscomplexobj(sub)
    ncols = h + 1 if real else 2 * h + 1
    if blas == "torch":
        import torch

        from .torch_msft import _grid_torch

        gt = _grid_torch(rho.shape, params.voxel_nm, params.pad, params.crop, params.k, params.precision, "cpu")
        wx = gt["wx_pos_ri"][bx] if real else gt["wx_sym"][bx]
        if not rows.flags.writeable:  # torch.from_numpy wants a writable buffer
            rows = rows.copy()
        T = (torch.from_numpy(rows) @ wx).numpy()
        T = T.view(params.complex_dtype) if real else T
        T = np.ascontiguousarray(T.reshape(nzb, nyb, ncols).transpose(1, 0, 2)).reshape(nyb, nzb * ncols)
        U = (gt["wy_sym"][:, by] @ torch.from_numpy(T)).numpy().reshape(2 * h + 1, nzb, ncols)
    else:
        if real:
            T = (rows @ g["wx_pos_ri"][bx]).view(params.complex_dtype)  # (nzb*nyb, h+1), interleaved re/im
        else:
            T = rows @ g["wx_sym"][bx]
        # y-stage as one GEMM: (2h+1, nyb) @ (nyb, nzb*ncols)
        T = T.reshape(nzb, nyb, ncols).transpose(1, 0, 2).reshape(nyb, nzb * ncols)
        U = (g["wy_sym"][:, by] @ T).reshape(2 * h + 1, nzb, ncols)
    if real:
        return _finish_half(U, g, bz, params)
    return _finish_full(U, g, bz, params)


def _cpu_blas(params: MSFTParams) -> str:
    """'torch' (MKL GEMMs) for backend 'auto' when torch is importable, else 'numpy'."""
    if params.backend != "auto":
        return "numpy"
    try:
        import torch  # noqa: F401
    except ImportError:  # pragma: no cover - torch is a dependency
        return "numpy"
    return "torch"


def resolve_method(method: str, backend: str) -> tuple[str, str]:
    """(method, concrete backend) for the requested pair; 'auto' picks the fastest measured."""
    be = backends.resolve(backend)
    if method not in METHODS:
        raise ValueError(f"method = {method!r}: choose one of {', '.join(METHODS)}")
    if method == "auto":
        method = "dft"
    return method, be


def amplitude(density, params: MSFTParams, *, validate: bool = True) -> np.ndarray:
    """Complex scattering amplitude ``A[qy, qx]`` (nm / sr^0.5) on the detector crop."""
    if validate:
        rho, zmax = user_density(density, return_zmax=True)
    else:
        rho, zmax = np.asarray(density), None
    check_grid(rho.shape, params)
    method, be = resolve_method(params.method, params.backend)
    if be == "torch" and method != "reference":
        from .torch_msft import amplitude_batch_torch

        return amplitude_batch_torch(rho[None], params, method=method)[0]
    if method == "reference":
        amp = _amp_reference(rho, params)
    elif method == "fft":
        amp = _amp_fft(rho, params, be)
    else:
        amp = _amp_dft(rho, params, zmax, _cpu_blas(params))
    return (amp * params.prefactor()).astype(params.complex_dtype, copy=False)


def amplitude_batch(densities, params: MSFTParams) -> np.ndarray:
    """Amplitudes of a batch ``(B, nz, ny, nx)`` of densities: one torch call, or a loop."""
    rho = np.asarray(densities)
    if rho.ndim != 4:
        raise ValueError(f"a batch of densities must be 4D [batch, z, y, x]; got shape {rho.shape}")
    method, be = resolve_method(params.method, params.backend)
    if be == "torch" and method != "reference":
        from .torch_msft import amplitude_batch_torch

        for r in rho:
            user_density(r)
        check_grid(rho.shape[1:], params)
        return amplitude_batch_torch(rho, params, method=method)
    return np.stack([amplitude(r, params) for r in rho])


def scatter(
    density,
    voxel_nm: float,
    *,
    wavelength_nm: float = 13.5,
    absorption_length_nm: float | None = 12.5,
    delta: float | None = None,
    beta: float | None = None,
    pad: int = 512,
    crop: int = 128,
    method: str = "auto",
    backend: str = "auto",
    precision: str = "complex64",
) -> Pattern:
    """Scattered intensity ``dsigma/dOmega`` (nm^2/sr) of a density ``[z, y, x]`` on the q-grid crop.

    Returns ``Pattern(intensity, qx, qy)``; ``intensity[iy, ix]`` belongs to ``(qy[iy], qx[ix])``.
    """
    params = MSFTParams(
        voxel_nm=voxel_nm,
        wavelength_nm=wavelength_nm,
        absorption_length_nm=absorption_length_nm,
        delta=delta,
        beta=beta,
        pad=pad,
        crop=crop,
        method=method,
        backend=backend,
        precision=precision,
    )
    amp = amplitude(density, params)
    q = q_axis(pad, voxel_nm, crop)
    return Pattern(np.abs(amp) ** 2, q.copy(), q.copy())


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|: the agreement measure used in tests and benchmarks."""
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


__all__ = [
    "METHODS",
    "MSFTParams",
    "Pattern",
    "amplitude",
    "amplitude_batch",
    "effective_density",
    "ewald_qz",
    "q_axis",
    "relative_difference",
    "resolve_method",
    "scatter",
]
