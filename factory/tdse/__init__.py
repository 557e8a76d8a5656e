"""2D TDSE for H2+ / HeH+ in a few-cycle pulse (the set-up of
Shvetsov-Shilovski & Lein, Phys. Rev. A 107, 033106 (2023), Sec. II B).

Public API (no Ray, no Dask)::

    from factory.tdse import ground_state, momentum_distribution, momentum_distributions

Building blocks: :class:`Pulse` (eq. 1), :func:`potential` / :class:`Molecule` (eqs. 3, 7),
:class:`Grid`, :class:`Propagator` (split operator, batched, numpy/pyFFTW/torch),
:func:`imaginary_time` (ground state), :func:`absorbing_mask` and the mask method
(:mod:`factory.tdse.mask`), :class:`TDSEConfig` with the paper/small/tiny presets.
"""

from .api import (
    compute_pmds,
    config_for,
    ground_state,
    intensity_ladder,
    momentum_distribution,
    momentum_distributions,
)
from .config import PRESETS, TDSEConfig, make_config
from .grid import Grid
from .groundstate import GroundState, energy, imaginary_time, molecule_ground_state
from .mask import MomentumDistribution, absorbing_mask, pmd_from_amplitude
from .pmd_result import PMDResult
from .potentials import Centre, Molecule, h2plus, hehplus, potential
from .propagator import Propagator, PropagationResult, propagate
from .pulse import Pulse

__all__ = [
    "PMDResult", "compute_pmds", "config_for", "ground_state", "intensity_ladder",
    "momentum_distribution", "momentum_distributions", "PRESETS", "TDSEConfig", "make_config",
    "Grid", "GroundState", "energy", "imaginary_time", "molecule_ground_state",
    "MomentumDistribution", "absorbing_mask", "pmd_from_amplitude", "Centre", "Molecule",
    "h2plus", "hehplus", "potential", "Propagator", "PropagationResult", "propagate", "Pulse",
]
