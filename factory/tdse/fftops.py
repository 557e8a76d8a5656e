"""Array kernels of the split-operator step, one class per backend (numpy, pyFFTW, torch).

The propagators are written once against this small interface; only the arrays and the
FFT implementation change:

- ``fft(a)`` / ``ifft(a)``: 2D transforms over the last two axes of a (B, Ny, Nx) array; the
  inverse is *unnormalised* (the 1/N is folded into the kinetic factor).  They may work in
  place and return the array holding the result.
- ``mul(a, w)``: ``a *= w`` (w broadcast over the batch).
- ``kinetic(a, ty, tx)``: ``a[b] *= ty[:, None] * tx[b][None, :]`` (separable k-space factor).
- ``split(a, out, w_out, w_in, lost, loss_w)``: ``out = w_out * a; a *= w_in`` (the mask step);
  adds the norm this takes away, sum |a|^2 loss_w with ``loss_w = loss_weight(1 - M^2)``, to
  ``lost[b]`` (float64, from ``zeros_real64``).
- ``accumulate(acc, a, py, px, window)``: ``acc[b] += py[:, None] * px[b][None, :] * a[b]`` on the
  momentum window only (``acc``, ``py``, ``px`` are compact, see :class:`~factory.tdse.mask.KWindow`).
- ``norms(a)``: sum |a|^2 per batch element (numpy array).

Sums of |a|^2 are always accumulated in double: in single precision the step itself drifts the
norm by ~1e-7 per step (phase factors are unit-modular only to float32 rounding), which over a
run buries a yield of 1e-4 in ``1 - norm``; the norm the mask removed, summed step by step with
the exact weights ``1 - M^2``, does not carry that drift.

The CPU backends' elementwise kernels are, by default, fused single-pass numba loops
(:class:`~factory.tdse.kernels.FusedOps`, mixed into :class:`FusedNumpyOps` / :class:`FusedFFTWOps`);
the numpy kernels here are the reference and the fallback (``kernels='numpy'`` on the Backend,
or numba missing; the fused kernels run on one thread).  The numpy kernels work on row blocks
that stay in cache and split them over ``threads`` threads (numpy releases the GIL).  Backend
choice, thread count, device, kernels and FFTW planner effort come from a
:class:`factory.backend.Backend` (or its name, with one thread) given to :func:`make_ops`.
"""

from __future__ import annotations

import threading

import numpy as np

from ..backend import Backend, resolve
from .kernels import FusedOps
from .kernels import pool as _pool

_BLOCK = 1 << 15  # elements per row block (~512 KiB of complex128)
_PARALLEL_MIN = 1 << 17  # arrays smaller than this are processed by one thread


def _pick(w, b):
    return w[b] if w.ndim == 3 else w


_LOCAL = threading.local()


def _scratch(rows: int, cols: int, dtype) -> np.ndarray:
    """A per-thread (rows, cols) work array, reused between calls (no allocation per block)."""
    buf = getattr(_LOCAL, "buf", None)
    if buf is None or buf.dtype != dtype or buf.size < rows * cols:
        buf = _LOCAL.buf = np.empty(max(rows * cols, _BLOCK), dtype=dtype)
    return buf[: rows * cols].reshape(rows, cols)


