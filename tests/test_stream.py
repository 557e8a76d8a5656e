"""Streaming prediction: karabo-bridge end to end, fuzzing, reconnects, backpressure, replicas."""

import json
import socket
import threading
import time

import msgpack
import numpy as np
import pytest
import torch
import zarr
import zmq

from factory.processing import preprocess
from factory.simulators import Coord
from factory.store import DatasetStore
from models.artifact import Predictor, save_model
from models.networks import build
from models.stream.pipeline import StreamOptions, StreamPredictor
from models.stream.protocol import Rejected, decode_karabo, decode_simple, encode_simple
from models.stream.sinks import ZarrSink
from models.stream.sources import ReplaySource, ZmqSource
from tests.conftest import error_line, run_cli

KY, KX = np.linspace(-3, 3, 33), np.linspace(-4, 4, 41)


def raw_frame(i):
    yy, xx = np.meshgrid(KY, KX, indexing="ij")
    R = 1 + (i % 7)
    return (np.exp(-(xx**2 + 2 * yy**2) / (1 + 0.1 * (i % 5))) * (1.2 + np.cos(R * xx))).astype(np.float32)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    net = build("pmd-cnn", input_shape=[32, 64], outputs=2)
    net.eval()
    desc = preprocess.pmd2d_description("global", (3.0, 4.0), out_shape=(32, 64))
    desc["input_axes"] = preprocess.input_axes({"ky": KY, "kx": KX})
    folder = tmp_path_factory.mktemp("model")
    save_model(folder, net, {
        "architecture": {"name": "pmd-cnn", "kwargs": {"input_shape": [32, 64], "outputs": 2}},
        "labels": ["R", "intensity"], "task": "regress", "preprocessing": desc,
        "label_scaling": {"names": ["R", "intensity"], "methods": ["minmax", "minmax"], "offset": [1.0, 1e14],
                          "scale": [7.0, 3e14]},
        "input": {"shape": [32, 64], "mean_std": [0.0, 1.0]},
    })
    return folder


def offline(model_dir, frames):
    pred = Predictor(model_dir, device="cpu")
    desc = pred.description["preprocessing"]
    return pred.predict(np.stack([preprocess.apply(desc, f) for f in frames]))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def results(path):
    g = zarr.open_group(str(path), mode="r")
    return {k: g[k][:] for k in ("frame_id", "latency_ms", "R", "intensity")}


def run_stream(model_dir, source, tmp_path, name="out.zarr", **opts):
    sink = ZarrSink(tmp_path / name, ["R", "intensity"], {})
    summary = StreamPredictor(str(model_dir), source, [sink], StreamOptions(**opts)).run()
    return summary, results(tmp_path / name)


@pytest.mark.parametrize("pattern", ["REP", "PUSH"])
def test_karabo_bridge_end_to_end_matches_offline(model_dir, tmp_path, pattern):
    from karabo_bridge import ServerInThread

    n = 40
    port = free_port()
    frames = [raw_frame(i) for i in range(n)]
    server = ServerInThread(f"tcp://127.0.0.1:{port}", sock=pattern, maxlen=n)  # the package's own server
    server.start()
    try:
        for i, f in enumerate(frames):
            server.feed({"SPB_DET/CAM": {"data.image": f, "data.gain": 1}},
                        {"SPB_DET/CAM": {"timestamp.tid": 5000 + i}})
        src = ZmqSource(f"tcp://127.0.0.1:{port}", pattern="REQ" if pattern == "REP" else "PULL", protocol="karabo")
        summary, res = run_stream(model_dir, src, tmp_path, max_frames=n, batch_size=8)
    finally:
        server.stop()
    assert summary["received"] == summary["predicted"] == n and summary["balanced"]
    np.testing.assert_array_equal(res["frame_id"], 5000 + np.arange(n))  # all, in order
    ref = offline(model_dir, frames)
    # the default inference path folds batch norm into the convolutions: equal to float32 rounding
    np.testing.assert_allclose(res["R"], ref["R"], rtol=1e-4)
    np.testing.assert_allclose(res["intensity"], ref["intensity"], rtol=1e-4)


