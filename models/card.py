"""The model card: the typed, versioned description of a saved model (its ``model.json``).

A model folder (and every training checkpoint) holds the weights (``weights.safetensors``)
and this card.  The card is the model format: everything needed to rebuild the network,
feed it images preprocessed the way it was trained on, and turn its outputs into labels,
plus the record of how it was trained.  It is a frozen pydantic model, written as JSON and
validated when read; a damaged or foreign card is one :class:`ModelError` line.

Schema (``format: factory-model``, ``version: 2``)::

    parameters            int       all parameters of the network (written by save_model)
    trainable_parameters  int       those trained (the rest frozen by transfer learning)
    architecture          {name, kwargs}          rebuilds the network (models.networks.build)
    task                  regress | classify
    labels                [str]                   the outputs, in order
    classes               {label, edges} | null   a classifier's bins of one label
    label_scaling         {names, methods, offset, scale} | null   scaled = (y - offset) / scale
    label_stats           {label: {mean, min, max}}   of the training labels (the mean predictor)
    input                 {shape, dims, dtype, mean_std}   network-ready images, standardisation
    preprocessing         {name, ...} | {...} | null   the store's preprocessing description: a typed
                          factory.processing.description (pmd2d, pmd1d, scatter; its JSON form
                          as stored), or a synthetic set's own record kept as it is
    postprocess           {group, quaternion} | null   project predicted orientations
    training_set          {path, kind, config_hash, lineage, n_samples, split, config} | null
    transfer              {from_model, freeze, base_training_set} | null
    training              {config, epoch, history: [epoch record], stopped_early, selected_epoch} | null
    code_version, created str | null

Version 1 cards (written before the card was typed) hold the same fields; they are read
and upgraded in memory.  A card of a newer version is refused with a message saying so.
Only ``architecture``, ``labels`` and ``input.shape`` are required: a network made outside
``factory train`` (a benchmark, a test, an imported model) can be served from a minimal card.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from factory.errors import FactoryError
from factory.processing.description import Description, recorded
from factory.jsonfile import read_json

FORMAT = "factory-model"
VERSION = 2
READABLE = (1, 2)
FILENAME = "model.json"


class ModelError(FactoryError):
    """A model artefact or checkpoint is missing, damaged or does not fit the request."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")


class Architecture(_Frozen):
    name: str
    kwargs: dict[str, Any] = Field(default_factory=dict)

    def describe(self) -> str:
        kw = ", ".join(f"{k}={v}" for k, v in sorted(self.kwargs.items()))
        return f"{self.name}({kw})"


class Classes(_Frozen):
    label: str
    edges: tuple[float, ...] = Field(min_length=2)


class Scaling(_Frozen):
    """Per-label affine scaling, as :class:`models.data.LabelScaling` holds it."""

    names: tuple[str, ...]
    methods: tuple[Literal["minmax", "standard", "none"], ...]
    offset: tuple[float, ...]
    scale: tuple[float, ...]

    @model_validator(mode="after")
    def _lengths(self):
        if not len(self.names) == len(self.methods) == len(self.offset) == len(self.scale):
            raise ValueError("label_scaling: names, methods, offset and scale differ in length")
        if not all(math.isfinite(v) for v in (*self.offset, *self.scale)):
            raise ValueError(f"label_scaling: offset {list(self.offset)} and scale {list(self.scale)} must be finite")
        return self

    def scaling(self):
        from .data import LabelScaling

        return LabelScaling.from_dict(self.model_dump(mode="json"))


class LabelStats(_Frozen):
    mean: float
    min: float
    max: float


#: the most values one network input may hold (a 4096 x 4096 image is 2^24): a card asking
#: for more is refused before anything is allocated
MAX_INPUT_VALUES = 1 << 26


class InputSpec(_Frozen):
    shape: tuple[int, ...] = Field(min_length=1, max_length=4)
    dims: tuple[str, ...] = ()
    dtype: str = "float32"
    mean_std: tuple[float, float] = (0.0, 1.0)

    @model_validator(mode="after")
    def _size(self):
        if any(n < 1 for n in self.shape) or math.prod(self.shape) > MAX_INPUT_VALUES:
            raise ValueError(f"input.shape {list(self.shape)}: each size >= 1 and at most {MAX_INPUT_VALUES:,} "
                             "values in all")
        if not all(math.isfinite(v) for v in self.mean_std) or not self.mean_std[1] > 0:
            raise ValueError(f"input.mean_std {list(self.mean_std)}: finite, with a positive standard deviation")
        return self


class Postprocess(_Frozen):
    group: str
    quaternion: tuple[str, str, str, str]


class SplitRecord(_Frozen):
    source: Literal["store", "seeded-permutation"]
    seed: int | None = None
    val_fraction: float | None = None
    n_train: int = Field(ge=0)
    n_val: int = Field(ge=0)
    n_test: int = Field(0, ge=0)


class TrainingSet(_Frozen):
    """The store a model was trained on (its lineage entry and more; the store may add keys)."""

    model_config = ConfigDict(extra="allow")
    path: str
    kind: str | None = None
    config_hash: str | None = None
    lineage: tuple[dict[str, Any], ...] = ()
    n_samples: int | None = None
    split: SplitRecord | None = None
    config: dict[str, Any] = Field(default_factory=dict)


