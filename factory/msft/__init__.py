"""MSFT wide-angle scattering simulator (App. B of
Stielow, Schmidt, Peltz, Fennel & Scheel, Mach. Learn.: Sci. Technol. (2020)).

Public API::

    from factory.msft import scatter, pattern, density, MSFTConfig
    I, qx, qy = scatter(rho, voxel_nm=1.66, absorption_length_nm=12.5, pad=512, crop=128)
    img = pattern("icosahedron", 80.0, (1, 0, 0, 0), MSFTConfig()).image  # a preset's config:
    # factory.config.resolve_simulator_config("msft", "paper") (this package imports no configs)

Modules: ``params`` (MSFTParams, q grid), ``grid`` (cached DFT matrices and Ewald phases),
``transform`` (the MSFT, written once over a :class:`factory.backend.Backend`: numpy/pyFFTW or
torch, differentiable on torch), ``multislice`` (the numpy-facing API and the straightforward
reference), ``polyhedra`` (the shapes and their body-frame polyhedra), ``shapes`` (antialiased
densities), ``voxelise`` (batches of densities on a device), ``detector`` (geometry, photons,
noise, log scale), ``detector_response`` (the measured detector: mask, hole, saturation,
display, orientation of the measured patterns), ``config`` (the ``simulator:`` section of an
``msft`` config), ``simulator`` (the ``msft`` kind of ``factory generate``), ``measured`` (the
measured Ag cluster patterns shipped as data).
Importing this package does not import torch.
"""

from .detector_response import AG_CLUSTER_DETECTOR, DetectorResponse, masked_correlation, to_measured_orientation
from .multislice import MSFTParams, Pattern, amplitude, amplitude_batch, q_axis, scatter
from .polyhedra import SHAPES, SYMMETRY, ShapeOptions
from .shapes import density, user_density
from .simulator import DetectorImage, MSFTConfig, MSFTSimulator, pattern

__all__ = [
    "AG_CLUSTER_DETECTOR",
    "SHAPES",
    "SYMMETRY",
    "DetectorImage",
    "DetectorResponse",
    "MSFTConfig",
    "MSFTParams",
    "MSFTSimulator",
    "Pattern",
    "ShapeOptions",
    "amplitude",
    "amplitude_batch",
    "density",
    "masked_correlation",
    "pattern",
    "q_axis",
    "scatter",
    "to_measured_orientation",
    "user_density",
]
