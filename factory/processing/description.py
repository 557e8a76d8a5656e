"""The typed description of network-ready preprocessing: what :func:`preprocess.apply` computes.

One frozen pydantic model per kind, told apart by ``name``:

- :class:`Pmd2d`: log10(P / max P) clipped at ``log_floor``, the momentum window (one
  symmetric ``ky_range`` x ``kx_range`` for the set, or each image's own), bicubic resampling
  to ``out_shape``, scaled to ``scale``;
- :class:`Pmd1d`: dP/dkx on ``n`` points of ``kx_range``, divided by its max;
- :class:`Scatter`: log10(I / max I) clipped at ``log_floor``, 0..1, at ``out_shape``.

``input_axes`` ({dim: [first, last, n]}) records the raw frames' axes, so a bare detector
frame can be preprocessed without its coordinates.

:class:`FrameCrop` fits an assembled detector image of another size to the raw frame a model
takes (:func:`model_frame_shape`): a window of ``bin`` x the frame's shape centred on the beam,
averaged over ``bin`` x ``bin`` blocks; the streaming predictor records the one it applied.

The JSON form (:meth:`to_dict`) is the plain dict a processed store holds in
``meta["preprocessing"]`` and a model card copies: the same keys in the same order as the
dicts written before the description was typed, so stores and model files stay readable and
the bytes written stay the same.  :func:`parse` takes a description or that dict and refuses
an unknown kind, a missing or extra key, or an invalid value with one
:class:`DescriptionError` line.  :func:`recorded` is the reader for what stores and cards
hold: a known kind is parsed strictly, anything else (the ``{"mode": "synthetic-..."}``
descriptions of synthetic sets) is kept as it is.

This module needs only numpy and pydantic, so model cards can type their field with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import (BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator,
                      model_serializer, model_validator)

NAMES = ("pmd2d", "pmd1d", "scatter")
WINDOWS = ("global", "per-image")
KEYS_BICUBIC = "bicubic convolution (Keys, a = -0.5), separable"
#: the default clipping floor (decades below the maximum) of each kind
DEFAULT_LOG_FLOOR = {"pmd2d": -5.0, "pmd1d": -5.0, "scatter": -6.0}

Range = tuple[float, float]
Shape = tuple[PositiveInt, PositiveInt]
Floor = Annotated[float, Field(lt=0)]
Axis = tuple[float, float, PositiveInt]  # first, last, number of points


class DescriptionError(ValueError):
    """A preprocessing description is of an unknown kind or invalid."""


class _Description(BaseModel):
    """Frozen; NaN/Inf refused; JSON form without absent (None) entries."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @model_serializer(mode="wrap")
    def _without_absent(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None}

    @field_validator("ky_range", "kx_range", check_fields=False)
    @classmethod
    def _ordered(cls, v):
        if v is not None and v[0] > v[1]:
            raise ValueError(f"range {list(v)} is reversed (first > last)")
        return v

    @field_validator("input_axes", check_fields=False)
    @classmethod
    def _axes(cls, v):
        if v is not None and not v:
            raise ValueError("input_axes is empty; omit it instead")
        return v

    # -- the JSON boundary
    def to_dict(self) -> dict[str, Any]:
        """The plain JSON form, as a store's ``meta["preprocessing"]`` holds it."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Any) -> "Description":
        """A description from its JSON form; on a kind's class, refuses the other kinds."""
        desc = parse(data)
        if cls is not _Description and not isinstance(desc, cls):
            raise DescriptionError(f"preprocessing {desc.name!r} is not {cls.__name__}")
        return desc

    # -- derived views
    def function(self) -> dict[str, Any]:
        """The JSON form without the raw frames' axes: two stores processed by the same function
        from raw grids of different sizes give the same network input."""
        return {k: v for k, v in self.to_dict().items() if k != "input_axes"}

    def with_input_axes(self, coords: Mapping[str, np.ndarray]) -> "Description":
        """A copy recording the raw image axes ``coords`` (validated)."""
        return type(self).model_validate({**self.to_dict(), "input_axes": input_axes(coords)})

    def frame_coords(self) -> dict[str, np.ndarray]:
        """The raw image axes recorded in ``input_axes`` ({} if none)."""
        return {k: np.linspace(a, b, n) for k, (a, b, n) in (self.input_axes or {}).items()}

    @property
    def frame_shape(self) -> tuple[int, ...] | None:
        """The raw frame shape the description was made for, or None (not recorded)."""
        return tuple(int(n) for _, _, n in self.input_axes.values()) if self.input_axes else None

    def output_coords(self) -> dict[str, np.ndarray] | None:
        """The momentum axes of the network input when they are the same for every image."""
        return None

    def output_axes(self) -> list[tuple[str, np.ndarray, str, str]]:
        """(name, values, units, long name) of the network input's axes, for the processed store."""
        oc = self.output_coords()
        if oc is not None:
            return [(k, v, "a.u.", f"{k} (network input)") for k, v in oc.items()]
        return [(d, np.arange(n, dtype=float), "px", "") for d, n in zip(self.dims, self.out_shape)]


