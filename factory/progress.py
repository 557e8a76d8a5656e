"""Progress bars (rich, on stderr) with count, rate and ETA; silent when disabled, when there
is nothing to do, or under ``factory --quiet``.

The rate is the work done in this run over the time since the bar started, and the ETA the
work left at that rate: the numbers a run's summary reports.  (rich's own speed estimate
counts only the time between the first and the last update of a recent window, so blocks
that finish together, as parallel workers' blocks do, read as a rate ten times too high.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from .logs import quiet


def rate(task: Task) -> float | None:
    """Work done per second since the task started (None before any is done)."""
    elapsed = task.finished_time if task.finished else task.elapsed
    if not task.completed or not elapsed:
        return None
    return task.completed / elapsed


class RateColumn(ProgressColumn):
    """Work done in this run / time elapsed."""

    def render(self, task: Task) -> Text:
        r = rate(task)
        return Text(f"{r:.2f} /s" if r else "-- /s", style="progress.data.speed")


class EtaColumn(ProgressColumn):
    """The work left at the rate of :class:`RateColumn`."""

    def render(self, task: Task) -> Text:
        r = rate(task)
        if task.finished:
            return Text("0:00:00", style="progress.remaining")
        if not r or task.total is None:
            return Text("-:--:--", style="progress.remaining")
        minutes, seconds = divmod(int((task.total - task.completed) / r), 60)
        hours, minutes = divmod(minutes, 60)
        return Text(f"{hours:d}:{minutes:02d}:{seconds:02d}", style="progress.remaining")


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """``with progress_bar("generate", n) as advance: advance(k)``."""
    if not enabled or total <= 0 or quiet():
        yield lambda n=1: None
        return
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
        TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("eta"), EtaColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:  # stderr, beside the log: stdout is for results
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


__all__ = ["EtaColumn", "RateColumn", "progress_bar", "rate"]