class NumpyOps:
    """numpy arrays, numpy.fft transforms, blocked/threaded elementwise kernels."""

    name = "numpy"
    kernels = "numpy"

    def __init__(self, shape: tuple[int, int, int], dtype=np.complex128, threads: int = 1):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.rdtype = np.float32 if self.dtype == np.complex64 else np.float64
        nb, ny, nx = self.shape
        total = nb * ny * nx
        self.threads = max(1, int(threads)) if total >= _PARALLEL_MIN else 1
        rows = max(1, _BLOCK // nx)
        self._blocks = [(b, r, min(ny, r + rows)) for b in range(nb) for r in range(0, ny, rows)]
        self._acc_tasks: dict[int, list] = {}

    # -- arrays ---------------------------------------------------------------
    def empty(self):
        return np.empty(self.shape, dtype=self.dtype)

    def asarray(self, a, real: bool = False):
        return np.ascontiguousarray(a, dtype=self.rdtype if real else self.dtype)

    def to_numpy(self, a) -> np.ndarray:
        return np.asarray(a)

    def real64(self, a) -> np.ndarray:
        """A small float64 array (momenta, phases' arguments) on the device."""
        return np.ascontiguousarray(a, dtype=np.float64)

    def expi(self, arg) -> np.ndarray:
        """exp(i arg) of a small float64 array (computed in double), in the working dtype."""
        return np.exp(1j * arg).astype(self.dtype, copy=False)


    def synchronize(self) -> None:
        pass

    # -- transforms -----------------------------------------------------------
    def fft(self, a):
        return np.fft.fft2(a, axes=(-2, -1)).astype(self.dtype, copy=False)

    def ifft(self, a):
        return np.fft.ifft2(a, axes=(-2, -1), norm="forward").astype(self.dtype, copy=False)

    # -- elementwise ------------------------------------------------------------
    def _run(self, fn) -> None:
        if self.threads == 1:
            for blk in self._blocks:
                fn(*blk)
            return
        n = self.threads
        groups = [self._blocks[i::n] for i in range(n)]

        def work(group):
            for blk in group:
                fn(*blk)

        list(_pool(n).map(work, groups))

    def mul(self, a, w) -> None:
        def fn(b, r0, r1):
            blk = a[b, r0:r1]
            np.multiply(blk, _pick(w, b)[r0:r1], out=blk)

        self._run(fn)

    def mul_conj(self, a, w) -> None:
        """a *= conj(w)."""
        def fn(b, r0, r1):
            blk = a[b, r0:r1]
            np.multiply(blk, np.conj(_pick(w, b)[r0:r1]), out=blk)

        self._run(fn)

    def kinetic(self, a, ty, tx) -> None:
        def fn(b, r0, r1):
            blk = a[b, r0:r1]
            k = np.multiply(ty[r0:r1, None], tx[b][None, :], out=_scratch(r1 - r0, blk.shape[1], blk.dtype))
            np.multiply(blk, k, out=blk)

        self._run(fn)

    def split(self, a, out, w_out, w_in, lost=None, loss_w=None) -> None:
        parts = []

        def fn(b, r0, r1):
            blk = a[b, r0:r1]
            np.multiply(blk, _pick(w_out, b)[r0:r1], out=out[b, r0:r1])
            if lost is not None:  # weighted |a|^2 in the thread's work array (no BLAS: it would thread)
                sq = _scratch(r1 - r0, blk.shape[1], blk.dtype).view(self.rdtype)
                v = blk.view(self.rdtype)
                np.multiply(v, v, out=sq)
                np.multiply(sq, _pick(loss_w, b)[r0:r1], out=sq)
                parts.append((b, float(sq.sum(dtype=np.float64))))
            np.multiply(blk, _pick(w_in, b)[r0:r1], out=blk)

        self._run(fn)
        for b, v in parts:
            lost[b] += v

    def loss_weight(self, w) -> np.ndarray:
        """Real weights ``w`` (ny, nx) laid out for ``split`` (real and imaginary parts interleaved)."""
        return np.ascontiguousarray(np.repeat(np.asarray(w, dtype=np.float64), 2, axis=-1), dtype=self.rdtype)

    def accumulate(self, acc, a, py, px, window) -> None:
        tasks = self._acc_tasks.get(id(window))
        if tasks is None:
            tasks = []
            for b in range(self.shape[0]):
                for rs, rd in window.rows:
                    for cs, cd in window.cols:
                        step = max(1, _BLOCK // max(1, cd.stop - cd.start))
                        for i in range(0, rd.stop - rd.start, step):
                            j = min(rd.stop - rd.start, i + step)
                            tasks.append((b, slice(rs.start + i, rs.start + j), slice(rd.start + i, rd.start + j), cs, cd))
            self._acc_tasks[id(window)] = tasks

        def fn(task):
            b, r_s, r_d, cs, cd = task
            t = _scratch(r_d.stop - r_d.start, cd.stop - cd.start, acc.dtype)
            np.multiply(py[r_d, None], px[b, cd][None, :], out=t)
            np.multiply(t, a[b, r_s, cs], out=t)
            np.add(acc[b, r_d, cd], t, out=acc[b, r_d, cd])

        if self.threads == 1 or window.size * self.shape[0] < _PARALLEL_MIN:
            for task in tasks:
                fn(task)
        else:
            n = self.threads
            list(_pool(n).map(lambda grp: [fn(t) for t in grp], [tasks[i::n] for i in range(n)]))

    def norms(self, a) -> np.ndarray:
        sq = [a[b].reshape(-1).view(self.rdtype) for b in range(a.shape[0])]
        return np.array([np.einsum("i,i->", v, v, dtype=np.float64) for v in sq])

    def zeros_real64(self, n: int):
        return np.zeros(n)


class FFTWOps(NumpyOps):
    """pyFFTW: pre-planned in-place transforms on preallocated aligned buffers."""

    name = "fftw"

    def __init__(self, shape, dtype=np.complex128, threads: int = 1, buffers: int = 2,
                 effort: str = "FFTW_MEASURE"):
        super().__init__(shape, dtype, threads)
        import pyfftw

        fft_threads = self.threads  # 1 below _PARALLEL_MIN elements
        self._bufs = []
        self._plans = {}
        for _ in range(buffers):
            buf = pyfftw.empty_aligned(self.shape, dtype=self.dtype)
            kw = dict(axes=(-2, -1), threads=fft_threads, flags=(effort, "FFTW_DESTROY_INPUT"),
                      planning_timelimit=30.0)
            fwd = pyfftw.FFTW(buf, buf, direction="FFTW_FORWARD", **kw)
            bwd = pyfftw.FFTW(buf, buf, direction="FFTW_BACKWARD", **kw)
            self._plans[id(buf)] = (fwd, bwd)
            self._bufs.append(buf)
        self._free = list(self._bufs)
        self.fft_threads = fft_threads

    def empty(self):
        """One of the planned buffers (``buffers`` of them), else a plain aligned array."""
        if self._free:
            return self._free.pop(0)
        import pyfftw

        return pyfftw.empty_aligned(self.shape, dtype=self.dtype)

    def _plan(self, a, k):
        plans = self._plans.get(id(a))
        if plans is None or plans[0].input_array is not a:
            return None
        return plans[k]

    def fft(self, a):
        plan = self._plan(a, 0)
        if plan is None:  # not one of our buffers: copy in
            buf = self._bufs[-1]
            buf[...] = a
            a, plan = buf, self._plan(buf, 0)
        plan.execute()
        return a

    def ifft(self, a):
        plan = self._plan(a, 1)
        if plan is None:
            buf = self._bufs[-1]
            buf[...] = a
            a, plan = buf, self._plan(buf, 1)
        plan.execute()
        return a


class FusedNumpyOps(FusedOps, NumpyOps):
    """numpy.fft transforms, fused numba elementwise kernels."""


class FusedFFTWOps(FusedOps, FFTWOps):
    """pyFFTW transforms, fused numba elementwise kernels."""


class TorchOps:
    """torch tensors on a device (GPU when lent, CPU otherwise); torch.fft transforms."""

    name = "torch"

    def __init__(self, shape, dtype=np.complex128, device: str | None = None):
        import torch

        self.torch = torch
        self.shape = tuple(shape)
        self.dtype = torch.complex64 if np.dtype(dtype) == np.complex64 else torch.complex128
        self.rdtype = torch.float32 if self.dtype == torch.complex64 else torch.float64
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))

    def empty(self):
        return self.torch.empty(self.shape, dtype=self.dtype, device=self.device)

    def asarray(self, a, real: bool = False):
        t = self.torch.as_tensor(np.array(a), device=self.device)
        return t.to(self.rdtype if real else self.dtype).contiguous()

    def to_numpy(self, a) -> np.ndarray:
        return a.detach().cpu().numpy()

    def real64(self, a):
        return self.torch.as_tensor(np.array(a, dtype=np.float64), device=self.device)

    def expi(self, arg):
        return self.torch.polar(self.torch.ones_like(arg), arg).to(self.dtype)


    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def fft(self, a):
        return self.torch.fft.fft2(a, dim=(-2, -1))

    def ifft(self, a):
        return self.torch.fft.ifft2(a, dim=(-2, -1), norm="forward")

    def mul(self, a, w) -> None:
        a.mul_(w)

    def mul_conj(self, a, w) -> None:
        a.mul_(w.conj())

    def kinetic(self, a, ty, tx) -> None:
        a.mul_(ty[None, :, None] * tx[:, None, :])

    def split(self, a, out, w_out, w_in, lost=None, loss_w=None) -> None:
        self.torch.mul(a, w_out, out=out)
        if lost is not None:
            sq = self.torch.view_as_real(a).square().sum(dim=-1)
            lost += (sq * loss_w).sum(dim=(-2, -1), dtype=self.torch.float64)
        a.mul_(w_in)

    def loss_weight(self, w):
        real = self.torch.float64 if self.dtype == self.torch.complex128 else self.torch.float32
        return self.torch.as_tensor(np.asarray(w), dtype=real, device=self.device)

    def zeros_real64(self, n: int):
        return self.torch.zeros(n, dtype=self.torch.float64, device=self.device)

    def accumulate(self, acc, a, py, px, window) -> None:
        for rs, rd in window.rows:
            for cs, cd in window.cols:
                acc[:, rd, cd].addcmul_(a[:, rs, cs], py[None, rd, None] * px[:, None, cd])

    def norms(self, a) -> np.ndarray:
        sq = self.torch.linalg.vector_norm(self.torch.view_as_real(a), dim=(-3, -2, -1), dtype=self.torch.float64)
        return (sq**2).cpu().numpy()


