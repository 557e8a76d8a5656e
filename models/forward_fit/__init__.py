"""Forward fitting of scattering images: the Monte Carlo simplex baseline of
Stielow, Schmidt, Peltz, Fennel & Scheel, Mach. Learn.: Sci. Technol. (2020) (Sec. 3, Fig. 4b).

For one target image, ``starts`` random points in parameter space (radius uniform in its
range, orientation uniform in the fundamental domain) each start a Nelder-Mead simplex
(:func:`scipy.optimize.minimize`, ``method="Nelder-Mead"``) of at most ``iterations``
iterations on the MSFT forward model; the objective is the mean squared difference of the
log images.  The best end point wins; ``polish`` optionally continues it for more
iterations (the paper stops after 50 x 50; a noiseless image is recovered to ~0.1 % only
with a polish, see docs/baselines.md).  Every objective evaluation is one simulation, counted.

The random starts run as pieces of work on an executor (``parallel``: ``auto`` spreads them
over Ray when the work pays, ``local`` keeps them in this process; or an executor given), the
polish as one more piece.  The search variables are the radius
scaled to [0, 1] over its range and the rotation vector of the orientation; results are
reported as (radius, q0..q3) with the quaternion projected into the fundamental domain
and scored with the App. C errors of Stielow et al., MLST 2020 (absolute error over the parameter's range; the
quaternion components over the span of the fundamental domain).

Fig. 4b: for each image the best-so-far error against the number of simulations (starts
taken in order, then the polish); the median and the 90 % quantile over the images, and
beside them the network's error with its cost in simulations (training-set size plus the
training time expressed in simulations).

Library use::

    fm = ForwardModel("tiny")                        # MSFT preset/config; noiseless, log images
    res = fit_image(fm(80.0, q), fm, FitSettings(starts=8, iterations=50, polish=300))
    res.radius, res.quaternion, res.simulations

Modules: :mod:`.model` (the forward model, search variables, errors), :mod:`.simplex` (one
image's Monte Carlo simplex), :mod:`.gradient` (a network's guess refined by gradient
descent through the differentiable torch MSFT: ``refine``), :mod:`.fig4b` (many images,
scoring, the network beside, the figure), :mod:`.stores` (images of a store and the settings they were made with).
"""

from .fig4b import error_trace, forward_fit, network_cost, network_input, plot_fig4b, simulate_targets
from .gradient import RefineResult, measure_cost, perturb, refine
from .model import QUAT, ForwardModel, objective, project, relative_error, to_params, to_vector
from .simplex import FitResult, FitSettings, fit_image, random_starts, simplex_run
from .stores import forward_fit_store, msft_config_of_store

__all__ = ["QUAT", "FitResult", "FitSettings", "ForwardModel", "RefineResult", "error_trace", "fit_image", "forward_fit",
           "forward_fit_store", "measure_cost", "msft_config_of_store", "network_cost", "network_input", "objective",
           "perturb", "plot_fig4b", "project", "random_starts", "refine", "relative_error", "simplex_run",
           "simulate_targets", "to_params", "to_vector"]