class Pmd2d(_Description):
    """PMD image: log window, bicubic resampling to ``out_shape`` (ky rows, kx columns), 0..255."""

    name: Literal["pmd2d"] = "pmd2d"
    log_floor: Floor = DEFAULT_LOG_FLOOR["pmd2d"]
    window: Literal["global", "per-image"] = "global"
    out_shape: Shape = (128, 256)
    resample: str = KEYS_BICUBIC
    scale: Range = (0.0, 255.0)
    dims: tuple[str, str] = ("ky", "kx")
    ky_range: Range | None = None
    kx_range: Range | None = None
    #: set by synthetic stand-in sets whose images were made in this representation (not preprocessed)
    synthetic: str | None = None
    input_axes: dict[str, Axis] | None = None

    @model_validator(mode="after")
    def _window(self):
        ranges = (self.ky_range, self.kx_range)
        if self.window == "global" and None in ranges:
            raise ValueError("a global window needs ky_range and kx_range")
        if self.window == "per-image" and ranges != (None, None):
            raise ValueError("a per-image window has no ky_range/kx_range (each image's signal box is used)")
        if not self.scale[0] < self.scale[1]:
            raise ValueError(f"scale {list(self.scale)} must increase")
        return self

    @classmethod
    def build(cls, window: str = "global", kmax: tuple[float, float] | None = None,
              log_floor: float = DEFAULT_LOG_FLOOR["pmd2d"], out_shape: tuple[int, int] = (128, 256)) -> "Pmd2d":
        """The description ``factory process preprocess --mode pmd2d`` records (``kmax``: the
        symmetric window's half widths (ky, kx), for a global window)."""
        if window not in WINDOWS:
            raise DescriptionError(f"window {window!r}: choose 'global' or 'per-image'")
        ranges = {}
        if window == "global":
            if kmax is None:
                raise DescriptionError("a global window needs kmax = (ky_max, kx_max)")
            ranges = {"ky_range": (-float(kmax[0]), float(kmax[0])), "kx_range": (-float(kmax[1]), float(kmax[1]))}
        return _validated(cls, dict(log_floor=log_floor, window=window, out_shape=tuple(out_shape), **ranges))

    def output_coords(self) -> dict[str, np.ndarray] | None:
        if self.window != "global":
            return None
        h, w = self.out_shape
        return {"ky": np.linspace(*self.ky_range, h), "kx": np.linspace(*self.kx_range, w)}


class Pmd1d(_Description):
    """dP/dkx = sum_ky P dky on ``n`` points of ``kx_range``, divided by its max."""

    name: Literal["pmd1d"] = "pmd1d"
    kx_range: Range
    n: PositiveInt = 256
    normalize: Literal["max"] = "max"
    window_log_floor: Floor = DEFAULT_LOG_FLOOR["pmd1d"]
    dims: tuple[str] = ("kx",)
    input_axes: dict[str, Axis] | None = None

    @classmethod
    def build(cls, kmax: tuple[float, float], log_floor: float = DEFAULT_LOG_FLOOR["pmd1d"], n: int = 256) -> "Pmd1d":
        """``kmax``: the half widths (ky, kx) of the set's window above ``log_floor``."""
        return _validated(cls, dict(kx_range=(-kmax[1], kmax[1]), n=n, window_log_floor=log_floor))

    def output_coords(self) -> dict[str, np.ndarray]:
        return {"kx": np.linspace(*self.kx_range, self.n)}


