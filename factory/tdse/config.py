"""Validated configuration of the TDSE simulator, with the ``paper``/``small``/``tiny`` presets.

Every field has a documented unit; a ``preset`` fills in everything not given explicitly
(nested sections are merged key by key), so ``{preset: small, sampling: {R: [8, 12]}}`` is a
complete config.  Cross-field checks (box vs mask, grid vs the pulse's momenta, time step vs
grid) run before any compute and name the keys, values and what is allowed.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..config_files import format_validation_error, simulator_preset
from ..simulation import SimulatorConfig
from .grid import Grid
from .potentials import HEH_BETA, Centre, Molecule, h2plus, hehplus
from .pulse import Pulse, max_momentum_needed

BUILTIN_MOLECULES = ("H2+", "HeH+")
#: momentum (a.u.) beyond which the H2+ (a = 0.5) ground-state density is < 1e-5 of its peak; in
#: velocity gauge the bound state's canonical momenta shift by -A(t), so the grid must hold A_max + this
BOUND_MOMENTUM = 3.0

#: the size presets; their numbers live only in ``configs/tdse/<name>.yaml`` (``simulator:`` section):
#: ``paper`` is Shvetsov-Shilovski & Lein, PRA 107, 033106 (2023), Sec. II B
PRESETS = ("paper", "small", "fast", "tiny")
#: what a preset fixes: the numerics, not the dataset's sampling ranges
NOT_FROM_PRESET = ("preset", "sampling")


def preset_values(name: str) -> dict[str, Any]:
    """The numerics of the preset ``name`` (grid, time step, mask, ...), read from its YAML file."""
    return simulator_preset("tdse", name, exclude=NOT_FROM_PRESET)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GridConfig(_Model):
    """Box [-x_max, x_max) x [-y_max, y_max) (a.u.) with nx x ny points (even)."""

    nx: int = Field(ge=8, le=1 << 16, description="points along x (polarisation), even")
    ny: int = Field(ge=8, le=1 << 16, description="points along y, even")
    x_max: float = Field(gt=0, le=1e5, description="half-width of the box along x, a.u.")
    y_max: float = Field(gt=0, le=1e5, description="half-width of the box along y, a.u.")

    @field_validator("nx", "ny")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"must be even, got {v}")
        return v

    def build(self) -> Grid:
        return Grid(self.nx, self.ny, self.x_max, self.y_max)


class PulseConfig(_Model):
    wavelength_nm: float = Field(800.0, gt=50, le=1e5, description="carrier wavelength, nm")
    cycles: int = Field(2, ge=1, le=100, description="n_p: optical cycles under the sin^2 envelope")


class MaskConfig(_Model):
    """Eq. 4: M = 1 for r <= radius, exp(-beta (r - radius)^2) beyond, applied every step."""

    radius: float = Field(gt=0, description="r_b, a.u.")
    beta: float = Field(gt=0, le=10, description="per application (paper: 1e-4 with dt = 0.0184)")
    every: int = Field(1, ge=1, le=1000, description="apply M^every every `every` steps (fewer FFTs)")


class GroundStateConfig(_Model):
    """Imaginary-time relaxation on a sub-box, then (``stationary``) a spectral filter on the
    field-free real-time step of ``dt`` so that the state does not ionise without a field
    (:mod:`factory.tdse.groundstate`)."""

    dtau: float = Field(0.05, gt=0, le=1.0, description="imaginary time step, a.u.")
    tol: float = Field(1e-10, gt=0, le=1e-3, description="stop when |E_k - E_(k-1)| < tol (a.u.)")
    check_every: int = Field(20, ge=1, le=10000, description="steps between energy checks")
    max_steps: int = Field(50000, ge=10, le=10**7)
    margin: float = Field(20.0, ge=5, le=1e4, description="sub-box = molecule extent + margin, a.u.")
    stationary: bool = Field(True, description="filter the state to the ground state of the field-free real-time "
                                               "step (off: the imaginary-time state, which sheds ~1e-7..1e-6 field-free)")
    filter_time: float = Field(60.0, gt=0, le=1e4, description="window of the filter on the sub-box, a.u. "
                                                                "(lengthened to 10 pi / Ip where that is longer)")
    polish_time: float = Field(10.0, ge=0, le=1e4, description="window of the filter on the full grid after "
                                                                "embedding, a.u. (0: none)")


class CentreConfig(_Model):
    """One soft-core centre at ``position * R`` on the molecular axis."""

    position: float = Field(ge=-10, le=10, description="in units of R from the origin")
    charge: float = Field(1.0, ge=0, le=100)
    soft_core: float = Field(0.5, gt=0, le=100)
    screening_charge: float = Field(0.0, ge=0, le=100)
    screening_beta: float = Field(0.0, ge=0, le=100)


class MoleculeConfig(_Model):
    centres: list[CentreConfig] = Field(min_length=1, max_length=16)


Range = Union[float, tuple[float, float]]


def _bounds(v: Range) -> tuple[float, float]:
    return (float(v), float(v)) if isinstance(v, (int, float)) else (float(v[0]), float(v[1]))


class SamplingConfig(_Model):
    """Labels of sample i: each a fixed value or a uniform range [lo, hi]."""

    molecule: list[str] = Field(default_factory=lambda: ["H2+"], min_length=1, description="chosen uniformly")
    R: Range = Field((1.0, 8.0), description="internuclear distance, a.u.")
    intensity: Range = Field((1.0e14, 4.0e14), description="peak intensity I0, W/cm^2")
    cep: Range = Field(0.0, description="carrier-envelope phase, rad")
    alpha: Range = Field(0.0, description="angle of the molecular axis to the polarisation, degrees")
    ladder: int = Field(1, ge=1, le=100, description="intensities per (R, I0): I_k = I0 (k+1)/ladder")

    @field_validator("R", "intensity", "cep", "alpha")
    @classmethod
    def _range(cls, v: Range, info) -> Range:
        lo, hi = _bounds(v)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"must be finite, got {v}")
        if lo > hi:
            raise ValueError(f"range [{lo}, {hi}] has lo > hi")
        if info.field_name == "R" and lo <= 0:
            raise ValueError(f"R must be > 0 a.u., got {v}")
        if info.field_name == "intensity" and lo < 0:
            raise ValueError(f"intensity must be >= 0 W/cm^2, got {v}")
        if info.field_name == "intensity" and hi > 1e17:
            raise ValueError(f"intensity above 1e17 W/cm^2 is outside this model, got {v}")
        return v

    def bounds(self, name: str) -> tuple[float, float]:
        return _bounds(getattr(self, name))


class TDSEConfig(SimulatorConfig):
    """Config of ``kind: tdse`` (the ``simulator:`` section of a generate config)."""

    preset: Literal["paper", "small", "fast", "tiny"] = Field("small", description="defaults for every key not given")
    grid: GridConfig
    dt: float = Field(gt=0, le=1.0, description="real-time step, a.u.")
    t_end: float = Field(4.0, gt=0, le=100, description="propagate from 0 to t_end * t_f")
    pulse: PulseConfig = PulseConfig()
    mask: MaskConfig
    k_out: float = Field(gt=0, le=100, description="stored PMD window |kx|, |ky| <= k_out, a.u.")
    soft_core: float = Field(0.5, gt=0, le=10, description="H2+ soft-core parameter a (eq. 3)")
    heh_beta: float = Field(HEH_BETA, ge=0, le=100, description="HeH+ screening beta (eq. 7)")
    molecules: dict[str, MoleculeConfig] = Field(default_factory=dict, description="extra molecules by name")
    groundstate: GroundStateConfig = GroundStateConfig()
    backend: Literal["auto", "fftw", "torch", "numpy"] = "auto"
    precision: Literal["double", "single"] = "double"
    batch: int = Field(4, ge=1, le=1000, description="runs propagated at once on one device")
    sampling: SamplingConfig = SamplingConfig()

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        name = data.get("preset", "small")
        if not isinstance(name, str) or name not in PRESETS:
            return data  # the Literal check reports it
        return _merge(preset_values(name), data)

    @model_validator(mode="after")
    def _check(self) -> "TDSEConfig":
        check_physics(self)
        return self

    # -- derived objects ----------------------------------------------------------
    def build_grid(self) -> Grid:
        return self.grid.build()

    def molecule(self, name: str) -> Molecule:
        if name == "H2+":
            return h2plus(self.soft_core)
        if name == "HeH+":
            return hehplus(self.heh_beta)
        if name in self.molecules:
            return Molecule(name, tuple(Centre(**c.model_dump()) for c in self.molecules[name].centres))
        raise ValueError(f"unknown molecule {name!r}; known: {', '.join(self.molecule_names())}")

    def molecule_names(self) -> list[str]:
        return [*BUILTIN_MOLECULES, *[m for m in self.molecules if m not in BUILTIN_MOLECULES]]

    def molecule_code(self, name: str) -> int:
        return self.molecule_names().index(name)

    def pulse_for(self, intensity: float, cep: float) -> Pulse:
        return Pulse(intensity, self.pulse.wavelength_nm, self.pulse.cycles, cep)

    def collect_window(self) -> float:
        """|kx|, |ky| up to which mask-method amplitudes are accumulated (a.u.): the stored
        window ``k_out``, so the ``yield`` diagnostic is the integral of the stored image."""
        return self.k_out

    def n_steps(self) -> int:
        tf = self.pulse_for(0.0, 0.0).duration
        return int(math.ceil(self.t_end * tf / self.dt - 1e-9))


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "molecules":
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def check_physics(cfg: TDSEConfig) -> None:
    """Cross-field checks; a ValueError names the keys, values and the allowed range."""
    grid = cfg.build_grid()
    s = cfg.sampling
    for name in s.molecule:
        if name not in cfg.molecule_names():
            raise ValueError(f"sampling.molecule: unknown molecule {name!r}; known: {', '.join(cfg.molecule_names())} "
                             "(add others under 'molecules')")
    r_lo, r_hi = s.bounds("R")
    i_lo, i_hi = s.bounds("intensity")
    extent = max(cfg.molecule(m).extent(r_hi) for m in s.molecule)
    rb, half = cfg.mask.radius, min(grid.x_max, grid.y_max)
    # the box must hold the mask and the mask must absorb
    if rb >= half:
        raise ValueError(f"mask.radius = {rb} a.u. must be smaller than the box half-widths "
                         f"(grid.x_max = {grid.x_max}, grid.y_max = {grid.y_max}); enlarge the box or lower the radius")
    rate = cfg.mask.beta * (half - rb) ** 2 / cfg.dt
    if rate < 1.0:
        raise ValueError(f"mask too weak to absorb before the box edge: beta (min(x_max, y_max) - radius)^2 / dt = "
                         f"{rate:.3g} per a.u. of time (mask.beta = {cfg.mask.beta}, mask.radius = {rb}, dt = {cfg.dt}); "
                         "it must be >= 1: raise mask.beta or widen the box")
    # the bound state and the quiver motion must fit inside the mask
    p_max = Pulse(i_hi, cfg.pulse.wavelength_nm, cfg.pulse.cycles)
    quiver = p_max.f0 / p_max.omega**2
    need_rb = extent + max(quiver, 10.0)
    if rb < need_rb:
        raise ValueError(f"mask.radius = {rb} a.u. is inside the electron's quiver region: it must be >= R_max/2 + "
                         f"max(F0/omega^2, 10) = {need_rb:.1f} a.u. (R_max = {r_hi}, I_max = {i_hi:.3g} W/cm^2); "
                         "enlarge the box and the mask radius")
    # momenta: the grid must hold the rescattering cutoff and the stored window
    a_bound = p_max.f0 / p_max.omega  # max |A| over all CEPs
    k_need = max(max_momentum_needed(a_bound), a_bound + BOUND_MOMENTUM)
    k_grid = min(grid.kx_max, grid.ky_max)
    if k_grid < k_need:
        dx_max = math.pi / k_need
        raise ValueError(f"grid spacing (dx = {grid.dx:.4g}, dy = {grid.dy:.4g} a.u.) holds momenta up to pi/dx = "
                         f"{k_grid:.3g} a.u., but the pulse (I_max = {i_hi:.3g} W/cm^2, {cfg.pulse.wavelength_nm} nm) "
                         f"needs {k_need:.3g} a.u. (max of the 10 Up cutoff sqrt(5) A_max and A_max + {BOUND_MOMENTUM}, the bound state's "
                         f"momentum content shifted by A in velocity gauge); use dx, dy <= {dx_max:.4g}")
    if cfg.k_out > k_grid:
        raise ValueError(f"k_out = {cfg.k_out} a.u. exceeds the grid's largest momentum pi/dx = {k_grid:.3g} a.u.")
    # time step: the kinetic phase of the grid's largest momentum must not wrap a full turn per
    # step (beyond that the step cannot tell those momenta apart and the grid is wasted)
    kmax = max(grid.kx_max, grid.ky_max)
    phase = cfg.dt * (0.5 * kmax**2 + a_bound * kmax)
    if phase > 2 * math.pi:
        dt_max = 2 * math.pi / (0.5 * kmax**2 + a_bound * kmax)
        raise ValueError(f"dt = {cfg.dt} a.u. is too large for the grid: dt (k_max^2/2 + A_max k_max) = {phase:.3g} rad "
                         f"> 2 pi (k_max = pi/dx = {kmax:.3g} a.u., A_max = {a_bound:.3g}); use dt <= {dt_max:.4g} "
                         "or a coarser grid")
    # the ground-state sub-box needs the molecule inside the box
    if extent + 5.0 > half:
        raise ValueError(f"the molecule (R_max/2 = {extent:.3g} a.u.) does not fit in the box "
                         f"(half-width {half} a.u.)")


def make_config(preset: str = "small", **overrides: Any) -> TDSEConfig:
    """A validated TDSEConfig from a preset plus (nested) overrides; raises ConfigError."""
    from ..errors import ConfigError

    try:
        return TDSEConfig.model_validate({"preset": preset, **overrides})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
