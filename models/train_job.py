"""What a training run is, decided on the driver before anything is written: the typed job.

:func:`prepare` reads the store once and settles everything the workers need: the split, the
label scaling (fitted, or inherited from the model transferred from or the checkpoint resumed
from), the input standardisation, the targets and the model card every checkpoint starts
from.  It refuses, before anything is written, an architecture that does not fit the
store's images, and a checkpoint or base model whose architecture, preprocessing, labels or
training store differ.  :class:`TrainJob` is what a worker receives: frozen, typed, and
plain data through :meth:`TrainJob.to_dict` where a process boundary needs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from factory.errors import ConfigError, StoreError
from factory.store import DatasetStore, code_version, lineage_entry

from .artifact import QUAT, ModelError, check_compatible, load_network, read_card, store_preprocessing
from .card import (Architecture, Classes, InputSpec, LabelStats, ModelCard, Postprocess, Scaling, TrainingRecord,
                   TrainingSet, TransferRecord)
from .data import LabelScaling, Split, class_index, image_stats, make_split, read_labels
from .networks import build, count_parameters
from .train_config import TrainConfig


@dataclass(frozen=True, eq=False)
class TrainJob:
    """One attempt of a training run, as every worker receives it."""

    config: TrainConfig
    card: ModelCard  # the card of every checkpoint, before its training record is filled in
    store: str
    train: np.ndarray  # sample indices
    val: np.ndarray
    targets_file: str  # targets.npy: scaled labels or class indices of every sample
    input_stats: tuple[float, float]
    storage: str  # OUT/checkpoints
    attempt_name: str  # attempt-K
    init_from: str | None = None  # a model to transfer from
    resume_from: str | None = None  # a checkpoint to continue
    use_gpu: bool = False
    threads: int = 1
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for Ray Train's ``train_loop_config``)."""
        return {"config": self.config.resolved(), "card": self.card.to_dict(), "store": self.store,
                "train": self.train.tolist(), "val": self.val.tolist(), "targets_file": self.targets_file,
                "input_stats": list(self.input_stats), "storage": self.storage, "attempt_name": self.attempt_name,
                "init_from": self.init_from, "resume_from": self.resume_from, "use_gpu": self.use_gpu,
                "threads": self.threads, "progress": self.progress}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainJob":
        return cls(**{**d, "config": TrainConfig.model_validate(d["config"]), "card": ModelCard.from_dict(d["card"]),
                      "train": np.asarray(d["train"], dtype=np.int64), "val": np.asarray(d["val"], dtype=np.int64),
                      "input_stats": tuple(d["input_stats"])})


@dataclass(frozen=True, eq=False)
class Prepared:
    """The driver's decisions for a run (see :func:`prepare`)."""

    card: ModelCard
    split: Split
    targets: np.ndarray
    input_stats: tuple[float, float]
    init_from: str | None = None
    start_epoch: int = 0
    complete: bool = False  # the checkpoint resumed from ends the run: every epoch done, or it stopped early


def training_split(ds: DatasetStore, val_fraction: float, seed: int, max_train: int | None = None) -> Split:
    """The store's split (a processed store has one), else a seeded permutation (recorded in
    the model card as such); a store whose metadata names a split it lacks is refused."""
    if ds.meta.get("split") is not None and "split" not in ds.group:
        raise StoreError(f"{ds.path}: zarr.json describes a split but the 'split' array is missing; "
                         "the store is incomplete: process it again")
    return make_split(ds, val_fraction, seed, max_train)


def describe_training_set(store: DatasetStore, split: Split) -> dict[str, Any]:
    return {**lineage_entry(store), "lineage": store.meta.get("lineage", []), "n_samples": store.n_samples,
            "split": split.describe(), "config": store.meta.get("config", {})}


def probe_architecture(cfg: TrainConfig, shape: list[int]) -> tuple[Architecture, int]:
    """(architecture, trainable parameters) for ``cfg`` on images of ``shape``: built once and
    one image put through it, so options that do not fit are refused now."""
    n_out = len(cfg.classes.edges) - 1 if cfg.task == "classify" else len(cfg.data.labels)
    arch = Architecture(name=cfg.model.arch, kwargs={**cfg.model.options, "input_shape": shape, "outputs": n_out})
    try:
        probe = build(arch.name, **arch.kwargs)
        probe.freeze(cfg.transfer.freeze)
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from None
    try:
        with torch.no_grad():
            probe.eval()(torch.zeros((1, *shape)))
    except RuntimeError as exc:
        raise ConfigError(f"model: {arch.describe()} does not take the store's {shape} images "
                          f"({str(exc).splitlines()[0]})") from None
    return arch, count_parameters(probe)


