"""Training with Ray Train (``ray.train.torch.TorchTrainer``) from a processed dataset store.

A training config (YAML, validated; presets in ``configs/train/<preset>/<size>.yaml``)::

    model:  {arch: pmd-cnn, options: {dropout: 0.2}}
    data:   {labels: [R], scaling: minmax, val_fraction: 0.2, split_seed: 0}
    task:   regress                     # or classify, with classes: {label: R, edges: [1, ..., 8]}
    optim:  {optimizer: sgd, lr: 1.0e-3, batch_size: 30, epochs: 30, lr_drop_epochs: [20]}
    early_stopping: {patience: null}
    run:    {workers: 1, use_gpu: auto, backend: ray}
    transfer: {from_model: null, freeze: 0}

:func:`train` prepares everything on the driver (split, label scaling, input statistics,
the model description with the store's preprocessing and lineage, compatibility checks of
a checkpoint to resume or a model to transfer from, the Ray resources) and runs
:func:`train_func_per_worker` on ``run.workers`` Ray Train workers (GPU when present).  Every
epoch rank 0 writes a checkpoint (weights, description with the history, optimizer state)
that Ray stores under ``OUT/checkpoints/attempt-K/epoch-NNNN``; ``resume=True`` continues
from the latest one.  At the end the best (or last) checkpoint becomes the model artefact
``OUT/model`` and the loss curves ``OUT/loss.png``.  ``run.backend: local`` runs the same
function in-process without Ray (one worker; for notebooks and quick sweeps).

The run folder is the project's own: its manifest ``factory-run.json`` (schema
``factory.train-run``) marks it, and it holds only the names in :data:`RUN_NAMES`.  Nothing
is written before every check has passed; a new run folder is built in a hidden sibling and
renamed into place (:func:`factory.outputs.staged_output`), and ``overwrite=True`` replaces
only a folder :func:`is_run_folder` recognises.  A worker writes a checkpoint only while the
driver of its Ray job is alive, so a killed ``factory train`` leaves no work writing into
the folder; every checkpoint is complete in itself (weights, optimizer state and the history
up to its epoch), so ``--resume`` continues from whichever one is the latest.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from factory.config import _format_validation, apply_overrides, configs_dir, read_yaml
from factory.errors import ConfigError, OutputError, StoreError
from factory.outputs import check_disjoint, check_replaceable, staged_output, user_path
from factory.store import DatasetStore, code_version, lineage_entry

from .artifact import (DESCRIPTION, OPTIMIZER, WEIGHTS, ModelError, check_compatible, describe_arch, load_model,
                       load_state, load_torch, read_description, save_model)
from .data import ChunkStream, D4Augment, LabelScaling, class_index, image_stats, make_split, read_labels
from .networks import build, count_parameters, from_description

QUAT = ["q0", "q1", "q2", "q3"]


# -- the config ---------------------------------------------------------------------------
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
        raise ConfigError(f"{source}: {_format_validation(exc)}") from None


def load_train_config(spec: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """A preset (``pmd-cnn/small``) or YAML file, with ``key.path=value`` overrides, validated."""
    path = resolve_train_config(spec)
    return config_from_dict(apply_overrides(read_yaml(path), overrides or []), source=str(spec))


# -- output folders the project made -----------------------------------------------------------
MANIFEST = "factory-run.json"
MANIFEST_VERSION = 1
RUN_SCHEMA = "factory.train-run"
#: every name the trainer (and ``factory evaluate RUN/model``) writes into a run folder
RUN_NAMES = frozenset({MANIFEST, "targets.npy", "checkpoints", "model", "history.json", "loss.png", "eval"})
#: every name a model folder holds (the artefact and its exports)
MODEL_NAMES = frozenset({WEIGHTS, DESCRIPTION, "model.pt2", "model.ts", "model.onnx"})


def read_manifest(folder: str | Path, schema: str) -> dict[str, Any] | None:
    """The manifest of an output folder the project made with ``schema``; None if there is none."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_bytes())
    except (OSError, ValueError):
        return None
    ok = isinstance(data, dict) and data.get("schema") == schema and data.get("version") == MANIFEST_VERSION
    return data if ok else None


def write_manifest(folder: Path, data: dict[str, Any]) -> None:
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, folder / MANIFEST)


