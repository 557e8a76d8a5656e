"""Fused single-pass numba kernels for the elementwise parts of the split-operator step.

The numpy kernels of :mod:`factory.tdse.fftops` make several passes over the grid per
operation (a temporary for the separable kinetic factor, ``|a|^2`` and its weights for the
norm the mask removes, the Volkov phase product); each of these kernels reads and writes every
array once:

- ``kinetic``: ``a[b, j, i] *= ty[j] * tx[b, i]``;
- ``split``: ``out = w_out a``, the weighted norm ``sum |a|^2 loss_w`` (in double, summed per
  row, then over rows), ``a *= w_in``: one read of ``a``;
- ``accumulate``: ``acc[b, jd, id] += (py[jd] px[b, id]) a[b, js, is]`` over the momentum window.

Every kernel takes (B, Ny, Nx) arrays with weights as (1 or B, Ny, Nx) and works on rows
``r0:r1`` (of the window, for ``accumulate``), so that :class:`FusedOps` can give threads a band
of rows each (``kernel_threads``, 1 by default: see there); ``nogil=True`` lets them run in
parallel, ``parallel=False`` because the project runs one thread per process.  The operations
and their order match the numpy kernels, so the two agree to rounding (numpy's SIMD complex
product may use FMA, these loops do not: ``fastmath=False``).  The kernels are compiled on first
use (numba is not imported with this module) and ``cache=True`` keeps the compiled code next to
this file (or in numba's user cache), so only the first process on a machine pays the compile
time: 2.0 s for complex128, 1.7 s for complex64 on the project's VM; 0.6 s (numba's import,
mostly) from the cache.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_JIT = dict(cache=True, fastmath=False, nogil=True, parallel=False, boundscheck=False)
_KERNELS: dict = {}  # name -> (python function, extra njit options), in definition order
_COMPILE_LOCK = threading.Lock()


def _kernel(fn=None, **opts):
    """Register ``fn`` to be compiled by numba on first use: numba's import costs ~0.5 s, paid
    only by the processes that step a wave function.  Until then the module name is a stub."""
    def register(fn):
        _KERNELS[fn.__name__] = (fn, opts)

        def stub(*args):
            compile_all()
            return globals()[fn.__name__](*args)

        stub.__name__ = stub.__qualname__ = fn.__name__
        return stub

    return register(fn) if fn is not None else register


def compile_all() -> None:
    """Replace the stubs with numba dispatchers (helpers first: the kernels inline them);
    each signature is compiled, or loaded from numba's cache, on its first call."""
    with _COMPILE_LOCK:
        if not _KERNELS:
            return
        from numba import njit

        for name, (fn, opts) in list(_KERNELS.items()):
            globals()[name] = njit(**_JIT, **opts)(fn)
        _KERNELS.clear()


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()


def pool(n: int) -> ThreadPoolExecutor:
    """A shared pool of ``n`` threads (the CPU kernels' own threads)."""
    with _POOL_LOCK:
        if n not in _POOLS:
            _POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="tdse-kernel")
        return _POOLS[n]


