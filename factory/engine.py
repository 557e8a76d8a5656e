"""The generation engine: fills a dataset store with simulated samples, on any executor.

Work is cut into the store's chunks; each chunk is one block of
:func:`factory.compute.fill_missing_blocks` that simulates its samples and writes them with
:meth:`DatasetStore.write_block` (``done`` last).  Sample i's labels and noise come from
(seed, i) only, so a resumed, retried or re-scheduled block writes the same bytes, whatever
the executor (Ray tasks, Ray actors, local).  On Ray a block whose worker or node died is
retried (``max_retries``); a simulator result with NaN/Inf fails its block loudly and is
never stored.

``run_block`` computes and writes one block directly (no Ray), so a notebook or a test can
fill a store block by block.  Each worker builds its simulator once, with ``threads`` threads
(one by default: parallelism comes from more worker processes, not threads inside one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .compute import BlockReport, Executor, fill_missing_blocks, finish_replacement
from .compute.blocks import BlockWriter
from .config import GenerateConfig, config_from_dict
from .errors import GenerationError, StoreError
from .outputs import is_dataset_store
from .writer_lock import local_writer_lock
from .simulators import Simulator, rng_for, simulator_class
from .store import DatasetStore, StoreLike, check_new_store, store_exists, store_location

_SIMULATORS: dict[tuple[str, str, int], Simulator] = {}  # one per worker process, simulator config and threads

GenerateReport = BlockReport  # the report of a generation run (one class for every block run)


def build_simulator(config: GenerateConfig, threads: int = 1) -> Simulator:
    """The simulator for ``config`` with ``threads`` threads, built once per process and reused
    (by every run with the same simulator settings, whatever its seed or sample count)."""
    key = (config.kind, config.simulator.model_dump_json(), int(threads))
    sim = _SIMULATORS.get(key)
    if sim is None:
        sim = simulator_class(config.kind)(config.simulator, threads=int(threads))
        _SIMULATORS[key] = sim
    return sim


def compute_block(config: GenerateConfig, start: int, stop: int, threads: int = 1):
    """Simulate samples [start, stop): (images, params, diagnostics), all checked finite."""
    sim = build_simulator(config, threads)
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


@dataclass(frozen=True, eq=False)
class SimulateBlock:
    """The block function of generation (plain data, so it travels to any worker)."""

    config_data: dict[str, Any]
    threads: int = 1

    def config(self) -> GenerateConfig:
        return config_from_dict(self.config_data)

    def warm(self) -> None:
        """Build this worker's simulator (its plans, its device state) before the first block."""
        build_simulator(self.config(), self.threads)

    def __call__(self, start: int, stop: int):
        return compute_block(self.config(), start, stop, self.threads)


def run_block(config_data: dict[str, Any], path: StoreLike, start: int, stop: int, threads: int = 1) -> dict:
    """Compute and write one chunk-aligned block in this process; returns its timing.

    Parameters
    ----------
    config_data : dict
        The resolved generation config as plain data (``GenerateConfig.resolved``).
    path : str or os.PathLike
        The store to write into (a local path or a store URL); it must already exist, created
        for this config (e.g. by ``generate`` or ``prepare_store``).
    start, stop : int
        The block's samples ``[start, stop)``: exactly one chunk of the store.
    threads : int, optional
        Threads of the simulator built for this block (cached per process).

    Returns
    -------
    dict
        ``{"start", "stop", "compute_s", "write_s"}``: the block and the seconds spent
        simulating and writing it.

    Raises
    ------
    GenerationError
        The simulator returned NaN/Inf for a sample of the block (nothing is written).
    StoreError
        The store is missing or damaged, or ``[start, stop)`` is not one whole chunk of it.
    """
    return BlockWriter(SimulateBlock(config_data, threads), path)(start, stop)


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
    out: StoreLike,
    *,
    overwrite: bool = False,
    resume: bool = False,
    lineage: list[dict[str, Any]] = (),
) -> DatasetStore:
    """Create the store (metadata written once, on the driver) or reopen it for a resume."""
    out = store_location(out)
    if resume and store_exists(out):
        store = DatasetStore.open(out, mode="r+")
        if store.config_hash != config.hash:
            raise StoreError(
                f"{out} was made with a different config (hash {store.config_hash[:12]} != "
                f"{config.hash[:12]}); resume with the same config or pass --overwrite"
            )
        return store
    return DatasetStore.create(out, **store_spec(config, lineage), overwrite=overwrite, staged=True)


def complete_report(store: DatasetStore, step: str) -> BlockReport | None:
    """The report of a run with nothing to do when every block of ``store`` is done, else None."""
    t0 = time.perf_counter()
    if store.missing_blocks():
        return None
    n = len(store.blocks())
    return BlockReport(step=step, path=str(store.path), samples=store.n_samples, done=int(store.done_mask().sum()),
                       blocks_total=n, blocks_computed=0, blocks_skipped=n, samples_computed=0,
                       wall_s=time.perf_counter() - t0, compute_s=0.0, write_s=0.0, where="nothing to do")


