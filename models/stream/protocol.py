"""Wire formats for detector frames.  No pickle anywhere: msgpack (without extension hooks)
or JSON headers and raw array buffers, every size checked before anything is allocated.

**karabo-bridge** (European XFEL, protocol 2.2): a message is a sequence of (header, payload)
parts per source: a msgpack header ``{'source', 'content': 'msgpack', 'metadata'}`` followed by
the msgpack dict of scalar data, then for each array a header ``{'source', 'content':
'array', 'path', 'dtype', 'shape'}`` followed by the raw buffer.  The frame id is the train id
(``metadata['timestamp.tid']``); a 3D array (pulses, H, W) gives one frame per pulse with id
``tid * PULSE_STRIDE + pulse``.

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
import re
import reprlib
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

DTYPES = {"uint8", "uint16", "uint32", "int16", "int32", "float32", "float64", "<u2", "<f4", "<f8", ">f4", ">u2"}
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
    frame_id: int
    image: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    t_received: float = 0.0
    seq: int | None = None


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
                      seq: int | None = None) -> np.ndarray:
    """Validate (dtype, shape, length) against the buffer, then view it without copying."""
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise Rejected(f"dtype not allowed ({show(dtype)})", frame_id, seq)
    if (not isinstance(shape, (list, tuple)) or not 1 <= len(shape) <= 3
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


_BRACKETS = re.compile(rb'[\[\]{}"\\]')


def json_too_deep(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether a JSON text nests deeper than ``limit`` (brackets inside strings not counted)."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth, in_string, skip = 0, False, -1
    for m in _BRACKETS.finditer(data):
        i = m.start()
        if i == skip:
            continue
        c = data[i]
        if in_string:
            if c == 0x5C:  # backslash: the next byte is escaped
                skip = i + 1
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in b"[{":
            depth += 1
            if depth > limit:
                return True
        elif c in b"]}":
            depth -= 1
    return False


def decode_simple(parts: list, max_bytes: int) -> list[Frame]:
    if len(parts) != 2:
        raise Rejected(f"not 2 message parts [header, buffer] (got {len(parts)})")
    head = _bytes(parts[0])
    if head[:1] == b"{":
        if len(head) > MAX_HEADER:
            raise Rejected(f"JSON header over the size limit ({len(head)} > {MAX_HEADER} bytes)")
        text = bytes(head)
        if json_too_deep(text):
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


def decode_karabo(parts: list, max_bytes: int, source: str | None = None, key: str | None = None) -> list[Frame]:
    if len(parts) < 2 or len(parts) % 2:
        raise Rejected(f"karabo-bridge 2.2 messages have an even number of parts (got {len(parts)})")
    meta: dict[str, dict] = {}
    arrays: list[tuple[str, str, np.ndarray]] = []
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
            if source in (None, src) and key in (None, path):
                arrays.append((src, path, array_from_buffer(buf, header.get("dtype"), header.get("shape"), max_bytes)))
        else:
            raise Rejected(f"unknown karabo-bridge content ({show(content)})")
    if not arrays:
        want = f"{source or '*'}/{key or '*'}"
        raise Rejected(f"no array {want} in the train")
    src, _, image = arrays[0]
    tid = meta.get(src, {}).get("timestamp.tid")
    if not valid_id(tid):
        raise Rejected(f"bad train id timestamp.tid ({show(tid)} for source {show(src)}; an integer in [0, 2**63))")
    if image.ndim == 3 and not valid_id(tid * PULSE_STRIDE + image.shape[0] - 1):
        raise Rejected(f"train id too large for per-pulse frame ids ({tid}; tid * {PULSE_STRIDE} + pulse < 2**63)", tid)
    if image.ndim == 2:
        return [Frame(tid, check_finite(image, tid), {"source": src})]
    if image.ndim == 3:
        return [Frame(tid * PULSE_STRIDE + p, check_finite(image[p], tid * PULSE_STRIDE + p), {"source": src})
                for p in range(image.shape[0])]
    raise Rejected(f"karabo array is not an image (shape {image.shape})", tid)
