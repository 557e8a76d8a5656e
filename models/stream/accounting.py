"""The frame accounting of a stream: counts, the bounded queue, a batch's results, the verdict.

:class:`Counts` keeps ``received = predicted + rejected + dropped + pending`` (with the sender's
sequence numbers, ``lost``); ``_Queue`` is the bounded queue between the reader and the model
(policy ``wait`` or ``drop``, counting what it drops); :class:`Results` is what one batch gave,
in arrival order; :func:`verdict` says whether a finished run failed.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .protocol import Frame, SeqCounter


@dataclass
class Counts:
    received: int = 0
    predicted: int = 0
    rejected: int = 0
    dropped: int = 0
    dropped_ids: list[int] = field(default_factory=list)
    reasons: collections.Counter = field(default_factory=collections.Counter)
    seq: SeqCounter = field(default_factory=SeqCounter)

    def pending(self) -> int:
        return self.received - self.predicted - self.rejected - self.dropped

    def reject(self, reason: str, n: int = 1) -> None:
        """Count ``n`` rejected frames under their reason (at most 64 distinct reasons are kept
        by name, so a hostile stream cannot grow this without bound)."""
        key = reason.split(" (")[0][:60]
        if key not in self.reasons and len(self.reasons) >= 64:
            key = "other reasons"
        self.rejected += n
        self.reasons[key] += n


@dataclass
class Results:
    """What one batch gave, in arrival order: the predicted frames (ids, train/pulse ids where
    the source has trains, latency, values) and the rejected ones with their reasons."""

    frame_ids: np.ndarray                     # int64
    train_ids: np.ndarray                     # int64; -1: no train (the frame id stands for it)
    pulse_ids: np.ndarray                     # int64; -1: no pulse
    latency_ms: np.ndarray
    values: dict[str, np.ndarray]
    train_sizes: np.ndarray                   # frames of the frame's train (1 without trains)
    cell_ids: np.ndarray                      # int64; -1: unknown
    rejected: list[tuple[int, int, int, int, str]] = field(default_factory=list)  # (frame, train, pulse, size, reason)
    ok: np.ndarray | None = None              # the batch in arrival order: True predicted, False rejected


def _ids(frames: list[Frame]) -> tuple[np.ndarray, ...]:
    return (np.array([f.frame_id for f in frames], dtype=np.int64),
            np.array([-1 if f.train_id is None else f.train_id for f in frames], dtype=np.int64),
            np.array([-1 if f.pulse_id is None else f.pulse_id for f in frames], dtype=np.int64),
            np.array([f.train_size for f in frames], dtype=np.int64),
            np.array([f.meta.get("cell_id", -1) for f in frames], dtype=np.int64))


def verdict(summary: dict[str, Any], max_reject: float = 0.5) -> str | None:
    """Why a finished run failed (one line with its counts), or None.  In order: the source was
    lost (its connection dropped and was not back when the run ended), nothing was received,
    messages the sender numbered never arrived, frames came but none was predicted, more than
    ``max_reject`` of the received frames were rejected."""
    counts = (f"received {summary['received']} = predicted {summary['predicted']} + rejected "
              f"{summary['rejected']} + dropped {summary['dropped']}")
    top = ", ".join(f"{k} x{v}" for k, v in collections.Counter(summary.get("reasons", {})).most_common(3))
    if summary.get("source_lost"):
        return (f"lost the source: {summary['source_lost']} ({counts}; reconnects {summary.get('reconnects', 0)})")
    if not summary["received"]:
        return "nothing was received from the source"
    if summary.get("lost"):
        return (f"{summary['lost']} of the {summary['sent']} messages the sender numbered never arrived "
                f"({counts}; reconnects {summary.get('reconnects', 0)})")
    if not summary["predicted"]:
        return (f"no frame was predicted: {summary['rejected']} of {summary['received']} rejected ({top}), "
                f"{summary['dropped']} dropped")
    share = summary["rejected"] / summary["received"]
    if share > max_reject:
        return (f"{summary['rejected']} of {summary['received']} frames rejected ({share:.0%} > --max-reject "
                f"{max_reject:.0%}: {top}); {counts}")
    return None


class _Queue:
    def __init__(self, size: int, policy: str, counts: Counts, lock: threading.Lock):
        self.q: collections.deque[Frame] = collections.deque()
        self.size, self.policy, self.counts, self.lock = size, policy, counts, lock
        self.cond = threading.Condition(lock)

    def put(self, frame: Frame, stop: threading.Event) -> None:
        with self.cond:
            while self.policy == "wait" and len(self.q) >= self.size and not stop.is_set():
                self.cond.wait(0.05)
            if self.policy == "drop" and len(self.q) >= self.size:  # keep up: the oldest frame goes
                old = self.q.popleft()
                self.counts.dropped += 1
                self.counts.dropped_ids.append(old.frame_id)
            self.q.append(frame)
            self.cond.notify_all()

    def get_batch(self, n: int, max_wait_s: float, idle_s: float = 0.05) -> list[Frame]:
        with self.cond:
            if not self.q:
                self.cond.wait(idle_s)
                if not self.q:
                    return []
            deadline = self.q[0].t_received + max_wait_s
            while len(self.q) < n and time.perf_counter() < deadline:
                self.cond.wait(max(0.0, deadline - time.perf_counter()))
            batch = [self.q.popleft() for _ in range(min(n, len(self.q)))]
            self.cond.notify_all()
            return batch

    def __len__(self) -> int:
        return len(self.q)
