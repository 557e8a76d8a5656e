"""Where predictions go: a Zarr results store, a ZeroMQ socket (msgpack with a versioned schema,
or a karabo-bridge server that karabo_bridge.Client reads), a periodic PNG."""

from __future__ import annotations

import collections
import os
import shutil
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zarr
import zmq

from factory.errors import OutputError
from factory.outputs import (check_file_output, check_replaceable, is_predictions_store, publish_replacement,
                            replacement_path, staged_output, user_path)
from factory.store import consolidate


def _label_units(attrs: dict[str, Any], labels: list[str]) -> dict[str, str]:
    """The units of the labels of the store the model (``attrs["model"]``) was trained on,
    where that store is still readable; {} otherwise."""
    from factory.errors import FactoryError
    from factory.store import DatasetStore

    from models.card import ModelCard

    try:
        ts = ModelCard.read(attrs["model"]).training_set
        store = DatasetStore.open(ts.path, partial=True) if ts is not None and ts.path else None
        return {n: store.label_units(n) for n in labels if n in store.param_names} if store else {}
    except (FactoryError, KeyError, OSError, ValueError, TypeError, AttributeError):
        return {}


class ZarrSink:
    """Appends (frame_id, latency, labels) to growable 1D Zarr v3 arrays, flushed every ``every`` rows.

    ``frame_id`` is a coordinate of the others (CF ``coordinates`` attribute, so xarray opens it
    as one); every array has CF ``units``/``long_name`` (a label's units: ``units``, else those
    of the store the model was trained on when it is still there).  The metadata is
    consolidated at every flush.

    The empty store is built beside ``path`` and swapped into place (``factory.outputs``); an
    existing ``path`` is replaced only with ``overwrite`` and only when it is a store factory
    wrote (OutputError otherwise), so nothing of the user's is ever deleted.
    """

    def __init__(self, path: str | Path, labels: list[str], attrs: dict[str, Any], overwrite: bool = False,
                 every: int = 1024, units: dict[str, str] | None = None):
        self.path = user_path(path)
        self.labels = labels
        names = ["frame_id", "latency_ms", *labels]
        dtypes = {"frame_id": "int64", "flagged": "bool"}
        units = dict(units) if units is not None else _label_units(attrs, labels)
        units.update({n: units[n[:-4]] for n in labels if n.endswith("_std") and n[:-4] in units})
        cf_attrs = {"frame_id": {"units": "1", "long_name": "frame id (from the source)"},
                    "latency_ms": {"units": "ms", "long_name": "latency from receipt to prediction",
                                   "coordinates": "frame_id"}}
        for n in labels:
            cf_attrs[n] = {"long_name": _long_name(n), "coordinates": "frame_id",
                           **({"units": units[n]} if n in units else {})}
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.replaces: Path | None = None
        if overwrite and (self.path.exists() or self.path.is_symlink()):  # --overwrite: the new predictions go
            check_replaceable(self.path, overwrite=True, what="predictions store", recognise=is_predictions_store)
            self.replaces, self.path = self.path, replacement_path(self.path)  # beside the old store until publish()
            overwrite = False
        with staged_output(self.path, overwrite=overwrite, what="predictions store", recognise=is_predictions_store) as tmp:
            group = zarr.open_group(str(tmp), mode="w-", zarr_format=3)
            for n in names:
                group.create_array(n, shape=(0,), chunks=(4096,), dtype=dtypes.get(n, "float64"),
                                   dimension_names=["frame"], attributes=cf_attrs[n])
            group.attrs.update({
                "Conventions": "CF-1.10", "title": "stream predictions", "source": f"model {attrs.get('model', '')}",
                "history": f"{started} streaming predictions started", "stream": {**attrs, "started": started}})
            consolidate(tmp)
        self.group = zarr.open_group(str(self.path), mode="r+", zarr_format=3, use_consolidated=False)
        self.arrays = {n: self.group[n] for n in names}
        self.buffer: dict[str, list] = {n: [] for n in names}
        self.every = every
        self.rows = 0

    def write(self, frame_ids: np.ndarray, latency_ms: np.ndarray, values: dict[str, np.ndarray]) -> None:
        self.buffer["frame_id"].extend(np.asarray(frame_ids, dtype=np.int64).tolist())
        self.buffer["latency_ms"].extend(np.asarray(latency_ms, dtype=np.float64).tolist())
        for n in self.labels:
            self.buffer[n].extend(np.asarray(values[n], dtype=self.arrays[n].dtype).tolist())
        if len(self.buffer["frame_id"]) >= self.every:
            self.flush()

    def flush(self, summary: dict[str, Any] | None = None) -> None:
        k = len(self.buffer["frame_id"])
        if k:
            for n, arr in self.arrays.items():
                arr.append(np.asarray(self.buffer[n], dtype=arr.dtype))
                self.buffer[n] = []
            self.rows += k
        if summary is not None:
            self.group.attrs["stream"] = {**self.group.attrs["stream"], "summary": summary}
        if k or summary is not None:
            consolidate(self.path)  # the arrays grew (or the attributes changed): never a stale shape

    def publish(self) -> None:
        """After a run that ended normally: an ``--overwrite``'s new store takes the old one's place."""
        if self.replaces is not None:
            publish_replacement(self.path, self.replaces, what="predictions store", recognise=is_predictions_store)
            self.path, self.replaces = self.replaces, None

    def discard(self) -> None:
        """After a failed or interrupted run: an ``--overwrite``'s new store is removed, the old one kept."""
        if self.replaces is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path, self.replaces = self.replaces, None


