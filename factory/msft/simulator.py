"""``msft``: wide-angle XUV scattering images of nanoclusters (Stielow et al., MLST 2020) for ``factory generate``.

Labels per sample: ``radius`` (circumradius, nm) and the orientation quaternion ``q0..q3``
(scalar first ``(w, x, y, z)``, active rotation body -> lab, canonical ``w >= 0``, inside
the fundamental domain of the shape's rotation group unless ``orientation: uniform``),
plus ``shape`` (index into ``shapes``) when several shapes are sampled.  Images are the
detector image of :mod:`factory.msft.detector` on ``(qy, qx)`` in 1/nm (or on a flat
detector's pixel centres in mm), float32.

:func:`pattern` is the same computation as a plain function of (shape, radius, quaternion).
"""

from __future__ import annotations

import time
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_serializer

from ..backend import Backend
from ..geometry.quaternions import from_rotation, normalize
from ..geometry.symmetry import component_span, sample_fundamental
from ..simulation import Coord, SimResult, Simulator, SimulatorConfig, rng_for
from . import detector as det
from .multislice import MSFTParams, amplitude, q_axis, resolve_method
from .shapes import DECAHEDRON_FCC_ASPECT, SHAPES, SYMMETRY, ShapeOptions, density
from .transform import amplitude_array
from .voxelise import density_batch

ShapeName = Literal[SHAPES]  # type: ignore[valid-type]  # the shapes factory.msft.shapes knows

PAPER_VOXEL_NM = 318.75 / 192  # the authors' box of 318.75 nm on 192 voxels ("1.66 nm")


class ShapeOptionsModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ino_truncation: float = Field(0.25, ge=0.0, lt=1.0, description="Ino (100) truncation depth")
    marks_notch_depth: float = Field(0.15, ge=0.0, lt=1.0, description="Marks re-entrant notch depth")
    marks_notch_angle_deg: float = Field(100.0, gt=0.0, lt=180.0, description="notch opening angle")
    # later options: absent from the dumped config while at their defaults, so that the configs (and the
    # config hashes of the stores) made before they existed stay the same
    decahedron_aspect: float = Field(DECAHEDRON_FCC_ASPECT, gt=0.2, lt=1.5,
                                     description="decahedron half-height / equatorial radius (the method "
                                                 "authors' equilateral bipyramid: 0.618)")
    ttt_half_thickness: float = Field(0.24, gt=0.0, lt=0.6999, description="truncated twinned tetrahedron: "
                                                                          "half thickness / circumradius")

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        data = handler(self)
        for name in LATER_SHAPE_OPTIONS:
            if data.get(name) == type(self).model_fields[name].default:
                data.pop(name)
        return data

    def to_options(self) -> ShapeOptions:
        return ShapeOptions(**{name: getattr(self, name) for name in type(self).model_fields})


LATER_SHAPE_OPTIONS = ("decahedron_aspect", "ttt_half_thickness")


