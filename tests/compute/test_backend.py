"""factory.backend: one explicit Backend object (arrays, planned FFTs, matmul, device, threads)."""

import pickle

import numpy as np
import pytest

from factory.backend import Backend

torch = pytest.importorskip("torch")
CPU_BACKENDS = ["numpy", "fftw", "torch"]


def test_create_defaults_to_one_thread_and_shares_instances(monkeypatch):
    monkeypatch.setenv("FACTORY_FFT_THREADS", "7")  # the environment is not a channel
    be = Backend.create("numpy")
    assert (be.name, be.threads, be.device) == ("numpy", 1, "cpu")
    assert Backend.create("numpy") is be and Backend.create("numpy", threads=2) is not be
    assert Backend.create("auto").name in ("fftw", "numpy", "torch")
    assert Backend.create("torch", device="cpu").device == "cpu"
    again = pickle.loads(pickle.dumps(Backend.create("fftw", threads=2)))
    assert (again.name, again.threads) == ("fftw", 2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="cuda"), "unknown backend 'cuda'"),
    (dict(name="numpy", threads=0), "threads = 0"),
    (dict(name="numpy", threads=1.5), "threads = 1.5"),
    (dict(name="fftw", device="cuda"), "runs on the CPU only"),
    (dict(name="numpy", planner="FFTW_FAST"), "planner = 'FFTW_FAST'"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Backend.create(**kwargs)


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_fft_agrees_with_numpy_and_prunes(name):
    be = Backend.create(name, device="cpu", planner="FFTW_ESTIMATE")
    rng = np.random.default_rng(0)
    a = rng.random((3, 5, 7))
    c = a + 1j * rng.random(a.shape)
    keep = np.array([14, 15, 0, 1, 2])
    cases = [
        (dict(n=16, axis=-1, real=True), np.fft.rfft(a, 16, axis=-1), a),
        (dict(n=16, axis=1, keep=keep), np.fft.fft(c, 16, axis=1)[:, keep], c),
        (dict(n=8, axis=-1, real=True, keep=slice(0, 3)), np.fft.rfft(a, 8, axis=-1)[..., :3], a),
        (dict(axis=0, inverse=True), np.fft.ifft(c, axis=0), c),
    ]
    for kw, expected, x in cases:
        got = be.to_numpy(be.fft(be.asarray(x), **kw))
        assert np.allclose(got, expected, atol=1e-12), (name, kw)
    if name == "fftw":  # results are new arrays, not the plan's reused output buffer
        first = be.fft(a, 16, axis=-1, real=True)
        be.fft(2 * a, 16, axis=-1, real=True)
        assert np.allclose(first, np.fft.rfft(a, 16, axis=-1))


def test_fftw_plans_are_cached_by_shape_dtype_threads_and_direction():
    one = Backend.create("fftw", threads=1, planner="FFTW_ESTIMATE")
    two = Backend.create("fftw", threads=2, planner="FFTW_ESTIMATE")
    x = np.ones((4, 6), dtype=np.float32)
    n0 = one.plan_count()
    one.fft(x, 12, real=True)
    one.fft(x + 1, 12, real=True)  # same key: no new plan
    assert one.plan_count() == n0 + 1
    one.fft(x.astype(np.float64), 12, real=True)
    one.fft(x.astype(np.complex64), 12)
    one.fft(x.astype(np.complex64), 12, inverse=True)
    assert one.plan_count() == n0 + 4
    m0 = two.plan_count()
    two.fft(x, 12, real=True)
    assert two.plan_count() == m0 + 1 and one.plan_count() == n0 + 4
    assert ((4, 6), "float32", 2, "rfft", 12, 1) in two._plans  # the key: shape, dtype, threads, direction, n, axis


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_matmul_and_array_helpers(name):
    be = Backend.create(name, device="cpu")
    rng = np.random.default_rng(1)
    a, b = rng.random((5, 4)).astype(np.float32), rng.random((4, 6)).astype(np.float32)
    a.setflags(write=False)  # cached matrices are read-only: still usable
    assert np.allclose(be.to_numpy(be.matmul(be.asarray(a), be.asarray(b))), a @ b, rtol=1e-5)
    inter = rng.random((3, 8))
    z = be.to_numpy(be.as_complex(be.asarray(inter)))
    assert np.allclose(z, inter[:, 0::2] + 1j * inter[:, 1::2])
    assert be.nonzero_span(be.asarray(np.array([0, 0, 1, 0, 1, 0]) > 0)) == slice(2, 5)
    assert be.nonzero_span(be.asarray(np.zeros(3) > 0)) == slice(0, 1)
    assert str(be.empty((2,), "complex64").dtype).endswith("complex64")


def test_activated_scopes_torch_threads():
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    be = Backend.create("torch", threads=target, device="cpu")
    with be.activated():
        assert torch.get_num_threads() == target
        with be.activated():  # re-entrant
            assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before


def test_tdse_ops_take_threads_from_the_backend():
    from factory.tdse.fftops import FFTWOps, NumpyOps, make_ops

    big = (1, 512, 512)  # above the size where kernels are split over threads
    ops = make_ops(Backend.create("fftw", threads=2, planner="FFTW_ESTIMATE"), big)
    assert isinstance(ops, FFTWOps) and ops.threads == 2 and ops.fft_threads == 2
    assert make_ops("fftw", big, quick_plan=True).threads == 1  # a name: the default, one thread
    ops = make_ops(Backend.create("numpy", threads=2), big)
    assert isinstance(ops, NumpyOps) and ops.threads == 2


@pytest.mark.parametrize("kind", ["blobs", "tdse", "msft"])
def test_every_simulator_is_built_with_a_thread_count(kind):
    from factory.config import load_config
    from factory.simulators import simulator_class

    preset = {"blobs": "blobs/tiny", "tdse": "tdse/tiny", "msft": "msft/tiny"}[kind]
    cfg = load_config(preset)
    sim = simulator_class(kind)(cfg.simulator, threads=2)
    assert sim.threads == 2
    assert simulator_class(kind)(cfg.simulator).threads == 1
    if kind != "blobs":
        assert sim.backend.threads == 2
    with pytest.raises(ValueError, match="threads = 0"):
        simulator_class(kind)(cfg.simulator, threads=0)