def _empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def _only(path: Path, names: frozenset[str], pattern: str | None = None) -> bool:
    """Every entry of ``path`` is one of ``names`` (or matches ``pattern``), or a hidden
    temporary of one of them (``.NAME.tmp``, ``.NAME.factory-tmp-...``)."""
    def ours(name: str) -> bool:
        if name.startswith("."):
            return any(name[1:].startswith(n + ".") for n in names)
        return name in names or (pattern is not None and re.fullmatch(pattern, name) is not None)

    return all(ours(e.name) for e in os.scandir(path))


def owned_output(schema: str, names: frozenset[str], pattern: str | None = None):
    """A recogniser for :func:`staged_output`: an empty folder, or one holding the project's
    manifest with ``schema`` and nothing but ``names``."""
    def recognise(path: Path) -> bool:
        return _empty_dir(path) or (read_manifest(path, schema) is not None and _only(path, names | {MANIFEST}, pattern))

    return recognise


is_run_folder = owned_output(RUN_SCHEMA, RUN_NAMES)


def _is_model_folder(path: Path) -> bool:
    try:
        read_description(path)
    except ModelError:
        return False
    return _only(path, MODEL_NAMES)


def _weights_load(folder: Path) -> bool:
    try:
        load_state(folder)
    except ModelError:
        return False
    return True


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def training_split(ds: DatasetStore, val_fraction: float, seed: int, max_train: int | None = None):
    """The store's split (a processed store has one), else a seeded permutation (recorded in
    the model description as such); a store whose metadata names a split it lacks is refused."""
    if ds.meta.get("split") is not None and "split" not in ds.group:
        raise StoreError(f"{ds.path}: zarr.json describes a split but the 'split' array is missing; "
                         "the store is incomplete: process it again")
    return make_split(ds, val_fraction, seed, max_train)


# -- checkpoints on disk --------------------------------------------------------------------
def checkpoint_dirs(out: Path) -> list[tuple[int, int, Path]]:
    """(epoch, attempt, folder) of every complete checkpoint of a run folder, oldest first."""
    found = []
    for d in (Path(out) / "checkpoints").glob("attempt-*/epoch-*"):
        try:
            attempt = int(d.parent.name.split("-")[1])
            desc = json.loads((d / DESCRIPTION).read_text())
            if not (d / WEIGHTS).is_file() or not (d / OPTIMIZER).is_file():
                continue
            found.append((int(desc["training"]["epoch"]), attempt, d))
        except (OSError, ValueError, KeyError, IndexError):
            continue  # a checkpoint cut short by a kill: skip it
    return sorted(found)


def latest_checkpoint(out: Path) -> Path | None:
    for _, _, d in reversed(checkpoint_dirs(out)):
        try:
            load_state(d)
            load_torch(d / OPTIMIZER, "optimizer state")
            return d
        except ModelError:  # damaged (cut short by a kill): fall back to the previous one
            continue
    return None


# -- the per-worker training loop -------------------------------------------------------------
class _LocalSession:
    """What the loop needs from Ray Train, for an in-process single-worker run."""

    rank, world_size = 0, 1

    def __init__(self, job):
        self.job = job
        use_gpu = job["use_gpu"] and torch.cuda.is_available()
        self.device = torch.device("cuda" if use_gpu else "cpu")

    def resume_dir(self):
        return self.job.get("resume_from")

    def prepare_model(self, model):
        return model.to(self.device)

    def prepare_loader(self, loader):
        return loader

    def report(self, metrics, folder, name):
        if folder is None:
            return
        dest = Path(self.job["storage"]) / self.job["attempt_name"] / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.copytree(folder, tmp, dirs_exist_ok=True)
        os.replace(tmp, dest)
        keep = self.job["keep_checkpoints"]
        if keep:  # as Ray does: the `keep` best by validation loss, and the latest
            mine = sorted(dest.parent.glob("epoch-*"))
            score = lambda d: json.loads((d / DESCRIPTION).read_text())["training"]["history"][-1]["val_loss"]
            keepers = set(sorted(mine, key=score)[:keep]) | {dest}
            for d in mine:
                if d not in keepers:
                    shutil.rmtree(d, ignore_errors=True)


