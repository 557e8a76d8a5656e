"""Antialiased particle densities: volumes, symmetry, the fast path, refusals."""

import numpy as np
import pytest

from factory.geometry import multiply, sample_fundamental, symmetry_group
from factory.msft.shapes import (
    DECAHEDRON_EQUILATERAL_ASPECT,
    SHAPES,
    SYMMETRY,
    ShapeOptions,
    density,
    density_direct,
    extent_nm,
    polyhedron,
    user_density,
)

# analytic volumes at circumradius 1
PHI = (1 + 5**0.5) / 2
VOLUMES = {
    "sphere": 4 / 3 * np.pi,
    "icosahedron": 5 / 12 * (3 + 5**0.5) * (1 / np.sin(2 * np.pi / 5)) ** 3,  # edge a = R / sin(72 deg)
    "cube": (2 / 3**0.5) ** 3,
    "octahedron": 4 / 3,
    "cuboctahedron": 5 / 3 * 2**0.5,  # edge = R
    "truncated_octahedron": 8 * 2**0.5 * (2 / 10**0.5) ** 3,  # R = a sqrt(10) / 2
    # hexagonal sections of apothem (sqrt 6 - |z|) / sqrt 8 for |z| <= t = 0.24, area 2 sqrt(3) a^2
    "truncated_twinned_tetrahedron": 3**0.5 / 6 * (6 * 6**0.5 - (6**0.5 - 0.24) ** 3),
}


@pytest.mark.parametrize("shape", sorted(VOLUMES))
def test_partial_volume_matches_analytic_volume(shape):
    q = sample_fundamental(np.random.default_rng(1))
    d = density(shape, 20.0, q, n=48, voxel_nm=1.0)
    assert d.dtype == np.float32 and d.min() >= 0 and d.max() <= 1
    # within 1 % (the max-of-faces distance slightly overfills voxels at edges and corners)
    assert abs(d.sum() / (VOLUMES[shape] * 20.0**3) - 1) < 1e-2
    # antialiased: the surface is not a blocky 0/1 test
    assert np.count_nonzero((d > 0.01) & (d < 0.99)) > 0.5 * d.sum() ** (2 / 3)


@pytest.mark.parametrize("shape", SHAPES)
def test_block_fast_path_equals_per_voxel_formula(shape):
    q = sample_fundamental(np.random.default_rng(2))
    a = density(shape, 18.5, q, n=38, voxel_nm=1.0)
    b = density_direct(shape, 18.5, q, n=38, voxel_nm=1.0)
    assert np.abs(a - b).max() < 1e-5


@pytest.mark.parametrize("shape", ["icosahedron", "cube", "truncated_octahedron", "marks_decahedron",
                                   "truncated_twinned_tetrahedron"])
def test_density_invariant_under_the_shape_group(shape):
    q = sample_fundamental(np.random.default_rng(3))
    d0 = density(shape, 14.0, q, n=32, voxel_nm=1.0)
    for s in symmetry_group(SYMMETRY[shape]):
        assert np.abs(density(shape, 14.0, multiply(q, s), n=32, voxel_nm=1.0) - d0).max() < 1e-5


def test_shapes_are_centred_with_unit_circumradius():
    for shape in SHAPES[1:]:
        p = polyhedron(shape)
        r = np.linalg.norm(p.vertices, axis=1)
        assert np.isclose(r.max(), 1.0)
        assert np.all(p.A @ np.zeros(3) <= p.b)
    # Marks = Ino minus notches
    ino = density("ino_decahedron", 20.0, n=48, voxel_nm=1.0)
    marks = density("marks_decahedron", 20.0, n=48, voxel_nm=1.0)
    assert np.all(marks <= ino + 1e-6) and marks.sum() < 0.995 * ino.sum()


def test_particle_larger_than_box_is_refused():
    with pytest.raises(ValueError, match="larger than the box.*half-width"):
        density("sphere", 40.0, n=48, voxel_nm=1.5)  # half-width 36 nm
    # orientation matters: a cube fits face-on only
    assert extent_nm("cube", 30.0).max() < 30.0
    with pytest.raises(ValueError, match="radius = -1"):
        density("sphere", -1.0, n=16, voxel_nm=1.0)
    with pytest.raises(ValueError, match="unknown shape 'blob'"):
        density("blob", 5.0, n=16, voxel_nm=1.0)


