"""Gradient refinement through the differentiable MSFT (models.forward_fit.gradient).

The torch forward model reproduces the simulator's image, its gradients match finite
differences of the loss, and refinement from a network-like perturbed start recovers the
parameters (tiny MSFT preset: 48^3 voxels -> 64 x 64)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from factory.errors import ConfigError  # noqa: E402
from factory.msft.shapes import density, density_direct  # noqa: E402
from models.forward_fit import ForwardModel, relative_error  # noqa: E402
from models.forward_fit.gradient import (TorchForward, density_t, masked_mse, perturb, quat_exp,  # noqa: E402
                                         quat_mul, refine, rotation_matrix_t)

Q = np.array([0.9, 0.3, 0.2, 0.1]) / np.linalg.norm([0.9, 0.3, 0.2, 0.1])


@pytest.fixture(scope="module")
def fm():
    torch.set_num_threads(1)
    return ForwardModel("tiny")


def test_rotation_helpers_match_scipy():
    from scipy.spatial.transform import Rotation

    w = np.array([0.3, -0.2, 0.5])
    q = quat_exp(torch.tensor(w)).numpy()
    assert np.allclose(q, np.roll(Rotation.from_rotvec(w).as_quat(), 1), atol=1e-12)  # scalar first
    assert np.allclose(quat_exp(torch.zeros(3, dtype=torch.float64)).numpy(), [1, 0, 0, 0])
    m = rotation_matrix_t(torch.tensor(Q) * 3.0).numpy()  # unnormalised: normalised inside
    assert np.allclose(m, Rotation.from_quat(np.roll(Q, -1)).as_matrix(), atol=1e-12)
    # composition: q0 * exp(w) is the rotation R0 R(w)
    q2 = quat_mul(torch.tensor(Q), quat_exp(torch.tensor(w))).numpy()
    ref = Rotation.from_quat(np.roll(Q, -1)) * Rotation.from_rotvec(w)
    assert np.allclose(rotation_matrix_t(torch.tensor(q2)).numpy(), ref.as_matrix(), atol=1e-12)


@pytest.mark.parametrize("shape", ["icosahedron", "sphere", "marks_decahedron"])
def test_torch_density_is_the_simulators(shape):
    rot = rotation_matrix_t(torch.tensor(Q))
    rho = density_t(shape, torch.tensor(61.7, dtype=torch.float64), rot, n=24, voxel_nm=6.0)
    ref = density_direct(shape, 61.7, Q, n=24, voxel_nm=6.0, dtype=np.float64)  # the per-voxel formula
    # the cut voxels are recomputed in float64; the voxels classified by the simulator's float32 blocks
    # may differ by float32 rounding of the distances (< 1e-6)
    assert np.abs(rho.numpy() - ref).max() < 1e-6
    assert np.abs(rho.numpy() - density(shape, 61.7, Q, n=24, voxel_nm=6.0)).max() < 1e-6
    assert 0 < ref.mean() < 1


def test_torch_image_is_the_forward_models(fm):
    tf = TorchForward(fm, precision="complex128")
    img = tf.log_image(tf.intensity(torch.tensor(87.3, dtype=torch.float64), torch.tensor(Q))).numpy()
    ref = fm(87.3, Q)  # float32 simulator image
    assert img.shape == ref.shape == (64, 64)
    assert np.abs(img - ref).max() < 1e-4
    assert ref.max() == pytest.approx(0.0, abs=1e-6) and ref.min() < -4  # log10(I / max): peak 0, dynamic range


def test_radius_and_rotation_gradients_match_finite_differences(fm):
    tf = TorchForward(fm, precision="complex128")
    target = torch.as_tensor(fm(90.0, Q), dtype=torch.float64)
    mask = torch.ones(64, 64, dtype=torch.bool)
    mask[28:36, 28:36] = False  # a central hole

    def loss(r, w):
        q = quat_mul(torch.tensor(Q), quat_exp(w))
        return masked_mse(tf.log_image(tf.intensity(r, q)), target, mask)

    r = torch.tensor(91.3, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.01, -0.02, 0.015], dtype=torch.float64, requires_grad=True)
    value = loss(r, w)
    gr, gw = torch.autograd.grad(value, (r, w))
    assert float(value.detach()) > 0
    with torch.no_grad():
        eps = 1e-4  # nm; the loss is smooth in r between voxels entering the ramp: tiny steps
        fd_r = (float(loss(r + eps, w)) - float(loss(r - eps, w))) / (2 * eps)
        assert float(gr) == pytest.approx(fd_r, rel=2e-3)
        assert float(gr) > 0  # the radius is too large: the loss grows with it
        for k in range(3):
            e = torch.zeros(3, dtype=torch.float64)
            e[k] = 1e-5
            fd = (float(loss(r, w + e)) - float(loss(r, w - e))) / 2e-5
            assert float(gw[k]) == pytest.approx(fd, rel=5e-3, abs=1e-3 * float(gw.abs().max()))


def test_refinement_from_a_perturbed_start_recovers_the_parameters(fm):
    rng = np.random.default_rng(7)
    r_true, q_true = 104.2, Q
    target = fm(r_true, q_true)
    r0, q0 = perturb(r_true, q_true, rng, radius_sigma_nm=3.0, angle_sigma_deg=2.5)
    err0 = relative_error(r0, q0, r_true, q_true, fm.radius_range, fm.group)
    assert err0.mean() > 5e-3  # a network-like start: errors of ~1 % of the ranges
    res = refine(target, fm, r0, q0, steps=20, optimizer="lbfgs", cost=5.0)
    err = relative_error(res.radius, res.quaternion, r_true, q_true, fm.radius_range, fm.group)
    assert err.mean() < 0.02 * err0.mean(), (err0, err)  # at least 50x smaller
    assert abs(res.radius - r_true) < 0.05
    assert res.loss < 1e-3 * res.loss_trace[0]
    assert res.passes <= 20 and res.simulations == pytest.approx(5.0 * res.passes)
    assert np.all(np.diff(np.minimum.accumulate(res.loss_trace)) <= 0)
    # Adam gets there too, more slowly
    res_a = refine(target, fm, r0, q0, steps=20, optimizer="adam", lr=0.01, cost=5.0)
    err_a = relative_error(res_a.radius, res_a.quaternion, r_true, q_true, fm.radius_range, fm.group)
    assert err_a.mean() < 0.5 * err0.mean()


def test_mask_and_gain(fm):
    r_true = 75.0
    target = fm(r_true, Q)
    mask = np.ones((64, 64), dtype=bool)
    mask[:, :8] = False
    # outside the mask the target may be anything: the loss does not see it
    spoilt = target.copy()
    spoilt[:, :8] = 5.0
    offset = 0.3  # a gain of 10^0.3 ~ 2 on the intensity: an offset of the log image
    res = refine(spoilt + offset, fm, 76.5, Q, steps=30, optimizer="lbfgs", mask=mask, gain=True, cost=5.0)
    assert abs(res.radius - r_true) < 0.05
    assert res.gain == pytest.approx(10**offset, rel=1e-3)
    # a response callable replaces the log display: here a linear, saturating detector
    def response(intensity):
        return (intensity / intensity.max() * 4.0).clamp(max=1.0)

    tf = TorchForward(fm, precision="complex128")
    lin = response(tf.intensity(torch.tensor(r_true, dtype=torch.float64), torch.tensor(Q))).numpy()
    assert (lin == 1.0).sum() > 0  # saturated pixels
    res = refine(lin, fm, 77.0, Q, steps=15, optimizer="lbfgs", response=response, cost=5.0)
    assert abs(res.radius - r_true) < 0.1


def test_refine_refuses_what_it_cannot_do(fm):
    with pytest.raises(ConfigError, match="optimizer"):
        refine(np.zeros((64, 64)), fm, 80.0, Q, optimizer="sgd", cost=1.0)
    with pytest.raises(ConfigError, match="target"):
        refine(np.zeros((32, 32)), fm, 80.0, Q, cost=1.0)
    with pytest.raises(ConfigError, match="mask"):
        refine(np.zeros((64, 64)), fm, 80.0, Q, mask=np.zeros((64, 64), bool), cost=1.0)
    with pytest.raises(ConfigError, match="MSFT"):
        refine(np.zeros((8, 8)), ForwardModel(function=lambda r, q: np.zeros((8, 8))), 80.0, Q, cost=1.0)


def test_fit_shapes_recovers_the_shape_of_simulated_measured_patterns():
    """Patterns simulated through the detector model and written as 8-bit PNG values (inverting the
    measured colour-map correction) are fitted back to their own shape, with r near 1."""
    from factory.config import resolve_simulator_config
    from factory.msft.detector_response import AG_CLUSTER_DETECTOR as det, AUTHORS_EXP_KNOTS
    from factory.msft.simulator import pattern
    from models.forward_fit.shape_search import fit_shapes

    cfg = resolve_simulator_config("msft", "tiny").model_copy(update={"crop": 128, "output": "linear",
                                                                        "background": 0.0})
    truth = {"a": ("sphere", 70.0, (1.0, 0.0, 0.0, 0.0)), "b": ("octahedron", 110.0, (0.9, 0.3, 0.2, 0.24))}
    images = {}
    for name, (shape, radius, q) in truth.items():
        shown = det.apply(pattern(shape, radius, np.array(q) / np.linalg.norm(q), config=cfg).image)
        images[name] = np.round(np.interp(shown, AUTHORS_EXP_KNOTS[1], AUTHORS_EXP_KNOTS[0]) * 255) * det.mask()
    res = fit_shapes(images, shapes=("sphere", "octahedron"), search=40, steps=6, config=cfg.model_dump())
    for name, (shape, radius, _) in truth.items():
        assert res[name]["ranked"][0] == shape, res[name]
        best = res[name]["fits"][shape]
        other = res[name]["fits"][res[name]["ranked"][1]]
        assert best["r"] > 0.95 and best["r"] > other["r"] + 0.02 and best["r"] >= best["r_search"] - 1e-9
        assert abs(best["radius_nm"] - radius) < 8.0
    from factory.errors import ConfigError

    with pytest.raises(ConfigError, match="gives 64 x 64 images; the detector is 128 x 128"):
        fit_shapes(images, shapes=("sphere",), search=1, steps=0, config="tiny")  # refused before simulating