class Scatter(_Description):
    """Scattering image: log10(I / max I) clipped at ``log_floor``, 0..1, resampled to ``out_shape``."""

    name: Literal["scatter"] = "scatter"
    input: Literal["intensity", "log10"] = "intensity"
    log_floor: Floor = DEFAULT_LOG_FLOOR["scatter"]
    out_shape: Shape = (128, 128)
    scale: Range = (0.0, 1.0)
    dims: tuple[str, str] = ("row", "col")
    input_axes: dict[str, Axis] | None = None

    @field_validator("scale")
    @classmethod
    def _unit(cls, v):
        if tuple(v) != (0.0, 1.0):
            raise ValueError(f"scatter images are scaled to [0.0, 1.0], not {list(v)}")
        return v

    @classmethod
    def build(cls, image_scale: str = "intensity", log_floor: float = DEFAULT_LOG_FLOOR["scatter"],
              out_shape: tuple[int, int] = (128, 128)) -> "Scatter":
        """``image_scale``: the raw store's ``simulator.image_scale`` (``log10`` or intensities)."""
        return _validated(cls, dict(input="log10" if image_scale == "log10" else "intensity", log_floor=log_floor,
                                    out_shape=tuple(out_shape)))


class FrameCrop(BaseModel):
    """An assembled detector image cut to the raw frame a model takes: the window of
    ``bin * shape`` pixels centred on ``centre`` (the beam's pixel; the image's centre when
    None), averaged over ``bin`` x ``bin`` blocks.  Missing pixels (NaN/Inf: the gaps between
    modules, masked pixels) do not count in a block's mean; a block without any, or one outside
    the image, is ``fill``."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: Literal["crop-bin"] = "crop-bin"
    shape: Shape
    bin: PositiveInt = 1
    fill: float = 0.0

    @classmethod
    def fit(cls, image_shape: tuple[int, int], shape: tuple[int, int], bin: int | None = None,
            fill: float = 0.0) -> "FrameCrop":
        """The crop of ``shape`` frames from images of ``image_shape``; ``bin`` None: the largest
        whose window fits inside the image."""
        if bin is None:
            bin = min(int(image_shape[0]) // int(shape[0]), int(image_shape[1]) // int(shape[1]))
            if bin < 1:
                raise DescriptionError(f"detector image smaller than the model's frame (image {tuple(image_shape)}, "
                                       f"frame {tuple(shape)})")
        return _validated(cls, dict(shape=tuple(shape), bin=bin, fill=fill))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def apply(self, image: np.ndarray, centre: tuple[float, float] | None = None) -> np.ndarray:
        """``image`` (H, W) cut and binned to ``shape``; float32."""
        image = np.asarray(image)
        if image.ndim != 2:
            raise ValueError(f"expected a 2D detector image, got shape {image.shape}")
        (h, w), k = self.shape, self.bin
        cy, cx = ((image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2) if centre is None else centre
        # the window's middle on the middle of pixel ``centre`` (pixel i spans [i, i + 1))
        r0, c0 = math.floor(cy + 1.0 - k * h / 2), math.floor(cx + 1.0 - k * w / 2)
        window = np.full((k * h, k * w), np.nan, np.float64)
        rs, cs = max(r0, 0), max(c0, 0)
        re, ce = min(r0 + k * h, image.shape[0]), min(c0 + k * w, image.shape[1])
        if rs < re and cs < ce:
            window[rs - r0:re - r0, cs - c0:ce - c0] = image[rs:re, cs:ce]
        blocks = window.reshape(h, k, w, k)
        valid = np.isfinite(blocks)
        n = valid.sum(axis=(1, 3))
        total = np.where(valid, blocks, 0.0).sum(axis=(1, 3))
        return np.where(n > 0, total / np.maximum(n, 1), self.fill).astype(np.float32)


def model_frame_shape(desc: Any, input_shape: Any = None) -> tuple[int, int] | None:
    """The 2D raw frame a model with preprocessing ``desc`` takes: the recorded raw frame shape,
    else the preprocessing's output shape (a raw frame of that size is taken as it is), else
    the network's ``input_shape``; None for 1D inputs."""
    desc = recorded(desc)
    if isinstance(desc, _Description):
        shape = desc.frame_shape or getattr(desc, "out_shape", None)
    else:
        shape = tuple(input_shape) if input_shape is not None else None
    return tuple(int(n) for n in shape) if shape is not None and len(shape) == 2 else None


