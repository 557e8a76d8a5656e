"""MSFT physics and numerics: sphere form factor, Ewald phase, absorption, symmetry, methods."""

import numpy as np
import pytest
from scipy.optimize import brentq

from factory.geometry import multiply, sample_fundamental, symmetry_group
from factory.msft.multislice import (
    MSFTParams,
    amplitude,
    amplitude_batch,
    effective_density,
    q_axis,
    relative_difference,
    scatter,
)
from factory.msft.analysis import centro_asymmetry, profile_minima
from factory.msft.shapes import density

SPHERE_ZEROS = [brentq(lambda x: np.tan(x) - x, a, b) for a, b in [(4.0, 4.7), (7.0, 7.8), (10.5, 10.99)]]


@pytest.mark.parametrize("wavelength", [13.5, 1.0])
def test_sphere_minima_match_analytic_form_factor(wavelength):
    """3(sin qR - qR cos qR)/(qR)^3 vanishes at qR = 4.493, 7.725, 10.904: within 1 % in q."""
    R, vox = 40.0, 2.0
    p = scatter(density("sphere", R, n=48, voxel_nm=vox), vox, wavelength_nm=wavelength,
                absorption_length_nm=None, pad=1024, crop=200)
    h = 100
    assert p.qx[h] == 0.0
    q_perp = profile_minima(p.intensity[h, h:], p.qx[h:])
    k = 2 * np.pi / wavelength
    q_full = np.sqrt(q_perp**2 + (k - np.sqrt(k**2 - q_perp**2)) ** 2)  # |q| on the Ewald sphere
    expected = np.array(SPHERE_ZEROS) / R
    assert np.all(np.abs(q_full / expected - 1) < 0.01), q_full / expected - 1
    if wavelength == 1.0:  # small angles: q_perp itself
        assert np.all(np.abs(q_perp / expected - 1) < 0.01)


def test_forward_intensity_has_the_absolute_scale():
    """Without absorption |A(0)|^2 = (k^2 V / 4 pi)^2 (chi = 1); q axes are the FFT grid."""
    vox = 1.5
    d = density("sphere", 12.0, n=24, voxel_nm=vox)
    p = scatter(d, vox, absorption_length_nm=None, pad=64, crop=16)
    k = 2 * np.pi / 13.5
    assert np.isclose(p.intensity[8, 8], (k**2 / (4 * np.pi) * d.sum() * vox**3) ** 2, rtol=1e-5)
    assert np.allclose(np.diff(p.qx), 2 * np.pi / (64 * vox)) and p.qx[8] == 0 and len(p.qx) == 16


def test_amplitude_is_the_3d_transform_at_q_on_the_ewald_sphere():
    """A(qx, qy) = sum rho exp(-i q.r) dV k^2/4pi with q = k_out - k_in, q_z = sqrt(k^2 - q_perp^2) - k."""
    rng = np.random.default_rng(5)
    rho = rng.random((6, 7, 5)).astype(np.float64)
    vox, pad, crop = 3.0, 16, 16
    params = MSFTParams(voxel_nm=vox, absorption_length_nm=None, pad=pad, crop=crop, method="dft",
                        precision="complex128")
    amp = amplitude(rho, params)
    k = params.k
    q = q_axis(pad, vox, crop)
    z, y, x = (np.arange(n) - (n - 1) / 2 for n in rho.shape)
    for iy, ix in [(8, 8), (9, 10), (6, 10), (10, 7)]:  # |q_perp| < k
        qz_phys = np.sqrt(k**2 - q[ix] ** 2 - q[iy] ** 2) - k
        phase = np.exp(-1j * vox * (q[ix] * x[None, None, :] + q[iy] * y[None, :, None] + qz_phys * z[:, None, None]))
        direct = k**2 / (4 * np.pi) * vox**3 * np.sum(rho * phase)
        assert abs(amp[iy, ix] - direct) < 1e-10 * abs(direct) + 1e-12


def test_absorption_attenuates_by_material_already_passed_along_plus_z():
    rho = np.zeros((4, 1, 1))
    rho[:, 0, 0] = 1.0
    f = effective_density(rho, MSFTParams(voxel_nm=2.0, absorption_length_nm=10.0, precision="complex128"))
    # slice j sees 2 nm * (j + 1/2) of material before its midpoint
    assert np.allclose(f[:, 0, 0], np.exp(-2.0 * (np.arange(4) + 0.5) / 10.0))
    fc = effective_density(rho, MSFTParams(voxel_nm=2.0, absorption_length_nm=None, delta=0.1, beta=0.05,
                                           precision="complex128"))
    k = 2 * np.pi / 13.5
    d = 2.0 * (np.arange(4) + 0.5)
    assert np.allclose(fc[:, 0, 0], np.exp(1j * k * (-0.1 + 0.05j) * d))  # exp(i k (n - 1) d)


