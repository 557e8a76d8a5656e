"""The ``simulator:`` section of an ``msft`` config: :class:`MSFTConfig`, validated with pydantic.

Box, wavelength, material, detector (:class:`DetectorModel`), noise, output scale, method and
backend, and the shape parameters (:class:`ShapeOptionsModel`); the checks refuse a particle
larger than the box, a crop outside the padded grid or a flat detector the q grid does not
cover.  :mod:`factory.msft.simulator` runs it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_serializer

from ..simulation import SimulatorConfig
from . import detector as det
from .multislice import MSFTParams, q_axis
from .polyhedra import DECAHEDRON_FCC_ASPECT, SHAPES, ShapeOptions

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
