"""Icosahedral group, fundamental domain, uniform sampling and spans (seed 003, App. A and C)."""

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.transform import Rotation

from factory.geometry import (
    are_equivalent,
    canonical,
    component_span,
    domain_max_angle,
    from_rotation,
    icosahedral_group,
    in_fundamental_domain,
    multiply,
    parse_quat,
    project_to_fundamental,
    relative_errors,
    rotation_angle,
    rotation_angle_cdf,
    sample_fundamental,
    to_rotation,
)
from factory.geometry.symmetry import domain_volume_fraction, domain_vertices, rodrigues_halfspaces


def test_quaternion_convention_scalar_first():
    # 90 degrees about z: scalar first (w, x, y, z)
    q = np.array([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)])
    assert np.allclose(to_rotation(q).apply([1.0, 0.0, 0.0]), [0.0, 1.0, 0.0])
    assert np.allclose(from_rotation(Rotation.from_euler("z", 90, degrees=True)), q)
    # Hamilton product = composition (apply b, then a)
    a, b = from_rotation(Rotation.random(2, np.random.default_rng(1)))
    assert np.allclose(canonical(multiply(a, b)), from_rotation(to_rotation(a) * to_rotation(b)))
    assert canonical([-1.0, 0, 0, 0])[0] == 1.0
    assert np.allclose(parse_quat("2,0,0,0"), [1, 0, 0, 0])
    with pytest.raises(ValueError, match="four numbers"):
        parse_quat("1,2,3")


def test_icosahedral_group_has_60_distinct_rotations_closed_under_product():
    g = icosahedral_group()
    assert g.shape == (60, 4) and np.allclose(g[0], [1, 0, 0, 0])
    assert len(np.unique(np.round(canonical(g), 8), axis=0)) == 60
    prod = canonical(multiply(g[:, None, :], g[None, :, :])).reshape(-1, 4)
    dots = np.abs(prod @ g.T).max(axis=1)
    assert np.all(dots > 1 - 1e-12)  # every product is a group element
    # rotation angles: identity, 2-fold (15), 3-fold (20), 5-fold (24)
    ang = np.round(np.degrees(rotation_angle(g)))
    assert sorted(set(ang)) == [0, 72, 120, 144, 180]


def test_projection_is_idempotent_equivalent_and_minimal():
    rng = np.random.default_rng(0)
    q = from_rotation(Rotation.random(2000, rng))
    p = project_to_fundamental(q)
    assert np.all(p[:, 0] >= 0)
    assert np.all(in_fundamental_domain(p))
    assert np.array_equal(project_to_fundamental(p), p)  # idempotent, bit for bit
    assert np.all(are_equivalent(q, p))  # p = q s for some s in I
    # smallest rotation angle among all 60 equivalents
    eq = canonical(multiply(q[:, None, :], icosahedral_group()[None]))
    assert np.allclose(rotation_angle(p), rotation_angle(eq).min(axis=1))
    assert rotation_angle(p).max() <= domain_max_angle() + 1e-12


def test_domain_is_the_dodecahedron_of_volume_one_sixtieth():
    A, b = rodrigues_halfspaces("I")
    assert len(domain_vertices("I")) == 20  # a dodecahedron
    # its 12 faces lie at tan(pi/10) along the 5-fold axes
    dist = b / np.linalg.norm(A, axis=1)
    assert np.isclose(dist.min(), np.tan(np.pi / 10))
    assert np.sum(np.isclose(dist, np.tan(np.pi / 10))) == 12
    assert abs(domain_volume_fraction("I") * 60 - 1) < 1e-5
    assert abs(domain_volume_fraction("O") * 24 - 1) < 1e-5


def test_uniform_sampling_in_domain_matches_rotation_angle_law():
    """KS test of the rotation angle against its law restricted to the domain (fixed seed)."""
    rng = np.random.default_rng(20261121)
    q = sample_fundamental(rng, 20000)
    assert np.all(in_fundamental_domain(q))
    theta = rotation_angle(q)
    ks = stats.kstest(theta, lambda t: rotation_angle_cdf(t, "I"))
    assert ks.pvalue > 0.01, ks
    # analytic check inside the inscribed ball (angle < pi/5 every axis is allowed):
    # P(theta < pi/5) = 60 (pi/5 - sin(pi/5)) / pi
    p_in = 60 * (np.pi / 5 - np.sin(np.pi / 5)) / np.pi
    k = int(np.sum(theta < np.pi / 5))
    assert stats.binomtest(k, len(theta), p_in).pvalue > 0.01
    # a biased sampler (uniform in the Rodrigues box, then projected) is rejected by the same test
    rho = rng.uniform(-0.45, 0.45, size=(20000, 3))
    bad = project_to_fundamental(np.column_stack([np.ones(len(rho)), rho]))
    assert stats.kstest(rotation_angle(bad), lambda t: rotation_angle_cdf(t, "I")).pvalue < 1e-6


def test_component_span_matches_sampled_extremes():
    span = component_span("I")
    assert np.allclose(span[1:], span[1])  # x, y, z equivalent for scipy's I
    assert np.isclose(span[0], 1 - np.cos(domain_max_angle() / 2))
    q = sample_fundamental(np.random.default_rng(3), 100000)
    mc = q.max(axis=0) - q.min(axis=0)
    assert np.all(mc <= span + 1e-9) and np.all(mc > 0.97 * span)


def test_relative_errors_app_c():
    span = component_span("I")
    q = np.array([[1.0, 0, 0, 0]])
    qp = q + np.array([[0, span[1] * 0.01, 0, 0]])
    out = relative_errors([80.0], qp / np.linalg.norm(qp), [80.0 + 1.3], q, radius_range=(30, 160))
    assert np.isclose(out["per_param"][0, 0], 0.01)
    assert np.isclose(out["per_param"][0, 2], 0.01, rtol=1e-3)  # columns: radius, q0, q1, q2, q3
    assert out["per_param"][0, 1] < 1e-3  # w barely moves (second order)
    assert np.isclose(out["max"][0], 0.01, rtol=1e-3)
    assert np.isclose(out["mean"][0], out["per_param"][0].mean())