def make_ops(backend: str | Backend, shape: tuple[int, int, int], dtype=np.complex128, device: str | None = None,
             buffers: int = 2, quick_plan: bool = False, kernels: str | None = None):
    """Kernels for ``backend`` on (B, Ny, Nx) arrays.

    ``backend``: a :class:`~factory.backend.Backend` (its name, threads, device, kernels and
    planner effort are used), or a backend name ('auto', 'fftw', 'numpy', 'torch'), which means
    that backend with one thread on ``device``.  pyFFTW gets ``buffers`` planned buffers;
    ``quick_plan`` plans with FFTW_ESTIMATE (short runs such as the ground state, where
    measuring plans would cost more than it saves).  ``kernels`` ('numba', 'numpy', 'auto')
    overrides the Backend's choice of elementwise kernels on the CPU backends.
    """
    if not isinstance(backend, Backend):
        backend = Backend.create(backend, device=device if resolve(backend) == "torch" else None, kernels=kernels)
    elif kernels is not None:
        backend = Backend.create(backend.name, backend.threads, None if backend.name != "torch" else backend.device,
                                 backend.planner, kernels)
    be = backend
    if be.is_torch:
        return TorchOps(shape, dtype, be.device)
    fused = be.fused_kernels
    if be.name == "fftw":
        cls = FusedFFTWOps if fused else FFTWOps
        return cls(shape, dtype, threads=be.threads, buffers=buffers,
                   effort="FFTW_ESTIMATE" if quick_plan else be.planner)
    return (FusedNumpyOps if fused else NumpyOps)(shape, dtype, threads=be.threads)


def fft_count_per_step(mask_every: int, collect: bool = True) -> float:
    """FFTs one real-time step needs on average: forward + inverse, plus one per mask step."""
    return 2.0 + (1.0 / mask_every if collect else 0.0)


__all__ = ["NumpyOps", "FFTWOps", "FusedNumpyOps", "FusedFFTWOps", "TorchOps", "make_ops", "fft_count_per_step"]