class _RaySession:
    def __init__(self, job):
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self._ckpt = ray.train.get_checkpoint()
        self.job = job

    def resume_dir(self):
        if self._ckpt is None:  # no restart of this attempt's worker group: the driver's choice
            return self.job.get("resume_from")
        self._tmp = tempfile.mkdtemp(prefix="factory-resume-")
        return self._ckpt.to_directory(self._tmp)

    def prepare_model(self, model):
        import ray.train.torch

        return ray.train.torch.prepare_model(model)

    def prepare_loader(self, loader):
        import ray.train.torch

        return ray.train.torch.prepare_data_loader(loader, add_dist_sampler=False)

    def report(self, metrics, folder, name):
        import ray.train

        if folder is not None:
            _check_driver_alive()
        ckpt = ray.train.Checkpoint.from_directory(folder) if folder is not None else None
        ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=name)


class DriverGone(RuntimeError):
    """The driver of this Ray job has exited: its workers stop without writing."""


def _check_driver_alive() -> None:
    """Raise :class:`DriverGone` unless the driver of this worker's Ray job is still alive.

    Ray ends the workers of a killed driver, but only a moment later: enough to finish an
    epoch and write its checkpoint into the user's folder.  Asked of the GCS just before each
    checkpoint, this covers a driver killed with its embedded Ray (the GCS is gone too) and a
    driver of a long-lived cluster (the GCS marks its job dead)."""
    import ray

    job = ray.get_runtime_context().get_job_id()
    gcs = ray._private.worker.global_worker.gcs_client
    try:
        jobs = gcs.get_all_job_info(job_or_submission_id=job, skip_submission_job_info_field=True,
                                    skip_is_running_tasks_field=True, timeout=30)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the GCS: the cluster is going away
        raise DriverGone(f"the Ray cluster is unreachable ({type(exc).__name__}); stopping without a checkpoint") from None
    if not any(k.hex() == job and not v.is_dead for k, v in jobs.items()):
        raise DriverGone(f"the driver of Ray job {job} has exited; stopping without a checkpoint")


