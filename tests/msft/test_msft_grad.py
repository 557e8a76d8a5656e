"""The MSFT on torch is differentiable from the density to the pattern (checked by finite differences)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from factory.backend import Backend  # noqa: E402
from factory.msft.multislice import amplitude  # noqa: E402
from factory.msft.params import MSFTParams  # noqa: E402
from factory.msft.transform import amplitude_array  # noqa: E402

CASES = {
    "absorption": dict(absorption_length_nm=6.0),
    "delta_beta": dict(absorption_length_nm=None, delta=0.05, beta=0.03),
    "none": dict(absorption_length_nm=None),
}


def _density(rng):
    rho = np.zeros((6, 7, 5))
    rho[1:5, 1:6, 1:4] = rng.random((4, 5, 3))  # empty voxels around it: gradients there too
    return rho


@pytest.mark.parametrize("method", ["dft", "fft"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_matches_central_finite_differences(case, method):
    be = Backend.create("torch", device="cpu")
    params = MSFTParams(voxel_nm=2.0, pad=16, crop=12, precision="complex128", **CASES[case])
    rng = np.random.default_rng(3)
    rho0 = _density(rng)
    weight = torch.as_tensor(rng.random((12, 12)))

    def loss(rho):  # no pruning to the bounding box: finite differences step to negative densities
        amp = amplitude_array(rho[None], params, be, method=method, prune=False)[0]
        return (weight * amp.abs() ** 2).sum()

    x = torch.tensor(rho0, requires_grad=True)
    value = (weight * amplitude_array(x[None], params, be, method=method)[0].abs() ** 2).sum()  # prune: off
    (grad,) = torch.autograd.grad(value, x)
    assert grad.dtype == torch.float64 and grad.shape == x.shape
    # the forward values are those of the numpy path
    ref = amplitude(rho0, MSFTParams(voxel_nm=2.0, pad=16, crop=12, precision="complex128", method="dft",
                                     backend="numpy", **CASES[case]))
    value = float(value.detach())
    assert abs(value - float((weight.numpy() * np.abs(ref) ** 2).sum())) < 1e-10 * value

    eps = 1e-6
    voxels = [(0, 0, 0), (2, 3, 2), (4, 5, 3), (1, 1, 1), (5, 6, 4), (3, 0, 2)]  # inside and empty
    fd, ad = [], []
    with torch.no_grad():
        for v in voxels:
            up, down = x.detach().clone(), x.detach().clone()
            up[v] += eps
            down[v] -= eps
            fd.append((float(loss(up)) - float(loss(down))) / (2 * eps))
            ad.append(float(grad[v]))
        direction = torch.as_tensor(rng.standard_normal(x.shape))
        fd.append((float(loss(x + eps * direction)) - float(loss(x - eps * direction))) / (2 * eps))
        ad.append(float((grad * direction).sum()))
    fd, ad = np.array(fd), np.array(ad)
    scale = np.abs(fd).max()
    assert scale > 0
    assert np.all(np.abs(ad - fd) <= 1e-3 * np.maximum(np.abs(fd), 1e-2 * scale)), (ad, fd)


def test_gradient_flows_through_a_batch_and_float32():
    be = Backend.create("torch", device="cpu")
    params = MSFTParams(voxel_nm=2.0, pad=16, crop=8)
    x = torch.rand(3, 6, 6, 6, requires_grad=True)
    amp = amplitude_array(x, params, be)
    assert amp.shape == (3, 8, 8) and amp.dtype == torch.complex64
    amp.abs().pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and (x.grad != 0).all()