class DetectorModel(BaseModel):
    """``kind: q_grid`` (the central crop of the q grid) or ``kind: flat`` (distance, pixels)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["q_grid", "flat"] = "q_grid"
    distance_mm: float = Field(50.0, gt=0.0, description="flat: sample-detector distance (mm)")
    pixel_mm: float = Field(0.5, gt=0.0, description="flat: pixel size (mm)")
    pixels: int = Field(128, ge=2, le=8192, description="flat: pixels per side")

    def flat(self) -> det.FlatDetector:
        return det.FlatDetector(self.distance_mm, self.pixel_mm, self.pixels)


class MSFTConfig(SimulatorConfig):
    """The ``simulator:`` section of an ``msft`` config.  Field order matters for the checks."""

    shapes: list[ShapeName] = Field(default_factory=lambda: ["icosahedron"], min_length=1)
    orientation: Literal["fundamental", "uniform", "identity"] = Field(
        "fundamental", description="fundamental: uniform in the shape's fundamental domain"
    )
    n_voxels: int = Field(192, ge=8, le=1024, description="voxels per box side")
    voxel_nm: float = Field(PAPER_VOXEL_NM, gt=0.0, le=1000.0, description="voxel edge (nm)")
    radius_nm: tuple[float, float] = Field((30.0, 160.0), description="[min, max] circumradius (nm)")
    wavelength_nm: float = Field(13.5, gt=0.0, le=1e4)
    absorption_length_nm: float | None = Field(12.5, gt=0.0, description="field attenuation length; null: none")
    delta: float | None = Field(None, ge=-10.0, le=10.0, description="n = 1 - delta + i beta")
    beta: float | None = Field(None, ge=0.0, le=10.0, validate_default=True)
    pad: int = Field(512, ge=8, le=8192, description="zero-padded FFT width")
    crop: int = Field(128, ge=4, le=8192, description="detector: central crop of the q grid")
    detector: DetectorModel = Field(default_factory=DetectorModel)
    solid_angle: bool = Field(False, description="q grid: include the 1/cos(theta) pixel solid angle")
    fluence: float | None = Field(None, gt=0.0, description="photons/nm^2: Poisson photon noise")
    background: float = Field(0.0, ge=0.0, le=10.0, description="uniform noise up to this x max")
    output: Literal["log", "linear"] = "log"
    log_floor: float = Field(1e-6, gt=0.0, lt=1.0, description="log10(I/max + log_floor)")
    method: Literal["auto", "reference", "fft", "dft"] = "auto"
    backend: Literal["auto", "fftw", "torch", "numpy"] = "auto"
    precision: Literal["complex64", "complex128"] = "complex64"
    shape_options: ShapeOptionsModel = Field(default_factory=ShapeOptionsModel)

    @field_validator("shapes")
    @classmethod
    def _unique_shapes(cls, v):
        if len(set(v)) != len(v):
            raise ValueError(f"shapes must not repeat; got {v}")
        return v

    @field_validator("radius_nm")
    @classmethod
    def _radius_fits(cls, v, info: ValidationInfo):
        lo, hi = v
        if not 0 < lo <= hi:
            raise ValueError(f"expected [min, max] with 0 < min <= max (nm); got {list(v)}")
        n, vox = info.data.get("n_voxels"), info.data.get("voxel_nm")
        if n is None or vox is None:
            return v
        half = n * vox / 2.0
        if hi > half + 0.5 * vox:
            raise ValueError(
                f"the largest particle (circumradius {hi:g} nm) is larger than the box: half-width "
                f"{half:.2f} nm (n_voxels {n} x voxel_nm {vox:g} / 2, plus half a voxel); "
                "lower radius_nm or raise n_voxels / voxel_nm"
            )
        if lo < vox:
            raise ValueError(f"the smallest radius {lo:g} nm is below one voxel ({vox:g} nm); raise it or use smaller voxels")
        return v

    @field_validator("beta")
    @classmethod
    def _delta_beta(cls, v, info: ValidationInfo):
        if (info.data.get("delta") is None) != (v is None):
            raise ValueError("give both delta and beta (n = 1 - delta + i beta) or neither")
        return v

    @field_validator("pad")
    @classmethod
    def _pad_covers_box(cls, v, info: ValidationInfo):
        n = info.data.get("n_voxels")
        if n is not None and v < n:
            raise ValueError(f"the zero-padded width must be at least n_voxels = {n}; use pad >= {n}")
        return v

    @field_validator("crop")
    @classmethod
    def _crop_in_pad(cls, v, info: ValidationInfo):
        pad = info.data.get("pad")
        if pad is not None and v > pad:
            raise ValueError(f"crop is larger than the padded grid pad = {pad}; use crop <= pad")
        return v

    @field_validator("detector")
    @classmethod
    def _detector_covered(cls, v: DetectorModel, info: ValidationInfo):
        d = info.data
        if v.kind != "flat" or any(d.get(k) is None for k in ("pad", "crop", "voxel_nm", "wavelength_nm")):
            return v
        k = 2 * np.pi / d["wavelength_nm"]
        q = q_axis(d["pad"], d["voxel_nm"], d["crop"])
        qmax = min(abs(q[0]), abs(q[-1]))
        need = v.flat().max_q(k)
        if need > qmax:
            raise ValueError(
                f"the flat detector reaches q = {need:.4f} 1/nm but crop = {d['crop']} of pad = {d['pad']} "
                f"covers only {qmax:.4f} 1/nm; raise crop, or move the detector back / use fewer pixels"
            )
        return v

    def msft_params(self) -> MSFTParams:
        return MSFTParams(
            voxel_nm=self.voxel_nm,
            wavelength_nm=self.wavelength_nm,
            absorption_length_nm=self.absorption_length_nm,
            delta=self.delta,
            beta=self.beta,
            pad=self.pad,
            crop=self.crop,
            method=self.method,
            backend=self.backend,
            precision=self.precision,
        )


class DetectorImage(NamedTuple):
    """A detector image with its axes (image order [y, x]) and scalar diagnostics."""

    image: np.ndarray
    y: Coord
    x: Coord
    diagnostics: dict[str, float]


def detector_coords(cfg: MSFTConfig) -> tuple[Coord, Coord]:
    if cfg.detector.kind == "flat":
        a = cfg.detector.flat().axis_mm()
        return (Coord("y", a.copy(), "mm", "detector y"), Coord("x", a.copy(), "mm", "detector x"))
    q = q_axis(cfg.pad, cfg.voxel_nm, cfg.crop)
    return (
        Coord("qy", q.copy(), "1/nm", "momentum transfer qy"),
        Coord("qx", q.copy(), "1/nm", "momentum transfer qx"),
    )


def detector_from_amplitude(amp: np.ndarray, cfg: MSFTConfig, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Cross section -> signal per pixel -> photons/noise -> output scale; (image, diagnostics)."""
    k = 2 * np.pi / cfg.wavelength_nm
    dsdo = np.abs(amp).astype(np.float64) ** 2  # nm^2/sr
    q = q_axis(cfg.pad, cfg.voxel_nm, cfg.crop)
    if cfg.detector.kind == "flat":
        flat = cfg.detector.flat()
        signal = det.to_flat_detector(dsdo, q, q, flat, k) * flat.solid_angle()
    else:
        signal = dsdo * det.q_grid_solid_angle(q, q, k, obliquity=cfg.solid_angle)
    diags = {"total": float(signal.sum()), "peak": float(signal.max())}
    img = signal
    if cfg.fluence is not None:
        img = det.poisson_counts(signal * cfg.fluence, rng)
        diags["photons"] = float(img.sum())
    img = det.add_background(img, cfg.background, rng)
    if cfg.output == "log":
        img = det.log_image(img, cfg.log_floor)
    return img.astype(np.float32), diags


