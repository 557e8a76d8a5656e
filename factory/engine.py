"""The generation engine: fills a dataset store with simulated samples using Ray tasks.

Work is cut into the store's chunks; each chunk is one Ray task that simulates its samples
and writes them with :meth:`DatasetStore.write_block` (``done`` last).  Sample i's labels
and noise come from (seed, i) only, so a resumed, retried or re-scheduled block writes the
same bytes.  Ray retries a task whose worker or node died (``max_retries``); a simulator
result with NaN/Inf fails its block loudly and is never stored.

``run_block`` is the plain function behind each task (no Ray), so a notebook or a test can
compute one block directly.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import GenerateConfig, config_from_dict
from .errors import GenerationError, StoreError
from .outputs import check_replaceable, is_factory_zarr, user_path
from .progress import progress_bar
from .simulators import Simulator, rng_for, simulator_class
from .store import DatasetStore

_SIMULATORS: dict[str, Simulator] = {}  # one simulator per worker process and config


def build_simulator(config: GenerateConfig) -> Simulator:
    """The simulator for ``config``, built once per process and reused."""
    sim = _SIMULATORS.get(config.hash)
    if sim is None:
        sim = simulator_class(config.kind)(config.simulator)
        _SIMULATORS[config.hash] = sim
    return sim


def compute_block(config: GenerateConfig, start: int, stop: int):
    """Simulate samples [start, stop): (images, params, diagnostics), all checked finite."""
    sim = build_simulator(config)
    idx = range(start, stop)
    params = [sim.sample_params(config.seed, i) for i in idx]
    rngs = [rng_for(config.seed, i, 1) for i in idx]
    results = sim.simulate_batch(params, rngs)
    images = np.stack([np.asarray(r.image, dtype=np.float32) for r in results])
    bad = [start + k for k, r in enumerate(results) if not np.isfinite(r.image).all()]
    if bad:
        raise GenerationError(
            f"{config.kind} simulator returned NaN/Inf for samples {bad} (block [{start}, {stop})); "
            "nothing of this block was stored"
        )
    labels = {n: np.array([p[n] for p in params], dtype=np.float64) for n in sim.param_names}
    diags = {
        n: np.array([r.diagnostics.get(n, np.nan) for r in results], dtype=np.float64)
        for n in sim.diagnostic_names
    }
    return images, labels, diags


def run_block(config_data: dict[str, Any], path: str, start: int, stop: int, threads: int = 1) -> dict:
    """Compute and write one chunk-aligned block; returns timing for the progress report."""
    os.environ["FACTORY_FFT_THREADS"] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover
        pass
    config = config_from_dict(config_data)
    t0 = time.perf_counter()
    images, labels, diags = compute_block(config, start, stop)
    t1 = time.perf_counter()
    DatasetStore.cached(path, mode="r+").write_block(start, images, labels, diags)
    return {"start": start, "stop": stop, "compute_s": t1 - t0, "write_s": time.perf_counter() - t1}


@dataclass
class GenerateReport:
    path: str
    samples: int
    done: int
    blocks_total: int
    blocks_computed: int
    blocks_skipped: int
    samples_computed: int
    wall_s: float
    compute_s: float
    where: str
    failures: list[str] = field(default_factory=list)

    @property
    def samples_per_s(self) -> float:
        return self.samples_computed / self.wall_s if self.wall_s > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def store_spec(config: GenerateConfig, lineage: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """The arguments of :meth:`DatasetStore.create` for ``config``."""
    sim = build_simulator(config)
    return dict(
        kind=config.kind, n_samples=config.samples, chunk=config.chunk, coords=sim.coords(),
        param_names=sim.param_names, diagnostic_names=sim.diagnostic_names, config=config.resolved(),
        config_hash=config.hash, seed=config.seed, lineage=list(lineage),
        extra_attrs={"simulator": sim.store_attrs(), "runs": []},
    )


def prepare_store(
    config: GenerateConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    lineage: list[dict[str, Any]] = (),
) -> DatasetStore:
    """Create the store (metadata written once, on the driver) or reopen it for a resume."""
    out = user_path(out)
    if resume and out.exists():
        store = DatasetStore.open(out, mode="r+")
        if store.config_hash != config.hash:
            raise StoreError(
                f"{out} was made with a different config (hash {store.config_hash[:12]} != "
                f"{config.hash[:12]}); resume with the same config or pass --overwrite"
            )
        return store
    return DatasetStore.create(out, **store_spec(config, lineage), overwrite=overwrite)


def generate(
    config: GenerateConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_task: int = 1,
    max_retries: int = 5,
    progress: bool = True,
) -> GenerateReport:
    """Generate (or resume) the store ``out`` from ``config`` on Ray.

    ``workers`` bounds the blocks in flight (default: the cluster's CPUs / cpus_per_task);
    on an embedded local Ray it also sets the number of CPUs Ray may use.
    """
    import ray

    from cluster.connect import connect

    out = user_path(out)
    if not (resume and out.exists()):  # refuse before connecting or creating anything
        check_replaceable(out, overwrite=overwrite, what="dataset store", recognise=is_factory_zarr)
        DatasetStore.validate_new(out, **store_spec(config))
    target = connect(address, num_cpus=(workers * cpus_per_task) if workers else None)
    store = prepare_store(config, out, overwrite=overwrite, resume=resume)
    todo = store.missing_blocks()
    blocks_total = len(store.blocks())
    in_flight_max = workers or max(1, target.cpus // cpus_per_task)
    task = ray.remote(run_block).options(
        num_cpus=cpus_per_task, max_retries=max_retries, retry_exceptions=False, name="factory.block"
    )
    data = config.resolved()
    t0 = time.perf_counter()
    compute_s = 0.0
    failures: list[str] = []
    failed_samples = 0
    pending: dict[Any, tuple[int, int]] = {}
    queue = deque(todo)
    n_todo = sum(e - s for s, e in todo)
    with progress_bar(f"generate {config.kind}", n_todo, enabled=progress) as advance:
        while queue or pending:
            while queue and len(pending) < in_flight_max:
                s, e = queue.popleft()
                pending[task.remote(data, str(store.path), s, e, cpus_per_task)] = (s, e)
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                s, e = pending.pop(ref)
                try:
                    compute_s += ray.get(ref)["compute_s"]
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    failures.append(f"block [{s}, {e}): {cause}")
                    failed_samples += e - s
                except ray.exceptions.RayError as exc:
                    failures.append(f"block [{s}, {e}): {type(exc).__name__}: {str(exc).splitlines()[0]}")
                    failed_samples += e - s
                advance(e - s)
    wall = time.perf_counter() - t0
    done = int(store.done_mask().sum())
    report = GenerateReport(
        path=str(store.path), samples=store.n_samples, done=done, blocks_total=blocks_total,
        blocks_computed=len(todo) - len(failures), blocks_skipped=blocks_total - len(todo),
        samples_computed=n_todo - failed_samples, wall_s=wall, compute_s=compute_s, where=target.describe(), failures=failures,
    )
    runs = store.meta.get("runs", [])
    runs.append({
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "blocks_computed": report.blocks_computed,
        "blocks_failed": len(failures), "wall_s": round(wall, 3), "where": report.where,
    })
    store.update_meta(runs=runs)
    if failures:
        raise GenerationError(
            f"{len(failures)} of {len(todo)} blocks failed, {done}/{store.n_samples} samples done; "
            f"first: {failures[0]}"
        )
    return report
