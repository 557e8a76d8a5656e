"""The array/FFT backend: one object, built explicitly and passed to the physics code.

    be = Backend.create("auto", threads=1)      # or "fftw", "numpy", "torch"; device="cuda"/"cpu"
    y = be.fft(x, n=512, axis=-1, real=True, keep=slice(0, 65))   # planned, cached
    z = be.matmul(a, b)
    with be.activated():                         # torch's intra-op threads = be.threads, restored after
        ...

Backends:

- ``"numpy"``: numpy arrays, numpy.fft, numpy's BLAS; always available, the reference.
- ``"fftw"``: numpy arrays, pyFFTW plans (cached, ``threads`` threads); matrix products run in
  torch on the CPU (MKL, on the same buffers, no copy) when torch is importable, else numpy.
- ``"torch"``: torch tensors on ``device`` (a CUDA GPU when present unless told otherwise);
  every operation is differentiable, so autograd runs through code written against a Backend.

``"auto"`` is torch on a CUDA GPU, else pyFFTW if importable, else numpy.  Physics code is
written once against a Backend's array module ``xp`` (numpy or torch: they share the names
used here, ``exp``, ``einsum``, ``moveaxis``, ``sum(..., axis=)``, ...) and the few methods
below where the two differ; it never chooses a library or reads the environment itself.

Thread policy: a Backend uses ``threads`` threads (default **1**) for its FFTs and, inside
:meth:`Backend.activated`, for torch's CPU kernels.  One thread per worker process is the
default because on a shared machine a second thread per process loses more to waiting than
it gains (measured on 2 cores at load 7: TDSE step 16-25 ms with 1 FFT thread, 63-90 ms with
2; MSFT 75 ms vs 101 ms); parallelise across processes and batches, and ask for more threads
explicitly where a process has cores to itself.  numpy's own BLAS (backend ``"numpy"``) keeps
its library's thread setting.

The FFTW planner effort defaults to ``FFTW_MEASURE`` (``FACTORY_FFTW_PLANNER`` may lower it,
e.g. to ``FFTW_ESTIMATE`` in the tests, where planning would cost more than the transforms).

Elementwise kernels of the CPU backends (``kernels``): ``"numba"``, fused single-pass loops
(:mod:`factory.tdse.kernels`), or ``"numpy"``, the multi-pass numpy reference; ``"auto"`` (the
default; ``FACTORY_KERNELS`` may set it) is numba when importable, else numpy.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections import OrderedDict
from typing import Any, Literal

import numpy as np

BackendName = Literal["auto", "fftw", "torch", "numpy"]
BACKENDS = ("auto", "fftw", "torch", "numpy")
DEFAULT_THREADS = 1
PLANNERS = ("FFTW_ESTIMATE", "FFTW_MEASURE", "FFTW_PATIENT", "FFTW_EXHAUSTIVE")
KERNELS = ("auto", "numba", "numpy")
_MAX_PLANS = 64


@functools.cache
def has_pyfftw() -> bool:
    try:
        import pyfftw  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def has_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return True


@functools.cache
def has_numba() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def has_cuda() -> bool:
    if not has_torch():
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve(name: str = "auto") -> str:
    """The concrete backend name for ``name`` (one of BACKENDS); errors name the problem."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        if has_cuda():
            return "torch"
        return "fftw" if has_pyfftw() else "numpy"
    if name == "fftw" and not has_pyfftw():
        raise ValueError("backend 'fftw' requested but pyfftw is not installed; use 'numpy' or 'auto'")
    if name == "torch" and not has_torch():  # pragma: no cover - torch is a dependency
        raise ValueError("backend 'torch' requested but torch is not installed")
    return name


def _default_planner() -> str:
    effort = os.environ.get("FACTORY_FFTW_PLANNER", "FFTW_MEASURE")
    if effort not in PLANNERS:
        raise ValueError(f"FACTORY_FFTW_PLANNER = {effort!r}: choose one of {', '.join(PLANNERS)}")
    return effort


def _kernels_choice(kernels: str | None) -> str:
    """The elementwise kernels asked for ('auto' stays 'auto': :attr:`Backend.fused_kernels` decides
    where the kernels are built, so that numba is imported only by processes that use it)."""
    kernels = kernels or os.environ.get("FACTORY_KERNELS", "auto")
    if kernels not in KERNELS:
        raise ValueError(f"kernels = {kernels!r}: choose one of {', '.join(KERNELS)}")
    if kernels == "numba" and not has_numba():
        raise ValueError("kernels 'numba' requested but numba is not installed; use 'numpy' or 'auto'")
    return kernels


