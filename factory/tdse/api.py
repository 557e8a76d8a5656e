"""Notebook-level API of the 2D TDSE: ground states and photoelectron momentum distributions.

    >>> from factory.tdse import ground_state, momentum_distribution
    >>> gs = ground_state("H2+", R=2.0, preset="tiny")
    >>> gs.energy                                   # a.u.
    >>> res = momentum_distribution("H2+", R=2.0, intensity=3e14, preset="tiny")
    >>> res.pmd.shape, res.kx, res.ky, res.dp_dkx   # PMD on its (ky, kx) grid + dP/dkx

Every call builds a validated :class:`~factory.tdse.config.TDSEConfig` from a preset plus
keyword overrides (e.g. ``dt=0.05``, ``grid={"nx": 1024}``), so bad input is refused before
any compute with a one-line :class:`~factory.errors.ConfigError`.  No Ray, no Dask.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Sequence

import numpy as np

from .config import TDSEConfig, make_config
from .grid import Grid
from .groundstate import GroundState, background_bound, molecule_ground_state
from .mask import absorbing_mask, pmd_from_amplitude
from .pmd_result import (FLOOR_BAND, FLOOR_FALL_DECADES, FLOOR_LEVEL, MIN_YIELD_FRACTION, PMDResult,
                         resolution_warnings)
from .potentials import potential
from .propagator import Propagator

log = logging.getLogger(__name__)


#: field-free yield (in the stored momentum window) that float32 rounding scatters into the
#: continuum per real-time step: measured 1.5e-14 (tiny, fftw), 1.6e-14 (tiny, torch) and 1.6e-14
#: (small, fftw) from the stationary H2+ ground state at R = 1 (about 4.5 u^2, u = 2^-24); in double
#: precision the same is ~1e-32 per step
SINGLE_PRECISION_FLOOR_PER_STEP = 1.6e-14


def field_free_background(cfg: TDSEConfig, ground: GroundState) -> float:
    """The ``background`` diagnostic of a run of ``cfg`` from ``ground``: its field-free yield,
    the ground state's :attr:`~factory.tdse.groundstate.GroundState.background` (an upper bound
    on its continuum population under the real-time step) plus, with ``precision: single``, the
    rounding floor ``n_steps x SINGLE_PRECISION_FLOOR_PER_STEP`` (a measured estimate, not a
    bound: 7.1e-11 on the tiny grid, 1.8e-10 on the small one, 7.7e-10 on the paper's)."""
    floor = cfg.n_steps() * SINGLE_PRECISION_FLOOR_PER_STEP if cfg.precision == "single" else 0.0
    return float(ground.background) + floor


def config_for(
    molecule: str = "H2+",
    R: float | Sequence[float] = 2.0,
    intensity: float | Sequence[float] = 1e14,
    cep: float | Sequence[float] = 0.0,
    alpha: float = 0.0,
    preset: str = "small",
    **overrides: Any,
) -> TDSEConfig:
    """The validated config of a direct run (sampling pinned to the given values)."""
    def span(v):
        if isinstance(v, (list, tuple, np.ndarray)):
            return [float(np.min(v)), float(np.max(v))] if len(v) else 0.0
        return float(v)

    sampling = {"molecule": [molecule], "R": span(R), "intensity": span(intensity), "cep": span(cep), "alpha": span(alpha)}
    sampling.update(overrides.pop("sampling", {}) or {})
    return make_config(preset, sampling=sampling, **overrides)


def ground_state_for(cfg: TDSEConfig, molecule: str, R: float, alpha_deg: float, backend=None) -> GroundState:
    """Ground state of a molecule on ``cfg``'s grid (embedded in the full box), stationary under
    the field-free real-time step ``cfg.dt`` unless ``groundstate.stationary`` is off; its
    ``background`` is the bound on its field-free ionisation under that step either way.
    ``backend``: a :class:`factory.backend.Backend` (its threads) or None for ``cfg.backend``
    on one thread."""
    g = cfg.groundstate
    grid = cfg.build_grid()
    mol, alpha, be = cfg.molecule(molecule), math.radians(alpha_deg), backend or cfg.backend
    gs = molecule_ground_state(
        mol, R, alpha, grid, margin=g.margin, dtau=g.dtau, tol=g.tol, max_steps=g.max_steps,
        check_every=g.check_every, backend=be, dt=cfg.dt if g.stationary else None, filter_time=g.filter_time,
        polish_time=g.polish_time,
    )
    if not g.stationary:
        gs.background = background_bound(grid, potential(mol, R, alpha, grid.x, grid.y), gs.psi, cfg.dt, be)
    return gs


def _check_runs(cfg: TDSEConfig, runs: Sequence[dict[str, Any]]) -> None:
    """Runs must lie inside the ranges the config was validated for (grid, mask, time step)."""
    from ..errors import ConfigError

    s = cfg.sampling
    for run in runs:
        for key, name in (("R", "R"), ("intensity", "intensity"), ("alpha", "alpha")):
            lo, hi = s.bounds(name)
            if name == "intensity":  # a focal-averaging ladder goes down to I0 / ladder (smaller momenta)
                lo = lo / s.ladder
            v = float(run[key])
            if not lo - 1e-9 * abs(lo) <= v <= hi + 1e-9 * abs(hi):
                raise ConfigError(f"run {key} = {v:g} is outside the range [{lo:g}, {hi:g}] its config "
                                  f"was validated for (sampling.{name}); widen it")
        if run["molecule"] not in s.molecule:
            raise ConfigError(f"run molecule {run['molecule']!r} is not in sampling.molecule = {s.molecule}")


def geometry_key(molecule: str, R: float, alpha_deg: float) -> tuple[str, float, float]:
    return (molecule, round(float(R), 12), round(float(alpha_deg), 12))


def compute_pmds(
    cfg: TDSEConfig,
    runs: Sequence[dict[str, Any]],
    grounds: dict[tuple, GroundState] | None = None,
    backend=None,
) -> list[PMDResult]:
    """PMDs of several runs propagated as one batch on one device.

    Each run is a dict with ``molecule``, ``R`` (a.u.), ``alpha`` (deg), ``intensity`` (W/cm^2)
    and ``cep`` (rad).  Runs sharing a geometry share the potential arrays and the ground
    state (``grounds`` caches them by :func:`geometry_key`); an intensity ladder is the
    cheapest batch.  ``backend``: a :class:`factory.backend.Backend` (device, threads), else
    ``cfg.backend`` on one thread.
    """
    t0 = time.perf_counter()
    _check_runs(cfg, runs)
    grid: Grid = cfg.build_grid()
    grounds = {} if grounds is None else grounds
    keys = [geometry_key(r["molecule"], r["R"], r["alpha"]) for r in runs]
    for key in dict.fromkeys(keys):
        if key not in grounds:
            grounds[key] = ground_state_for(cfg, *key, backend=backend)
    unique = list(dict.fromkeys(keys))
    pots = {k: potential(cfg.molecule(k[0]), k[1], math.radians(k[2]), grid.x, grid.y) for k in unique}
    if len(unique) == 1:
        V, psi0 = pots[unique[0]], grounds[unique[0]].psi
    else:
        V = np.stack([pots[k] for k in keys])
        psi0 = np.stack([grounds[k].psi for k in keys])
    pulses = [cfg.pulse_for(float(r["intensity"]), float(r["cep"])) for r in runs]
    n_steps = cfg.n_steps()
    mask = absorbing_mask(grid, cfg.mask.radius, cfg.mask.beta)
    prop = Propagator(grid, V, psi0, cfg.dt, pulses, n_steps, mask, cfg.mask.every, collect=True,
                      backend=backend or cfg.backend, precision=cfg.precision, k_window=cfg.collect_window())
    prop.run(n_steps)
    amp = prop.amplitude()
    norms, absorbed = prop.norms(), prop.absorbed()
    seconds = (time.perf_counter() - t0) / len(pulses)
    out = []
    for b, (run, key) in enumerate(zip(runs, keys)):
        md = pmd_from_amplitude(grid, amp[b], cfg.k_out, prop.window)
        out.append(PMDResult(
            pmd=md.pmd, kx=md.kx, ky=md.ky, energy=grounds[key].energy,
            norm_left=float(norms[b]), absorbed=float(absorbed[b]),
            total_yield=md.total_yield, background=field_free_background(cfg, grounds[key]),
            params={"R": float(run["R"]), "intensity": float(run["intensity"]), "cep": float(run["cep"]),
                    "alpha": float(run["alpha"])},
            seconds=seconds,
        ))
    return out


def warn_if_unresolved(result: PMDResult, molecule: str, preset: str) -> None:
    """Log a warning (logger ``factory.tdse.api``) for each of :func:`resolution_warnings`."""
    p = result.params
    for why in resolution_warnings(result):
        log.warning("%s R = %g a.u., I = %.3g W/cm^2 (%s): %s; the grid does not resolve this PMD (use a finer "
                    "preset, e.g. fast or small)", molecule, p.get("R", float("nan")), p.get("intensity", float("nan")),
                    preset, why)


def ground_state(
    molecule: str = "H2+", R: float = 2.0, alpha: float = 0.0, preset: str = "small", **overrides: Any
) -> GroundState:
    """Ground state (energy in a.u. and wave function on the preset's grid); alpha in degrees.

    Parameters
    ----------
    molecule : str, optional
        ``"H2+"``, ``"HeH+"``, or a molecule defined through a ``molecules`` override.
    R : float, optional
        Internuclear distance, a.u. (bohr).
    alpha : float, optional
        Angle of the molecular axis to the laser polarisation (x axis), degrees.
    preset : {"small", "paper", "fast", "tiny"}, optional
        The numerics (grid, time step, mask, ...) of ``configs/tdse/<preset>.yaml``.
    **overrides
        Any key of ``TDSEConfig``, nested sections as dicts,
        e.g. ``dt=0.05``, ``grid={"nx": 1024}``, ``groundstate={"tol": 1e-10}``.

    Returns
    -------
    GroundState
        ``energy`` (a.u.), ``psi`` (``(ny, nx)`` on ``grid``, normalised), ``converged``,
        the imaginary-time ``steps`` and ``background`` (a bound on its field-free ionisation
        under the real-time step).

    Raises
    ------
    ConfigError
        An unknown preset, molecule or key, a value out of range, or a molecule that does
        not fit in the box; raised before any compute.
    """
    cfg = config_for(molecule, R, 0.0, 0.0, alpha, preset, **overrides)
    return ground_state_for(cfg, molecule, float(R), float(alpha))


def momentum_distribution(
    molecule: str = "H2+",
    R: float = 2.0,
    intensity: float = 1e14,
    cep: float = 0.0,
    alpha: float = 0.0,
    preset: str = "small",
    **overrides: Any,
) -> PMDResult:
    """One PMD: intensity in W/cm^2, cep in rad, alpha in degrees; axes in a.u.

    Parameters
    ----------
    molecule : str, optional
        ``"H2+"``, ``"HeH+"``, or a molecule defined through a ``molecules`` override.
    R : float, optional
        Internuclear distance, a.u. (bohr).
    intensity : float, optional
        Peak intensity of the pulse, W/cm^2.
    cep : float, optional
        Carrier-envelope phase, rad.
    alpha : float, optional
        Angle of the molecular axis to the laser polarisation (x axis), degrees.
    preset : {"small", "paper", "fast", "tiny"}, optional
        The numerics (grid, time step, mask, ...) of ``configs/tdse/<preset>.yaml``.
    **overrides
        Any key of ``TDSEConfig``, nested sections as dicts,
        e.g. ``dt=0.05``, ``grid={"nx": 1024}``, ``pulse={"cycles": 4}``.

    Returns
    -------
    PMDResult
        ``pmd`` (``(n_ky, n_kx)``, probability per a.u.^2 on the ``kx``, ``ky`` axes in a.u.;
        ``kx`` along the polarisation), ``dp_dkx``, the ground-state ``energy`` (a.u.), the
        norm left in the box and absorbed by the mask, ``total_yield``, ``background`` and
        ``seconds``.  A warning is logged for each of ``resolution_warnings``.

    Raises
    ------
    ConfigError
        An unknown preset, molecule or key, or a value out of range; raised before any
        compute.
    """
    cfg = config_for(molecule, R, intensity, cep, alpha, preset, **overrides)
    run = {"molecule": molecule, "R": R, "alpha": alpha, "intensity": intensity, "cep": cep}
    res = compute_pmds(cfg, [run])[0]
    warn_if_unresolved(res, molecule, cfg.preset)
    return res


def momentum_distributions(
    molecule: str = "H2+",
    R: float = 2.0,
    intensities: Sequence[float] = (1e14,),
    cep: float | Sequence[float] = 0.0,
    alpha: float = 0.0,
    preset: str = "small",
    **overrides: Any,
) -> list[PMDResult]:
    """Several PMDs of one geometry (e.g. an intensity ladder), propagated as batches.

    The runs share the potential and the ground state; ``batch`` of them (a config key) are
    propagated together.

    Parameters
    ----------
    molecule : str, optional
        ``"H2+"``, ``"HeH+"``, or a molecule defined through a ``molecules`` override.
    R : float, optional
        Internuclear distance, a.u. (bohr).
    intensities : sequence of float, optional
        Peak intensities, W/cm^2: one PMD each (``intensity_ladder`` gives the ladder of
        focal averaging).
    cep : float or sequence of float, optional
        Carrier-envelope phase, rad: one for all runs or one per intensity.
    alpha : float, optional
        Angle of the molecular axis to the laser polarisation (x axis), degrees.
    preset : {"small", "paper", "fast", "tiny"}, optional
        The numerics (grid, time step, mask, ...) of ``configs/tdse/<preset>.yaml``.
    **overrides
        Any key of ``TDSEConfig``, nested sections as dicts,
        e.g. ``batch=4``, ``dt=0.05``.

    Returns
    -------
    list of PMDResult
        One per intensity, in the order given (see ``momentum_distribution``).

    Raises
    ------
    ConfigError
        An unknown preset, molecule or key, or a value out of range; raised before any
        compute.
    ValueError
        ``cep`` is a sequence of another length than ``intensities``.
    """
    intensities = [float(i) for i in intensities]
    ceps = [float(c) for c in (cep if isinstance(cep, (list, tuple, np.ndarray)) else [cep] * len(intensities))]
    cfg = config_for(molecule, R, intensities, ceps, alpha, preset, **overrides)
    runs = [{"molecule": molecule, "R": R, "alpha": alpha, "intensity": i, "cep": c}
            for i, c in zip(intensities, ceps, strict=True)]
    grounds: dict[tuple, GroundState] = {}
    out: list[PMDResult] = []
    for s in range(0, len(runs), cfg.batch):
        out += compute_pmds(cfg, runs[s : s + cfg.batch], grounds)
    for res in out:
        warn_if_unresolved(res, molecule, cfg.preset)
    return out


def refined(cfg: TDSEConfig, factor: int = 2) -> TDSEConfig:
    """The same box and physics with dx, dy and dt divided by ``factor`` (mask beta scaled with
    dt so that the absorption rate per unit time stays the same): for convergence checks."""
    data = cfg.model_dump()
    data["grid"] = {**data["grid"], "nx": cfg.grid.nx * factor, "ny": cfg.grid.ny * factor}
    data["dt"] = cfg.dt / factor
    data["mask"] = {**data["mask"], "beta": cfg.mask.beta / factor}
    return TDSEConfig.model_validate(data)


def intensity_ladder(i0: float, n: int) -> np.ndarray:
    """The ladder the generator uses for focal averaging: I_k = I0 (k + 1) / n, k = 0..n-1.

    Parameters
    ----------
    i0 : float
        The peak intensity I0 of the focus, W/cm^2.
    n : int
        Number of intensities (the ``sampling.ladder`` of a TDSE config).

    Returns
    -------
    numpy.ndarray
        ``(n,)`` ascending intensities in W/cm^2, the last one ``i0``.
    """
    return i0 * (np.arange(n) + 1.0) / n


__all__ = ["FLOOR_BAND", "FLOOR_FALL_DECADES", "FLOOR_LEVEL", "MIN_YIELD_FRACTION", "SINGLE_PRECISION_FLOOR_PER_STEP",
           "PMDResult", "compute_pmds", "config_for", "field_free_background", "geometry_key", "ground_state",
           "ground_state_for", "intensity_ladder", "momentum_distribution", "momentum_distributions", "refined",
           "resolution_warnings", "warn_if_unresolved"]