def test_our_karabo_decoder_reads_the_reference_serializer():
    from karabo_bridge.serializer import serialize

    img = raw_frame(3)
    parts = serialize({"a": {"x": 1, "image.data": img}}, {"a": {"timestamp.tid": 42}})
    (frame,) = decode_karabo([bytes(p) for p in parts], 1 << 20)
    assert frame.frame_id == 42
    np.testing.assert_array_equal(frame.image, img)
    stack = np.stack([img, 2 * img])
    frames = decode_karabo([bytes(p) for p in serialize({"a": {"d": stack}}, {"a": {"timestamp.tid": 7}})], 1 << 20)
    assert [f.frame_id for f in frames] == [70000, 70001]


def malformed(rng, i):
    """One malformed message of many kinds (simple protocol)."""
    good = encode_simple(i, raw_frame(i))
    kind = i % 11
    if kind == 0:
        return [rng.bytes(int(rng.integers(1, 64)))]                          # one garbage part
    if kind == 1:
        return [rng.bytes(20), rng.bytes(100)]                                # garbage header
    if kind == 2:
        return [json.dumps({"frame_id": i, "dtype": "object", "shape": [33, 41]}).encode(), good[1]]
    if kind == 3:
        return [msgpack.packb({"frame_id": i, "dtype": "float32", "shape": [33, -41]}), good[1]]
    if kind == 4:
        return [good[0], good[1][:-7]]                                        # truncated buffer
    if kind == 5:
        return [good[0], good[1] + b"\0" * 8]                                 # oversized buffer
    if kind == 6:
        bad = raw_frame(i)
        bad[3, 4] = np.nan
        return encode_simple(i, bad)                                          # NaN frame
    if kind == 7:
        return [msgpack.packb({"frame_id": i, "dtype": "float64", "shape": [8192, 8192]}), b"x"]  # 512 MiB claimed
    if kind == 8:
        return encode_simple(i, np.ones((33, 40), np.float32))                # wrong frame shape for the model
    if kind == 9:
        return [msgpack.packb({"frame_id": "seven", "dtype": "float32", "shape": [33, 41]}), good[1]]
    return [*good, b"extra"]                                                  # three parts


def test_fuzz_malformed_messages_are_counted_and_valid_ones_predicted(model_dir, tmp_path):
    rng = np.random.default_rng(0)
    port = free_port()
    n_valid, n_bad = 150, 2200
    plan = rng.permutation(np.r_[np.ones(n_valid, bool), np.zeros(n_bad, bool)])
    src = ZmqSource(f"tcp://127.0.0.1:{port}", pattern="PULL", protocol="simple", max_bytes=1 << 20)
    ctx = zmq.Context.instance()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 2000)
    push.bind(f"tcp://127.0.0.1:{port}")
    valid_ids = []

    def send():
        for k, ok in enumerate(plan):
            if ok:
                valid_ids.append(100_000 + k)
                push.send_multipart(encode_simple(100_000 + k, raw_frame(k), header="json" if k % 2 else "msgpack"))
            else:
                push.send_multipart(malformed(rng, k))

    t = threading.Thread(target=send)
    t.start()
    summary, res = run_stream(model_dir, src, tmp_path, max_frames=len(plan), batch_size=16)
    t.join()
    push.close()
    assert summary["received"] == len(plan)
    assert summary["rejected"] == n_bad and summary["predicted"] == n_valid and summary["balanced"]
    np.testing.assert_array_equal(res["frame_id"], valid_ids)
    assert sum(summary["reasons"].values()) == n_bad and len(summary["reasons"]) >= 8


def test_protocol_refuses_before_allocating():
    with pytest.raises(Rejected, match="exceeds the limit"):
        decode_simple([msgpack.packb({"frame_id": 1, "dtype": "float64", "shape": [8192, 8192]}), b""], 1 << 20)
    with pytest.raises(Rejected, match="dtype"):
        decode_simple([msgpack.packb({"frame_id": 1, "dtype": "O", "shape": [2, 2]}), b"\0" * 32], 1 << 20)