def _allreduce(values: list[float], device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
    return t.tolist()


def train_func_per_worker(job: dict[str, Any]) -> None:
    """One data-parallel worker (the function TorchTrainer runs); ``job`` is plain data."""
    sess = _RaySession(job) if job["backend"] == "ray" else _LocalSession(job)
    torch.set_num_threads(max(1, int(job["threads"])))
    cfg = TrainConfig.model_validate(job["config"])
    opt_cfg = cfg.optim
    rank, world = sess.rank, sess.world_size
    torch.manual_seed(cfg.run.seed)
    model = from_description(job["description"]["architecture"])
    desc = json.loads(json.dumps(job["description"]))
    history: list[dict[str, Any]] = []
    start = 0
    resume = sess.resume_dir()
    opt_state = None
    if resume:
        model.load_state_dict(load_state(resume))
        prev = read_description(resume)
        history = prev["training"]["history"]
        start = int(prev["training"]["epoch"])
        opt_state = load_torch(Path(resume) / OPTIMIZER, "optimizer state")
    elif job.get("init_from"):
        model.load_state_dict(load_state(job["init_from"]))
    else:
        model.norm.set(*job["input_stats"])
    model.freeze(cfg.transfer.freeze)
    model = sess.prepare_model(model)
    net = getattr(model, "module", model)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optim.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=opt_cfg.lr, momentum=opt_cfg.momentum, weight_decay=opt_cfg.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=opt_cfg.lr, weight_decay=opt_cfg.weight_decay)
    if opt_state is not None:
        opt.load_state_dict(opt_state)

    classify = cfg.task == "classify"
    targets = np.load(job["targets_file"])
    train_idx, val_idx = np.asarray(job["train"]), np.asarray(job["val"])
    steps = ChunkStream.steps_per_epoch(len(train_idx), opt_cfg.batch_size, world)
    common = dict(path=job["store"], targets=targets, seed=cfg.run.seed, rank=rank, world_size=world,
                  window_chunks=cfg.data.window_chunks)
    augment = D4Augment(labels=desc["labels"], scaling=desc["label_scaling"]) if cfg.data.augment == "d4" else None
    train_ds = ChunkStream(indices=train_idx, batch_size=opt_cfg.batch_size, shuffle=True, steps=steps,
                           augment=augment, **common)
    val_ds = ChunkStream(indices=val_idx, batch_size=cfg.run.eval_batch_size, shuffle=False, **common)
    loader = sess.prepare_loader(torch.utils.data.DataLoader(train_ds, batch_size=None))
    val_loader = torch.utils.data.DataLoader(val_ds, batch_size=None)
    loss_fn = torch.nn.CrossEntropyLoss() if classify else torch.nn.MSELoss()
    scaling = LabelScaling.from_dict(desc["label_scaling"]) if desc.get("label_scaling") else None
    labels = desc["labels"]
    best = min((h["val_loss"] for h in history), default=math.inf)
    bad = 0
    for h in history:  # epochs since the best one (early stopping survives a resume)
        bad = 0 if h["val_loss"] <= best else bad + 1
    stop_after = cfg.run.stop_after_epoch
    for epoch in range(start, opt_cfg.epochs):
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = opt_cfg.lr_at(epoch)
        train_ds.set_epoch(epoch)
        torch.manual_seed(cfg.run.seed * 1_000_003 + epoch * 1009 + rank)
        model.train()
        tot, n = 0.0, 0
        for x, y in loader:
            x, y = x.to(sess.device, non_blocking=True), y.to(sess.device, non_blocking=True)
            out = model(x)
            loss = loss_fn(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot += loss.item() * len(x)
            n += len(x)
        t_train = time.perf_counter() - t0
        # validation: this rank's share with the plain module (no collectives), then summed
        net.eval()
        sums = np.zeros(2 + len(labels))
        with torch.no_grad():
            for x, y in val_loader:
                x, y = x.to(sess.device), y.to(sess.device)
                out = net(x)
                sums[0] += float(loss_fn(out, y)) * len(x)
                sums[1] += len(x)
                if classify:
                    sums[2] += float((out.argmax(1) == y).sum())
                else:
                    pred = scaling.inverse(out.double().cpu().numpy())
                    true = scaling.inverse(y.double().cpu().numpy())
                    sums[2:] += np.abs(pred - true).sum(0)
        red = _allreduce([tot, n, *sums.tolist()], sess.device)
        tot, n, vsum, vn, rest = red[0], red[1], red[2], red[3], red[4:]
        metrics = {"epoch": epoch + 1, "lr": opt_cfg.lr_at(epoch), "train_loss": tot / max(n, 1),
                   "val_loss": vsum / max(vn, 1), "epoch_s": time.perf_counter() - t0,
                   "train_images_per_s": n / t_train if t_train > 0 else float("nan"), "workers": world,
                   "device": str(sess.device)}
        if classify:
            metrics["val_accuracy"] = rest[0] / max(vn, 1)
        else:
            metrics.update({f"val_mae_{name}": rest[j] / max(vn, 1) for j, name in enumerate(labels)})
        history.append(metrics)
        improved = metrics["val_loss"] < best - cfg.early_stopping.min_delta
        best = min(best, metrics["val_loss"])
        bad = 0 if improved else bad + 1
        stop = cfg.early_stopping.patience is not None and bad >= cfg.early_stopping.patience
        desc["training"] = {**desc["training"], "epoch": epoch + 1, "history": history, "stopped_early": stop}
        name = f"epoch-{epoch + 1:04d}"
        with tempfile.TemporaryDirectory(prefix="factory-ckpt-") as tmp:
            folder = None
            if rank == 0:
                save_model(tmp, net, desc)
                torch.save(opt.state_dict(), Path(tmp) / OPTIMIZER)
                folder = tmp
                if job.get("progress"):
                    extra = " ".join(f"{k[8:]}={v:.4g}" for k, v in metrics.items() if k.startswith("val_mae_"))
                    print(f"[train] epoch {epoch + 1}/{opt_cfg.epochs} train_loss={metrics['train_loss']:.4g} "
                          f"val_loss={metrics['val_loss']:.4g} {extra} ({metrics['epoch_s']:.1f} s)", flush=True)
            sess.report(metrics, folder, name)
        if stop or (stop_after is not None and epoch + 1 >= stop_after):
            break


# -- the driver -----------------------------------------------------------------------------
@dataclass
class TrainResult:
    out: str
    model: str
    epochs_done: int
    start_epoch: int
    best_epoch: int
    best_val_loss: float
    final: dict[str, Any]
    wall_s: float
    train_images_per_s: float
    stopped_early: bool
    where: str
    history: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _use_gpu(cfg: TrainConfig) -> bool:
    if cfg.run.use_gpu != "auto":
        return bool(cfg.run.use_gpu)
    if cfg.run.backend == "ray":
        import ray

        return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) >= 1
    return torch.cuda.is_available()


