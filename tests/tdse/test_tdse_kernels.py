"""Fused numba kernels of the split-operator step (factory.tdse.kernels) against the numpy
kernels (factory.tdse.fftops), their reference: the single operations and a few hundred
steps with a field and the mask, in double and single precision, and the kernel switch."""

from __future__ import annotations

import numpy as np
import pytest

from factory.backend import Backend
from factory.tdse import Grid, Propagator, Pulse, absorbing_mask, h2plus, potential
from factory.tdse.fftops import FFTWOps, FusedFFTWOps, FusedNumpyOps, NumpyOps, make_ops
from factory.tdse.mask import KWindow

pytest.importorskip("numba")

SHAPE = (2, 48, 70)  # nx not a multiple of 4: the kernels' tails run too


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.complex128), np.asarray(b, dtype=np.complex128)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _ops(kernels: str, dtype=np.complex128, threads: int = 1, shape=SHAPE):
    return make_ops(Backend.create("numpy", threads=threads, kernels=kernels), shape, dtype)


def _c(rng, shape, dtype=np.complex128):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


@pytest.mark.parametrize("dtype, tol", [(np.complex128, 1e-15), (np.complex64, 1e-6)])
@pytest.mark.parametrize("per_batch", [False, True])
def test_each_operation_matches_numpy(dtype, tol, per_batch):
    rng = np.random.default_rng(1)
    ref, fused = _ops("numpy", dtype), _ops("numba", dtype)
    assert type(ref) is NumpyOps and type(fused) is FusedNumpyOps and fused.kernels == "numba"
    wshape = SHAPE if per_batch else SHAPE[1:]
    a = _c(rng, SHAPE, dtype)
    w1, w2 = _c(rng, wshape, dtype), _c(rng, wshape, dtype)
    ty, tx = _c(rng, SHAPE[1], dtype), _c(rng, (SHAPE[0], SHAPE[2]), dtype)
    loss = rng.random(wshape)

    def both(fn):
        x, y = a.copy(), a.copy()
        fn(ref, x)
        fn(fused, y)
        return x, y

    for fn in (lambda o, x: o.mul(x, w1), lambda o, x: o.mul_conj(x, w1), lambda o, x: o.kinetic(x, ty, tx)):
        x, y = both(fn)
        assert _rel(y, x) < tol

    outs, losts = {}, {}
    for name, o in (("ref", ref), ("fused", fused)):
        x, out, lost = a.copy(), np.empty_like(a), np.full(SHAPE[0], 0.25)
        o.split(x, out, w1, w2, lost, o.loss_weight(loss))
        outs[name], losts[name] = (x, out), lost
        y, out2 = a.copy(), np.empty_like(a)
        o.split(y, out2, w1, w2)  # no loss sum
        assert np.array_equal(y, x) and np.array_equal(out2, out)
    assert _rel(outs["fused"][0], outs["ref"][0]) < tol and _rel(outs["fused"][1], outs["ref"][1]) < tol
    exact = 0.25 + (np.abs(a.astype(np.complex128)) ** 2 * loss).sum(axis=(-2, -1))
    assert np.allclose(losts["fused"], exact, rtol=1e-13 if dtype == np.complex128 else 1e-6)
    assert np.allclose(losts["ref"], exact, rtol=1e-13 if dtype == np.complex128 else 1e-6)


@pytest.mark.parametrize("dtype, tol", [(np.complex128, 1e-15), (np.complex64, 1e-6)])
def test_accumulate_on_a_window_matches_numpy(dtype, tol):
    g = Grid(SHAPE[2], SHAPE[1], 20.0, 15.0)
    rng = np.random.default_rng(2)
    for kw in (None, 1.5):
        win = KWindow.build(g, kw)
        a = _c(rng, SHAPE, dtype)
        py, px = _c(rng, win.shape[0], dtype), _c(rng, (SHAPE[0], win.shape[1]), dtype)
        acc0 = _c(rng, (SHAPE[0], *win.shape), dtype)
        res = []
        for o in (_ops("numpy", dtype), _ops("numba", dtype)):
            acc = acc0.copy()
            o.accumulate(acc, a, py, px, win)
            o.accumulate(acc, a, py, px, win)
            res.append(acc)
        assert _rel(res[1], res[0]) < tol, kw