def _long_name(n: str) -> str:
    """CF long_name of a prediction array (with uncertainty: ``<label>_std``, ``ood_score``, ``flagged``)."""
    if n.endswith("_std"):
        return f"calibrated MC-dropout standard deviation of predicted {n[:-4]}"
    return {"ood_score": "out-of-distribution score (Mahalanobis distance of the network's features)",
            "flagged": "frame flagged: OOD score or spread above the calibration's threshold"}.get(n, f"predicted {n}")


SCHEMA = "factory.predictions/1"
UNCERTAINTY = ("ood_score", "flagged")


def _endpoint(endpoint: str) -> str:
    if not isinstance(endpoint, str) or not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
        raise ValueError(f"--pub {endpoint!r} is not a ZeroMQ endpoint (tcp://127.0.0.1:port)")
    return endpoint


class PubSink:
    """Publishes one msgpack message per frame on a ZeroMQ PUB socket, schema
    ``factory.predictions/1`` (docs/streaming.md):

    - predicted: ``{"schema", "status": "predicted", "frame_id", "train_id", "pulse_id",
      "latency_ms", "values": {label: value}}``; with ``--uncertainty`` also ``"std": {label: value}``,
      ``"ood_score"`` and ``"flagged"`` (optional fields: consumers of schema 1 without them still read it);
    - rejected: ``{"schema", "status": "rejected", "frame_id", "train_id", "pulse_id", "reason"}``;
    - at the end: ``{"schema", "status": "end", "summary": {received, predicted, rejected,
      dropped, lost, sent, balanced, rate, p50_ms, p99_ms}}``.

    ``train_id``/``pulse_id`` are null for sources without trains.  A consumer that is not
    connected, or too slow, misses messages (PUB never waits)."""

    def __init__(self, endpoint: str):
        endpoint = _endpoint(endpoint)
        self.sock = zmq.Context.instance().socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        try:
            self.sock.bind(endpoint)
        except zmq.ZMQError as exc:
            self.sock.close(linger=0)
            raise ValueError(f"--pub {endpoint!r}: cannot bind ({exc})") from None
        self.sent = 0

    def _send(self, msg: dict[str, Any]) -> None:
        self.sock.send(msgpack.packb({"schema": SCHEMA, **msg}, use_bin_type=True))
        self.sent += 1

    def write_results(self, res) -> None:
        scalar = {k: v for k, v in res.values.items() if np.ndim(v) == 1 and not k.endswith("_std") and k not in UNCERTAINTY}
        std = {k[:-4]: v for k, v in res.values.items() if k.endswith("_std") and k[:-4] in scalar}
        extra = {k: v for k, v in res.values.items() if k in UNCERTAINTY}
        order = res.ok if res.ok is not None else [True] * len(res.frame_ids) + [False] * len(res.rejected)
        j = r = 0
        for predicted in order:  # in arrival order
            if predicted:
                t, p = int(res.train_ids[j]), int(res.pulse_ids[j])
                self._send({"status": "predicted", "frame_id": int(res.frame_ids[j]), "train_id": t if t >= 0 else None,
                            "pulse_id": p if p >= 0 else None, "latency_ms": float(res.latency_ms[j]),
                            "values": {k: float(v[j]) for k, v in scalar.items()},
                            **({"std": {k: float(v[j]) for k, v in std.items()}} if std else {}),
                            **({"ood_score": float(extra["ood_score"][j])} if "ood_score" in extra else {}),
                            **({"flagged": bool(extra["flagged"][j])} if "flagged" in extra else {})})
                j += 1
            else:
                fid, t, p, _, reason = res.rejected[r]
                self._send({"status": "rejected", "frame_id": int(fid), "train_id": t if t >= 0 else None,
                            "pulse_id": p if p >= 0 else None, "reason": reason})
                r += 1

    def flush(self, summary=None) -> None:
        if summary is not None:
            keys = ("received", "predicted", "rejected", "dropped", "lost", "sent", "balanced", "rate", "p50_ms",
                    "p99_ms")
            self._send({"status": "end", "summary": {k: summary[k] for k in keys if k in summary}})

    def report(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "messages": self.sent}

    def close(self) -> None:
        self.sock.close(linger=0)


