"""Training from a processed dataset store: :func:`train`, and the names the CLIs and tests use.

:func:`train` prepares everything on the driver (:func:`models.train_job.prepare`: split,
label scaling, input statistics, the model card with the store's preprocessing and lineage,
compatibility checks of a checkpoint to resume or a model to transfer from; then the Ray
resources), and only then writes into the run folder and runs the pure-torch loop
(:mod:`models.train_loop`) in-process (``run.backend: local``) or on ``run.workers`` Ray
Train workers (:mod:`models.train_ray`, GPU when present).  Every epoch rank 0 writes a
checkpoint (weights, model card with the history, optimizer state); ``resume=True``
continues from the latest one.  At the end the best (or last) checkpoint becomes the model
``OUT/model`` and the loss curves ``OUT/loss.png``.

The modules, by what they hold:

- :mod:`models.train_config`: the validated training config (YAML presets, overrides);
- :mod:`models.train_runs`: the run folder, its manifest and safe overwrite, checkpoints;
- :mod:`models.train_job`: the driver's decisions and the typed :class:`TrainJob`;
- :mod:`models.train_loop`: the training loop in plain torch;
- :mod:`models.train_ray`: the thin Ray Train adapter (the only one importing Ray).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from dataclasses import replace as replace_fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from factory.errors import ConfigError
from factory.outputs import check_disjoint, publish_replacement, replacement_path, user_path
from factory.writer_lock import local_writer_lock
from factory.store import DatasetStore, StoreLocation, is_url, store_location

from .artifact import ModelError, read_card
from .train_config import (TrainConfig, config_from_dict, load_train_config, resolve_train_config,  # noqa: F401
                           train_presets)
from .train_job import TrainJob, describe_training_set, prepare, training_split  # noqa: F401
from .train_loop import run_worker, train_local
from .train_runs import (MANIFEST, MANIFEST_VERSION, MODEL_NAMES, RUN_NAMES, RUN_SCHEMA,  # noqa: F401
                         check_run_output, checkpoint_dirs, empty_dir, is_run_folder, latest_checkpoint, owned_output,
                         publish_model, read_manifest, select_checkpoint, start_attempt, write_manifest)

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
    train_images_per_s: float | None  # mean over the epochs of this run (None: none trained)
    stopped_early: bool
    where: str
    history: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def train(config: TrainConfig, store: str | Path | None, out: str | Path, *, resume: bool = False,
          overwrite: bool = False, address: str | None = None, progress: bool = True) -> TrainResult:
    """Train ``config`` on ``store`` into the run folder ``out``; see the module docstring.

    Parameters
    ----------
    config : TrainConfig
        The validated training config (``models.train_config.load_train_config``).
    store : str or pathlib.Path or None
        The processed dataset store to train on (a local path or a store URL); None takes
        the config's ``data.store``.
    out : str or pathlib.Path
        The run folder: checkpoints, ``model/`` (the selected checkpoint), ``history.json``,
        ``loss.png`` and the manifest.
    resume : bool, optional
        Continue the run in ``out`` from its latest checkpoint (nothing is trained when it is
        complete).
    overwrite : bool, optional
        Replace an existing run folder that factory made.
    address : str, optional
        The Ray cluster of ``run.backend: ray``; default ``RAY_ADDRESS``, else an embedded
        local Ray.
    progress : bool, optional
        Show progress bars.

    Returns
    -------
    TrainResult
        ``model`` (the model folder), ``epochs_done``, ``start_epoch``, ``best_epoch``,
        ``best_val_loss``, ``final`` (the selected epoch's record), ``history``, ``wall_s``,
        ``train_images_per_s``, ``stopped_early`` and ``where`` it ran.

    Raises
    ------
    ConfigError
        No store given, or the config does not fit the store (its images, its labels, the
        augmentation).
    StoreError
        The store is missing, incomplete or damaged.
    OutputError
        ``out`` exists and is not a run folder to resume or replace, or overlaps an input.
    ModelError
        The checkpoint to resume or the model to transfer from is damaged or does not match
        (another store, architecture or preprocessing).
    """
    cfg, store_path, out = _absolute(config, store, out)
    in_place, replace = check_run_output(out, resume=resume, overwrite=overwrite)
    with local_writer_lock(out, "training run folder"):  # one writer per run folder: a second is refused
        return _train(cfg, store_path, out, in_place, replace, address, progress)


def _train(cfg: TrainConfig, store_path: StoreLocation, out: Path, in_place: bool, replace: bool,
           address: str | None, progress: bool) -> TrainResult:
    ds = DatasetStore.open(store_path)
    latest = latest_checkpoint(out) if in_place else None
    plan = prepare(cfg, ds, latest)
    if plan.complete:  # --resume of a finished run: nothing to train, no Ray started
        return _finish(out, cfg, plan.start_epoch, 0.0, "nothing to do: the run is complete")
    use_gpu, threads, where = _placement(cfg, address)
    final = out
    if not in_place and replace and out.exists() and not empty_dir(out):  # --overwrite of a run: the new
        out = replacement_path(final)  # run trains beside the old one, which stays until it is finished
    try:
        # everything is checked: only now write into the run folder
        attempt = start_attempt(out, in_place=in_place, replace=replace, config=cfg.resolved(), store=store_path,
                                resumed_from=latest, targets=plan.targets)
        job = TrainJob(config=cfg, card=plan.card, store=str(store_path), train=plan.split.train,
                       val=plan.split.val, targets_file=str(out / "targets.npy"), input_stats=plan.input_stats,
                       storage=str(out / "checkpoints"), attempt_name=f"attempt-{attempt}",
                       init_from=plan.init_from, resume_from=str(latest) if latest else None, use_gpu=use_gpu,
                       threads=threads, progress=progress)
        t0 = time.perf_counter()
        if cfg.run.backend == "local":
            train_local(job)
        else:
            from .train_ray import fit

            fit(job)
        result = _finish(out, cfg, plan.start_epoch, time.perf_counter() - t0, where)
        if out != final:
            publish_replacement(out, final, what="training run folder", recognise=is_run_folder)
            result = replace_fields(result, out=str(final), model=str(final / "model"))
        return result
    except BaseException:
        if out != final:
            shutil.rmtree(out, ignore_errors=True)  # the unfinished new run; the old one is as it was
        raise


def _absolute(config: TrainConfig, store: str | Path | None, out: str | Path) -> tuple[TrainConfig, StoreLocation, Path]:
    """Every path absolute once, here (Ray Train workers run in another directory), and the
    output checked to lie outside the inputs."""
    store_path = store or config.data.store
    if not store_path:
        raise ConfigError("no training store: pass --store STORE or set data.store in the config")
    store_path, out, cfg = store_location(store_path), user_path(out), config  # a store may be a URL (s3://...)
    if cfg.transfer.from_model:
        cfg = cfg.model_copy(update={"transfer": cfg.transfer.model_copy(
            update={"from_model": str(user_path(cfg.transfer.from_model))})})
    check_disjoint(out, [*([] if is_url(store_path) else [store_path]),
                         *([cfg.transfer.from_model] if cfg.transfer.from_model else [])])
    return cfg, store_path, out


def _placement(cfg: TrainConfig, address: str | None) -> tuple[bool, int, str]:
    """(use GPU, CPU threads per worker, where it runs, in words)."""
    if cfg.run.backend == "ray":
        from .train_ray import plan

        return plan(cfg, address)
    use_gpu = torch.cuda.is_available() if cfg.run.use_gpu == "auto" else bool(cfg.run.use_gpu)
    threads = cfg.run.cpus_per_worker or torch.get_num_threads()
    return use_gpu, threads, f"in-process ({'GPU' if use_gpu and torch.cuda.is_available() else 'CPU'})"


def _finish(out: Path, cfg: TrainConfig, start_epoch: int, wall: float, where: str) -> TrainResult:
    """The model folder from the selected checkpoint (with the whole run's history), the
    history and its figure, and the result."""
    ckpts = checkpoint_dirs(out)
    if not ckpts:
        raise ModelError(f"{out}: training wrote no checkpoint")
    last = read_card(ckpts[-1][2])
    history = last.history
    chosen = select_checkpoint(out, ckpts, history, cfg.run.select)
    selected = read_card(chosen)
    card = selected.with_training(history=history, selected_epoch=selected.epoch)  # the whole run, for the record
    publish_model(out / "model", chosen, card)
    records = [h.as_dict() for h in history]
    (out / "history.json").write_text(json.dumps(records, indent=1))
    from .figures import plot_history

    plot_history(records, out / "loss.png", title=cfg.name or cfg.model.arch)
    sel = records[card.epoch - 1]
    ips = [h.train_images_per_s for h in history[start_epoch:] if np.isfinite(h.train_images_per_s)]
    return TrainResult(
        out=str(out), model=str(out / "model"), epochs_done=len(history), start_epoch=start_epoch,
        best_epoch=card.epoch, best_val_loss=float(sel["val_loss"]), final=sel, wall_s=wall,
        train_images_per_s=float(np.mean(ips)) if ips else None,
        stopped_early=last.training.stopped_early, where=where, history=records,
    )


def train_func_per_worker(job: TrainJob | dict[str, Any]) -> None:
    """One worker of ``job`` (a :class:`TrainJob` or its plain form) in this process."""
    job = job if isinstance(job, TrainJob) else TrainJob.from_dict(job)
    if job.config.run.backend == "ray":
        from .train_ray import RaySession

        run_worker(job, RaySession(job))
    else:
        train_local(job)


__all__ = ["MANIFEST", "MANIFEST_VERSION", "RUN_NAMES", "TrainConfig", "TrainJob", "TrainResult", "checkpoint_dirs",
           "config_from_dict", "is_run_folder", "latest_checkpoint", "load_train_config", "owned_output",
           "read_manifest", "train", "train_func_per_worker", "train_presets", "training_split", "write_manifest"]
