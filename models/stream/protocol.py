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
and the buffer holds exactly prod(shape) * itemsize bytes, C order.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

DTYPES = {"uint8", "uint16", "uint32", "int16", "int32", "float32", "float64", "<u2", "<f4", "<f8", ">f4", ">u2"}
MAX_DIM = 8192
PULSE_STRIDE = 10_000


class Rejected(Exception):
    """A malformed message: counted and skipped, never fatal."""

    def __init__(self, reason: str, frame_id: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.frame_id = frame_id


@dataclass
class Frame:
    frame_id: int
    image: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    t_received: float = 0.0


def _bytes(part) -> memoryview:
    return memoryview(part.buffer if hasattr(part, "buffer") else part)


def _unpack(buf: memoryview, max_bytes: int) -> Any:
    if len(buf) > max_bytes:
        raise Rejected(f"header of {len(buf)} bytes exceeds {max_bytes}")
    try:
        return msgpack.unpackb(
            buf, raw=False, strict_map_key=True, max_bin_len=max_bytes, max_str_len=1 << 16,
            max_array_len=1 << 16, max_map_len=1 << 12, max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several types for garbage
        raise Rejected(f"bad msgpack header ({type(exc).__name__})") from None


def array_from_buffer(buf: memoryview, dtype: Any, shape: Any, max_bytes: int, frame_id=None) -> np.ndarray:
    """Validate (dtype, shape, length) against the buffer, then view it without copying."""
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise Rejected(f"dtype {dtype!r} not allowed", frame_id)
    if (not isinstance(shape, (list, tuple)) or not 1 <= len(shape) <= 3
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n <= MAX_DIM for n in shape)):
        raise Rejected(f"bad shape {shape!r}", frame_id)
    dt = np.dtype(dtype)
    need = int(np.prod(shape)) * dt.itemsize
    if need > max_bytes:
        raise Rejected(f"frame of {need} bytes exceeds the limit of {max_bytes}", frame_id)
    if len(buf) != need:
        raise Rejected(f"buffer holds {len(buf)} bytes, header says {need}", frame_id)
    return np.frombuffer(buf, dtype=dt).reshape(shape)


def check_finite(image: np.ndarray, frame_id) -> np.ndarray:
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise Rejected("frame holds NaN/Inf", frame_id)
    return image


def decode_simple(parts: list, max_bytes: int) -> list[Frame]:
    if len(parts) != 2:
        raise Rejected(f"expected 2 message parts [header, buffer], got {len(parts)}")
    head = _bytes(parts[0])
    if head[:1] == b"{":
        if len(head) > 1 << 16:
            raise Rejected("JSON header too long")
        try:
            header = json.loads(bytes(head))
        except (ValueError, UnicodeDecodeError):
            raise Rejected("bad JSON header") from None
    else:
        header = _unpack(head, 1 << 16)
    if not isinstance(header, dict):
        raise Rejected("header is not a mapping")
    fid = header.get("frame_id")
    if not isinstance(fid, int) or isinstance(fid, bool) or fid < 0:
        raise Rejected(f"bad frame_id {fid!r}")
    image = array_from_buffer(_bytes(parts[1]), header.get("dtype"), header.get("shape"), max_bytes, fid)
    if image.ndim != 2:
        raise Rejected(f"simple protocol frames are 2D, got shape {image.shape}", fid)
    return [Frame(fid, check_finite(image, fid), {})]


def simple_header(frame_id: int, dtype: np.dtype, shape: tuple[int, ...], header: str = "msgpack") -> bytes:
    """The header part of a simple-protocol message (msgpack or JSON)."""
    dtype = np.dtype(dtype)
    h = {"frame_id": int(frame_id), "dtype": dtype.str if dtype.byteorder == ">" else str(dtype), "shape": list(shape)}
    return json.dumps(h).encode() if header == "json" else msgpack.packb(h, use_bin_type=True)


def encode_simple(frame_id: int, image: np.ndarray, header: str = "msgpack") -> list[bytes]:
    image = np.ascontiguousarray(image)
    return [simple_header(frame_id, image.dtype, image.shape, header), image.tobytes()]


def decode_karabo(parts: list, max_bytes: int, source: str | None = None, key: str | None = None) -> list[Frame]:
    if len(parts) < 2 or len(parts) % 2:
        raise Rejected(f"karabo-bridge 2.2 messages have an even number of parts, got {len(parts)}")
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
            buf = _bytes(p)
            total += len(buf)
            if total > max_bytes:
                raise Rejected(f"train of more than {max_bytes} bytes")
            if source in (None, src) and key in (None, header.get("path")):
                arrays.append((src, str(header.get("path")), array_from_buffer(
                    buf, header.get("dtype"), header.get("shape"), max_bytes)))
        else:
            raise Rejected(f"unknown karabo-bridge content {content!r}")
    if not arrays:
        want = f"{source or '*'}/{key or '*'}"
        raise Rejected(f"no array {want} in the train")
    src, _, image = arrays[0]
    tid = meta.get(src, {}).get("timestamp.tid")
    if not isinstance(tid, int) or isinstance(tid, bool) or tid < 0:
        raise Rejected(f"train without an integer timestamp.tid for source {src!r}")
    if image.ndim == 2:
        return [Frame(tid, check_finite(image, tid), {"source": src})]
    if image.ndim == 3:
        return [Frame(tid * PULSE_STRIDE + p, check_finite(image[p], tid * PULSE_STRIDE + p), {"source": src})
                for p in range(image.shape[0])]
    raise Rejected(f"karabo array of shape {image.shape} is not an image", tid)