def _group(shape: str) -> str | None:
    return SYMMETRY[shape]


def pattern(
    shape: str = "icosahedron",
    radius_nm: float = 80.0,
    quat=(1.0, 0.0, 0.0, 0.0),
    config: MSFTConfig | str | dict | None = None,
    *,
    rng: np.random.Generator | None = None,
) -> DetectorImage:
    """The detector image of one particle: (shape, circumradius in nm, quaternion w,x,y,z).

    ``config``: an ``MSFTConfig``, its dict or None (the paper defaults); a preset
    (``"tiny"``, ``"small"``, ``"paper"``) through ``factory.config.resolve_simulator_config``.
    Noise (background, photons) draws from ``rng`` (default: ``np.random.default_rng(0)``).

    Parameters
    ----------
    shape : str, optional
        One of ``SHAPES`` (``"sphere"``, ``"icosahedron"``,
        ``"cube"``, ...).
    radius_nm : float, optional
        Circumradius of the particle (radius of the sphere), nm.
    quat : array_like, optional
        Orientation: scalar-first quaternion ``(w, x, y, z)``, normalised here.
    config : MSFTConfig or dict or None, optional
        The simulator config (box, wavelength, material, detector, noise) or a dict of its
        ``simulator:`` section; None for the paper defaults.  For a preset use
        ``factory.config.resolve_simulator_config`` (``("msft", "tiny")``).
    rng : numpy.random.Generator, optional
        Source of the noise.

    Returns
    -------
    DetectorImage
        ``image`` (``[y, x]``, as a generated store holds it), its ``y`` and ``x`` axes
        (``Coord``) and ``diagnostics`` (``total``, ``peak``,
        ``time_s``, and ``photons`` with a fluence).

    Raises
    ------
    ValueError
        An unknown shape, or a particle larger than the config's box.
    TypeError
        ``config`` is of another type (a preset name included).
    """
    cfg = resolve_config(config)
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}")
    t0 = time.perf_counter()
    rho = density(shape, float(radius_nm), normalize(quat), n=cfg.n_voxels, voxel_nm=cfg.voxel_nm,
                  options=cfg.shape_options.to_options())
    amp = amplitude(rho, cfg.msft_params(), validate=False)
    img, diags = detector_from_amplitude(amp, cfg, rng if rng is not None else np.random.default_rng(0))
    diags["time_s"] = time.perf_counter() - t0
    y, x = detector_coords(cfg)
    return DetectorImage(img, y, x, diags)


def resolve_config(config: MSFTConfig | dict | None) -> MSFTConfig:
    """An MSFTConfig from a config or a dict of the ``simulator:`` section (a preset name or a
    YAML file: :func:`factory.config.resolve_simulator_config`)."""
    if config is None:
        return MSFTConfig()
    if isinstance(config, MSFTConfig):
        return config
    if isinstance(config, dict):
        return MSFTConfig.model_validate(config)
    raise TypeError(f"config must be an MSFTConfig, a dict or None; got {type(config).__name__}")


