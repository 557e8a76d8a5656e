"""Wire formats for detector frames.  No pickle anywhere: msgpack (without extension hooks)
or JSON headers and raw array buffers, every size checked before anything is allocated.

**karabo-bridge** (European XFEL, protocol 2.2): a message is a sequence of (header, payload)
parts per source: a msgpack header ``{'source', 'content': 'msgpack', 'metadata'}`` followed by
the msgpack dict of scalar data, then for each array a header ``{'source', 'content':
'array', 'path', 'dtype', 'shape'}`` followed by the raw buffer.  A train carries, beside the
image (``image.data``, ``data.adc``, ... or the array named by ``key``), per-pulse metadata
arrays (``image.trainId``, ``image.pulseId``, ``image.cellId``: integers, never images) and
auxiliary ones (gain, mask, ...), which are skipped.  Frames carry the train id
(``metadata['timestamp.tid']``, checked against ``trainId``) and the pulse id (``pulseId``, else
the pulse's index): a 2D image is one frame with id = train id; a train of pulses gives one
frame per pulse with id ``tid * PULSE_STRIDE + pulseId``.  The pulse/memory-cell axis and
the modules come from the detector's documented layout (:mod:`.detectors`): without a detector
an array is (H, W) or (pulses, H, W).

**simple** (for other detectors): two parts, ``[header, buffer]``; the header is msgpack or
JSON (a JSON header starts with ``{``) ``{"frame_id": int, "dtype": str, "shape": [H, W]}``
and the buffer holds exactly prod(shape) * itemsize bytes, C order.  An optional ``"seq"``
(the sender's message counter: 0, 1, 2, ... for every message it sends) lets the receiver
count messages that never arrived (see ``SeqCounter``).

Every input either decodes or raises ``Rejected`` with a reason: frame ids and seq numbers
must be integers in [0, 2**63) (they are stored as int64), headers are at most 64 KiB (JSON,
nested at most ``MAX_DEPTH`` deep, checked before parsing) or 1 MiB (karabo msgpack), and
untrusted values are shown in reasons only through ``reprlib`` (bounded length and depth).
"""

from __future__ import annotations

import json
import reprlib
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from factory.jsonfile import json_too_deep

DTYPES = {"uint8", "uint16", "uint32", "int16", "int32", "float32", "float64", "<u2", "<f4", "<f8", ">f4", ">u2"}
#: dtypes of the per-pulse metadata arrays (trainId is uint64 on the wire)
META_DTYPES = {"uint8", "uint16", "uint32", "uint64", "int16", "int32", "int64", "<u2", "<u4", "<u8", "<i4", "<i8"}
#: per-pulse metadata carried through to the frames (last part of the array's path)
METADATA = ("trainId", "pulseId", "cellId")
#: arrays beside the image that are never the image
AUXILIARY = {"gain", "mask", "length", "status", "passport", "memoryCell", "frameNumber", "timestamp", "bunchId",
             "sources", "modulesPresent"}
#: the image array of the detectors' karabo-bridge sources, in order of preference
IMAGE_KEYS = ("image.data", "data.adc", "data.image.pixels", "data.image.data", "data.image")
MAX_DIM = 8192
PULSE_STRIDE = 10_000
MAX_ID = 2**63 - 1          # frame ids and seq numbers are stored as int64
MAX_HEADER = 1 << 16        # bytes of a simple-protocol header
MAX_DEPTH = 32              # nesting of a JSON header, checked before json.loads sees it


def show(value: Any) -> str:
    """An untrusted value for a reason: bounded in length and depth, never raising."""
    try:
        text = reprlib.repr(value)
    except Exception:  # e.g. an int too long to print
        return f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def valid_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


