"""Resumable, chunk-aligned Dask execution of a processing step over Zarr stores.

A step creates its output store once (metadata on the driver), then runs one Dask task per
missing output chunk: the task reads only the source data that chunk needs, computes, and
writes the chunk with :meth:`DatasetStore.write_block` (``done`` last).  Memory is bounded
by (workers x one chunk's inputs and outputs), whatever the size of the store.  A killed
step re-run with the same arguments computes only the chunks not marked done and gives
identical output; other arguments on an existing output are refused.

Dask runs with its local threaded scheduler by default, or on a dask.distributed cluster
when given an address (never dask-on-Ray).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dask
import numpy as np

from ..errors import StoreError
from ..progress import progress_bar
from ..outputs import check_disjoint, user_path
from ..store import DatasetStore

BlockFn = Callable[[int, int], tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]]


@dataclass
class StepReport:
    step: str
    path: str
    samples: int
    blocks_total: int
    blocks_computed: int
    blocks_skipped: int
    wall_s: float
    where: str

    @property
    def images_per_s(self) -> float:
        n = self.samples * self.blocks_computed / max(self.blocks_total, 1)
        return n / self.wall_s if self.wall_s > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_s": self.images_per_s}


def step_hash(step_config: dict[str, Any]) -> str:
    blob = json.dumps(step_config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def open_or_create(
    out: str | Path, step_config: dict[str, Any], create: Callable[[str], DatasetStore], overwrite: bool,
    sources: list[str],
) -> DatasetStore:
    """Reopen ``out`` when it was made by the same step config (resume), else create it.
    An output that is, contains or lies inside a source is refused before anything is written."""
    check_disjoint(out, sources)
    out = user_path(out)
    h = step_hash(step_config)
    if out.exists() and not overwrite:
        store = DatasetStore.open(out, mode="r+")
        if store.config_hash != h:
            raise StoreError(
                f"{out} exists and was made by another step or other arguments; "
                "pass --overwrite to replace it, or use the same arguments to resume it"
            )
        return store
    return create(h)


def _write(block_fn: BlockFn, path: str, start: int, stop: int) -> int:
    images, params, diags = block_fn(start, stop)
    DatasetStore.cached(path, mode="r+").write_block(start, images, params, diags)
    return stop - start


def run_blocks(
    store: DatasetStore,
    block_fn: BlockFn,
    step: str,
    *,
    address: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> StepReport:
    """Compute every missing chunk of ``store`` with ``block_fn`` on Dask."""
    todo = store.missing_blocks()
    tasks = [dask.delayed(_write, pure=False)(block_fn, str(store.path), s, e) for s, e in todo]
    t0 = time.perf_counter()
    n_todo = sum(e - s for s, e in todo)
    with progress_bar(step, n_todo, enabled=progress) as advance:
        if address:
            from distributed import Client, as_completed

            with Client(address) as client:
                where = f"dask.distributed at {address}"
                for fut in as_completed(client.compute(tasks)):
                    advance(fut.result())
        else:
            from dask.callbacks import Callback

            class _Advance(Callback):
                def _posttask(self, key, result, dsk, state, worker_id):
                    if isinstance(result, int):
                        advance(result)

            where = f"dask threads ({workers or 'all'} workers)"
            with _Advance():
                dask.compute(*tasks, scheduler="threads", num_workers=workers)
    wall = time.perf_counter() - t0
    missing = store.missing_blocks()
    if missing:
        raise StoreError(f"{store.path}: {len(missing)} chunks still missing after the step")
    return StepReport(
        step=step, path=str(store.path), samples=store.n_samples, blocks_total=len(store.blocks()),
        blocks_computed=len(todo), blocks_skipped=len(store.blocks()) - len(todo), wall_s=wall, where=where,
    )
