"""Where predictions go: a Zarr results store, a ZeroMQ PUB socket, a periodic PNG."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zarr
import zmq

from factory.errors import OutputError
from factory.outputs import is_factory_zarr, staged_output, user_path
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
        dtypes = {"frame_id": "int64"}
        units = dict(units) if units is not None else _label_units(attrs, labels)
        cf_attrs = {"frame_id": {"units": "1", "long_name": "frame id (from the source)"},
                    "latency_ms": {"units": "ms", "long_name": "latency from receipt to prediction",
                                   "coordinates": "frame_id"}}
        for n in labels:
            cf_attrs[n] = {"long_name": f"predicted {n}", "coordinates": "frame_id",
                           **({"units": units[n]} if n in units else {})}
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with staged_output(self.path, overwrite=overwrite, what="predictions store", recognise=is_factory_zarr) as tmp:
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
            self.buffer[n].extend(np.asarray(values[n], dtype=np.float64).tolist())
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


class PubSink:
    """Publishes one msgpack message per frame: {"frame_id", "latency_ms", <label>: value}."""

    def __init__(self, endpoint: str):
        if not endpoint.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"--pub {endpoint!r} is not a ZeroMQ endpoint (tcp://127.0.0.1:port)")
        self.sock = zmq.Context.instance().socket(zmq.PUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        try:
            self.sock.bind(endpoint)
        except zmq.ZMQError as exc:
            self.sock.close(linger=0)
            raise ValueError(f"--pub {endpoint!r}: cannot bind ({exc})") from None

    def write(self, frame_ids, latency_ms, values) -> None:
        for j, fid in enumerate(frame_ids):
            msg = {"frame_id": int(fid), "latency_ms": float(latency_ms[j])}
            msg.update({k: float(v[j]) for k, v in values.items() if np.ndim(v) == 1})
            self.sock.send(msgpack.packb(msg, use_bin_type=True))

    def flush(self, summary=None) -> None:
        pass

    def close(self) -> None:
        self.sock.close(linger=0)


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_png(path: str | Path, overwrite: bool) -> Path:
    """The PNG's absolute path; an existing file is replaced only with ``overwrite`` and only when
    it is a PNG (never a user's other file, a folder or a symlink)."""
    path = user_path(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise OutputError(f"{path} already exists; pass --overwrite to replace it")
        if path.is_symlink() or not path.is_file() or _head(path) != PNG_MAGIC:
            raise OutputError(f"{path} exists and is not a PNG file; refusing to replace it")
    return path


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(len(PNG_MAGIC))


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