def test_source_killed_and_restarted_is_reconnected(model_dir, tmp_path):
    from karabo_bridge import ServerInThread

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"

    def serve(ids):
        server = ServerInThread(url, sock="REP", maxlen=len(ids))
        server.start()
        for i in ids:
            server.feed({"det": {"image.data": raw_frame(i)}}, {"det": {"timestamp.tid": i}})
        return server

    src = ZmqSource(url, pattern="REQ", protocol="karabo", timeout_s=0.3)
    out = {}
    sink = ZarrSink(tmp_path / "r.zarr", ["R", "intensity"], {})
    runner = StreamPredictor(str(model_dir), src, [sink], StreamOptions(max_frames=60, batch_size=4,
                                                                          max_latency_ms=5))
    first = serve(range(30))
    th = threading.Thread(target=lambda: out.update(runner.run()))
    th.start()
    t0 = time.time()
    while runner.counts.received < 30 and time.time() - t0 < 60:
        time.sleep(0.05)
    first.stop()                      # the source dies mid-stream ...
    time.sleep(1.0)
    second = serve(range(30, 60))     # ... and comes back on the same port
    th.join(timeout=120)
    second.stop()
    s = out
    assert s["received"] == 60 and s["predicted"] == 60 and s["balanced"] and s["reconnects"] >= 1
    np.testing.assert_array_equal(results(tmp_path / "r.zarr")["frame_id"], np.arange(60))


def make_raw_store(path, n):
    st = DatasetStore.create(path, kind="tdse", n_samples=n, chunk=20,
                             coords=(Coord("ky", KY, "a.u."), Coord("kx", KX, "a.u.")), param_names=["R"],
                             config_hash="raw")
    for s, e in st.blocks():
        st.write_block(s, np.stack([raw_frame(i) for i in range(s, e)]), {"R": np.arange(s, e, dtype=float)})
    return st


def test_unoptimised_path_equals_offline_exactly(model_dir, tmp_path):
    st = make_raw_store(tmp_path / "raw.zarr", 30)
    summary, res = run_stream(model_dir, ReplaySource(st.path), tmp_path, optimize="none", batch_size=30,
                              max_latency_ms=1000)
    ref = offline(model_dir, [raw_frame(i) for i in range(30)])
    np.testing.assert_array_equal(res["R"], ref["R"])


def test_drop_mode_under_overload_records_dropped_ids(model_dir, tmp_path):
    st = make_raw_store(tmp_path / "raw.zarr", 400)
    summary, res = run_stream(model_dir, ReplaySource(st.path), tmp_path, policy="drop", queue_size=4,
                              batch_size=2, max_latency_ms=0)
    assert summary["dropped"] > 0 and summary["balanced"]
    assert summary["received"] == 400 == summary["predicted"] + summary["dropped"]
    predicted, dropped = set(res["frame_id"].tolist()), set(summary["dropped_ids"])
    assert not predicted & dropped and predicted | dropped == set(range(400))
    assert np.all(np.diff(res["frame_id"]) > 0)


def test_wait_mode_drops_nothing_and_replicas_keep_order(model_dir, tmp_path, ray_local):
    st = make_raw_store(tmp_path / "raw.zarr", 120)
    summary, res = run_stream(model_dir, ReplaySource(st.path), tmp_path, policy="wait", queue_size=4, batch_size=8,
                              replicas=2)
    assert summary["dropped"] == 0 and summary["predicted"] == 120 and summary["balanced"]
    np.testing.assert_array_equal(res["frame_id"], np.arange(120))
    ref = offline(model_dir, [raw_frame(i) for i in range(120)])
    np.testing.assert_allclose(res["R"], ref["R"], rtol=1e-4)


def test_cli_replay_and_errors(model_dir, tmp_path):
    st = make_raw_store(tmp_path / "raw.zarr", 50)
    proc = run_cli("predict", "stream", str(model_dir), "--source", str(st.path), "--out", str(tmp_path / "p.zarr"),
                   "--rate", "500", "--json", "--png", str(tmp_path / "recent.png"), timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["received"] == summary["predicted"] == 50 and summary["balanced"]
    assert (tmp_path / "recent.png").read_bytes()[:4] == b"\x89PNG"
    proc = run_cli("predict", "stream", str(tmp_path), "--source", str(st.path))
    assert proc.returncode == 2 and "not a model folder" in error_line(proc)
    proc = run_cli("predict", "stream", str(model_dir), "--source", "tcp://127.0.0.1:1", "--pattern", "DEALER")
    assert proc.returncode == 2 and "pattern 'DEALER'" in error_line(proc)
    proc = run_cli("predict", "stream", str(model_dir), "--source", str(st.path), "--out", str(tmp_path / "p.zarr"))
    assert proc.returncode == 2 and "already exists" in error_line(proc)
