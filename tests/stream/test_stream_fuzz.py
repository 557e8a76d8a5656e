"""Hostile input for the stream predictor: a property-based test of the decoders (hypothesis)
and a loopback flood of malformed messages of many kinds among valid frames.

Both assert the same promises: nothing but ``Rejected`` (with a reason) ever escapes the
decoders, every message is either predicted or rejected, and the counts balance exactly
(sent = predicted + rejected + dropped), with the connection kept and memory bounded.
"""

import json
import threading
import time

import msgpack
import numpy as np
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.stream.pipeline import StreamOptions, StreamPredictor
from models.stream.protocol import (MAX_ID, Frame, Rejected, SeqCounter, decode_karabo, decode_simple,
                                    encode_simple)
from models.stream.sinks import ZarrSink
from models.stream.sources import ZmqSource
from factory.testing import free_port
from models.testing import raw_frame, results

LIMIT = 1 << 20  # the decoders' byte limit in these tests (libzmq's MAXMSGSIZE is 2 x + 1 MiB)


# -- property-based: the decoders ---------------------------------------------------------
def check_outcome(decode, parts) -> str:
    """Decode; the only allowed outcomes are valid frames or Rejected with a reason."""
    try:
        frames = decode(parts, LIMIT)
    except Rejected as rej:
        assert isinstance(rej.reason, str) and rej.reason and len(rej.reason) < 400
        return "rejected"
    assert frames and all(isinstance(f, Frame) for f in frames)
    for f in frames:
        assert isinstance(f.frame_id, int) and 0 <= f.frame_id <= MAX_ID
        assert f.image.ndim == 2 and f.image.nbytes <= LIMIT
        assert f.image.dtype.kind != "f" or np.isfinite(f.image).all()
    return "accepted"


scalars = (st.none() | st.booleans() | st.integers() | st.integers(-(2**64), 2**64)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8) | st.binary(max_size=8))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                      max_leaves=5)
ids = st.sampled_from([0, 1, 10**15, 2**63 - 1, 2**63, 2**64 - 1, 10**30, -1]) | st.integers(-5, 2**70) | values
good_dtypes = st.sampled_from(["float32", "float64", "uint16", "int32", ">f4", "<f8"])
dtypes = good_dtypes | st.sampled_from(["float16", "object", "O", "", "V8", "S4"]) | values
good_shapes = st.lists(st.integers(1, 6), min_size=2, max_size=3)
shapes = good_shapes | st.lists(st.integers(-2, 12), min_size=0, max_size=4) | st.just([8192, 8192]) | values


def pack(header, as_json: bool, depth: int = 0) -> bytes:
    """``header`` as JSON or msgpack, with a value nested ``depth`` deep added under "x"."""
    try:
        if as_json:
            text = json.dumps(header, default=repr).encode()
            return text[:-1] + (b', "x": ' if len(header) else b'"x": ') + b"[" * depth + b"]" * depth + b"}"
        packed = msgpack.packb(header, use_bin_type=True)
        if not depth or len(header) > 14:
            return packed
        return bytes([0x80 | (len(header) + 1)]) + packed[1:] + msgpack.packb("x") + b"\x91" * depth + b"\xc0"
    except (OverflowError, TypeError, ValueError):  # e.g. ints beyond 64 bits: not representable in msgpack
        return b"\xc1"


def buffer_for(draw, dtype, shape, limit: int) -> bytes:
    """The buffer the header claims (when small), often exactly, sometimes a near miss."""
    try:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    except Exception:
        n = 0
    n = n if 0 <= n <= limit else 0
    n = max(0, n + draw(st.sampled_from([0, 0, 0, 0, -1, 1, -8])))
    return draw(st.sampled_from([b"\0", b"\x7f", b"\xff", b"\x3f", b"\x01"])) * n