def generate(
    config: GenerateConfig,
    out: StoreLike,
    *,
    overwrite: bool = False,
    resume: bool = False,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_task: int = 1,
    max_retries: int = 5,
    mode: str = "tasks",
    executor: Executor | None = None,
    progress: bool = True,
) -> BlockReport:
    """Generate (or resume) the store ``out`` (a local path or a URL such as ``s3://bucket/x.zarr``,
    which every worker opens itself) from ``config``.

    ``executor``: where the blocks run; by default a Ray executor (``address``, else
    RAY_ADDRESS, else an embedded local Ray) running ``mode`` = ``tasks`` or ``actors``
    (long-lived workers that keep the simulator warm), ``workers`` blocks at once (default:
    the cluster's CPUs / cpus_per_task; on an embedded Ray it also sets the CPUs Ray may use),
    each simulator with ``cpus_per_task`` threads.  A given executor is used as it is (its
    own workers and threads) and left open for the next run.  Resuming a complete store
    starts nothing (no Ray) and returns a report of no blocks computed, ``where="nothing to do"``.

    Parameters
    ----------
    config : GenerateConfig
        The validated generation config (``factory.config.load_config``).
    out : str or os.PathLike
        The store to write: a local path or a store URL such as ``s3://bucket/x.zarr``.
    overwrite : bool, optional
        Replace an existing dataset store at ``out`` (only a factory store, and only once the
        new one is created; not available at a URL).
    resume : bool, optional
        Continue the store at ``out`` when it exists: only its missing blocks are computed.
        It must have been made with the same config (same ``config.hash``).
    address : str, optional
        The Ray cluster to run on; default ``RAY_ADDRESS``, else an embedded local Ray.
        Ignored when ``executor`` is given.
    workers : int, optional
        Blocks run at once; default the cluster's CPUs / ``cpus_per_task``.  Ignored when
        ``executor`` is given.
    cpus_per_task : int, optional
        CPUs of each block, and threads of its simulator.
    max_retries : int, optional
        How often Ray retries a block whose worker or node died.
    mode : {"tasks", "actors"}, optional
        Ray tasks, or long-lived Ray actors that keep their simulator warm.
    executor : Executor, optional
        Where the blocks run (local, Ray or Dask); used as it is and not closed.
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    BlockReport
        What the run did: samples done, blocks computed and skipped, wall, compute and write
        seconds (``samples_per_s``), where it ran.  The run is also recorded in the store's
        ``runs`` attribute.

    Raises
    ------
    OutputError
        ``out`` exists and neither ``overwrite`` nor ``resume`` is given, or it is something
        other than a dataset store (a file, a symbolic link, a foreign folder).
    StoreError
        The store to resume was made with another config or is damaged, or the config
        describes a store that cannot be made (e.g. too many samples, a chunk too large).
    GenerationError
        One or more blocks failed (e.g. a simulator returned NaN/Inf); the other blocks are
        written and a resume computes only the failed ones.
    ClusterError
        The Ray cluster at ``address`` cannot be reached.
    """
    out = store_location(out)
    if not (resume and store_exists(out)):  # refuse before connecting or creating anything
        check_new_store(out, overwrite=overwrite, what="dataset store", recognise=is_dataset_store, resumable=True)
        DatasetStore.validate_new(out, **store_spec(config))
    else:
        done = complete_report(prepare_store(config, out, resume=True), f"generate {config.kind}")
        if done is not None:  # nothing to do: no Ray started, no run recorded
            return done
    with local_writer_lock(out, "dataset store"):  # one writer per store: a second is refused
        own = executor is None
        if own:
            from .compute.ray_executor import RayExecutor

            executor = RayExecutor(address, workers=workers, cpus_per_task=cpus_per_task, mode=mode,
                                   max_retries=max_retries)
        threads = getattr(executor, "cpus_per_task", 1)
        store = None
        try:
            store = prepare_store(config, out, overwrite=overwrite, resume=resume)
            report = fill_missing_blocks(store, SimulateBlock(config.resolved(), threads), executor,
                                         progress=progress, step=f"generate {config.kind}")
        except BaseException:
            if store is not None:
                store.discard()  # an --overwrite's new store, never the old one
            raise
        finally:
            if own:
                executor.close()
        runs = store.meta.get("runs", [])
        runs.append({
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "blocks_computed": report.blocks_computed,
            "blocks_failed": len(report.failures), "wall_s": round(report.wall_s, 3), "where": report.where,
        })
        try:
            store.update_meta(runs=runs)
        except StoreError:
            if not report.failures:
                raise  # else the failed blocks (e.g. a full disk) are the error to report
        return finish_replacement(store, report, GenerationError)