class _Train:
    __slots__ = ("tid", "size", "frames", "rejected", "done")

    def __init__(self, tid: int, size: int):
        self.tid, self.size, self.frames, self.rejected, self.done = tid, size, [], [], 0


class KaraboSink:
    """A karabo-bridge (protocol 2.2) server of the predictions, one message per train, that
    ``karabo_bridge.Client`` (and EXtra-foam-style consumers) read: the package's own
    ``ServerInThread`` on ``endpoint`` with ``pattern`` REP (the clients' default REQ asks
    'next'), PUB or PUSH.

    Source ``factory/predictions`` (``metadata['timestamp.tid']`` = the train id) holds, per
    predicted pulse in arrival order: ``trainId``, ``pulseId`` (uint64), ``cellId`` (int64, -1
    unknown), ``frameId`` (int64), ``latency_ms`` and one float64 array per label,
    ``prediction.<label>``; per rejected pulse ``rejected.pulseId`` and ``rejected.reason``;
    and ``schema`` (factory.predictions/1), ``labels``, ``complete`` (every frame of the train
    accounted for).  A train is sent when all its frames are predicted or rejected, or, when
    frames of it were dropped, once ``max_open`` later trains are waiting, and at the end.
    Sources without trains: one message per frame, with the frame id as train id.  Never
    slows the predictor: a message that finds ``queue`` messages still unsent is dropped
    and counted (``unsent``); at the end, waits up to ``drain_s`` for the queue to empty."""

    SOURCE = "factory/predictions"

    def __init__(self, endpoint: str, labels: list[str], pattern: str = "REP", queue: int = 64,
                 max_open: int = 16, drain_s: float = 2.0):
        from karabo_bridge import ServerInThread

        endpoint = _endpoint(endpoint)
        if pattern not in ("REP", "PUB", "PUSH"):
            raise ValueError(f"--pub-pattern {pattern!r}: choose REP, PUB or PUSH")
        try:
            self.server = ServerInThread(endpoint, sock=pattern, maxlen=queue)
        except zmq.ZMQError as exc:
            raise ValueError(f"--pub {endpoint!r}: cannot bind ({exc})") from None
        self.server.start()
        self.labels, self.max_open, self.drain_s = list(labels), max_open, drain_s
        self.open: collections.OrderedDict[int, _Train] = collections.OrderedDict()
        self.sent = self.unsent = 0
        self._closed = False

    def _train(self, tid: int, size: int) -> _Train:
        tr = self.open.get(tid)
        if tr is None:
            tr = self.open[tid] = _Train(tid, size)
        return tr

    def write_results(self, res) -> None:
        for j, fid in enumerate(res.frame_ids):
            tid = int(res.train_ids[j]) if res.train_ids[j] >= 0 else int(fid)
            tr = self._train(tid, int(res.train_sizes[j]))
            tr.frames.append((int(fid), max(0, int(res.pulse_ids[j])), int(res.cell_ids[j]),
                              float(res.latency_ms[j]), {n: float(res.values[n][j]) for n in self.labels}))
            tr.done += 1
        for fid, t, p, size, reason in res.rejected:
            tr = self._train(t if t >= 0 else int(fid), size)
            tr.rejected.append((max(0, p), reason))
            tr.done += 1
        for tid in [t for t, tr in self.open.items() if tr.done >= tr.size]:
            self._send(self.open.pop(tid), complete=True)
        while len(self.open) > self.max_open:  # frames of the oldest were dropped: send what there is
            self._send(self.open.popitem(last=False)[1], complete=False)

    def _send(self, tr: _Train, complete: bool) -> None:
        f = tr.frames
        data = {
            "schema": SCHEMA, "labels": self.labels, "complete": bool(complete),
            "trainId": np.full(len(f), tr.tid, dtype=np.uint64),
            "pulseId": np.array([x[1] for x in f], dtype=np.uint64),
            "cellId": np.array([x[2] for x in f], dtype=np.int64),
            "frameId": np.array([x[0] for x in f], dtype=np.int64),
            "latency_ms": np.array([x[3] for x in f], dtype=np.float64),
            **{f"prediction.{n}": np.array([x[4][n] for x in f], dtype=np.float64) for n in self.labels},
            "rejected.pulseId": np.array([r[0] for r in tr.rejected], dtype=np.uint64),
            "rejected.reason": [r[1] for r in tr.rejected],
        }
        now = time.time()
        sec, frac = f"{now:.6f}".split(".")
        meta = {"source": self.SOURCE, "timestamp": now, "timestamp.sec": sec, "timestamp.frac": frac.ljust(18, "0"),
                "timestamp.tid": int(tr.tid)}
        try:
            self.server.feed({self.SOURCE: data}, {self.SOURCE: meta}, block=False)
            self.sent += 1
        except Exception:  # queue.Full: no consumer keeps up; never wait for one
            self.unsent += 1

    def flush(self, summary=None) -> None:
        if summary is not None:
            while self.open:
                tr = self.open.popitem(last=False)[1]
                self._send(tr, complete=tr.done >= tr.size)

    def report(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "source": self.SOURCE, "trains": self.sent, "unsent": self.unsent}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + self.drain_s
        while self.server.buffer.qsize() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.server.stop()