#: a description of any kind (pydantic picks the kind by ``name``)
Description = Annotated[Union[Pmd2d, Pmd1d, Scatter], Field(discriminator="name")]
KINDS: dict[str, type[_Description]] = {"pmd2d": Pmd2d, "pmd1d": Pmd1d, "scatter": Scatter}


def build(mode: str, *, raw_coords: Mapping[str, np.ndarray], window: str = "global", log_floor: float | None = None,
          image_scale: str = "intensity", kmax: Callable[[float], tuple[float, float]] | None = None) -> Description:
    """The description ``factory process preprocess --mode`` records for raw images on
    ``raw_coords``.  ``kmax(floor)``: the set's symmetric momentum window (ky_max, kx_max) above
    ``floor``, called only when the kind needs it; ``image_scale``: the raw store's
    ``simulator.image_scale``."""
    if mode not in KINDS:
        raise DescriptionError(f"preprocessing mode {mode!r}: choose one of {', '.join(NAMES)}")
    floor = DEFAULT_LOG_FLOOR[mode] if log_floor is None else log_floor
    try:
        ok = -math.inf < float(floor) < 0
    except (TypeError, ValueError):
        ok = False
    if not ok:  # refused before the window's reduction
        raise DescriptionError(f"log_floor {floor!r}: must be a finite number of decades below the maximum (< 0)")
    if mode == "scatter":
        desc = Scatter.build(image_scale, floor)
    elif mode == "pmd1d":
        desc = Pmd1d.build(kmax(floor), floor)
    else:
        if window not in WINDOWS:  # refused before the window's reduction
            raise DescriptionError(f"window {window!r}: choose 'global' or 'per-image'")
        desc = Pmd2d.build(window, kmax(floor) if window == "global" else None, floor)
    return desc.with_input_axes(raw_coords)


def parse(obj: Any) -> Pmd2d | Pmd1d | Scatter:
    """A description from a description or its JSON form (a store's ``meta["preprocessing"]``,
    a card's ``preprocessing``); DescriptionError in one line otherwise."""
    if isinstance(obj, _Description):
        return obj
    if not isinstance(obj, Mapping):
        raise DescriptionError(f"a preprocessing description is a mapping, not {type(obj).__name__}")
    name = obj.get("name")
    if name not in KINDS:
        raise DescriptionError(f"unknown preprocessing {name!r}; known: {', '.join(NAMES)}")
    return _validated(KINDS[name], dict(obj))


def recorded(obj: Any) -> Pmd2d | Pmd1d | Scatter | dict[str, Any] | None:
    """What a store or card records: a description of a known kind (parsed strictly), None, or
    another dict kept as it is (a synthetic set's own record, which :func:`apply` refuses)."""
    if obj is None or isinstance(obj, _Description):
        return obj
    if isinstance(obj, Mapping) and obj.get("name") in KINDS:
        return parse(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    raise DescriptionError(f"a preprocessing description is a mapping, not {type(obj).__name__}")


def plain(obj: Any) -> Any:
    """The JSON form of what :func:`recorded` gives (descriptions to dicts, the rest unchanged)."""
    return obj.to_dict() if isinstance(obj, _Description) else obj


def input_axes(coords: Mapping[str, np.ndarray]) -> dict[str, list]:
    """The raw image axes as [first, last, n] (recorded so frames need no coordinates)."""
    return {k: [float(v[0]), float(v[-1]), int(len(v))] for k, v in coords.items()}


def _validated(cls, data: dict[str, Any]):
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise DescriptionError(f"preprocessing {cls.model_fields['name'].default}: {_one_line(exc)}") from None


def _one_line(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


__all__ = ["DEFAULT_LOG_FLOOR", "Description", "DescriptionError", "FrameCrop", "KINDS", "NAMES", "Pmd1d", "Pmd2d",
           "Scatter", "build", "input_axes", "model_frame_shape", "parse", "plain", "recorded"]
