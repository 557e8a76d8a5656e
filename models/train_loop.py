"""The training loop: plain torch, one data-parallel worker, no Ray.

:func:`run_worker` trains ``job`` through a :class:`Session`: what the loop needs from its
surroundings (its rank, its device, a checkpoint to resume, how to wrap the model and the
loader for data parallelism, and where a finished epoch's checkpoint goes).
:class:`LocalSession` is the in-process single-worker session (``run.backend: local``);
:mod:`models.train_ray` supplies the Ray Train one.  Every epoch rank 0 writes a checkpoint
(weights, the model card with the history so far, the optimizer state), complete in itself:
a resume continues from whichever one is the latest.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from factory.logs import get_logger

from .artifact import OPTIMIZER, load_state, load_torch, read_card, save_model
from .card import EpochRecord, ModelCard, ModelError
from .data import ChunkStream, D4Augment
from .networks import from_description
from .train_job import TrainJob
from .train_runs import store_checkpoint

log = get_logger(__name__)


class Session(Protocol):
    """What the loop needs from where it runs (in-process, or a Ray Train worker)."""

    rank: int
    world_size: int
    device: torch.device

    def resume_dir(self) -> str | None: ...

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module: ...

    def prepare_loader(self, loader: torch.utils.data.DataLoader) -> Any: ...

    def report(self, metrics: dict[str, Any], folder: str | None, name: str) -> None: ...


class LocalSession:
    """The in-process single-worker session: checkpoints copied into the run folder, the
    ``keep_checkpoints`` best and the latest kept (as Ray Train keeps them)."""

    rank, world_size = 0, 1

    def __init__(self, job: TrainJob):
        self.job = job
        self.device = torch.device("cuda" if job.use_gpu and torch.cuda.is_available() else "cpu")

    def resume_dir(self) -> str | None:
        return self.job.resume_from

    def prepare_model(self, model):
        return model.to(self.device)

    def prepare_loader(self, loader):
        return loader

    def report(self, metrics, folder, name):
        if folder is not None:
            dest = Path(self.job.storage) / self.job.attempt_name / name
            store_checkpoint(folder, dest, self.job.config.run.keep_checkpoints)


def allreduce(values: list[float], device) -> list[float]:
    """The sum over the data-parallel workers (the values themselves when alone)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(t)
    return t.tolist()


@dataclass
class _State:
    """The worker's model, optimizer and the run so far."""

    model: torch.nn.Module  # as prepared by the session (maybe wrapped for data parallelism)
    net: torch.nn.Module  # the plain module
    opt: torch.optim.Optimizer
    card: ModelCard
    history: list[EpochRecord]
    start: int


def _restore(job: TrainJob, sess: Session) -> _State:
    """The network and optimizer: from the checkpoint to resume, the model transferred from,
    or new (its input standardisation set); the frozen blocks frozen."""
    cfg = job.config
    torch.manual_seed(cfg.run.seed)
    model = from_description(job.card.architecture.model_dump())
    history, start, opt_state = [], 0, None
    resume = sess.resume_dir()
    if resume:
        model.load_state_dict(load_state(resume))
        prev = read_card(resume)
        history, start = list(prev.history), prev.epoch
        opt_state = load_torch(Path(resume) / OPTIMIZER, "optimizer state")
    elif job.init_from:
        model.load_state_dict(load_state(job.init_from))
    else:
        model.norm.set(*job.input_stats)
    model.freeze(cfg.transfer.freeze)
    model = sess.prepare_model(model)
    params = [p for p in model.parameters() if p.requires_grad]
    o = cfg.optim
    if o.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    return _State(model, getattr(model, "module", model), opt, job.card, history, start)


def _streams(job: TrainJob, sess: Session) -> tuple[ChunkStream, Any, torch.utils.data.DataLoader]:
    """(training stream, its loader as the session prepares it, validation loader)."""
    cfg = job.config
    steps = ChunkStream.steps_per_epoch(len(job.train), cfg.optim.batch_size, sess.world_size)
    common = dict(path=job.store, targets=np.load(job.targets_file), seed=cfg.run.seed, rank=sess.rank,
                  world_size=sess.world_size, window_chunks=cfg.data.window_chunks)
    augment = None
    if cfg.data.augment == "d4":
        augment = D4Augment(labels=list(job.card.labels), scaling=job.card.label_scaling.model_dump(mode="json"))
    train_ds = ChunkStream(indices=job.train, batch_size=cfg.optim.batch_size, shuffle=True, steps=steps,
                           augment=augment, **common)
    val_ds = ChunkStream(indices=job.val, batch_size=cfg.run.eval_batch_size, shuffle=False, **common)
    loader = sess.prepare_loader(torch.utils.data.DataLoader(train_ds, batch_size=None))
    return train_ds, loader, torch.utils.data.DataLoader(val_ds, batch_size=None)


def _train_epoch(st: _State, loader, loss_fn, device) -> tuple[float, int]:
    """(summed loss, images) of one pass over this worker's share of the training set."""
    st.model.train()
    tot, n = 0.0, 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = loss_fn(st.model(x), y)
        st.opt.zero_grad(set_to_none=True)
        loss.backward()
        st.opt.step()
        tot += loss.item() * len(x)
        n += len(x)
    return tot, n


def _validate(st: _State, loader, loss_fn, device) -> np.ndarray:
    """This worker's share of the validation set with the plain module (no collectives):
    [summed loss, images, correct (classifier) or summed absolute error per label]."""
    classify, scaling = st.card.task == "classify", st.card.scaling()
    st.net.eval()
    sums = np.zeros(2 + len(st.card.labels))
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = st.net(x)
            sums[0] += float(loss_fn(out, y)) * len(x)
            sums[1] += len(x)
            if classify:
                sums[2] += float((out.argmax(1) == y).sum())
            else:
                pred = scaling.inverse(out.double().cpu().numpy())
                true = scaling.inverse(y.double().cpu().numpy())
                sums[2:] += np.abs(pred - true).sum(0)
    return sums


