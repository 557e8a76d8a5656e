"""The training config: a YAML preset or file, with ``key.path=value`` overrides, validated.

Presets live in ``configs/train/<preset>/<size>.yaml``::

    model:  {arch: pmd-cnn, options: {dropout: 0.2}}
    data:   {labels: [R], scaling: minmax, val_fraction: 0.2, split_seed: 0}
    task:   regress                     # or classify, with classes: {label: R, edges: [1, ..., 8]}
    optim:  {optimizer: sgd, lr: 1.0e-3, batch_size: 30, epochs: 30, lr_drop_epochs: [20]}
    early_stopping: {patience: null}
    run:    {workers: 1, use_gpu: auto, backend: ray}
    transfer: {from_model: null, freeze: 0}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from factory.config import apply_overrides, configs_dir, format_validation_error, read_yaml
from factory.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ModelSection(_Section):
    arch: Literal["pmd-cnn", "cnn1d", "mlp1d", "resnet-tanh"]
    options: dict[str, Any] = Field(default_factory=dict)


class DataSection(_Section):
    store: str | None = None
    labels: list[str] = Field(min_length=1)
    scaling: Literal["minmax", "standard", "none"] | dict[str, Literal["minmax", "standard", "none"]] = "minmax"
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    split_seed: int = Field(0, ge=0)
    max_train: int | None = Field(None, ge=1)
    window_chunks: int = Field(4, ge=1, le=1024)
    augment: Literal["none", "d4"] = Field("none", description="d4: exact 90-degree/mirror symmetry of scattering images")


class ClassesSection(_Section):
    label: str
    edges: list[float] = Field(min_length=3)

    @model_validator(mode="after")
    def _sorted(self):
        if any(b <= a for a, b in zip(self.edges, self.edges[1:])):
            raise ValueError(f"edges {self.edges} must increase strictly")
        return self


class OptimSection(_Section):
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    batch_size: int = Field(30, ge=2, le=65536)
    epochs: int = Field(30, ge=1, le=100_000)
    lr_drop_epochs: list[int] = Field(default_factory=lambda: [20])
    lr_drop_factor: float = Field(0.1, gt=0.0, le=1.0)

    def lr_at(self, epoch: int) -> float:
        return self.lr * self.lr_drop_factor ** sum(epoch >= d for d in self.lr_drop_epochs)


class EarlyStoppingSection(_Section):
    patience: int | None = Field(None, ge=1)
    min_delta: float = Field(0.0, ge=0.0)


class RunSection(_Section):
    backend: Literal["ray", "local"] = "ray"
    workers: int = Field(1, ge=1, le=4096)
    cpus_per_worker: int | None = Field(None, ge=1)
    use_gpu: bool | Literal["auto"] = "auto"
    seed: int = Field(0, ge=0)
    keep_checkpoints: int | None = Field(3, ge=1)
    select: Literal["best", "last"] = "best"
    max_failures: int = Field(0, ge=0)
    stop_after_epoch: int | None = Field(None, ge=1, description="end this run after that epoch (tests: an interrupted run)")
    eval_batch_size: int = Field(128, ge=1)
    ray_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    @field_validator("workers")
    @classmethod
    def _local_runs_one(cls, workers: int, info: ValidationInfo) -> int:
        if info.data.get("backend") == "local" and workers != 1:
            raise ValueError("the local backend runs one worker; use run.backend=ray")
        return workers


class TransferSection(_Section):
    from_model: str | None = None
    freeze: int = Field(0, ge=0)


class TrainConfig(_Section):
    name: str = ""
    description: str = ""
    model: ModelSection
    data: DataSection
    task: Literal["regress", "classify"] = "regress"
    classes: ClassesSection | None = None
    optim: OptimSection = Field(default_factory=OptimSection)
    early_stopping: EarlyStoppingSection = Field(default_factory=EarlyStoppingSection)
    run: RunSection = Field(default_factory=RunSection)
    transfer: TransferSection = Field(default_factory=TransferSection)

    @model_validator(mode="after")
    def _task(self):
        if self.task == "classify" and self.classes is None:
            raise ValueError("task classify needs classes: {label: ..., edges: [...]}")
        if self.task == "classify" and self.classes.label not in self.data.labels:
            raise ValueError(f"classes.label {self.classes.label!r} must be one of data.labels {self.data.labels}")
        return self

    def resolved(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def train_presets() -> list[str]:
    root = configs_dir() / "train"
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.glob("*/*.yaml"))


def resolve_train_config(spec: str | Path) -> Path:
    path = Path(spec)
    if path.is_file():
        return path
    for cand in (configs_dir() / "train" / f"{spec}.yaml", configs_dir() / f"{spec}.yaml"):
        if cand.is_file():
            return cand
    raise ConfigError(f"training config {str(spec)!r} is neither a file nor a preset; presets: {', '.join(train_presets())}")


def config_from_dict(data: dict[str, Any], source: str = "training config") -> TrainConfig:
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc)}") from None


def load_train_config(spec: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """A preset (``pmd-cnn/small``) or YAML file, with ``key.path=value`` overrides, validated.

    Parameters
    ----------
    spec : str or pathlib.Path
        A YAML file, or a preset name ``<arch>/<size>`` (``configs/train/<arch>/<size>.yaml``,
        e.g. ``"pmd-cnn/tiny"``; ``train_presets`` lists them).
    overrides : list of str, optional
        ``key.path=value`` overrides applied in order (values parsed as YAML), e.g.
        ``["optim.epochs=5", "run.backend=local"]``.

    Returns
    -------
    TrainConfig
        The validated training config (model, data, optimiser, run, transfer sections).

    Raises
    ------
    ConfigError
        The file or preset does not exist, an override is malformed, or a key is unknown,
        missing or out of range.
    """
    path = resolve_train_config(spec)
    return config_from_dict(apply_overrides(read_yaml(path), overrides or []), source=str(spec))


__all__ = ["ClassesSection", "DataSection", "EarlyStoppingSection", "ModelSection", "OptimSection", "RunSection",
           "TrainConfig", "TransferSection", "config_from_dict", "load_train_config", "resolve_train_config",
           "train_presets"]
