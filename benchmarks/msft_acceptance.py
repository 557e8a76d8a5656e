"""Print the numbers behind the MSFT acceptance tests (the tests assert them; this shows them).

    python benchmarks/msft_acceptance.py     # ~20 s on 2 cores
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import stats
from scipy.optimize import brentq
from scipy.spatial.transform import Rotation

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from factory.geometry import (  # noqa: E402
    are_equivalent,
    component_span,
    domain_max_angle,
    from_rotation,
    multiply,
    project_to_fundamental,
    rotation_angle,
    rotation_angle_cdf,
    sample_fundamental,
    symmetry_group,
)
from factory.msft.multislice import MSFTParams, amplitude, relative_difference, scatter  # noqa: E402
from factory.msft.analysis import centro_asymmetry, profile_minima  # noqa: E402
from factory.msft.shapes import density  # noqa: E402


def main() -> None:
    zeros = np.array([brentq(lambda x: np.tan(x) - x, a, b) for a, b in [(4.0, 4.7), (7.0, 7.8), (10.5, 10.99)]])
    R, vox = 40.0, 2.0
    for lam in (13.5, 1.0):
        p = scatter(density("sphere", R, n=48, voxel_nm=vox), vox, wavelength_nm=lam, absorption_length_nm=None,
                    pad=1024, crop=200)
        qp = profile_minima(p.intensity[100, 100:], p.qx[100:])
        k = 2 * np.pi / lam
        qf = np.sqrt(qp**2 + (k - np.sqrt(k**2 - qp**2)) ** 2)
        print(f"sphere R={R} nm (voxel {vox} nm), lambda={lam} nm: first three minima, relative error in |q|: "
              + ", ".join(f"{e:+.2e}" for e in qf * R / zeros - 1)
              + "; in q_perp: " + ", ".join(f"{e:+.2e}" for e in qp * R / zeros - 1))

    q = sample_fundamental(np.random.default_rng(8))
    params = MSFTParams(voxel_nm=2.0, pad=64, crop=32)
    ref = np.abs(amplitude(density("icosahedron", 30.0, q, n=32, voxel_nm=2.0), params)) ** 2
    worst = max(relative_difference(np.abs(amplitude(density("icosahedron", 30.0, multiply(q, s), n=32, voxel_nm=2.0),
                                                     params)) ** 2, ref) for s in symmetry_group("I"))
    print(f"icosahedron pattern, q vs q*s over the 60 rotations (32^3 grid, absorption 12.5 nm): max rel. diff {worst:.1e}")

    rng = np.random.default_rng(0)
    qs = from_rotation(Rotation.random(2000, rng))
    p1 = project_to_fundamental(qs)
    print(f"projection: idempotent {np.array_equal(project_to_fundamental(p1), p1)}, equivalent {bool(are_equivalent(qs, p1).all())}, "
          f"max angle {np.degrees(rotation_angle(p1).max()):.2f} deg (domain {np.degrees(domain_max_angle()):.2f} deg)")

    theta = rotation_angle(sample_fundamental(np.random.default_rng(20261121), 20000))
    ks = stats.kstest(theta, lambda t: rotation_angle_cdf(t, "I"))
    p_in = 60 * (np.pi / 5 - np.sin(np.pi / 5)) / np.pi
    kin = int(np.sum(theta < np.pi / 5))
    print(f"uniform sampling (20000, seed 20261121): KS vs rotation-angle law D={ks.statistic:.4f} p={ks.pvalue:.3f}; "
          f"P(angle<36 deg) {kin / len(theta):.4f} vs analytic {p_in:.4f} (binomial p={stats.binomtest(kin, len(theta), p_in).pvalue:.3f})")
    print("component span (w, x, y, z) of the I domain: " + ", ".join(f"{s:.5f}" for s in component_span("I")))

    qa = sample_fundamental(np.random.default_rng(7))
    rho = density("icosahedron", 38.0, qa, n=40, voxel_nm=2.0)
    k = 2 * np.pi / 13.5
    for a in (None, 50.0, 12.5, 5.0):
        p = scatter(rho, 2.0, absorption_length_nm=a, pad=128, crop=128)
        print(f"asymmetry sum|I(q)-I(-q)|/mean, absorption {a}: |q|<0.15k {centro_asymmetry(p.intensity, p.qx, k, 0, 0.15):.2e}, "
              f"0.15-0.5k {centro_asymmetry(p.intensity, p.qx, k, 0.15, 0.5):.2e}, 0.5-1k {centro_asymmetry(p.intensity, p.qx, k, 0.5, 1.0):.2e}")
    p = scatter(density("icosahedron", 38.0, (1, 0, 0, 0), n=40, voxel_nm=2.0), 2.0, pad=128, crop=128)
    S = p.intensity[1:, 1:]
    print(f"2-fold axis along the beam, absorption 12.5 nm: max rel. asymmetry {relative_difference(S[::-1, ::-1], S):.1e}")


if __name__ == "__main__":
    main()
