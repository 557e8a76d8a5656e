"""The thin Ray Train adapter: the one module of the training code that imports Ray.

:func:`plan` connects to Ray and checks that ``run.workers`` fit; :func:`fit` runs
:func:`models.train_loop.run_worker` on that many ``ray.train.torch.TorchTrainer`` workers
(GPU when present) through :class:`RaySession`.  Ray stores each epoch's checkpoint under
``OUT/checkpoints/attempt-K/epoch-NNNN`` and keeps the ``run.keep_checkpoints`` best.  A
worker writes a checkpoint only while the driver of its Ray job is alive
(:func:`check_driver_alive`), so a killed ``factory train`` leaves no work writing into the
run folder.
"""

from __future__ import annotations

import tempfile
from typing import Any

import ray
import ray.train
import ray.train.torch

from factory.compute.ray_logs import LogRelay, forward_to
from factory.errors import ConfigError

from .card import ModelError
from .train_config import TrainConfig
from .train_job import TrainJob
from .train_loop import run_worker


class DriverGone(RuntimeError):
    """The driver of this Ray job has exited: its workers stop without writing."""


def check_driver_alive() -> None:
    """Raise :class:`DriverGone` unless the driver of this worker's Ray job is still alive.

    Ray ends the workers of a killed driver, but only a moment later: enough to finish an
    epoch and write its checkpoint into the user's folder.  Asked of the GCS just before each
    checkpoint, this covers a driver killed with its embedded Ray (the GCS is gone too) and a
    driver of a long-lived cluster (the GCS marks its job dead)."""
    job = ray.get_runtime_context().get_job_id()
    gcs = ray._private.worker.global_worker.gcs_client
    try:
        jobs = gcs.get_all_job_info(job_or_submission_id=job, skip_submission_job_info_field=True,
                                    skip_is_running_tasks_field=True, timeout=30)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the GCS: the cluster is going away
        raise DriverGone(f"the Ray cluster is unreachable ({type(exc).__name__}); stopping without a checkpoint") from None
    if not any(k.hex() == job and not v.is_dead for k, v in jobs.items()):
        raise DriverGone(f"the driver of Ray job {job} has exited; stopping without a checkpoint")


class RaySession:
    """A Ray Train worker's session (see :class:`models.train_loop.Session`)."""

    def __init__(self, job: TrainJob):
        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self._ckpt = ray.train.get_checkpoint()
        self.job = job

    def resume_dir(self) -> str | None:
        if self._ckpt is None:  # no restart of this attempt's worker group: the driver's choice
            return self.job.resume_from
        return self._ckpt.to_directory(tempfile.mkdtemp(prefix="factory-resume-"))

    def prepare_model(self, model):
        return ray.train.torch.prepare_model(model)

    def prepare_loader(self, loader):
        return ray.train.torch.prepare_data_loader(loader, add_dist_sampler=False)

    def report(self, metrics: dict[str, Any], folder: str | None, name: str) -> None:
        if folder is not None:
            check_driver_alive()
        ckpt = ray.train.Checkpoint.from_directory(folder) if folder is not None else None
        ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=name)


def worker(config: dict[str, Any]) -> None:
    """The function every TorchTrainer worker runs; ``config["job"]`` is the job as plain data,
    ``config["log_box"]`` where its log lines go (to the driver, see :mod:`factory.compute.ray_logs`)."""
    if config.get("log_box") is not None:
        forward_to(config["log_box"], config["log_level"])
    job = TrainJob.from_dict(config["job"])
    run_worker(job, RaySession(job))


def cluster_has_gpu() -> bool:
    return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) >= 1


def plan(cfg: TrainConfig, address: str | None) -> tuple[bool, int, str]:
    """Connect to Ray and check that the workers fit: (use GPU, CPUs per worker, description)."""
    from cluster.connect import connect

    target = connect(address)
    use_gpu = cluster_has_gpu() if cfg.run.use_gpu == "auto" else bool(cfg.run.use_gpu)
    cpw = cfg.run.cpus_per_worker or max(1, target.cpus // cfg.run.workers)
    if cfg.run.workers * cpw > target.cpus and not use_gpu:
        raise ConfigError(f"run.workers = {cfg.run.workers} x {cpw} CPUs does not fit the {target.cpus} CPUs of "
                          f"{target.describe()}; lower run.workers or run.cpus_per_worker")
    return use_gpu, cpw, (f"Ray Train, {cfg.run.workers} worker(s) x {cpw} CPU{' + GPU' if use_gpu else ''} "
                          f"on {target.describe()}")


def fit(job: TrainJob) -> None:
    """Run ``job`` on ``run.workers`` Ray Train workers; a worker's failure is one ModelError.
    The workers' epoch lines reach the driver's log through a :class:`LogRelay` (once, plain)."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    run = job.config.run
    with LogRelay() as relay:
        trainer = TorchTrainer(
            worker,
            train_loop_config={"job": job.to_dict(), "log_box": relay.box, "log_level": relay.level},
            scaling_config=ScalingConfig(num_workers=run.workers, use_gpu=job.use_gpu,
                                         resources_per_worker={"CPU": job.threads}),
            run_config=RunConfig(
                name=job.attempt_name, storage_path=job.storage,
                checkpoint_config=CheckpointConfig(num_to_keep=run.keep_checkpoints, checkpoint_score_attribute="val_loss",
                                                   checkpoint_score_order="min"),
                failure_config=FailureConfig(max_failures=run.max_failures),
                logging_config=LoggingConfig(log_level=run.ray_log_level),
            ),
        )
        try:
            trainer.fit()
        except Exception as exc:  # noqa: BLE001 - Ray wraps the worker's exception
            raise ModelError(f"training failed: {root_cause(exc)}") from exc


def root_cause(exc: BaseException) -> str:
    seen = exc
    while True:
        nxt = getattr(seen, "cause", None) or seen.__cause__
        if nxt is None or nxt is seen:
            break
        seen = nxt
    lines = [l for l in str(seen).splitlines() if l.strip()]
    return f"{type(seen).__name__}: {lines[-1] if lines else ''}"


__all__ = ["DriverGone", "RaySession", "check_driver_alive", "cluster_has_gpu", "fit", "plan", "root_cause", "worker"]