CASES = {
    "absorption": dict(absorption_length_nm=12.5),
    "none": dict(absorption_length_nm=None),
    "delta_beta": dict(absorption_length_nm=None, delta=0.08, beta=0.03),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("precision", ["complex64", "complex128"])
def test_all_methods_and_backends_agree(case, precision):
    q = sample_fundamental(np.random.default_rng(11))
    rho = density("icosahedron", 30.0, q, n=36, voxel_nm=2.0)[:, 2:, 1:]  # non-cubic box, off-centre
    base = dict(voxel_nm=2.0, pad=96, crop=63, precision=precision, **CASES[case])  # odd crop
    ref = np.abs(amplitude(rho, MSFTParams(method="reference", **base))) ** 2
    tol = 1e-4 if precision == "complex64" else 1e-10
    for method, backend in [("fft", "numpy"), ("fft", "fftw"), ("fft", "torch"), ("dft", "numpy"), ("dft", "torch"),
                            ("auto", "auto")]:
        got = np.abs(amplitude(rho, MSFTParams(method=method, backend=backend, **base))) ** 2
        assert got.dtype == (np.float32 if precision == "complex64" else np.float64)
        assert relative_difference(got, ref) < tol, (method, backend)


def test_torch_batch_equals_single_images():
    rng = np.random.default_rng(4)
    rhos = np.stack([density("icosahedron", r, sample_fundamental(rng), n=32, voxel_nm=2.0) for r in (14.0, 22.0, 30.0)])
    for method in ("dft", "fft"):
        params = MSFTParams(voxel_nm=2.0, pad=64, crop=32, method=method, backend="torch")
        batch = amplitude_batch(rhos, params)
        single = MSFTParams(voxel_nm=2.0, pad=64, crop=32, method="reference")
        for b, r in zip(batch, rhos):
            assert relative_difference(np.abs(b) ** 2, np.abs(amplitude(r, single)) ** 2) < 1e-4


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_batch_voxeliser_matches_the_block_voxeliser(backend):
    from factory.backend import Backend
    from factory.msft.voxelise import density_batch

    be = Backend.create(backend, device="cpu")
    rng = np.random.default_rng(6)
    quats = [sample_fundamental(rng) for _ in range(2)]
    for shape in ("icosahedron", "sphere", "marks_decahedron"):
        got = be.to_numpy(density_batch(be, shape, [12.0, 15.0], quats, n=32, voxel_nm=1.0))
        for g, r, q in zip(got, (12.0, 15.0), quats):
            assert np.abs(g - density(shape, r, q, n=32, voxel_nm=1.0)).max() < 1e-4


def test_icosahedron_pattern_invariant_under_the_60_rotations():
    q = sample_fundamental(np.random.default_rng(8))
    params = MSFTParams(voxel_nm=2.0, pad=64, crop=32)  # with absorption
    ref = np.abs(amplitude(density("icosahedron", 30.0, q, n=32, voxel_nm=2.0), params)) ** 2
    worst = 0.0
    for s in symmetry_group("I"):
        I = np.abs(amplitude(density("icosahedron", 30.0, multiply(q, s), n=32, voxel_nm=2.0), params)) ** 2
        worst = max(worst, relative_difference(I, ref))
    assert worst < 1e-5, worst


def test_centrosymmetry_without_absorption_and_asymmetry_with_it():
    q = sample_fundamental(np.random.default_rng(7))  # no 2-fold axis along the beam
    rho = density("icosahedron", 38.0, q, n=40, voxel_nm=2.0)
    k = 2 * np.pi / 13.5
    out = {}
    for a in (None, 12.5):
        p = scatter(rho, 2.0, absorption_length_nm=a, pad=128, crop=128)
        out[a] = (centro_asymmetry(p.intensity, p.qx, k, 0.0, 0.15),
                  centro_asymmetry(p.intensity, p.qx, k, 0.5, 1.0))
    small_free, wide_free = out[None]
    small_abs, _ = out[12.5]
    assert small_free < 1e-3  # Friedel symmetric at small angles without absorption
    assert wide_free > 0.1  # the Ewald sphere breaks it at wide angles
    assert small_abs > 5 * small_free  # absorption: the small-angle pattern turns asymmetric
    # ... unless the particle has a 2-fold axis along the beam (scipy's I has one along z)
    p = scatter(density("icosahedron", 38.0, (1, 0, 0, 0), n=40, voxel_nm=2.0), 2.0, pad=128, crop=128)
    S = p.intensity[1:, 1:]
    assert relative_difference(S[::-1, ::-1], S) < 1e-5


def test_bad_inputs_are_refused_with_clear_messages():
    rho = np.ones((8, 8, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="3D array"):
        scatter(np.ones((8, 8)), 1.0, pad=16, crop=8)
    bad = rho.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        scatter(bad, 1.0, pad=16, crop=8)
    with pytest.raises(ValueError, match="crop = 32 is larger than the padded grid pad = 16"):
        scatter(rho, 1.0, pad=16, crop=32)
    with pytest.raises(ValueError, match="pad = 4 is smaller than the density"):
        scatter(rho, 1.0, pad=4, crop=4)
    with pytest.raises(ValueError, match="method = 'magic'"):
        scatter(rho, 1.0, pad=16, crop=8, method="magic")
    with pytest.raises(ValueError, match="give both"):
        scatter(rho, 1.0, pad=16, crop=8, delta=0.1)
    with pytest.raises(ValueError, match="voxel_nm"):
        scatter(rho, 0.0, pad=16, crop=8)