def test_user_density_refusals():
    with pytest.raises(ValueError, match="3D array"):
        user_density(np.ones((4, 4)))
    bad = np.ones((4, 4, 4))
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="1 NaN/Inf"):
        user_density(bad)
    with pytest.raises(ValueError, match=">= 0"):
        user_density(-np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="real"):
        user_density(np.ones((2, 2, 2), dtype=complex))


def test_truncated_twinned_tetrahedron_geometry_by_hand():
    t = 0.24
    p = polyhedron("truncated_twinned_tetrahedron")
    v = p.vertices
    assert len(v) == 18  # 6 corners in the twin plane + 6 on each (111) face
    mid, top = v[np.abs(v[:, 2]) < 1e-9], v[np.abs(v[:, 2]) > 1e-9]
    # the twin-plane corners carry the circumradius, at azimuths 30 + 60 k deg (ridges along x)
    assert len(mid) == 6 and np.allclose(np.linalg.norm(mid, axis=1), 1.0)
    az = np.sort(np.degrees(np.arctan2(mid[:, 1], mid[:, 0])) % 360)
    assert np.allclose(az, 30 + 60 * np.arange(6))
    # the face corners: hexagon of corner radius 1 - t / sqrt(6) at z = +-t
    assert np.allclose(np.abs(top[:, 2]), t)
    assert np.allclose(np.hypot(top[:, 0], top[:, 1]), 1 - t / 6**0.5)
    # side facets are {111}: normals at arccos(1/3) from the 6-fold axis; (111) faces at distance t
    side = np.abs(p.A[:, 2]) < 0.99
    assert np.allclose(np.abs(p.A[side, 2]), 1 / 3) and np.allclose(p.b[~side], t)
    # a platelet: thickness 2 t R along the axis, 2 R across the corners
    assert np.allclose(extent_nm("truncated_twinned_tetrahedron", 50.0), [50.0 * 3**0.5 / 2, 50.0, 50.0 * t])
    # a thicker platelet: the volume formula holds for any t
    t2 = 0.5
    d = density("truncated_twinned_tetrahedron", 20.0, n=48, voxel_nm=1.0, options=ShapeOptions(ttt_half_thickness=t2))
    assert abs(d.sum() / (3**0.5 / 6 * (6 * 6**0.5 - (6**0.5 - t2) ** 3) * 20.0**3) - 1) < 1e-2
    with pytest.raises(ValueError, match="ttt_half_thickness"):
        polyhedron("truncated_twinned_tetrahedron", ShapeOptions(ttt_half_thickness=0.8))


def test_truncated_twinned_tetrahedron_is_sixfold_not_cubic():
    q = sample_fundamental(np.random.default_rng(4))
    d0 = density("truncated_twinned_tetrahedron", 14.0, q, n=32, voxel_nm=1.0)
    # a 90 deg turn about the body x axis (an O element outside D6) moves the platelet
    s = np.array([np.cos(np.pi / 4), np.sin(np.pi / 4), 0.0, 0.0])
    d1 = density("truncated_twinned_tetrahedron", 14.0, multiply(q, s), n=32, voxel_nm=1.0)
    assert np.abs(d1 - d0).sum() > 0.3 * d0.sum()


def test_decahedron_aspect_option():
    # default unchanged: half-height / equatorial radius = 1/sqrt(3)
    v = polyhedron("decahedron").vertices
    assert np.isclose(np.abs(v[:, 2]).max(), 1 / 3**0.5)
    # the method authors' decahedron: the equilateral pentagonal bipyramid, all 15 edges equal
    p = polyhedron("decahedron", ShapeOptions(decahedron_aspect=DECAHEDRON_EQUILATERAL_ASPECT))
    eq, apex = p.vertices[np.abs(p.vertices[:, 2]) < 1e-9], p.vertices[np.abs(p.vertices[:, 2]) > 1e-9]
    side = 2 * np.sin(np.pi / 5)
    assert np.allclose(np.linalg.norm(apex[:, None] - eq[None], axis=2), side)
    assert np.isclose(DECAHEDRON_EQUILATERAL_ASPECT, 2 / (1 + 5**0.5))
    d = density("decahedron", 20.0, n=48, voxel_nm=1.0, options=ShapeOptions(decahedron_aspect=DECAHEDRON_EQUILATERAL_ASPECT))
    vol = 2 / 3 * 5 / 2 * np.sin(2 * np.pi / 5) * DECAHEDRON_EQUILATERAL_ASPECT  # two pentagonal pyramids
    assert abs(d.sum() / (vol * 20.0**3) - 1) < 1e-2