class Rejected(Exception):
    """A malformed message: counted and skipped, never fatal. ``seq``: the sender's message
    number when the header was readable."""

    def __init__(self, reason: str, frame_id: int | None = None, seq: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.frame_id = frame_id
        self.seq = seq


@dataclass
class Frame:
    """One image to predict.  Frames of a karabo-bridge train carry ``train_id`` and
    ``pulse_id`` (None from other sources) and ``train_size``: how many frames their train gave;
    ``meta`` holds ``source``, ``cell_id`` and ``detector`` where known."""

    frame_id: int
    image: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    t_received: float = 0.0
    seq: int | None = None
    train_id: int | None = None
    pulse_id: int | None = None
    train_size: int = 1


@dataclass
class SeqCounter:
    """Messages a sender numbered (``seq`` 0, 1, 2, ... for every message) that never arrived.

    ``see`` is called once per received message, in arrival order, with its seq (None when the
    message carried none or was unreadable).  A jump from seq a to b with k messages received
    in between means b - a - 1 - k messages were lost; a seq that goes back starts counting
    afresh (the sender restarted).  Messages lost after the last numbered one that arrived
    cannot be seen.
    """

    last: int | None = None
    between: int = 0
    lost: int = 0

    def see(self, seq: int | None) -> None:
        if seq is None:
            self.between += 1
            return
        if self.last is not None and seq > self.last:
            self.lost += max(0, seq - self.last - 1 - self.between)
        self.last, self.between = seq, 0


def _bytes(part) -> memoryview:
    return memoryview(part.buffer if hasattr(part, "buffer") else part)


def _unpack(buf: memoryview, max_bytes: int) -> Any:
    if len(buf) > max_bytes:
        raise Rejected(f"header over the size limit ({len(buf)} > {max_bytes} bytes)")
    try:
        return msgpack.unpackb(
            buf, raw=False, strict_map_key=True, max_bin_len=max_bytes, max_str_len=1 << 16,
            max_array_len=1 << 16, max_map_len=1 << 12, max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several types for garbage
        raise Rejected(f"bad msgpack header ({type(exc).__name__})") from None


def array_from_buffer(buf: memoryview, dtype: Any, shape: Any, max_bytes: int, frame_id=None,
                      seq: int | None = None, dtypes: set[str] = DTYPES, max_ndim: int = 3) -> np.ndarray:
    """Validate (dtype, shape, length) against the buffer, then view it without copying."""
    if not isinstance(dtype, str) or dtype not in dtypes:
        raise Rejected(f"dtype not allowed ({show(dtype)})", frame_id, seq)
    if (not isinstance(shape, (list, tuple)) or not 1 <= len(shape) <= max_ndim
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n <= MAX_DIM for n in shape)):
        raise Rejected(f"bad shape ({show(shape)})", frame_id, seq)
    dt = np.dtype(dtype)
    need = int(np.prod(shape)) * dt.itemsize
    if need > max_bytes:
        raise Rejected(f"frame over the byte limit ({need} > {max_bytes} bytes)", frame_id, seq)
    if len(buf) != need:
        raise Rejected(f"buffer size differs from the header ({len(buf)} bytes, header says {need})", frame_id, seq)
    return np.frombuffer(buf, dtype=dt).reshape(shape)


def check_finite(image: np.ndarray, frame_id, seq: int | None = None) -> np.ndarray:
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise Rejected("frame holds NaN/Inf", frame_id, seq)
    return image


def decode_simple(parts: list, max_bytes: int) -> list[Frame]:
    if len(parts) != 2:
        raise Rejected(f"not 2 message parts [header, buffer] (got {len(parts)})")
    head = _bytes(parts[0])
    if head[:1] == b"{":
        if len(head) > MAX_HEADER:
            raise Rejected(f"JSON header over the size limit ({len(head)} > {MAX_HEADER} bytes)")
        text = bytes(head)
        if json_too_deep(text, MAX_DEPTH):
            raise Rejected(f"JSON header nested deeper than {MAX_DEPTH}")
        try:
            header = json.loads(text)
        except ValueError:  # includes UnicodeDecodeError and over-long integers
            raise Rejected("bad JSON header") from None
    else:
        header = _unpack(head, MAX_HEADER)
    if not isinstance(header, dict):
        raise Rejected("header is not a mapping")
    seq = header.get("seq")
    if seq is not None and not valid_id(seq):
        raise Rejected(f"bad seq ({show(seq)}; an integer in [0, 2**63))")
    fid = header.get("frame_id")
    if not valid_id(fid):
        raise Rejected(f"bad frame_id ({show(fid)}; an integer in [0, 2**63))", None, seq)
    image = array_from_buffer(_bytes(parts[1]), header.get("dtype"), header.get("shape"), max_bytes, fid, seq)
    if image.ndim != 2:
        raise Rejected(f"simple protocol frames are 2D (got shape {image.shape})", fid, seq)
    return [Frame(fid, check_finite(image, fid, seq), {}, seq=seq)]


def simple_header(frame_id: int, dtype: np.dtype, shape: tuple[int, ...], header: str = "msgpack",
                  seq: int | None = None) -> bytes:
    """The header part of a simple-protocol message (msgpack or JSON)."""
    dtype = np.dtype(dtype)
    h = {"frame_id": int(frame_id), "dtype": dtype.str if dtype.byteorder == ">" else str(dtype), "shape": list(shape)}
    if seq is not None:
        h["seq"] = int(seq)
    return json.dumps(h).encode() if header == "json" else msgpack.packb(h, use_bin_type=True)


def encode_simple(frame_id: int, image: np.ndarray, header: str = "msgpack", seq: int | None = None) -> list[bytes]:
    image = np.ascontiguousarray(image)
    return [simple_header(frame_id, image.dtype, image.shape, header, seq), image.tobytes()]


def _last(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def _pick_image(arrays: list[tuple[str, str, dict, memoryview]], source: str | None, key: str | None):
    """The (source, path, header, buffer) of the image: ``key`` where given, else the first of
    IMAGE_KEYS present, else the first array that is neither metadata nor auxiliary."""
    mine = [a for a in arrays if source in (None, a[0])]
    if key is not None:
        return next((a for a in mine if a[1] == key), None)
    for want in IMAGE_KEYS:
        for a in mine:
            if a[1] == want:
                return a
    return next((a for a in mine if _last(a[1]) not in METADATA and _last(a[1]) not in AUXILIARY), None)


def _pulse_metadata(arrays, src: str, path: str, max_bytes: int) -> dict[str, np.ndarray]:
    """{trainId/pulseId/cellId: 1D integer array} of the image's source (same path prefix first)."""
    prefix = path.rsplit(".", 1)[0] + "." if "." in path else ""
    found: dict[str, np.ndarray] = {}
    for name in METADATA:
        cands = [a for a in arrays if a[0] == src and _last(a[1]) == name]
        cands.sort(key=lambda a: a[1] != prefix + name)  # the image's own first
        if cands:
            _, p, h, buf = cands[0]
            arr = array_from_buffer(buf, h.get("dtype"), h.get("shape"), max_bytes, dtypes=META_DTYPES)
            if arr.ndim == 2 and arr.shape[0] >= 1 and (arr == arr[:1]).all():  # (modules, pulses), all alike
                arr = arr[0]
            if arr.ndim != 1:
                raise Rejected(f"metadata array {show(p)} is not one value per pulse (shape {arr.shape})")
            found[name] = arr
    return found


def train_ids(tid: Any, meta_arrays: dict[str, np.ndarray], src: str) -> int:
    """The train id: ``timestamp.tid``, which the per-pulse ``trainId`` (where sent) must equal."""
    t = meta_arrays.get("trainId")
    if not valid_id(tid):
        if t is not None and len(t) and (t == t[0]).all() and valid_id(int(t[0])):
            return int(t[0])
        raise Rejected(f"bad train id timestamp.tid ({show(tid)} for source {show(src)}; an integer in [0, 2**63))")
    if t is not None and len(t) and not (t == tid).all():
        raise Rejected(f"trainId array differs from the train id {tid}", tid)
    return tid


def pulse_ids(meta_arrays: dict[str, np.ndarray], n: int, tid: int) -> list[int]:
    """One pulse id per frame: ``pulseId`` where sent (unique, < PULSE_STRIDE), else 0..n-1."""
    p = meta_arrays.get("pulseId")
    if p is None:
        return list(range(n))
    if len(p) != n:
        raise Rejected(f"pulseId has {len(p)} values for {n} pulses", tid)
    ids = [int(v) for v in p]
    if min(ids) < 0 or max(ids) >= PULSE_STRIDE or len(set(ids)) != n:
        raise Rejected(f"pulseId values not unique in [0, {PULSE_STRIDE})", tid)
    return ids


def decode_karabo(parts: list, max_bytes: int, source: str | None = None, key: str | None = None,
                  detector: str = "auto", layout: str = "auto") -> list[Frame]:
    """The frames of one karabo-bridge train.  ``detector``: ``none`` (arrays are (H, W) or
    (pulses, H, W)), ``auto`` (the detector named by the source, else none) or a key of
    :data:`.detectors.DETECTORS`; ``layout``: the detector's ``online``/``file`` layout, or ``auto``."""
    from .detectors import detector_for, split_train

    if len(parts) < 2 or len(parts) % 2:
        raise Rejected(f"karabo-bridge 2.2 messages have an even number of parts (got {len(parts)})")
    meta: dict[str, dict] = {}
    arrays: list[tuple[str, str, dict, memoryview]] = []
    total = 0
    for h, p in zip(parts[::2], parts[1::2]):
        header = _unpack(_bytes(h), 1 << 20)
        if not isinstance(header, dict) or not isinstance(header.get("source"), str):
            raise Rejected("karabo-bridge header without a source")
        src, content = header["source"], header.get("content")
        if content == "msgpack":
            meta[src] = header.get("metadata") if isinstance(header.get("metadata"), dict) else {}
        elif content == "array":
            path = header.get("path")
            if not isinstance(path, str):
                raise Rejected(f"karabo-bridge array header without a path string ({show(path)})")
            buf = _bytes(p)
            total += len(buf)
            if total > max_bytes:
                raise Rejected(f"train of more than {max_bytes} bytes")
            arrays.append((src, path, header, buf))
        else:
            raise Rejected(f"unknown karabo-bridge content ({show(content)})")
    picked = _pick_image(arrays, source, key)
    if picked is None:
        raise Rejected(f"no array {source or '*'}/{key or '*'} in the train")
    src, path, header, buf = picked
    det = detector_for(detector, src)
    image = array_from_buffer(buf, header.get("dtype"), header.get("shape"), max_bytes, max_ndim=4)
    per_pulse = _pulse_metadata(arrays, src, path, max_bytes)
    tid = train_ids(meta.get(src, {}).get("timestamp.tid"), per_pulse, src)
    base = {"source": src}
    if det is None:
        if image.ndim == 2:
            stack, pulsed = image[None], False
        elif image.ndim == 3:
            stack, pulsed = image, True
        else:
            raise Rejected(f"karabo array is not an image (shape {image.shape}; for a detector's "
                           "multi-module data pass --detector)", tid)
    else:
        try:
            stack, pulsed = split_train(det, image, layout), True
        except ValueError as exc:
            raise Rejected(str(exc), tid) from None
        base["detector"] = det.key
    n = len(stack)
    if not pulsed:  # one image per train: frame id = train id
        return [Frame(tid, check_finite(stack[0], tid), base, train_id=tid, pulse_id=0)]
    pids = pulse_ids(per_pulse, n, tid)
    if not valid_id(tid * PULSE_STRIDE + max(pids)):
        raise Rejected(f"train id too large for per-pulse frame ids ({tid}; tid * {PULSE_STRIDE} + pulse < 2**63)", tid)
    cells = per_pulse.get("cellId")
    cells = [int(c) for c in cells] if cells is not None and len(cells) == n else None
    frames = []
    for p in range(n):
        fid = tid * PULSE_STRIDE + pids[p]
        # a detector's missing pixels (NaN) are masked when its frame is assembled, not refused here
        img = stack[p] if det is not None else check_finite(stack[p], fid)
        m = dict(base, cell_id=cells[p]) if cells is not None else base
        frames.append(Frame(fid, img, m, train_id=tid, pulse_id=pids[p], train_size=n))
    return frames
