"""The one place where the array/FFT backend is chosen.

Backends:
- ``"fftw"``  : pyFFTW plans on CPU (numpy arrays), threads configurable, plan cache on;
- ``"torch"`` : torch.fft on the GPU when one is present (or on CPU if asked explicitly);
- ``"numpy"`` : numpy.fft, always available, the reference.

``"auto"`` picks torch on a CUDA GPU, else pyFFTW if importable, else numpy.  Physics code
asks this module which backend to use and for thread counts and devices; it never probes
the hardware itself.
"""

from __future__ import annotations

import functools
import os
from typing import Literal

Backend = Literal["auto", "fftw", "torch", "numpy"]
BACKENDS = ("auto", "fftw", "torch", "numpy")


@functools.cache
def has_pyfftw() -> bool:
    try:
        import pyfftw  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve(name: str = "auto") -> str:
    """Return the concrete backend for ``name`` (one of BACKENDS); errors name the problem."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        if has_cuda():
            return "torch"
        return "fftw" if has_pyfftw() else "numpy"
    if name == "fftw" and not has_pyfftw():
        raise ValueError("backend 'fftw' requested but pyfftw is not installed; use 'numpy' or 'auto'")
    if name == "torch":
        try:
            import torch  # noqa: F401
        except ImportError as exc:  # pragma: no cover - torch is a hard dependency
            raise ValueError("backend 'torch' requested but torch is not installed") from exc
    return name


def fftw_threads() -> int:
    """Threads for pyFFTW: FACTORY_FFT_THREADS, else the CPUs this process may use."""
    env = os.environ.get("FACTORY_FFT_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


@functools.cache
def setup_pyfftw() -> None:
    """Enable pyFFTW's interface cache once per process (plans are reused)."""
    import pyfftw

    pyfftw.interfaces.cache.enable()
    pyfftw.interfaces.cache.set_keepalive_time(300)
    pyfftw.config.NUM_THREADS = fftw_threads()
    pyfftw.config.PLANNER_EFFORT = os.environ.get("FACTORY_FFTW_PLANNER", "FFTW_MEASURE")


def torch_device(prefer: str | None = None) -> str:
    """'cuda' when a GPU is present (or ``prefer`` when given), else 'cpu'."""
    if prefer:
        return prefer
    return "cuda" if has_cuda() else "cpu"