class EpochRecord(_Frozen):
    """One epoch of training; ``val_mae_<label>`` (regression) or ``val_accuracy`` as extras."""

    model_config = ConfigDict(extra="allow")
    epoch: int = Field(ge=1)
    lr: float
    train_loss: float
    val_loss: float
    epoch_s: float
    train_images_per_s: float
    workers: int = 1
    device: str = "cpu"

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class TrainingRecord(_Frozen):
    config: dict[str, Any]  # the resolved training config (models.train_config.TrainConfig)
    epoch: int = Field(0, ge=0)
    history: tuple[EpochRecord, ...] = ()
    stopped_early: bool = False
    selected_epoch: int | None = None


class TransferRecord(_Frozen):
    from_model: str
    freeze: int = Field(0, ge=0)
    base_training_set: TrainingSet | None = None


class ModelCard(_Frozen):
    format: Literal["factory-model"] = FORMAT
    version: Literal[2] = VERSION
    parameters: int | None = None
    architecture: Architecture
    trainable_parameters: int | None = None
    task: Literal["regress", "classify"] = "regress"
    labels: tuple[str, ...]
    classes: Classes | None = None
    label_scaling: Scaling | None = None
    label_stats: dict[str, LabelStats] = Field(default_factory=dict)
    input: InputSpec
    preprocessing: Description | dict[str, Any] | None = None
    postprocess: Postprocess | None = None
    training_set: TrainingSet | None = None
    transfer: TransferRecord | None = None
    training: TrainingRecord | None = None
    code_version: str | None = None
    created: str | None = None

    @field_validator("preprocessing", mode="before")
    @classmethod
    def _typed_preprocessing(cls, v):
        return recorded(v)  # a known kind strictly (a bad one: a damaged card), another record as it is

    @model_validator(mode="after")
    def _consistent(self):
        if self.task == "classify" and self.classes is None:
            raise ValueError("a classifier's card needs classes")
        if self.label_scaling is not None and tuple(self.label_scaling.names) != tuple(self.labels):
            raise ValueError(f"label_scaling is for {list(self.label_scaling.names)}, the labels are {list(self.labels)}")
        return self

    # -- reading and writing
    @classmethod
    def from_dict(cls, data: Any, where: str | Path = "model card") -> "ModelCard":
        """A card from its JSON form (version 1 or 2); ModelError in one line otherwise."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelError(f"{where}: not a {FORMAT} card")
        version = data.get("version")
        if version not in READABLE:
            newer = isinstance(version, int) and version > VERSION
            raise ModelError(f"{where}: card version {version!r} " + (
                "was written by a newer factory; upgrade to read it" if newer else f"is unknown (this reads {READABLE})"))
        try:
            return cls.model_validate({**data, "version": VERSION})  # v1 -> v2: the same fields
        except ValidationError as exc:
            raise ModelError(f"{where}: damaged model card ({_one_line(exc)})") from None

    @classmethod
    def read(cls, folder: str | Path) -> "ModelCard":
        folder = Path(folder)
        path = folder / FILENAME
        if not path.is_file():
            raise ModelError(f"{folder}: not a model folder (no {FILENAME}); pass a trained model's folder")
        try:
            data = read_json(path)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: damaged model card ({str(exc).splitlines()[0]})") from None
        return cls.from_dict(data, path)

    def to_dict(self) -> dict[str, Any]:
        """The plain JSON form (what ``model.json`` holds)."""
        return self.model_dump(mode="json")

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / FILENAME
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    # -- derived views
    def scaling(self):
        """The :class:`models.data.LabelScaling` of the outputs, or None (classifier, unscaled)."""
        return self.label_scaling.scaling() if self.label_scaling is not None else None

    @property
    def epoch(self) -> int:
        return self.training.epoch if self.training is not None else 0

    @property
    def history(self) -> tuple[EpochRecord, ...]:
        return self.training.history if self.training is not None else ()

    def with_training(self, **update: Any) -> "ModelCard":
        """A copy whose training record has ``update`` (validated)."""
        if self.training is None:
            raise ModelError("this card has no training record")
        training = TrainingRecord.model_validate({**self.training.model_dump(), **update})
        return self.model_copy(update={"training": training})


def as_card(card: "ModelCard | dict[str, Any]", where: str | Path = "model card") -> ModelCard:
    """A :class:`ModelCard` from a card or its plain form (the dict read_description gives)."""
    if isinstance(card, ModelCard):
        return card
    if isinstance(card, dict) and "format" not in card:  # a card being built (no format/version yet)
        card = {"format": FORMAT, "version": VERSION, **card}
    return ModelCard.from_dict(card, where)


def _one_line(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc, msg = ".".join(str(p) for p in err["loc"]), err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


__all__ = ["Architecture", "Classes", "EpochRecord", "FORMAT", "InputSpec", "LabelStats", "ModelCard", "ModelError",
           "Postprocess", "READABLE", "Scaling", "SplitRecord", "TrainingRecord", "TrainingSet", "TransferRecord",
           "VERSION", "as_card"]