def _record(st: _State, epoch: int, lr: float, train: tuple[float, int], val: np.ndarray, seconds: tuple[float, float],
            sess: Session) -> EpochRecord:
    """The epoch's metrics summed over the workers."""
    red = allreduce([*train, *val.tolist()], sess.device)
    tot, n, vsum, vn, rest = red[0], red[1], red[2], red[3], red[4:]
    t_train, t_epoch = seconds
    extra = ({"val_accuracy": rest[0] / max(vn, 1)} if st.card.task == "classify"
             else {f"val_mae_{name}": rest[j] / max(vn, 1) for j, name in enumerate(st.card.labels)})
    return EpochRecord(epoch=epoch + 1, lr=lr, train_loss=tot / max(n, 1), val_loss=vsum / max(vn, 1), epoch_s=t_epoch,
                       train_images_per_s=n / t_train if t_train > 0 else float("nan"), workers=sess.world_size,
                       device=str(sess.device), **extra)


class _EarlyStop:
    """Epochs since the best validation loss (carried over a resume from the history)."""

    def __init__(self, patience: int | None, min_delta: float, history: list[EpochRecord]):
        self.patience, self.min_delta = patience, min_delta
        self.best = min((h.val_loss for h in history), default=math.inf)
        self.bad = 0
        for h in history:
            self.bad = 0 if h.val_loss <= self.best else self.bad + 1

    def update(self, val_loss: float) -> bool:
        improved = val_loss < self.best - self.min_delta
        self.best = min(self.best, val_loss)
        self.bad = 0 if improved else self.bad + 1
        return self.patience is not None and self.bad >= self.patience


def _checkpoint(st: _State, job: TrainJob, sess: Session, rec: EpochRecord, stop: bool) -> None:
    """Rank 0 writes the epoch's checkpoint; every rank reports the metrics."""
    st.card = st.card.with_training(epoch=rec.epoch, history=tuple(st.history), stopped_early=stop)
    name = f"epoch-{rec.epoch:04d}"
    with tempfile.TemporaryDirectory(prefix="factory-ckpt-") as tmp:
        folder = None
        if sess.rank == 0:
            save_model(tmp, st.net, st.card)
            torch.save(st.opt.state_dict(), Path(tmp) / OPTIMIZER)
            folder = tmp
            if job.progress:
                maes = " ".join(f"{k[8:]}={v:.4g}" for k, v in (rec.model_extra or {}).items() if k.startswith("val_mae_"))
                log.info("[train] epoch %d/%d train_loss=%.4g val_loss=%.4g %s(%.1f s)", rec.epoch,
                         job.config.optim.epochs, rec.train_loss, rec.val_loss, maes + " " if maes else "", rec.epoch_s)
        sess.report(rec.as_dict(), folder, name)


def run_worker(job: TrainJob, sess: Session) -> None:
    """Train ``job`` as one data-parallel worker of ``sess``; see the module docstring."""
    torch.set_num_threads(max(1, int(job.threads)))
    cfg = job.config
    st = _restore(job, sess)
    train_ds, loader, val_loader = _streams(job, sess)
    loss_fn = torch.nn.CrossEntropyLoss() if st.card.task == "classify" else torch.nn.MSELoss()
    early = _EarlyStop(cfg.early_stopping.patience, cfg.early_stopping.min_delta, st.history)
    for epoch in range(st.start, cfg.optim.epochs):
        t0 = time.perf_counter()
        lr = cfg.optim.lr_at(epoch)
        for g in st.opt.param_groups:
            g["lr"] = lr
        train_ds.set_epoch(epoch)
        torch.manual_seed(cfg.run.seed * 1_000_003 + epoch * 1009 + sess.rank)
        train = _train_epoch(st, loader, loss_fn, sess.device)
        t_train = time.perf_counter() - t0
        val = _validate(st, val_loader, loss_fn, sess.device)
        rec = _record(st, epoch, lr, train, val, (t_train, time.perf_counter() - t0), sess)
        _refuse_divergence(st, rec, cfg)  # before its checkpoint: a non-finite model is never stored
        st.history.append(rec)
        stop = early.update(rec.val_loss)
        _checkpoint(st, job, sess, rec, stop)
        if stop or (cfg.run.stop_after_epoch is not None and epoch + 1 >= cfg.run.stop_after_epoch):
            break


def _refuse_divergence(st: _State, rec: EpochRecord, cfg) -> None:
    """One ModelError when an epoch's loss or the weights are not finite (the run diverged)."""
    bad = [name for name, v in (("train", rec.train_loss), ("validation", rec.val_loss)) if not math.isfinite(v)]
    if not bad and all(bool(torch.isfinite(p).all()) for p in st.model.parameters()):
        return
    what = f"{' and '.join(bad)} loss {rec.train_loss if bad[0] == 'train' else rec.val_loss}" if bad else "weights"
    hint = f"optim.lr = {cfg.optim.lr:g}"
    if cfg.optim.optimizer == "sgd" and getattr(cfg.optim, "momentum", 0):
        hint += f" with optim.momentum = {cfg.optim.momentum:g}"
    raise ModelError(f"training diverged at epoch {rec.epoch}: non-finite {what}; no checkpoint of this epoch was "
                     f"kept and no model was published (most likely {hint} is too large; lower it)")


def train_local(job: TrainJob) -> None:
    """The job in this process (``run.backend: local``)."""
    run_worker(job, LocalSession(job))


__all__ = ["LocalSession", "Session", "allreduce", "run_worker", "train_local"]