def _check_augment(cfg: TrainConfig, shape: list[int]) -> None:
    names = cfg.data.labels
    square = len(shape) == 2 and shape[0] == shape[1]
    if cfg.data.augment == "d4" and (not set(QUAT) <= set(names) or cfg.task == "classify" or not square):
        raise ConfigError("data.augment = d4 needs square scattering images and the labels q0, q1, q2, q3 (regression)")


def _inherit(cfg: TrainConfig, ds: DatasetStore, arch: Architecture, latest: Path | None,
             scaling: LabelScaling | None, stats: tuple[float, float]):
    """(scaling, input stats, base card) taken over from the model transferred from and the
    checkpoint resumed from, after checking that both fit this run."""
    names, pre = list(cfg.data.labels), store_preprocessing(ds)
    base = None
    if cfg.transfer.from_model:
        base = read_card(cfg.transfer.from_model)
        check_compatible(base, architecture=arch, preprocessing=pre, labels=names, what="model to transfer from",
                         where=cfg.transfer.from_model)
        load_network(cfg.transfer.from_model)  # its weights load and fit (a damaged file: refused now)
        scaling, stats = base.scaling() or scaling, base.input.mean_std
    if latest is not None:
        prev = read_card(latest)
        check_compatible(prev, architecture=arch, preprocessing=pre, labels=names, where=latest)
        have = prev.training_set.config_hash if prev.training_set else None
        if have != ds.config_hash:
            raise ModelError(f"{latest}: the checkpoint was trained on another store (config hash "
                             f"{str(have)[:12]} != {ds.config_hash[:12]}); resume with the same --store")
        scaling, stats = prev.scaling() or scaling, prev.input.mean_std
    return scaling, tuple(stats), base


def _card(cfg: TrainConfig, ds: DatasetStore, split: Split, arch: Architecture, n_trainable: int, y: np.ndarray,
          scaling: LabelScaling | None, stats: tuple[float, float], base: ModelCard | None) -> ModelCard:
    names, shape = list(cfg.data.labels), list(ds.images.shape[1:])
    train_y = y[split.train]
    return ModelCard(
        architecture=arch, trainable_parameters=n_trainable, task=cfg.task, labels=names,
        classes=Classes(**cfg.classes.model_dump()) if cfg.task == "classify" else None,
        label_scaling=Scaling(**scaling.to_dict()) if scaling else None,
        label_stats={n: LabelStats(mean=float(train_y[:, j].mean()), min=float(train_y[:, j].min()),
                                   max=float(train_y[:, j].max())) for j, n in enumerate(names)},
        input=InputSpec(shape=shape, dims=ds.meta.get("image_dims", [])[1:], mean_std=stats),
        preprocessing=store_preprocessing(ds),
        postprocess=Postprocess(group="I", quaternion=QUAT) if set(QUAT) <= set(names) else None,
        training_set=TrainingSet(**describe_training_set(ds, split)),
        transfer=TransferRecord(from_model=str(cfg.transfer.from_model), freeze=cfg.transfer.freeze,
                                base_training_set=base.training_set) if base else None,
        training=TrainingRecord(config=cfg.resolved()),
        code_version=code_version(), created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


def prepare(cfg: TrainConfig, ds: DatasetStore, latest: Path | None = None) -> Prepared:
    """Every decision of a run on ``ds`` (resuming ``latest`` when given); writes nothing."""
    names = list(cfg.data.labels)
    split = training_split(ds, cfg.data.val_fraction, cfg.data.split_seed, cfg.data.max_train)
    y = read_labels(ds, names)
    shape = list(ds.images.shape[1:])
    arch, n_trainable = probe_architecture(cfg, shape)
    _check_augment(cfg, shape)
    classify = cfg.task == "classify"
    scaling = None if classify else LabelScaling.fit(names, y[split.train], cfg.data.scaling)
    scaling, stats, base = _inherit(cfg, ds, arch, latest, scaling, image_stats(ds, split.train))
    targets = (class_index(y[:, names.index(cfg.classes.label)], cfg.classes.edges) if classify
               else scaling.transform(y).astype(np.float32))
    card = _card(cfg, ds, split, arch, n_trainable, y, scaling, stats, base)
    prev = read_card(latest) if latest else None
    complete = prev is not None and (prev.epoch >= cfg.optim.epochs or bool(prev.training and prev.training.stopped_early))
    return Prepared(card=card, split=split, targets=targets, input_stats=stats,
                    init_from=cfg.transfer.from_model if base else None,
                    start_epoch=prev.epoch if prev else 0, complete=complete)


__all__ = ["Prepared", "TrainJob", "describe_training_set", "prepare", "probe_architecture", "training_split"]
