"""Resumable, chunk-aligned execution of a processing step over Zarr stores.

A step creates its output store once (metadata on the driver), then hands it with a block
function to :func:`factory.compute.fill_missing_blocks`, the block runner generation uses
too: one piece of work per missing output chunk, which reads only the source data that chunk
needs, computes, and writes the chunk (``done`` last).  Memory is bounded by (workers x one
chunk's inputs and outputs), whatever the size of the store.  A killed step re-run with the
same arguments computes only the chunks not marked done and gives identical output; other
arguments on an existing output are refused.

Where the chunks run: a given executor (local, Ray or Dask: the bytes are the same), else
Dask's local threads, or a dask.distributed cluster when given an address (never dask-on-Ray).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from typing import Any

from ..compute import BlockFn, BlockReport, Executor, fill_missing_blocks, finish_replacement
from ..errors import FactoryError, StoreError
from ..store import DatasetStore, StoreLike, check_disjoint_stores, is_url, store_exists, store_location
from ..writer_lock import local_writer_lock

StepReport = BlockReport  # the report of a processing step (one class for every block run)


def step_hash(step_config: dict[str, Any]) -> str:
    blob = json.dumps(step_config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def open_or_create(
    out: StoreLike, step_config: dict[str, Any], create: Callable[[str], DatasetStore], overwrite: bool,
    sources: list[str],
) -> DatasetStore:
    """Reopen ``out`` (a local path or a store URL) when it was made by the same step config
    (resume), else create it.  An output that is, contains or lies inside a source is refused
    before anything is written."""
    check_disjoint_stores(out, sources)
    out = store_location(out)
    h = step_hash(step_config)
    lock = local_writer_lock(out, "dataset store")  # held until run_blocks ends: one writer per store
    lock.__enter__()
    try:
        if store_exists(out) and not overwrite:
            store = DatasetStore.open(out, mode="r+")
            if store.config_hash != h:
                fix = "write to a new URL" if is_url(out) else "pass --overwrite to replace it"
                raise StoreError(
                    f"{out} exists and was made by another step or other arguments; "
                    f"{fix}, or use the same arguments to resume it"
                )
        else:
            store = create(h)
            store.created_here = store.replaces is None  # a new output of this run (not a replacement)
    except BaseException:
        lock.__exit__(None, None, None)
        raise
    store.writer = lock
    return store


def run_blocks(
    store: DatasetStore,
    block_fn: BlockFn,
    step: str,
    *,
    executor: Executor | None = None,
    address: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> BlockReport:
    """Compute every missing chunk of ``store`` with ``block_fn`` on ``executor`` (default:
    Dask, local threads or the dask.distributed scheduler at ``address``).

    A chunk that fails raises, after the others ran: a failure of the project's own kind (a
    damaged source chunk's StoreError) as one error of that kind naming how many chunks failed
    and the first; anything else (a bug) as it was raised, with its traceback."""
    own = executor is None
    try:
        if own:
            from ..compute.dask_executor import DaskExecutor

            executor = DaskExecutor(address, workers=workers)
        report = fill_missing_blocks(store, block_fn, executor, progress=progress, step=step)
    except BaseException:
        store.discard()  # an --overwrite's new store, never the old one
        _release(store)
        raise
    finally:
        if own and executor is not None:
            executor.close()
    try:
        return _finish(store, report)
    finally:
        _release(store)


def _release(store: DatasetStore) -> None:
    """Release the writer lock :func:`open_or_create` took (once)."""
    lock = store.__dict__.pop("writer", None)
    if lock is not None:
        lock.__exit__(None, None, None)


def _finish(store: DatasetStore, report: BlockReport) -> BlockReport:
    if report.failures and getattr(store, "created_here", False) and not store.done_mask().any():
        shutil.rmtree(store.path, ignore_errors=True)  # refused before any chunk: no empty output left behind
    if report.failures:
        first = report.errors[0] if report.errors else StoreError(report.failures[0])
        if not isinstance(first, FactoryError):
            store.discard()
            raise first
        return finish_replacement(store, report, type(first), "chunks")
    missing = store.missing_blocks()
    if missing:
        store.discard()
        raise StoreError(f"{store.path}: {len(missing)} chunks still missing after the step")
    return finish_replacement(store, report, StoreError, "chunks")
