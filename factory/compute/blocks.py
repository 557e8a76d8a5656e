"""The one block runner: fill every missing chunk of a dataset store, on any executor.

Generation and every processing step create their output store once (metadata, on the
driver), then hand it to :func:`fill_missing_blocks` with a *block function*
``block_fn(start, stop) -> (images, labels, diagnostics)`` for a chunk-aligned block of
samples.  Each missing block becomes one piece of work on the executor: the worker computes
the block and writes it with :meth:`DatasetStore.write_block` (``done`` flags last), so a
killed run leaves only whole blocks behind and a re-run computes exactly the blocks not yet
done.  Memory is bounded by (slots x one block's inputs and outputs), whatever the store's size.

Block functions are module-level callables (picklable: they travel to Ray workers and Dask
workers) that read only what their block needs.  One that has a ``warm()`` method gets it
called once per worker before its first block (an actor builds its simulator up front).
A block that raises is reported in :attr:`BlockReport.failures` and nothing of it is stored;
the caller decides which error to raise (:meth:`BlockReport.raise_failures`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import FactoryError
from ..progress import progress_bar
from ..store import DatasetStore
from ..store.location import disk_full
from .executor import Executor, describe_error

BlockResult = tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]
BlockFn = Callable[[int, int], BlockResult]
TASK_NAME = "factory.block"  # the name of every block's task (Ray shows it in its state API and process titles)


@dataclass(frozen=True, eq=False)
class BlockWriter:
    """Computes one block with ``block_fn`` and writes it into the store at ``path`` (on a worker).

    ``path``: the store's absolute local path (a shared filesystem on a cluster) or its URL
    (``s3://...``: each worker opens it with the credentials of its own environment)."""

    block_fn: BlockFn
    path: str

    def warm(self) -> None:
        warm = getattr(self.block_fn, "warm", None)
        if warm is not None:
            warm()

    def __call__(self, start: int, stop: int) -> dict[str, float]:
        t0 = time.perf_counter()
        images, labels, diags = self.block_fn(start, stop)
        t1 = time.perf_counter()
        try:
            DatasetStore.cached(self.path, mode="r+").write_block(start, images, labels, diags)
        except OSError as exc:  # a full disk is one line naming the store and the space left
            raise disk_full(self.path, exc) or exc from None
        return {"start": start, "stop": stop, "compute_s": t1 - t0, "write_s": time.perf_counter() - t1}


def write_block(writer: BlockWriter, start: int, stop: int) -> dict[str, float]:
    """The piece of work of one block (module-level, so executors ship only the writer once)."""
    return writer(start, stop)


@dataclass
class BlockReport:
    """What a run of :func:`fill_missing_blocks` did (generation and processing steps alike)."""

    step: str
    path: str
    samples: int
    done: int
    blocks_total: int
    blocks_computed: int
    blocks_skipped: int
    samples_computed: int
    wall_s: float
    compute_s: float
    write_s: float
    where: str
    failures: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list, repr=False)

    @property
    def samples_per_s(self) -> float:
        return self.samples_computed / self.wall_s if self.wall_s > 0 else float("nan")

    images_per_s = samples_per_s

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("errors")
        return {**d, "samples_per_s": self.samples_per_s, "images_per_s": self.samples_per_s}

    def raise_failures(self, error: type[FactoryError], what: str = "blocks", suffix: str = "") -> None:
        """Raise one ``error`` naming how many blocks failed and the first failure, if any did
        (``suffix`` ends the message)."""
        if not self.failures:
            return
        n = len(self.failures) + self.blocks_computed
        exc = error(f"{len(self.failures)} of {n} {what} failed, {self.done}/{self.samples} samples done; "
                    f"first: {self.failures[0]}{suffix}")
        raise exc from (self.errors[0] if self.errors else None)

def finish_replacement(store: DatasetStore, report: BlockReport, error: type[FactoryError],
                       what: str = "blocks") -> BlockReport:
    """Publish a complete store (an ``--overwrite``'s replacement takes the old store's place
    only now) or raise ``error`` for the failed blocks: an unfinished replacement is removed
    and the old store stays as it was."""
    if report.failures and store.replaces is not None:
        store.discard()
        report.raise_failures(error, what, suffix=f"; {store.replaces} is unchanged (the new store was not kept)")
    report.raise_failures(error, what)
    published = store.publish()
    report.path = str(published.path)
    return report



def fill_missing_blocks(store: DatasetStore, block_fn: BlockFn, executor: Executor, *, progress: bool = True,
                        step: str = "blocks", name: str = TASK_NAME) -> BlockReport:
    """Compute and write every block of ``store`` not marked done, on ``executor``.

    Returns the :class:`BlockReport`; failed blocks are listed there, not raised."""
    todo = store.missing_blocks()
    blocks_total = len(store.blocks())
    writer = BlockWriter(block_fn, str(store.path))
    warm = writer.warm if hasattr(block_fn, "warm") else None
    n_todo = sum(e - s for s, e in todo)
    compute_s = write_s = 0.0
    failures: list[str] = []
    errors: list[BaseException] = []
    failed_samples = 0
    t0 = time.perf_counter()
    with progress_bar(step, n_todo, enabled=progress) as advance:
        for out in executor.imap_unordered(write_block, todo, shared=(writer,), name=name, warm=warm):
            s, e = todo[out.index]
            if out.error is not None:
                failures.append(f"block [{s}, {e}): {describe_error(out.error)}")
                errors.append(out.error)
                failed_samples += e - s
            else:
                compute_s += out.value["compute_s"]
                write_s += out.value["write_s"]
                advance(e - s)  # the bar counts only the samples written
    wall = time.perf_counter() - t0
    return BlockReport(
        step=step, path=str(store.path), samples=store.n_samples, done=int(store.done_mask().sum()),
        blocks_total=blocks_total, blocks_computed=len(todo) - len(failures), blocks_skipped=blocks_total - len(todo),
        samples_computed=n_todo - failed_samples, wall_s=wall, compute_s=compute_s, write_s=write_s,
        where=executor.describe(), failures=failures, errors=errors,
    )


__all__ = ["TASK_NAME", "BlockFn", "BlockReport", "BlockResult", "BlockWriter", "fill_missing_blocks", "write_block"]