def describe_training_set(store: DatasetStore, split) -> dict[str, Any]:
    return {**lineage_entry(store), "lineage": store.meta.get("lineage", []), "n_samples": store.n_samples,
            "split": split.describe(), "config": store.meta.get("config", {})}


def train(config: TrainConfig, store: str | Path | None, out: str | Path, *, resume: bool = False,
          overwrite: bool = False, address: str | None = None, progress: bool = True) -> TrainResult:
    """Train ``config`` on ``store`` into the run folder ``out``; see the module docstring."""
    store_path = store or config.data.store
    if not store_path:
        raise ConfigError("no training store: pass --store STORE or set data.store in the config")
    # every path absolute once, here: Ray Train workers run in another directory
    store_path, out, cfg = user_path(store_path), user_path(out), config
    if cfg.transfer.from_model:
        cfg = cfg.model_copy(update={"transfer": cfg.transfer.model_copy(
            update={"from_model": str(user_path(cfg.transfer.from_model))})})
    check_disjoint(out, [store_path, *([cfg.transfer.from_model] if cfg.transfer.from_model else [])])
    in_place = resume and not out.is_symlink() and read_manifest(out, RUN_SCHEMA) is not None
    if resume and not in_place and (out.is_symlink() or out.exists() and not _empty_dir(out)):
        raise OutputError(f"{out} is not a training run folder made by factory (no valid {MANIFEST}); "
                          "nothing to resume there")
    replace = overwrite or _empty_dir(out)
    if not in_place:
        check_replaceable(out, overwrite=replace, what="training run folder", recognise=is_run_folder)
    ds = DatasetStore.open(store_path)
    latest = latest_checkpoint(out) if in_place else None

    names = list(cfg.data.labels)
    split = training_split(ds, cfg.data.val_fraction, cfg.data.split_seed, cfg.data.max_train)
    y = read_labels(ds, names)
    shape = list(ds.images.shape[1:])
    preprocessing = ds.meta.get("preprocessing")
    classify = cfg.task == "classify"
    n_out = len(cfg.classes.edges) - 1 if classify else len(names)
    arch = {"name": cfg.model.arch, "kwargs": {**cfg.model.options, "input_shape": shape, "outputs": n_out}}
    try:
        probe = build(arch["name"], **arch["kwargs"])
        probe.freeze(cfg.transfer.freeze)
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from None
    try:  # one image through it: options that do not fit the store's images are refused now
        with torch.no_grad():
            probe.eval()(torch.zeros((1, *shape)))
    except RuntimeError as exc:
        raise ConfigError(f"model: {describe_arch(arch)} does not take the store's {shape} images "
                          f"({str(exc).splitlines()[0]})") from None
    n_trainable = count_parameters(probe)
    del probe
    if cfg.data.augment == "d4" and (not set(QUAT) <= set(names) or classify or len(shape) != 2 or shape[0] != shape[1]):
        raise ConfigError("data.augment = d4 needs square scattering images and the labels q0, q1, q2, q3 (regression)")

    scaling = None if classify else LabelScaling.fit(names, y[split.train], cfg.data.scaling)
    input_stats = image_stats(ds, split.train)
    base = None
    if cfg.transfer.from_model:
        base = read_description(cfg.transfer.from_model)
        check_compatible(base, architecture=arch, preprocessing=preprocessing, labels=names,
                         what="model to transfer from", where=cfg.transfer.from_model)
        load_model(cfg.transfer.from_model)  # its weights load and fit (a damaged file: refused now)
        scaling = LabelScaling.from_dict(base["label_scaling"]) if base.get("label_scaling") else scaling
        input_stats = tuple(base["input"]["mean_std"])
    if latest is not None:
        prev = read_description(latest)
        check_compatible(prev, architecture=arch, preprocessing=preprocessing, labels=names, where=latest)
        if prev["training_set"].get("config_hash") != ds.config_hash:
            raise ModelError(f"{latest}: the checkpoint was trained on another store (config hash "
                             f"{str(prev['training_set'].get('config_hash'))[:12]} != {ds.config_hash[:12]}); "
                             "resume with the same --store")
        scaling = LabelScaling.from_dict(prev["label_scaling"]) if prev.get("label_scaling") else scaling
        input_stats = tuple(prev["input"]["mean_std"])

    targets = (class_index(y[:, names.index(cfg.classes.label)], cfg.classes.edges) if classify
               else scaling.transform(y).astype(np.float32))
    train_y = y[split.train]
    description = {
        "architecture": arch,
        "trainable_parameters": n_trainable,
        "task": cfg.task,
        "labels": names,
        "classes": cfg.classes.model_dump() if classify else None,
        "label_scaling": scaling.to_dict() if scaling else None,
        "label_stats": {n: {"mean": float(train_y[:, j].mean()), "min": float(train_y[:, j].min()),
                            "max": float(train_y[:, j].max())} for j, n in enumerate(names)},
        "input": {"shape": shape, "dims": ds.meta.get("image_dims", [])[1:], "dtype": "float32",
                  "mean_std": list(input_stats)},
        "preprocessing": preprocessing,
        "postprocess": {"group": "I", "quaternion": QUAT} if set(QUAT) <= set(names) else None,
        "training_set": describe_training_set(ds, split),
        "transfer": {"from_model": str(cfg.transfer.from_model), "freeze": cfg.transfer.freeze,
                     "base_training_set": base["training_set"]} if base else None,
        "training": {"config": cfg.resolved(), "epoch": 0, "history": []},
        "code_version": code_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if cfg.run.backend == "local":
        use_gpu, threads = _use_gpu(cfg), cfg.run.cpus_per_worker or torch.get_num_threads()
        where = f"in-process ({'GPU' if use_gpu and torch.cuda.is_available() else 'CPU'})"
    else:
        use_gpu, threads, where = _plan_ray(cfg, address)

    # everything is checked: only now write into the run folder
    storage = out / "checkpoints"
    attempts = sorted(int(p.name.split("-")[1]) for p in storage.glob("attempt-*")) if in_place else []
    attempt = (attempts[-1] + 1) if attempts else 0
    entry = {"attempt": attempt, "store": str(store_path), "resumed_from": str(latest) if latest else None,
             "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if in_place:
        run_info = read_manifest(out, RUN_SCHEMA)
        run_info["attempts"].append(entry)
        write_manifest(out, run_info)
        _save_npy(out / "targets.npy", targets)
    else:
        with staged_output(out, overwrite=replace, what="training run folder", recognise=is_run_folder) as tmp:
            tmp.mkdir()
            write_manifest(tmp, {"schema": RUN_SCHEMA, "version": MANIFEST_VERSION, "config": cfg.resolved(),
                                 "attempts": [entry]})
            _save_npy(tmp / "targets.npy", targets)

    job = {
        "config": cfg.resolved(), "description": description, "store": str(store_path),
        "train": split.train.tolist(), "val": split.val.tolist(), "targets_file": str(out / "targets.npy"),
        "input_stats": list(input_stats), "init_from": cfg.transfer.from_model if base else None,
        "backend": cfg.run.backend, "storage": str(storage), "attempt_name": f"attempt-{attempt}",
        "keep_checkpoints": cfg.run.keep_checkpoints, "progress": progress,
        "resume_from": str(latest) if latest else None, "use_gpu": use_gpu, "threads": threads,
    }
    start_epoch = int(read_description(latest)["training"]["epoch"]) if latest else 0
    t0 = time.perf_counter()
    if cfg.run.backend == "local":
        train_func_per_worker(job)
    else:
        _fit_ray(cfg, job)
    wall = time.perf_counter() - t0
    return _finish(out, cfg, start_epoch, wall, where)


def _plan_ray(cfg: TrainConfig, address: str | None) -> tuple[bool, int, str]:
    """Connect to Ray and check that the workers fit: (use GPU, CPUs per worker, description)."""
    from cluster.connect import connect

    target = connect(address)
    use_gpu = _use_gpu(cfg)
    cpw = cfg.run.cpus_per_worker or max(1, target.cpus // cfg.run.workers)
    if cfg.run.workers * cpw > target.cpus and not use_gpu:
        raise ConfigError(f"run.workers = {cfg.run.workers} x {cpw} CPUs does not fit the {target.cpus} CPUs of "
                          f"{target.describe()}; lower run.workers or run.cpus_per_worker")
    return use_gpu, cpw, (f"Ray Train, {cfg.run.workers} worker(s) x {cpw} CPU{' + GPU' if use_gpu else ''} "
                          f"on {target.describe()}")


def _fit_ray(cfg: TrainConfig, job: dict[str, Any]) -> None:
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        train_func_per_worker,
        train_loop_config=job,
        scaling_config=ScalingConfig(num_workers=cfg.run.workers, use_gpu=job["use_gpu"],
                                     resources_per_worker={"CPU": job["threads"]}),
        run_config=RunConfig(
            name=job["attempt_name"], storage_path=job["storage"],
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.run.keep_checkpoints,
                                               checkpoint_score_attribute="val_loss", checkpoint_score_order="min"),
            failure_config=FailureConfig(max_failures=cfg.run.max_failures),
            logging_config=LoggingConfig(log_level=cfg.run.ray_log_level),
        ),
    )
    try:
        trainer.fit()
    except Exception as exc:  # noqa: BLE001 - Ray wraps the worker's exception
        raise ModelError(f"training failed: {_root_cause(exc)}") from exc


def _root_cause(exc: BaseException) -> str:
    seen = exc
    while True:
        nxt = getattr(seen, "cause", None) or seen.__cause__
        if nxt is None or nxt is seen:
            break
        seen = nxt
    lines = [l for l in str(seen).splitlines() if l.strip()]
    return f"{type(seen).__name__}: {lines[-1] if lines else ''}"


def _finish(out: Path, cfg: TrainConfig, start_epoch: int, wall: float, where: str) -> TrainResult:
    ckpts = checkpoint_dirs(out)
    if not ckpts:
        raise ModelError(f"{out}: training wrote no checkpoint")
    last = ckpts[-1][2]
    desc = read_description(last)
    history = desc["training"]["history"]
    if cfg.run.select == "best":  # the lowest validation loss; of equals the latest
        key = lambda c: (history[c[0] - 1]["val_loss"] if c[0] - 1 < len(history) else math.inf, -c[0], -c[1])
    else:
        key = lambda c: (-c[0], -c[1])
    # never one whose weights were cut short (a run killed while a checkpoint was written)
    chosen = next((d for _, _, d in sorted(ckpts, key=key) if _weights_load(d)), None)
    if chosen is None:
        raise ModelError(f"{out}: no checkpoint with readable weights")
    model_dir = out / "model"
    final_desc = read_description(chosen)
    final_desc["training"]["history"] = history  # the whole run, for the record
    final_desc["training"]["selected_epoch"] = final_desc["training"]["epoch"]
    with staged_output(model_dir, overwrite=True, what="model folder", recognise=_is_model_folder) as tmp:
        tmp.mkdir()
        shutil.copy2(chosen / WEIGHTS, tmp / WEIGHTS)
        (tmp / DESCRIPTION).write_text(json.dumps(final_desc, indent=1))
    (out / "history.json").write_text(json.dumps(history, indent=1))
    from .evaluate import plot_history

    plot_history(history, out / "loss.png", title=cfg.name or cfg.model.arch)
    sel = history[final_desc["training"]["epoch"] - 1]
    new = history[start_epoch:]
    ips = [h["train_images_per_s"] for h in new if np.isfinite(h.get("train_images_per_s", np.nan))]
    return TrainResult(
        out=str(out), model=str(model_dir), epochs_done=len(history), start_epoch=start_epoch,
        best_epoch=int(final_desc["training"]["epoch"]), best_val_loss=float(sel["val_loss"]), final=sel,
        wall_s=wall, train_images_per_s=float(np.mean(ips)) if ips else float("nan"),
        stopped_early=bool(desc["training"].get("stopped_early")), where=where, history=history,
    )


__all__ = ["TrainConfig", "TrainResult", "load_train_config", "train", "train_func_per_worker", "train_presets",
           "latest_checkpoint", "checkpoint_dirs", "is_run_folder", "owned_output", "read_manifest", "write_manifest",
           "training_split", "MANIFEST"]