class MSFTSimulator(Simulator):
    kind = "msft"
    config_model = MSFTConfig

    def __init__(self, config: MSFTConfig, threads: int = 1):
        super().__init__(config, threads=threads)
        self._params = config.msft_params()
        self._options = config.shape_options.to_options()
        self.backend = Backend.create(config.backend, threads=self.threads)

    def coords(self) -> tuple[Coord, Coord]:
        return detector_coords(self.config)

    @property
    def param_names(self) -> list[str]:
        names = ["radius", "q0", "q1", "q2", "q3"]
        return names + ["shape"] if len(self.config.shapes) > 1 else names

    @property
    def diagnostic_names(self) -> list[str]:
        names = ["total", "peak", "time_s"]
        return names + ["photons"] if self.config.fluence is not None else names

    def store_attrs(self) -> dict[str, Any]:
        cfg = self.config
        groups = {s: _group(s) for s in cfg.shapes}
        return {
            "labels": {
                "radius": "circumradius (nm)",
                "q0..q3": "orientation quaternion, scalar first (w, x, y, z), active rotation body -> lab, w >= 0",
                **({"shape": f"index into {list(cfg.shapes)}"} if len(cfg.shapes) > 1 else {}),
            },
            "shapes": list(cfg.shapes),
            "symmetry_groups": groups,
            "radius_range_nm": list(cfg.radius_nm),
            "quaternion_span": {s: component_span(g).tolist() for s, g in groups.items() if g},
            "orientation": cfg.orientation,
            "image": (
                f"log10(I / max I + {cfg.log_floor:g})" if cfg.output == "log" else "I (nm^2 per pixel, or photons)"
            ),
            "image_scale": "log10" if cfg.output == "log" else "intensity",
            "beam": "+z; image [y, x]; q = k_out - k_in",
        }

    # -- per sample -----------------------------------------------------------------
    def sample_params(self, seed: int, index: int) -> dict[str, float]:
        cfg = self.config
        rng = rng_for(seed, index, 0)
        k = int(rng.integers(len(cfg.shapes))) if len(cfg.shapes) > 1 else 0
        shape = cfg.shapes[k]
        radius = float(rng.uniform(*cfg.radius_nm))
        group = _group(shape)
        if cfg.orientation == "identity" or group is None:
            q = np.array([1.0, 0.0, 0.0, 0.0])  # a sphere has no orientation
        elif cfg.orientation == "uniform":
            from scipy.spatial.transform import Rotation

            q = from_rotation(Rotation.random(None, rng))
        else:
            q = sample_fundamental(rng, group=group)
        out = {"radius": radius, "q0": float(q[0]), "q1": float(q[1]), "q2": float(q[2]), "q3": float(q[3])}
        if len(cfg.shapes) > 1:
            out["shape"] = float(k)
        return out

    def _shape_of(self, params: dict[str, float]) -> str:
        return self.config.shapes[int(params.get("shape", 0))]

    def _density(self, params):
        cfg = self.config
        q = [params["q0"], params["q1"], params["q2"], params["q3"]]
        return density(self._shape_of(params), params["radius"], q, n=cfg.n_voxels, voxel_nm=cfg.voxel_nm,
                       options=self._options)

    def simulate(self, params: dict[str, float], rng: np.random.Generator) -> SimResult:
        t0 = time.perf_counter()
        amp = amplitude(self._density(params), self._params, validate=False, backend=self.backend)
        img, diags = detector_from_amplitude(amp, self.config, rng)
        diags["time_s"] = time.perf_counter() - t0
        return SimResult(img, diags)

    def simulate_batch(self, params: list[dict[str, float]], rngs: list[np.random.Generator]) -> list[SimResult]:
        method = resolve_method(self._params.method)
        if not self.backend.is_torch or method == "reference" or len(params) < 2:
            return [self.simulate(p, r) for p, r in zip(params, rngs)]
        return self._simulate_batch_on_device(params, rngs, method)

    def _simulate_batch_on_device(self, params, rngs, method) -> list[SimResult]:
        """Voxelise and scatter the whole block on the backend's device (one call per shape)."""
        cfg = self.config
        t0 = time.perf_counter()
        amps: list[np.ndarray | None] = [None] * len(params)
        by_shape: dict[str, list[int]] = {}
        for i, p in enumerate(params):
            by_shape.setdefault(self._shape_of(p), []).append(i)
        for shape, idx in by_shape.items():
            radii = [params[i]["radius"] for i in idx]
            quats = [[params[i][f"q{c}"] for c in range(4)] for i in idx]
            rho = density_batch(self.backend, shape, radii, quats, n=cfg.n_voxels, voxel_nm=cfg.voxel_nm,
                                options=self._options, dtype=self._params.real_dtype.name)
            out = self.backend.to_numpy(amplitude_array(rho, self._params, self.backend, method=method))
            for j, i in enumerate(idx):
                amps[i] = out[j]
        per = (time.perf_counter() - t0) / len(params)
        results = []
        for a, r in zip(amps, rngs):
            img, diags = detector_from_amplitude(a, cfg, r)
            diags["time_s"] = per
            results.append(SimResult(img, diags))
        return results


__all__ = ["DetectorImage", "MSFTConfig", "MSFTSimulator", "detector_coords", "pattern", "resolve_config"]
