"""The orientation / centring convention of the MSFT images against an independent plain-numpy MSFT.

Two independent MSFTs are written here (no import from factory.msft.transform / multislice):
``fft_msft`` (zero-padded fft2 of each absorbing slice, Ewald phase exp(+i qz z), sum,
fftshift, central crop: the project's physical q = k_out - k_in orientation, q = 0 at pixel
crop // 2) and ``authors_msft`` (the method authors' recipe of thstielow/scatter-2D3D-nn,
``scatter_utils.py`` ``scatterSim``: the field on a grid symmetric about q = 0, then
``np.flip`` of both axes, then the crop).  The object is an asymmetric, absorbing body of a
few voxels at wide angles (q up to 0.97 k), where the Ewald curvature and absorption break the
centro-symmetry I(q) = I(-q), so a wrong flip is detected.
"""

from __future__ import annotations

import numpy as np
import pytest

from factory.msft.detector_response import DetectorResponse, masked_correlation, to_measured_orientation
from factory.msft.multislice import MSFTParams, amplitude

LAM, ABS_NM, VOX, N, PAD, CROP = 13.5, 12.5, 3.5, 12, 64, 32


def asymmetric_body() -> np.ndarray:
    """An L-shaped, off-centre, z-tilted body of 0/1 voxels ``[z, y, x]``."""
    rho = np.zeros((N, N, N))
    rho[2:9, 3:5, 2:4] = 1.0  # a bar along z
    rho[6:8, 3:5, 4:10] = 1.0  # a foot along x, deeper in z
    rho[3:5, 5:9, 2:4] = 1.0  # an arm along y, shallow
    rho[8, 9, 9] = 0.5  # a half-filled stray voxel
    return rho


def effective(rho: np.ndarray) -> np.ndarray:
    """rho * exp(-d / a), d = voxel * (sum of slices before + half of this one)."""
    before = np.cumsum(rho, axis=0) - rho
    return rho * np.exp(-VOX * (before + 0.5 * rho) / ABS_NM)


def fft_msft(rho: np.ndarray) -> np.ndarray:
    """|A|^2 on the central CROP x CROP of the fftshifted PAD grid (q = 0 at CROP // 2)."""
    k = 2 * np.pi / LAM
    q = (np.arange(PAD) - PAD // 2) * 2 * np.pi / (PAD * VOX)
    qx, qy = np.meshgrid(q, q)
    inside = qx**2 + qy**2 < k**2
    qz = np.where(inside, k - np.sqrt(np.where(inside, k**2 - qx**2 - qy**2, 0.0)), 0.0)
    f = effective(rho)
    total = np.zeros((PAD, PAD), complex)
    for j in range(N):
        total += np.fft.fftshift(np.fft.fft2(f[j], s=(PAD, PAD))) * np.exp(1j * qz * VOX * j)
    total *= inside
    c = PAD // 2 - CROP // 2
    return np.abs(total[c : c + CROP, c : c + CROP]) ** 2


def authors_msft(rho: np.ndarray) -> np.ndarray:
    """The authors' recipe: field on the symmetric grid m = -M..M (odd size, q = 0 in the middle),
    np.flip (both axes), keep the first 2M entries so that q = 0 is at pixel M = CROP // 2."""
    k = 2 * np.pi / LAM
    m = CROP // 2
    q = np.arange(-m, m + 1) * 2 * np.pi / (PAD * VOX)
    x = np.arange(N) * VOX
    ex = np.exp(-1j * np.outer(q, x))  # [q, x]: the 2D Fourier transform of a slice as two products
    qx, qy = np.meshgrid(q, q)
    inside = qx**2 + qy**2 < k**2
    qz = np.where(inside, k - np.sqrt(np.where(inside, k**2 - qx**2 - qy**2, 0.0)), 0.0)
    f = effective(rho)
    field = sum(ex @ f[j] @ ex.T * np.exp(1j * qz * VOX * j) for j in range(N)) * inside
    return (np.abs(np.flip(field)) ** 2)[: 2 * m, : 2 * m]


@pytest.fixture(scope="module")
def images():
    rho = asymmetric_body()
    params = MSFTParams(voxel_nm=VOX, wavelength_nm=LAM, absorption_length_nm=ABS_NM, pad=PAD, crop=CROP,
                        method="dft", backend="numpy", precision="complex128")
    project = np.abs(amplitude(rho, params)) ** 2
    return project, fft_msft(rho), authors_msft(rho)


def r(a, b) -> float:
    """Pearson r without row / column 0 (q = -M dq, whose mirror image is off the grid)."""
    return masked_correlation(a, b, np.pad(np.ones((CROP - 1, CROP - 1), bool), ((1, 0), (1, 0))))


def rel(a, b) -> float:
    """||a / max a - b / max b|| / ||b / max b|| without row / column 0."""
    a, b = a[..., 1:, 1:] / a[..., 1:, 1:].max(), b[..., 1:, 1:] / b[..., 1:, 1:].max()
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_wide_angles_break_centro_symmetry(images):
    _, plain, _ = images
    mirrored = np.roll(plain[::-1, ::-1], (1, 1), axis=(0, 1))
    assert rel(plain, mirrored) > 0.2  # otherwise the tests below could not see a flip (measured 0.24)


def test_project_pattern_is_the_plain_fftshifted_crop(images):
    project, plain, _ = images
    assert np.allclose(project / project.max(), plain / plain.max(), atol=1e-9)
    assert r(project, plain) > 0.999999
    for name, wrong in (("point reflection", to_measured_orientation(project)), ("flipud", project[::-1]),
                        ("fliplr", project[:, ::-1]), ("transpose", project.T)):
        assert rel(wrong, plain) > 0.2, name  # measured 0.24-0.48


def test_measured_orientation_is_the_authors_flip_about_pixel_crop_half(images):
    project, _, authors = images
    ours = to_measured_orientation(project)
    assert r(ours, authors) > 0.999999
    assert np.allclose((ours / ours.max())[1:, 1:], (authors / authors.max())[1:, 1:], atol=1e-9)
    assert np.array_equal(to_measured_orientation(ours), project)  # an involution
    for name, wrong in (("unflipped", project), ("flipud", project[::-1]), ("fliplr", project[:, ::-1]),
                        ("transpose", project.T), ("rot180 about 63.5", project[::-1, ::-1])):
        assert rel(wrong, authors) > 0.2, name  # measured 0.24-0.42


def test_detector_apply_uses_the_measured_orientation(images):
    project, _, authors = images
    det = DetectorResponse(shape=(CROP, CROP), centre=(CROP // 2, CROP // 2), region=(1, CROP, 1, CROP))
    shown = det.apply(project)
    assert r(shown, authors) > 0.999999
    assert shown.max() == pytest.approx(1.0)
    assert rel(det.replace(orient=False).apply(project), authors) > 0.2