@_kernel
def _kinetic(af, ty, txr, txi, r0, r1):
    """a[b, j, i] *= ty[j] tx[b, i] on ``af``, the float view of a, with tx as its real and
    imaginary parts: the same products as the complex loop, which LLVM vectorises less well."""
    nb = af.shape[0]
    nx = np.uint64(af.shape[2] // 2)  # unsigned indices: no negative-index wraparound checks
    one, two = np.uint64(1), np.uint64(2)
    for b in range(nb):
        xr, xi = txr[b], txi[b]
        for j in range(r0, r1):
            tr, ti = ty[j].real, ty[j].imag
            row = af[b, j]
            for i in range(nx):
                kr = tr * xr[i] - ti * xi[i]
                ki = tr * xi[i] + ti * xr[i]
                ar, ai = row[two * i], row[two * i + one]
                row[two * i] = ar * kr - ai * ki
                row[two * i + one] = ar * ki + ai * kr


@_kernel(inline="always")
def _wsq(v, w):
    """|v|^2 w in double."""
    re, im = np.float64(v.real), np.float64(v.imag)
    return (re * re + im * im) * np.float64(w)


@_kernel
def _split(a, out, w_out, w_in, loss_w, lost, r0, r1):
    """out = w_out a, a *= w_in; lost[b] += sum |a|^2 loss_w (before the multiply), in double.

    The sum runs in four interleaved partial sums per row (one chain of dependent additions
    would take 4 cycles an element), then over rows: deterministic, and no worse than numpy's.
    """
    nb, _, nx = a.shape
    n4 = nx - nx % 4
    for b in range(nb):
        wb = b if w_out.shape[0] > 1 else 0
        lb = b if loss_w.shape[0] > 1 else 0
        total = 0.0
        for j in range(r0, r1):
            s0 = s1 = s2 = s3 = 0.0
            for i in range(0, n4, 4):
                v0, v1, v2, v3 = a[b, j, i], a[b, j, i + 1], a[b, j, i + 2], a[b, j, i + 3]
                s0 += _wsq(v0, loss_w[lb, j, i])
                s1 += _wsq(v1, loss_w[lb, j, i + 1])
                s2 += _wsq(v2, loss_w[lb, j, i + 2])
                s3 += _wsq(v3, loss_w[lb, j, i + 3])
                out[b, j, i], out[b, j, i + 1] = v0 * w_out[wb, j, i], v1 * w_out[wb, j, i + 1]
                out[b, j, i + 2], out[b, j, i + 3] = v2 * w_out[wb, j, i + 2], v3 * w_out[wb, j, i + 3]
                a[b, j, i], a[b, j, i + 1] = v0 * w_in[wb, j, i], v1 * w_in[wb, j, i + 1]
                a[b, j, i + 2], a[b, j, i + 3] = v2 * w_in[wb, j, i + 2], v3 * w_in[wb, j, i + 3]
            for i in range(n4, nx):
                v = a[b, j, i]
                s0 += _wsq(v, loss_w[lb, j, i])
                out[b, j, i] = v * w_out[wb, j, i]
                a[b, j, i] = v * w_in[wb, j, i]
            total += (s0 + s1) + (s2 + s3)
        lost[b] += total


@_kernel
def _split_noloss(a, out, w_out, w_in, r0, r1):
    nb, _, nx = a.shape
    for b in range(nb):
        wb = b if w_out.shape[0] > 1 else 0
        for j in range(r0, r1):
            for i in range(nx):
                v = a[b, j, i]
                out[b, j, i] = v * w_out[wb, j, i]
                a[b, j, i] = v * w_in[wb, j, i]


@_kernel
def _accumulate(acc, a, py, px, src_row, cols, r0, r1):
    """acc[b, jd, cd:cd+n] += py[jd] px[b, cd:cd+n] a[b, src_row[jd], cs:cs+n] for (cs, cd, n) in cols."""
    for b in range(acc.shape[0]):
        pxb = px[b]
        for jd in range(r0, r1):
            p, arow, crow = py[jd], a[b, src_row[jd]], acc[b, jd]
            for c in range(cols.shape[0]):
                cs, cd, n = cols[c, 0], cols[c, 1], cols[c, 2]
                for i in range(n):
                    crow[cd + i] = crow[cd + i] + (p * pxb[cd + i]) * arow[cs + i]


def _floats(a):
    """A complex (B, Ny, Nx) array as its (B, Ny, 2 Nx) float view (no copy)."""
    return a.view(a.real.dtype)


def _w3(w):
    """Weights as (1 or B, Ny, Nx) (a view)."""
    return w[None] if w.ndim == 2 else w


def _bands(n: int, parts: int) -> list[tuple[int, int]]:
    parts = max(1, min(parts, n))
    edges = [n * k // parts for k in range(parts + 1)]
    return [(edges[k], edges[k + 1]) for k in range(parts)]


class FusedOps:
    """Mixin: the multi-pass elementwise methods of :class:`~factory.tdse.fftops.NumpyOps` as
    fused numba kernels (same interface and arguments; ``loss_weight`` is a plain real (Ny, Nx)
    array here).  ``mul`` stays numpy's (one call): ``a *= w`` is one pass already, and numpy's SIMD
    complex product is faster than the loop numba makes of it (0.2 vs 0.3 ms on 800 x 400 in cache).

    Needs ``shape``, ``threads`` and ``rdtype`` from the class it is mixed into.
    """

    kernels = "numba"
    #: threads the fused kernels share rows over: one, whatever the Backend's ``threads`` (which
    #: the FFTs use).  The kernels are memory-bound: on the 2-core VM two threads made the
    #: kinetic + split pair slower on 800 x 400 (2.05 vs 1.73 ms) and hardly faster on 4096 x 2048
    #: (106 vs 107 ms).  Set it on an instance where more cores have their own memory bandwidth.
    kernel_threads = 1

    def _bands_of(self, n: int):
        return _bands(n, self.kernel_threads)

    def _each(self, fn, args, n: int) -> None:
        """``fn(*args, r0, r1)`` over bands of rows, one per thread (the first on this thread)."""
        self._on_bands(lambda k, r0, r1: fn(*args, r0, r1), self._bands_of(n))

    @staticmethod
    def _on_bands(fn, bands) -> None:
        if len(bands) == 1:
            fn(0, *bands[0])
            return
        futures = [pool(len(bands) - 1).submit(fn, k, *bands[k]) for k in range(1, len(bands))]
        fn(0, *bands[0])
        for f in futures:
            f.result()

    def mul(self, a, w) -> None:
        if self.kernel_threads == 1:
            np.multiply(a, w, out=a)  # one pass already; numpy's SIMD complex product
        else:
            super().mul(a, w)

    def kinetic(self, a, ty, tx) -> None:
        if not a.flags.c_contiguous:  # the float view needs C order: the numpy kernel then
            super().kinetic(a, ty, tx)
            return
        txr, txi = np.ascontiguousarray(tx.real), np.ascontiguousarray(tx.imag)
        self._each(_kinetic, (_floats(a), ty, txr, txi), a.shape[1])

    def split(self, a, out, w_out, w_in, lost=None, loss_w=None) -> None:
        ny = a.shape[1]
        if lost is None:
            self._each(_split_noloss, (a, out, _w3(w_out), _w3(w_in)), ny)
            return
        bands = self._bands_of(ny)
        parts = np.zeros((len(bands), a.shape[0]))  # one partial sum per band: no shared writes
        args = (a, out, _w3(w_out), _w3(w_in), _w3(loss_w))
        self._on_bands(lambda k, r0, r1: _split(*args, parts[k], r0, r1), bands)
        for p in parts:  # in band order: the same result for any thread timing
            lost += p

    def loss_weight(self, w) -> np.ndarray:
        """Real weights ``w`` (ny, nx) as ``split`` reads them (working precision)."""
        return np.ascontiguousarray(w, dtype=self.rdtype)

    def _window_maps(self, window):
        maps = getattr(self, "_wmaps", None)
        if maps is None or maps[0] is not window:
            src_row = np.empty(window.shape[0], dtype=np.int64)
            for rs, rd in window.rows:
                src_row[rd] = np.arange(rs.start, rs.stop)
            cols = np.array([[cs.start, cd.start, cd.stop - cd.start] for cs, cd in window.cols], dtype=np.int64)
            maps = self._wmaps = (window, src_row, cols)
        return maps[1], maps[2]

    def accumulate(self, acc, a, py, px, window) -> None:
        src_row, cols = self._window_maps(window)
        n = window.shape[0]
        if self.kernel_threads > 1 and window.size * self.shape[0] < (1 << 17):
            _accumulate(acc, a, py, px, src_row, cols, 0, n)  # too small to share out
            return
        self._each(_accumulate, (acc, a, py, px, src_row, cols), n)


__all__ = ["FusedOps", "compile_all", "pool"]