def open_pub(endpoint: str, protocol: str, labels: list[str], pattern: str | None = None):
    """The sink for ``--pub``: ``msgpack`` (PUB, schema factory.predictions/1) or ``karabo``
    (a karabo-bridge server, REP unless ``pattern``)."""
    if protocol == "msgpack":
        if pattern not in (None, "PUB"):
            raise ValueError(f"--pub-pattern {pattern!r}: msgpack predictions are published on PUB")
        return PubSink(endpoint)
    if protocol == "karabo":
        return KaraboSink(endpoint, labels, pattern or "REP")
    raise ValueError(f"--pub-protocol {protocol!r}: choose msgpack or karabo")


def check_png(path: str | Path, overwrite: bool) -> Path:
    """The PNG's absolute path; an existing file is replaced only with ``overwrite`` and only when
    it is a PNG (never a user's other file, a folder or a symlink)."""
    path = user_path(path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputError(f"{path} already exists; pass --overwrite to replace it")
    return check_file_output(path, "png")


class PngSink:
    """Every ``every_s`` seconds, a PNG of the recent predictions (last ``window`` frames)."""

    def __init__(self, path: str | Path, labels: list[str], every_s: float = 10.0, window: int = 2000,
                 overwrite: bool = False, units: dict[str, str | None] | None = None):
        self.path, self.labels, self.every_s, self.window = check_png(path, overwrite), labels, every_s, window
        self.units = dict(units or {})  # of the labels; default the known ones (factory.plots.style)
        self.ids: list[int] = []
        self.values: dict[str, list[float]] = {n: [] for n in labels}
        self.last = 0.0

    def write(self, frame_ids, latency_ms, values) -> None:
        self.ids.extend(int(i) for i in frame_ids)
        for n in self.labels:
            self.values[n].extend(float(v) for v in values[n])
        if len(self.ids) > 2 * self.window:
            self.ids = self.ids[-self.window:]
            self.values = {n: v[-self.window:] for n, v in self.values.items()}
        if time.monotonic() - self.last >= self.every_s:
            self.flush()

    def figure(self):
        """The recent predictions per label (y in the label's unit) against the frame id."""
        from factory.plots.style import KNOWN_UNITS, axis_label, plt

        k = len(self.labels)
        fig, axes = plt.subplots(k, 1, figsize=(7, 1.7 * k + 0.7), sharex=True, squeeze=False, layout="constrained")
        ids = np.asarray(self.ids[-self.window:])
        for ax, n in zip(axes[:, 0], self.labels):
            ax.plot(ids, np.asarray(self.values[n][-self.window:]), ".", ms=2)
            ax.set_ylabel(axis_label(n, "index" if n == "class" else self.units.get(n, KNOWN_UNITS.get(n)), "predicted "),
                          fontsize=8)
            ax.tick_params(labelsize=7)
        axes[-1, 0].set_xlabel("frame id (count)")
        fig.suptitle(f"recent predictions ({len(ids)} frames)", fontsize=9)
        return fig

    def flush(self, summary=None) -> None:
        if not self.ids:
            return
        from factory.plots.style import plt

        fig = self.figure()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
        os.replace(tmp, self.path)  # never a half-written PNG
        self.last = time.monotonic()
