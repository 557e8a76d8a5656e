"""Independent references for validating the split-operator TDSE (no FFTs involved).

:func:`fd_ground_energy` diagonalises the 2D Hamiltonian by 4th-order finite differences with
scipy.sparse (Dirichlet box) - a method that shares nothing with the imaginary-time spectral
propagation it checks.
"""

from __future__ import annotations

import numpy as np

from .potentials import Molecule, potential


def fd_ground_energy(molecule: Molecule, R: float, alpha: float = 0.0, h: float = 0.2, L: float = 15.0) -> float:
    """Lowest eigenvalue (a.u.) of -nabla^2/2 + V on [-L, L]^2 with spacing ``h``; alpha in rad."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as sla

    x = -L + h * np.arange(1, int(round(2 * L / h)))
    m = len(x)
    c = {0: -5 / 2, 1: 4 / 3, 2: -1 / 12}
    D = sp.diags([c[abs(k)] * np.ones(m - abs(k)) for k in range(-2, 3)], list(range(-2, 3))) / h**2
    eye = sp.identity(m)
    H = -0.5 * (sp.kron(eye, D) + sp.kron(D, eye)) + sp.diags(potential(molecule, R, alpha, x, x).ravel())
    return float(sla.eigsh(H.tocsc(), k=1, sigma=-2.5, which="LM", return_eigenvectors=False)[0])