def _propagate(kernels, precision, every, threads=1, n=300, backend="fftw"):
    g = Grid(128, 96, 32.0, 24.0)
    X, Y = g.x[None, :], g.y[:, None]
    psi0 = np.exp(-((X - 1) ** 2 + Y**2) / 4 + 0.7j * X)
    psi0 /= np.sqrt(np.sum(np.abs(psi0) ** 2) * g.area_element)
    V = potential(h2plus(), 2.0, 0.3, g.x, g.y)
    be = Backend.create(backend, threads=threads, planner="FFTW_ESTIMATE", kernels=kernels)
    p = Propagator(g, V, psi0, 0.05, [Pulse(3e14), Pulse(1e14)], n, absorbing_mask(g, 9.0, 0.02), every, True, be,
                   precision, k_window=3.0)
    p.run(n // 3)
    p.run(n - n // 3)  # two runs: the half steps at the ends of a run are undone and redone
    assert p.ops.kernels == kernels
    return p.wavefunction(), p.amplitude(), p.absorbed()


def test_fused_step_matches_numpy_in_double():
    """300 steps, two pulses, mask + accumulation every step: rounding (1e-14 measured)."""
    ref, fused = _propagate("numpy", "double", 1), _propagate("numba", "double", 1)
    assert _rel(fused[0], ref[0]) < 1e-13
    assert _rel(fused[1], ref[1]) < 1e-13
    assert np.allclose(fused[2], ref[2], rtol=1e-13, atol=0)
    assert ref[2].min() > 1e-3  # the mask removed something


def test_fused_single_precision_mask_every_4_matches_numpy():
    """The data presets' candidate mode: complex64, mask every 4 steps.  Both single-precision
    runs differ from double by ~1.5e-5; from each other by float32 rounding (1e-6 .. 1e-5)."""
    dbl = _propagate("numpy", "double", 4)
    ref, fused = _propagate("numpy", "single", 4), _propagate("numba", "single", 4)
    assert fused[0].dtype == np.complex64
    assert _rel(fused[0], ref[0]) < 5e-6 and _rel(fused[1], ref[1]) < 3e-5
    assert np.allclose(fused[2], ref[2], rtol=1e-5, atol=0)
    for i in range(3):  # no worse than the numpy kernels against double
        assert _rel(fused[i], dbl[i]) < 1.5 * _rel(ref[i], dbl[i]) + 1e-6


def test_fused_kernels_on_two_threads_give_the_same_elements():
    shape = (1, 256, 522)  # above the size where the kernels share rows out over threads
    one, two = _ops("numba", shape=shape), _ops("numba", threads=2, shape=shape)
    assert (one.threads, two.threads) == (1, 2) and two.kernel_threads == 1  # the FFTs' threads only
    two.kernel_threads = 2
    rng = np.random.default_rng(3)
    a, w1, w2 = _c(rng, shape), _c(rng, shape[1:]), _c(rng, shape[1:])
    ty, tx, loss = _c(rng, shape[1]), _c(rng, (1, shape[2])), rng.random(shape[1:])
    g = Grid(shape[2], shape[1], 100.0, 50.0)
    win = KWindow.build(g, 2.0)
    py, px = _c(rng, win.shape[0]), _c(rng, (1, win.shape[1]))
    res = []
    for o in (one, two):
        x, out, lost, acc = a.copy(), np.empty_like(a), np.zeros(1), np.zeros((1, *win.shape), complex)
        o.kinetic(x, ty, tx)
        o.mul(x, w1)
        o.split(x, out, w1, w2, lost, o.loss_weight(loss))
        o.accumulate(acc, out, py, px, win)
        res.append((x, out, acc, lost))
    for u, v in zip(res[0][:3], res[1][:3]):
        assert np.array_equal(u, v)  # bands change no element
    assert np.allclose(res[0][3], res[1][3], rtol=1e-14, atol=0)  # the loss sum's order does change


def test_fused_kernels_with_numpy_fft():
    ref, fused = _propagate("numpy", "double", 2, backend="numpy"), _propagate("numba", "double", 2, backend="numpy")
    assert _rel(fused[0], ref[0]) < 1e-13 and _rel(fused[1], ref[1]) < 1e-13


def test_kernel_switch(monkeypatch):
    shape = (1, 16, 16)
    assert type(make_ops(Backend.create("fftw", planner="FFTW_ESTIMATE", kernels="numba"), shape)) is FusedFFTWOps
    assert type(make_ops(Backend.create("fftw", planner="FFTW_ESTIMATE", kernels="numpy"), shape)) is FFTWOps
    be = Backend.create("numpy", kernels="numba")
    assert type(make_ops(be, shape, kernels="numpy")) is NumpyOps  # make_ops overrides the Backend's choice
    monkeypatch.setenv("FACTORY_KERNELS", "numpy")
    assert Backend.create("numpy").kernels == "numpy" and type(make_ops("numpy", shape)) is NumpyOps
    monkeypatch.setenv("FACTORY_KERNELS", "auto")
    assert Backend.create("numpy").kernels == "auto" and type(make_ops("numpy", shape)) is FusedNumpyOps
    monkeypatch.setenv("FACTORY_KERNELS", "cuda")
    with pytest.raises(ValueError, match="kernels = 'cuda'"):
        Backend.create("numpy")
    monkeypatch.delenv("FACTORY_KERNELS")
    import factory.backend

    monkeypatch.setattr(factory.backend, "has_numba", lambda: False)  # numba not importable: numpy kernels
    assert type(make_ops("numpy", shape)) is NumpyOps
    with pytest.raises(ValueError, match="numba is not installed"):
        Backend.create("numpy", kernels="numba")
    import pickle

    assert pickle.loads(pickle.dumps(Backend.create("numpy", kernels="numpy"))).kernels == "numpy"
