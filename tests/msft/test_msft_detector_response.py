"""The detector model of the measured patterns: masks, saturation, gain, display, numpy/torch, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest

from factory.msft.detector_response import (
    AG_CLUSTER_DETECTOR,
    AUTHORS_EXP_KNOTS,
    DetectorResponse,
    fit_detector_geometry,
    masked_correlation,
    subpixel_shift,
    to_measured_orientation,
)
from factory.msft.measured import load_ag_clusters


def literal(rows: str) -> np.ndarray:
    return np.array([[ch == "#" for ch in row] for row in rows.split()], dtype=bool)


def test_mask_8x8_bevel_2_hole_1():
    det = DetectorResponse(shape=(8, 8), centre=(4.0, 4.0), region=(1, 7, 1, 7), bevel=2.0, hole_radius=1.0)
    want = literal("""
        ........
        ...##...
        ..####..
        .###.##.
        .##...#.
        ..##.#..
        ...##...
        ........
    """)
    assert np.array_equal(det.mask(), want)


def test_mask_half_pixel_centre_rectangle_and_no_bevel():
    det = DetectorResponse(shape=(6, 7), centre=(2.5, 3.5), region=(0, 5, 1, 7), hole_radius=1.0)
    want = literal("""
        .######
        .######
        .##..##
        .##..##
        .######
        .......
    """)
    assert np.array_equal(det.mask(), want)
    assert DetectorResponse(shape=(4, 4)).mask().all()  # defaults: every pixel valid


def test_mask_bevel_1_cuts_only_the_corner_pixels():
    m = DetectorResponse(shape=(5, 5), region=(0, 5, 0, 5), bevel=1.0).mask()
    assert not m[0, 0] and not m[0, 4] and not m[4, 0] and not m[4, 4]
    assert m.sum() == 21


def test_invalid_parameters_are_refused():
    for bad in ({"region": (0, 9, 0, 4)}, {"region": (2, 2, 0, 4)}, {"saturation": 0.0}, {"saturation": 1.5},
                {"gain": 0.0}, {"display": "sqrt"}, {"log_floor": 0.0}, {"hole_radius": -1.0},
                {"measured_scaling": "gamma"}):
        with pytest.raises(ValueError):
            DetectorResponse(**{"shape": (4, 4), **bad})
    with pytest.raises(ValueError, match="does not match"):
        DetectorResponse(shape=(4, 4)).apply(np.ones((5, 4)))


def plain2x2(**kw) -> DetectorResponse:
    """2 x 2 detector, no orientation change, no shift (centre = (1, 1) = (n // 2, n // 2))."""
    return DetectorResponse(shape=(2, 2), centre=(1.0, 1.0), region=(0, 2, 0, 2), orient=False, **kw)


I22 = np.array([[0.0, 1.0], [2.0, 4.0]])


def test_linear_display_normalises_by_the_maximum():
    assert np.allclose(plain2x2().apply(I22), [[0.0, 0.25], [0.5, 1.0]])
    assert np.allclose(plain2x2().apply(7.0 * I22), [[0.0, 0.25], [0.5, 1.0]])  # scale free
    assert np.allclose(plain2x2().apply(np.zeros((2, 2))), 0.0)  # no division by zero


def test_gain_and_saturation_hand_values():
    # normalised 0, .25, .5, 1; x1.5 -> 0, .375, .75, 1.5; clip at .6 -> 0, .375, .6, .6; / .6
    got = plain2x2(gain=1.5, saturation=0.6).apply(I22)
    assert np.allclose(got, [[0.0, 0.625], [1.0, 1.0]])
    # the authors' add_sat: min(g x, 1) is gain g with saturation 1
    assert np.allclose(plain2x2(gain=1.25, saturation=1.0).apply(I22), [[0.0, 0.3125], [0.625, 1.0]])
    # gain without clipping may exceed 1
    assert np.allclose(plain2x2(gain=2.0).apply(I22), [[0.0, 0.5], [1.0, 2.0]])


def test_log_display_hand_values():
    # floor 0.01: (log10(v + 0.01) + 2) / (log10(1.01) + 2): 0 -> 0, 0.25 -> 0.70596..., 1 -> 1
    got = plain2x2(display="log", log_floor=0.01).apply(I22)
    assert got[0, 0] == pytest.approx(0.0, abs=1e-12)
    assert got[1, 1] == pytest.approx(1.0)
    assert got[0, 1] == pytest.approx((math.log10(0.26) + 2) / (math.log10(1.01) + 2))
    assert got[0, 1] == pytest.approx(0.70596, abs=1e-5)
    assert got[1, 0] == pytest.approx(0.85194, abs=1e-5)
    # saturation then log: 0.625 -> (log10(0.635) + 2) / (log10(1.01) + 2)
    both = plain2x2(display="log", log_floor=0.01, gain=1.5, saturation=0.6).apply(I22)
    assert both[0, 1] == pytest.approx(0.89944, abs=1e-5)


def test_mask_zeroes_outside_and_max_is_over_valid_pixels():
    det = DetectorResponse(shape=(4, 4), centre=(2.0, 2.0), region=(0, 4, 0, 4), hole_radius=0.5, orient=False)
    img = np.ones((4, 4))
    img[2, 2] = 100.0  # the direct beam, inside the hole
    out = det.apply(img)
    assert out[2, 2] == 0.0
    assert np.allclose(np.delete(out.ravel(), 10), 1.0)


def test_apply_orients_and_shifts_to_the_centre():
    img = np.zeros((8, 8))
    img[4, 4] = 1.0  # q = 0 of the project's grid
    img[4, 6] = 0.5  # +2 pixels in qx
    det = DetectorResponse(shape=(8, 8), centre=(3.0, 4.5))
    out = det.apply(img)
    # point reflection keeps (4, 4), sends (4, 6) to (4, 2); then the shift (-1, +0.5) splits columns
    want = np.zeros((8, 8))
    want[3, 4] = want[3, 5] = 0.5
    want[3, 2] = want[3, 3] = 0.25
    assert np.allclose(out, want / 0.5)
    assert np.array_equal(to_measured_orientation(to_measured_orientation(img)), img)
    assert np.allclose(subpixel_shift(subpixel_shift(img, 2.0, -3.0), -2.0, 3.0), img)


def test_numpy_and_torch_agree_and_gradient_flows():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    rng = np.random.default_rng(3)
    intensity = rng.random((2, 128, 128)) ** 6 + 1e-4
    det = AG_CLUSTER_DETECTOR.replace(saturation=None)
    for d in (AG_CLUSTER_DETECTOR, det, det.replace(display="linear")):
        assert np.allclose(d.apply(torch.tensor(intensity)).numpy(), d.apply(intensity), atol=1e-12)
    x = torch.tensor(intensity, requires_grad=True)
    w = torch.tensor(rng.random((2, 128, 128)))
    (det.apply(x) * w).sum().backward()
    g = x.grad.numpy()
    assert np.isfinite(g).all()
    # back in the measured frame (orientation, then the integer part of the centre shift)
    d_row, d_col = det.centre[0] - 64, det.centre[1] - 64
    gm = np.roll(to_measured_orientation(g), (math.floor(d_row), math.floor(d_col)), axis=(-2, -1))
    from scipy.ndimage import binary_dilation, binary_erosion

    m = det.mask()
    reach = binary_dilation(m, iterations=2)
    assert (gm[:, ~reach] == 0).all()  # pixels that feed no valid pixel get no gradient
    inner = binary_erosion(m, iterations=2)
    assert (gm[:, inner] != 0).mean() > 0.99


def test_saturated_pixels_have_no_gradient():
    torch = pytest.importorskip("torch")
    x = torch.tensor(I22, requires_grad=True)
    plain2x2(saturation=0.4).apply(x).sum().backward()
    assert x.grad[1, 0] == 0.0  # 0.5 > 0.4: clipped
    assert x.grad[0, 1] != 0.0


def test_measured_input_hand_values_and_packaged_patterns():
    det = DetectorResponse(shape=(1, 4), centre=(0.0, 2.0), region=(0, 1, 0, 4), measured_scaling="authors")
    got = det.measured_input(np.array([[0.0, 51.0, 153.0, 255.0]]))
    # 0.2 -> 0.38 / 0.3 * 0.2; 0.6 -> 0.25 / 0.4 * 0.3 + 0.38 (the authors' expScaling)
    assert got.dtype == np.float32
    assert np.allclose(got, [[0.0, 0.38 / 0.3 * 0.2, 0.25 / 0.4 * 0.3 + 0.38, 1.0]], atol=1e-6)
    assert np.allclose(det.replace(measured_scaling="identity").measured_input(np.array([[0, 51, 153, 255]])),
                       [[0.0, 0.2, 0.6, 1.0]], atol=1e-6)
    assert AUTHORS_EXP_KNOTS[1][2] == pytest.approx(0.25 / 0.4 * (0.88 - 0.3) + 0.38)  # continuous
    m = AG_CLUSTER_DETECTOR.mask()
    for name, png in load_ag_clusters().items():
        x = AG_CLUSTER_DETECTOR.measured_input(png)
        assert x.shape == (128, 128) and x.dtype == np.float32
        assert (x[~m] == 0).all() and x.min() >= 0 and x.max() <= 1, name
        assert x.max() > 0.9, name


def test_ag_cluster_mask_covers_the_measured_pixels():
    m = AG_CLUSTER_DETECTOR.mask()
    for name, png in load_ag_clusters().items():
        nz = png > 0
        assert (nz & m).sum() / nz.sum() >= 0.97, name  # measured 0.975-0.985 (resampling noise in corners)
        sig = png >= 16
        assert (sig & m).sum() / sig.sum() >= 0.99, name  # measured 0.993-0.998
    assert m.sum() < 0.27 * m.size  # and it is not simply everything (4152 of 16384 pixels)


def test_ag_cluster_geometry_is_the_fit_to_the_packaged_patterns():
    fit = fit_detector_geometry(list(load_ag_clusters().values()))
    det = AG_CLUSTER_DETECTOR
    assert fit["region"] == det.region == (33, 94, 28, 100)
    assert fit["bevel"] == det.bevel and fit["bevel_iou"] > 0.98
    assert abs(fit["hole_centre"][0] - det.centre[0]) <= 0.25 and abs(fit["hole_centre"][1] - det.centre[1]) <= 0.25
    assert fit["hole_radius_mean"] <= det.hole_radius <= fit["hole_radius_mean"] + 0.5


def test_masked_correlation():
    a = np.array([[1.0, 2.0], [3.0, 100.0]])
    b = np.array([[2.0, 4.0], [6.0, -5.0]])
    mask = np.array([[True, True], [True, False]])
    assert masked_correlation(a, b, mask) == pytest.approx(1.0)
    assert masked_correlation(a, -b, mask) == pytest.approx(-1.0)
    assert masked_correlation(a, b, np.ones((2, 2), bool)) < 0
    assert math.isnan(masked_correlation(np.ones((2, 2)), b, mask))