@st.composite
def simple_messages(draw):
    """Mostly well-formed messages with hostile fields (ids, dtypes, shapes, sizes, NaN data,
    deep nesting); sometimes raw bytes."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.lists(st.binary(max_size=300), min_size=0, max_size=4))
    good = draw(st.booleans())
    header = {}
    for key, strat in (("frame_id", ids), ("seq", ids), ("dtype", good_dtypes if good else dtypes),
                       ("shape", good_shapes if good else shapes)):
        if good or draw(st.integers(0, 5)):
            header[key] = draw(strat)
    depth = draw(st.sampled_from([0, 0, 0, 2, 33, 3000]))
    body = buffer_for(draw, header.get("dtype"), header.get("shape"), 4 * LIMIT)
    return [pack(header, draw(st.booleans()), depth), body]


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(simple_messages(), min_size=1, max_size=4))
def test_simple_decoder_accepts_or_rejects_everything_with_a_reason(messages):
    outcomes = [check_outcome(decode_simple, m) for m in messages]
    assert outcomes.count("accepted") + outcomes.count("rejected") == len(messages)


@st.composite
def karabo_messages(draw):
    if draw(st.integers(0, 3)) == 0:
        return draw(st.lists(st.binary(max_size=200), min_size=0, max_size=6))
    good = draw(st.booleans())
    src = "det" if good else draw(st.text(max_size=6) | values)
    tid = draw(st.sampled_from([0, 7, 10**15, 2**63 // 10_000, 2**63 - 1, 2**64 - 1]) | st.integers(-3, 2**64) | values)
    meta = {"source": src, "content": "msgpack", "metadata": {"timestamp.tid": tid} if good else draw(
        st.fixed_dictionaries({"timestamp.tid": st.just(tid)}) | values)}
    shape = draw(st.sampled_from([[4, 5], [2, 4, 5], [3], [1, 1, 4, 5]]) if good else shapes)
    dtype = draw(good_dtypes if good else dtypes)
    arr = {"source": src, "content": "array" if good else draw(st.sampled_from(["array", "other"]) | values),
           "path": "image.data" if good else draw(st.sampled_from(["image.data"]) | values), "dtype": dtype,
           "shape": shape}
    return [pack(meta, False), b"\x80", pack(arr, False), buffer_for(draw, dtype, shape, LIMIT)]


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(karabo_messages())
def test_karabo_decoder_accepts_or_rejects_everything_with_a_reason(parts):
    check_outcome(decode_karabo, parts)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.integers(2, 60), st.data())
def test_seq_counter_counts_exactly_the_messages_that_never_arrived(n, data):
    """The sender numbers n messages; some never arrive and some that arrive are unreadable (no
    seq); the first and the last arrive readable: lost is exactly the number that never arrived."""
    middle = st.sets(st.integers(1, n - 2), max_size=n) if n > 2 else st.just(set())
    lost, unreadable = data.draw(middle), data.draw(middle)
    counter = SeqCounter()
    for s in range(n):
        if s not in lost:
            counter.see(None if s in unreadable else s)
    assert counter.lost == len(lost)


# -- over loopback: 2,000+ malformed messages of 50+ kinds among 1,000 valid frames ----------
H, W = 33, 41


def hdr(as_json=False, **fields) -> bytes:
    return json.dumps(fields).encode() if as_json else msgpack.packb(fields, use_bin_type=True)


def std(k, **over):
    """A header for message k (seq = k) with fields replaced or removed (value None: removed)."""
    fields = {"frame_id": k, "seq": k, "dtype": "float32", "shape": [H, W], **over}
    return {a: b for a, b in fields.items() if b is not None}


BODY = raw_frame(1).tobytes()
BIG = b"\0" * (2 * LIMIT)  # over the decoder's limit, under libzmq's MAXMSGSIZE: received, then rejected
WIDE = int(np.sqrt(2 * LIMIT / 4)) + 1


def frame_with(value):
    img = raw_frame(2)
    img[3, 4] = value
    return img.tobytes()


#: name -> k -> message parts; every one must be rejected (by the decoder or by the model's preprocessing)
KINDS = {
    "one garbage part": lambda k: [bytes([k % 251]) * (1 + k % 50)],
    "one empty part": lambda k: [b""],
    "three parts": lambda k: [hdr(**std(k)), BODY, b"extra"],
    "four parts": lambda k: [hdr(**std(k)), BODY, hdr(**std(k)), BODY],
    "empty header": lambda k: [b"", BODY],
    "garbage header": lambda k: [b"\xc1" + bytes(range(k % 200)), BODY],
    "truncated msgpack": lambda k: [hdr(**std(k))[:-3], BODY],
    "msgpack with trailing bytes": lambda k: [hdr(**std(k)) + b"\0", BODY],
    "msgpack list header": lambda k: [msgpack.packb([k, "float32", [H, W]]), BODY],
    "msgpack int header": lambda k: [msgpack.packb(k), BODY],
    "msgpack int keys": lambda k: [msgpack.packb({1: k}), BODY],
    "msgpack ext type": lambda k: [msgpack.packb(msgpack.ExtType(1, b"x")), BODY],
    "msgpack nested 5000 deep": lambda k: [b"\x91" * 5000 + b"\x01", BODY],
    "msgpack array of 2**32 claimed": lambda k: [b"\xdd\xff\xff\xff\xff", BODY],
    "msgpack str of 2**31 claimed": lambda k: [b"\xdb\x7f\xff\xff\xff", BODY],
    "JSON invalid": lambda k: [b'{"frame_id": %d,' % k, BODY],
    "JSON not UTF-8": lambda k: [b'{"frame_id": "\xff\xfe"}', BODY],
    "JSON nested 60000 deep": lambda k: [b'{"a":' + b"[" * 60000, BODY],
    "JSON header of 70 kB": lambda k: [b'{"pad": "' + b"x" * 70_000 + b'"}', BODY],
    "JSON frame_id of 5000 digits": lambda k: [b'{"frame_id": ' + b"9" * 5000 + b"}", BODY],
    "JSON frame_id 10**30": lambda k: [hdr(True, **std(k, frame_id=10**30)), BODY],
    "JSON frame_id NaN": lambda k: [b'{"frame_id": NaN, "seq": %d, "dtype": "float32", "shape": [33, 41]}' % k, BODY],
    "msgpack frame_id 2**64-1": lambda k: [hdr(**std(k, frame_id=2**64 - 1)), BODY],
    "frame_id 2**63": lambda k: [hdr(**std(k, frame_id=2**63)), BODY],
    "frame_id negative": lambda k: [hdr(**std(k, frame_id=-1)), BODY],
    "frame_id float": lambda k: [hdr(True, **std(k, frame_id=1.5)), BODY],
    "frame_id bool": lambda k: [hdr(**std(k, frame_id=True)), BODY],
    "frame_id missing": lambda k: [hdr(**std(k, frame_id=None)), BODY],
    "frame_id string": lambda k: [hdr(**std(k, frame_id="seven")), BODY],
    "frame_id list": lambda k: [hdr(True, **std(k, frame_id=[k])), BODY],
    "seq string": lambda k: [hdr(**std(k, seq="x")), BODY],
    "seq negative": lambda k: [hdr(True, **std(k, seq=-3)), BODY],
    "dtype object": lambda k: [hdr(True, **std(k, dtype="object")), BODY],
    "dtype missing": lambda k: [hdr(**std(k, dtype=None)), BODY],
    "dtype float16": lambda k: [hdr(**std(k, dtype="float16")), BODY],
    "dtype a list": lambda k: [hdr(**std(k, dtype=["float32"])), BODY],
    "shape negative": lambda k: [hdr(**std(k, shape=[H, -W])), BODY],
    "shape zero": lambda k: [hdr(**std(k, shape=[0, W])), BODY],
    "shape 4D": lambda k: [hdr(**std(k, shape=[1, 1, H, W])), BODY],
    "shape 1D": lambda k: [hdr(**std(k, shape=[H * W])), BODY],
    "shape 3D": lambda k: [hdr(**std(k, shape=[1, H, W])), BODY],
    "shape of booleans": lambda k: [hdr(**std(k, shape=[True, W])), BODY],
    "shape of floats": lambda k: [hdr(True, **std(k, shape=[33.0, 41])), BODY],
    "shape a string": lambda k: [hdr(**std(k, shape="33x41")), BODY],
    "shape dim over 8192": lambda k: [hdr(**std(k, shape=[8193, 1])), BODY],
    "shape claiming 512 MiB": lambda k: [hdr(**std(k, dtype="float64", shape=[8192, 8192])), b"x"],
    "shape missing": lambda k: [hdr(**std(k, shape=None)), BODY],
    "buffer truncated": lambda k: [hdr(**std(k)), BODY[:-7]],
    "buffer too long": lambda k: [hdr(**std(k)), BODY + b"\0" * 8],
    "buffer empty": lambda k: [hdr(**std(k)), b""],
    "NaN in the frame": lambda k: [hdr(**std(k)), frame_with(np.nan)],
    "Inf in the frame": lambda k: [hdr(True, **std(k)), frame_with(np.inf)],
    "frame of another shape": lambda k: [hdr(**std(k, shape=[H, W - 1])), BODY[: H * (W - 1) * 4]],
    "frame of zeros": lambda k: [hdr(**std(k)), bytes(len(BODY))],
    "frame over the byte limit": lambda k: [hdr(**std(k, shape=[WIDE, WIDE])), b"\0" * (WIDE * WIDE * 4)],
    "buffer over the byte limit": lambda k: [hdr(**std(k)), BIG],
    "header over the byte limit": lambda k: [b"\xc4" + BIG[: LIMIT + 5], BODY],
}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def test_loopback_flood_of_malformed_messages_counts_exactly(model_dir, tmp_path):
    n_valid, per_kind = 1000, 37
    kinds = list(KINDS)
    assert len(kinds) >= 40 and len(kinds) * per_kind >= 2000
    rng = np.random.default_rng(0)
    plan = [None] * n_valid + [kind for kind in kinds for _ in range(per_kind)]
    rng.shuffle(plan)
    plan += [None] * 50  # the stream ends with valid frames: the connection is still up at the end
    port = free_port()
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 2000)
    push.setsockopt(zmq.SNDHWM, 8)  # the sender holds few messages: memory measures the receiver
    push.bind(f"tcp://127.0.0.1:{port}")
    src = ZmqSource(f"tcp://127.0.0.1:{port}", pattern="PULL", protocol="simple", max_bytes=LIMIT)
    sink = ZarrSink(tmp_path / "fuzz.zarr", ["R", "intensity"], {})
    runner = StreamPredictor(str(model_dir), src, [sink], StreamOptions(max_frames=len(plan), batch_size=16))
    valid_ids, sent = [], []
    peak, stop = [rss_mb()], threading.Event()

    def send():
        for k, kind in enumerate(plan):
            if kind is None:
                valid_ids.append(10**6 + k)
                push.send_multipart(encode_simple(10**6 + k, raw_frame(k), header="json" if k % 2 else "msgpack", seq=k))
            else:
                push.send_multipart(KINDS[kind](k))
            sent.append(k)

    def watch():
        while not stop.wait(0.01):
            peak.append(rss_mb())

    base = rss_mb()
    threads = [threading.Thread(target=send), threading.Thread(target=watch)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    summary = runner.run()
    wall = time.perf_counter() - t0
    stop.set()
    for t in threads:
        t.join(timeout=30)
    push.close()
    n_bad = len(plan) - n_valid - 50
    print(f"\nfuzz: {len(plan)} sent ({n_bad} malformed of {len(kinds)} kinds), {summary['predicted']} predicted, "
          f"{summary['rejected']} rejected, {summary['dropped']} dropped, {summary['lost']} lost, "
          f"{len(summary['reasons'])} reasons, {wall:.1f} s, RSS +{max(peak) - base:.0f} MiB")
    assert len(sent) == len(plan)
    assert summary["sent"] == summary["received"] == len(plan) and summary["lost"] == 0
    assert summary["predicted"] == n_valid + 50 and summary["rejected"] == n_bad and summary["dropped"] == 0
    assert summary["sent"] == summary["predicted"] + summary["rejected"] + summary["dropped"] and summary["balanced"]
    assert summary["reconnects"] == 0 and summary["error"] is None  # the connection never dropped
    np.testing.assert_array_equal(results(tmp_path / "fuzz.zarr")["frame_id"], valid_ids)
    assert sum(summary["reasons"].values()) == n_bad and len(summary["reasons"]) >= 15
    assert max(peak) - base < 300, f"memory grew by {max(peak) - base:.0f} MiB"