class Backend:
    """Arrays, FFTs (planned and cached), matrix products, device and threads in one object.

    Build it with :meth:`create` (instances are shared per argument tuple, so their plan
    caches live as long as the process); pass it to the code that computes.
    """

    def __init__(self, name: str, threads: int, device: str, planner: str, kernels: str = "auto"):
        self.name = name
        self.threads = threads
        self.device = device
        self.planner = planner
        self.kernels = kernels  # elementwise kernels of the CPU backends: "auto", "numba" or "numpy"
        self.is_torch = name == "torch"
        self.blas = "torch" if (name == "torch" or (name == "fftw" and has_torch())) else "numpy"
        if self.is_torch or self.blas == "torch":
            import torch

            self._torch = torch
        self.xp: Any = self._torch if self.is_torch else np
        self._plans: OrderedDict = OrderedDict()

    @classmethod
    def create(cls, name: str = "auto", threads: int = DEFAULT_THREADS, device: str | None = None,
               planner: str | None = None, kernels: str | None = None) -> "Backend":
        """The backend ``name`` with ``threads`` threads on ``device`` (torch only: 'cpu', 'cuda', 'cuda:1').

        ``device=None`` is the GPU for torch when one is present, else the CPU.  ``kernels``:
        'auto', 'numba' or 'numpy' (the elementwise kernels of the CPU backends; None: the
        ``FACTORY_KERNELS`` environment variable, else 'auto').
        """
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ValueError(f"threads = {threads!r}: must be an integer >= 1")
        concrete = resolve(name)
        if concrete == "torch":
            device = str(device) if device else ("cuda" if has_cuda() else "cpu")
        elif device not in (None, "cpu"):
            raise ValueError(f"device = {device!r}: backend {concrete!r} runs on the CPU only; use backend 'torch'")
        else:
            device = "cpu"
        planner = planner or _default_planner()
        if planner not in PLANNERS:
            raise ValueError(f"planner = {planner!r}: choose one of {', '.join(PLANNERS)}")
        return _shared(concrete, int(threads), device, planner, _kernels_choice(kernels))

    def __repr__(self) -> str:
        return f"Backend(name={self.name!r}, threads={self.threads}, device={self.device!r}, kernels={self.kernels!r})"

    def __reduce__(self):  # pickles as its recipe: plans and device state are rebuilt where it lands
        return (Backend.create, (self.name, self.threads, self.device, self.planner, self.kernels))

    # -- threads ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def activated(self):
        """Run torch's CPU kernels with ``threads`` threads inside the block (restored after)."""
        if self.blas != "torch":
            yield self
            return
        before = self._torch.get_num_threads()
        if before != self.threads:
            self._torch.set_num_threads(self.threads)
        try:
            yield self
        finally:
            if before != self.threads:
                self._torch.set_num_threads(before)

    @property
    def fused_kernels(self) -> bool:
        """Whether the CPU backends' elementwise kernels are the fused numba ones."""
        return self.kernels == "numba" or (self.kernels == "auto" and has_numba())

    def synchronize(self) -> None:
        """Wait for queued device work (timing); a no-op on the CPU."""
        if self.is_torch and self.device.startswith("cuda"):
            self._torch.cuda.synchronize(self.device)

    # -- arrays -------------------------------------------------------------------------------
    def dtype(self, name: str):
        """The array module's dtype for a numpy dtype name ('float32', 'complex128', ...)."""
        return getattr(self._torch, np.dtype(name).name) if self.is_torch else np.dtype(name)

    def asarray(self, a, dtype: str | None = None):
        """``a`` as this backend's array (on its device), optionally cast to ``dtype``."""
        if self.is_torch:
            torch = self._torch
            dt = self.dtype(dtype) if dtype else None
            if torch.is_tensor(a):
                return a.to(device=self.device, dtype=dt or a.dtype)
            a = np.asarray(a)
            return torch.as_tensor(a if a.flags.writeable else a.copy(), device=self.device, dtype=dt)
        if not isinstance(a, np.ndarray) and type(a).__module__.startswith("torch"):
            a = a.detach().cpu().numpy()
        return np.asarray(a, dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        if self.is_torch and self._torch.is_tensor(a):
            return a.detach().cpu().numpy()
        return np.asarray(a)

    def zeros(self, shape, dtype: str):
        if self.is_torch:
            return self._torch.zeros(tuple(shape), dtype=self.dtype(dtype), device=self.device)
        return np.zeros(shape, dtype=dtype)

    def empty(self, shape, dtype: str):
        if self.is_torch:
            return self._torch.empty(tuple(shape), dtype=self.dtype(dtype), device=self.device)
        return np.empty(shape, dtype=dtype)

    def contiguous(self, a):
        """``a`` in C order (a copy only when it is not)."""
        return a.contiguous() if self.is_torch else np.ascontiguousarray(a)

    def concat(self, arrays, axis: int = 0):
        return self._torch.cat(list(arrays), dim=axis) if self.is_torch else np.concatenate(arrays, axis=axis)

    def flip(self, a, axes: tuple[int, ...]):
        return self._torch.flip(a, dims=axes) if self.is_torch else np.flip(a, axis=axes)

    def real_part(self, a):
        """The real part as a contiguous real array (numpy: a copy, which einsum reads faster)."""
        return a.real if self.is_torch else np.ascontiguousarray(a.real)

    def imag_part(self, a):
        return a.imag if self.is_torch else np.ascontiguousarray(a.imag)

    def as_complex(self, a):
        """Reinterpret a real array whose last axis holds (re, im) pairs as complex (no copy)."""
        if self.is_torch:
            return self._torch.view_as_complex(a.reshape(*a.shape[:-1], a.shape[-1] // 2, 2))
        return a.view(np.complex64 if a.dtype == np.float32 else np.complex128)

    def nonzero_span(self, profile) -> slice:
        """slice(first, last + 1) of the True entries of a 1D boolean array (slice(0, 1) if none)."""
        idx = np.flatnonzero(self.to_numpy(profile))
        return slice(int(idx[0]), int(idx[-1]) + 1) if len(idx) else slice(0, 1)

    # -- linear algebra ---------------------------------------------------------------------
    def matmul(self, a, b):
        """``a @ b``; on the fftw backend in torch/MKL on the numpy buffers (threads: activated())."""
        if self.blas == "torch" and not self.is_torch:
            torch = self._torch
            ta = torch.from_numpy(a if a.flags.writeable else a.copy())
            tb = torch.from_numpy(b if b.flags.writeable else b.copy())
            return (ta @ tb).numpy()
        return a @ b

    # -- FFT ------------------------------------------------------------------------------------
    def fft(self, a, n: int | None = None, axis: int = -1, *, real: bool = False, inverse: bool = False,
            keep=None):
        """1D FFT of ``a`` along ``axis``, zero-padded (or cut) to ``n`` points.

        ``real``: real-input transform (``n // 2 + 1`` outputs); ``inverse``: the backward
        transform normalised by 1/n (complex input only).  ``keep`` (a slice or an integer
        index array) prunes the output along ``axis``.  The result is always a new array.
        """
        if real and inverse:
            raise ValueError("fft: real=True is the forward real-input transform; inverse takes complex input")
        n = int(n or a.shape[axis])
        direction = "rfft" if real else ("ifft" if inverse else "fft")
        if self.is_torch:
            fn = {"rfft": self._torch.fft.rfft, "fft": self._torch.fft.fft, "ifft": self._torch.fft.ifft}[direction]
            out = fn(a, n=n, dim=axis)
            return out if keep is None else self._take(out, keep, axis)
        if self.name == "fftw":
            plan = self._plan(tuple(a.shape), str(a.dtype), direction, n, axis % a.ndim)
            out = plan(a)  # the plan's own output buffer: copied out below
            return out.copy() if keep is None else self._take(out, keep, axis, copy=True)
        fn = {"rfft": np.fft.rfft, "fft": np.fft.fft, "ifft": np.fft.ifft}[direction]
        out = fn(a, n=n, axis=axis)
        return out if keep is None else self._take(out, keep, axis)

    def _take(self, a, keep, axis: int, copy: bool = False):
        if isinstance(keep, slice):
            idx = (slice(None),) * (axis % a.ndim) + (keep,)
            out = a[idx]
            return out.copy() if copy else out
        if self.is_torch:
            return a.index_select(axis, self._torch.as_tensor(np.array(keep), device=a.device))
        return np.take(a, keep, axis=axis)

    def _plan(self, shape: tuple[int, ...], dtype: str, direction: str, n: int, axis: int):
        """A pyFFTW plan, cached by (shape, dtype, threads, direction, n, axis)."""
        key = (shape, dtype, self.threads, direction, n, axis)
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan
        import pyfftw

        build = {"rfft": pyfftw.builders.rfft, "fft": pyfftw.builders.fft, "ifft": pyfftw.builders.ifft}[direction]
        template = pyfftw.empty_aligned(shape, dtype=dtype)
        plan = build(template, n=n, axis=axis, threads=self.threads, planner_effort=self.planner)
        self._plans[key] = plan
        while len(self._plans) > _MAX_PLANS:
            self._plans.popitem(last=False)
        return plan

    def plan_count(self) -> int:
        """Plans held in the cache (pyFFTW only)."""
        return len(self._plans)


@functools.lru_cache(maxsize=None)
def _shared(name: str, threads: int, device: str, planner: str, kernels: str) -> Backend:
    return Backend(name, threads, device, planner, kernels)


__all__ = ["BACKENDS", "DEFAULT_THREADS", "KERNELS", "Backend", "BackendName", "has_cuda", "has_numba", "has_pyfftw",
           "has_torch", "resolve"]
