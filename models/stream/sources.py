"""Frame sources: ZeroMQ endpoints (karabo-bridge or the simple protocol; REQ, PULL or SUB),
and replay of a dataset store or a folder of images at a chosen rate.

A source is an iterator of ``Frame`` (decoded), ``Rejected`` (a malformed message, to be
counted) or ``None`` (nothing arrived within a short poll; lets the caller check for a stop
request or its idle timeout).  A socket whose connection drops (the peer went away, or sent a
part over the MAXMSGSIZE limit, after which libzmq would never reconnect) is closed and opened
again; ``reconnects`` counts those.  A REQ whose reply has not come after ``timeout_s`` while
the connection is up (a slow server, or one with nothing more to send) is asked again on a fresh
socket (the "lazy pirate" pattern), counted in ``timeouts``, not as a reconnect.  ``lost``
says, when the connection is down at the end of a run after having been up, that the source
was lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from .protocol import Frame, Rejected, decode_karabo, decode_simple

PATTERNS = ("REQ", "PULL", "SUB")
PROTOCOLS = ("karabo", "simple")
POLL_MS = 100  # how often the reader looks up from an idle socket (stop requests, idle timeout)


class ZmqSource:
    def __init__(self, url: str, *, pattern: str = "REQ", protocol: str = "karabo", max_bytes: int = 64 << 20,
                 timeout_s: float = 10.0, karabo_source: str | None = None, karabo_key: str | None = None,
                 detector: str = "auto", layout: str = "auto"):
        if pattern not in PATTERNS:
            raise ValueError(f"pattern {pattern!r}: choose one of {', '.join(PATTERNS)}")
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
        if not url.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"source {url!r} is not a ZeroMQ endpoint (tcp://host:port)")
        if not timeout_s > 0:
            raise ValueError(f"timeout {timeout_s}: must be > 0 seconds")
        from .detectors import CHOICES, LAYOUTS

        if detector not in CHOICES:
            raise ValueError(f"detector {detector!r}: choose one of {', '.join(CHOICES)}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
        self.url, self.pattern, self.protocol = url, pattern, protocol
        self.max_bytes, self.timeout_s = max_bytes, float(timeout_s)
        self.karabo = (karabo_source, karabo_key, detector, layout)
        self.ctx = zmq.Context.instance()
        self.sock: zmq.Socket | None = None
        self.monitor: zmq.Socket | None = None
        self.reconnects = 0        # connections that dropped and were opened again
        self.timeouts = 0          # REQ replies that did not come within timeout_s on a live connection
        self.connected = False     # as the socket's monitor last said
        self.ever_connected = False
        self._dropped_at: float | None = None  # when the connection last dropped (None: up, or never)
        self._closed = False
        self._open()  # a malformed endpoint fails here, before the run starts

    def _open(self) -> None:
        kind = {"REQ": zmq.REQ, "PULL": zmq.PULL, "SUB": zmq.SUB}[self.pattern]
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        # libzmq refuses any message part larger than this before allocating it, by dropping the
        # connection for good (a protocol error); the monitor sees that and __iter__ reconnects.
        # Parts between max_bytes and this reach the decoder and are counted as rejected.
        sock.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_bytes + (1 << 20))
        sock.setsockopt(zmq.RCVHWM, 4)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        if self.pattern == "SUB":
            sock.setsockopt(zmq.SUBSCRIBE, b"")
        monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        try:
            sock.connect(self.url)
        except zmq.ZMQError as exc:
            monitor.close(linger=0)
            sock.close(linger=0)
            raise ValueError(f"source {self.url!r}: {exc}") from None
        self.sock, self.monitor = sock, monitor
        self.poller = zmq.Poller()
        self.poller.register(sock, zmq.POLLIN)
        self.poller.register(monitor, zmq.POLLIN)

    def _shut(self) -> None:
        if self.sock is not None:
            self.sock.disable_monitor()
            self.monitor.close(linger=0)
            self.sock.close(linger=0)
            self.sock = self.monitor = None

    def _reopen(self) -> None:
        self._shut()
        self._open()

    @property
    def lost(self) -> str | None:
        """Why the source counts as lost (its connection dropped and is not back), or None."""
        if self.ever_connected and not self.connected and self._dropped_at is not None:
            return (f"{self.url} dropped the connection {time.monotonic() - self._dropped_at:.1f} s before the end "
                    "and did not come back")
        return None

    def _decode(self, parts) -> list[Frame]:
        if self.protocol == "karabo":
            return decode_karabo(parts, self.max_bytes, *self.karabo)
        return decode_simple(parts, self.max_bytes)

    def _messages(self, parts) -> Iterator[Frame | Rejected]:
        now = time.perf_counter()
        try:
            for f in self._decode(parts):
                f.t_received = now
                yield f
        except Rejected as rej:
            yield rej

    def __iter__(self) -> Iterator[Frame | Rejected | None]:
        if self.sock is None:
            self._open()
        waiting, asked = False, 0.0
        try:
            while not self._closed:
                if self.pattern == "REQ" and not waiting:
                    self.sock.send(b"next")
                    waiting, asked = True, time.monotonic()
                ready = dict(self.poller.poll(POLL_MS))
                if self.monitor in ready:
                    event = recv_monitor_message(self.monitor)["event"]
                    if event == zmq.EVENT_CONNECTED:
                        self.connected = self.ever_connected = True
                        self._dropped_at = None
                        continue
                    # the connection was dropped (peer gone, or a part over MAXMSGSIZE, after which
                    # libzmq never reconnects): keep what already arrived, then connect afresh
                    while self.sock.poll(0, zmq.POLLIN):
                        yield from self._messages(self.sock.recv_multipart(copy=False))
                    self.connected, self._dropped_at = False, time.monotonic()
                    self._reopen()
                    self.reconnects += 1
                    waiting = False
                    yield None
                    continue
                if self.sock not in ready:
                    if waiting and self.connected and time.monotonic() - asked > self.timeout_s:
                        # no reply on a live connection: ask again on a fresh socket (lazy pirate)
                        self._reopen()
                        self.connected = False
                        self.timeouts += 1
                        waiting = False
                    yield None
                    continue
                parts = self.sock.recv_multipart(copy=False)
                waiting = False
                yield from self._messages(parts)
        finally:
            self._shut()

    def close(self) -> None:
        self._closed = True


class ReplaySource:
    """Frames from a dataset store (raw images) or a folder of .npy/.png images, at ``rate`` Hz."""

    def __init__(self, path: str | Path, *, rate: float | None = None, limit: int | None = None):
        self.path = Path(path)
        self.rate = rate
        self.limit = limit
        self._closed = False
        if (self.path / "zarr.json").is_file() or (self.path / "images" / "zarr.json").is_file():
            from factory.store import DatasetStore  # refuses incomplete or damaged stores

            self.store = DatasetStore.open(self.path)
            self.files = None
            self.n = self.store.n_samples
        elif self.path.is_dir():
            self.store = None
            self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in (".npy", ".png"))
            if not self.files:
                raise ValueError(f"{self.path}: no .npy or .png images to replay")
            self.n = len(self.files)
        else:
            raise ValueError(f"replay source {self.path} is neither a dataset store nor a folder of images")
        if limit:
            self.n = min(self.n, limit)

    def _load(self, i: int) -> np.ndarray:
        if self.store is not None:
            return self.store.images[i]
        p = self.files[i]
        if p.suffix.lower() == ".npy":
            return np.load(p, allow_pickle=False)
        import matplotlib.image as mpimg

        img = mpimg.imread(p)
        return img[..., :3].mean(axis=-1) if img.ndim == 3 else img

    def __iter__(self) -> Iterator[Frame | Rejected | None]:
        t0 = time.perf_counter()
        chunk = self.store.chunk if self.store is not None else 1
        cache: tuple[int, np.ndarray] | None = None
        for i in range(self.n):
            if self._closed:
                return
            if self.rate:
                delay = t0 + i / self.rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            if self.store is not None:  # read a whole chunk at once
                c = i // chunk
                if cache is None or cache[0] != c:
                    cache = (c, self.store.images[c * chunk: min((c + 1) * chunk, self.store.n_samples)])
                image = cache[1][i - c * chunk]
            else:
                try:
                    image = self._load(i)
                except (OSError, ValueError) as exc:
                    yield Rejected(f"unreadable image ({self.files[i].name}: {exc})", i)
                    continue
            yield Frame(i, np.asarray(image), {}, time.perf_counter())

    def close(self) -> None:
        self._closed = True


def open_source(spec: str, **kw) -> ZmqSource | ReplaySource:
    """``tcp://host:port`` (ZeroMQ) or a path (store / folder) to replay."""
    if "://" in spec:
        return ZmqSource(spec, **{k: v for k, v in kw.items() if k in (
            "pattern", "protocol", "max_bytes", "timeout_s", "karabo_source", "karabo_key", "detector", "layout")})
    from factory.outputs import user_path

    return ReplaySource(user_path(spec), rate=kw.get("rate"), limit=kw.get("limit"))
