"""Streaming prediction: karabo-bridge end to end, reconnects, backpressure, replicas, and what ends a run
(hostile ids, headers and sizes; failures mid-run). The wire fuzz tests are in test_stream_fuzz.py."""

import json
import threading
import time

import msgpack
import numpy as np
import pytest
import torch
import zarr
import zmq

from factory.processing import preprocess
from factory.store import DatasetStore
from models.artifact import Predictor, save_model
from models.networks import build
from models.stream.pipeline import StreamOptions, StreamPredictor
from models.stream.protocol import Rejected, decode_karabo, decode_simple, encode_simple, simple_header
from models.stream.sinks import ZarrSink
from models.stream.sources import ReplaySource, ZmqSource
from factory.testing import error_line, free_port, run_cli
from models.testing import make_raw_store, raw_frame, results


def offline(model_dir, frames):
    pred = Predictor(model_dir, device="cpu")
    desc = pred.description["preprocessing"]
    return pred.predict(np.stack([preprocess.apply(desc, f) for f in frames]))


def run_stream(model_dir, source, tmp_path, name="out.zarr", executor=None, **opts):
    sink = ZarrSink(tmp_path / name, ["R", "intensity"], {})
    summary = StreamPredictor(str(model_dir), source, [sink], StreamOptions(**opts), executor=executor).run()
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


def test_protocol_refuses_before_allocating():
    with pytest.raises(Rejected, match="over the byte limit"):
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


def test_replicas_on_any_executor_predict_what_the_threads_do(model_dir, tmp_path):
    from factory.compute import LocalExecutor

    st = make_raw_store(tmp_path / "raw.zarr", 50)
    opts = dict(batch_size=4, max_latency_ms=0, optimize="none")
    threads, ref = run_stream(model_dir, ReplaySource(st.path), tmp_path, "t.zarr", **opts)
    summary, res = run_stream(model_dir, ReplaySource(st.path), tmp_path, "r.zarr", executor=LocalExecutor(),
                              replicas=2, **opts)
    assert threads["predicted"] == summary["received"] == summary["predicted"] == 50 and summary["balanced"]
    assert not summary["rejected"] and not summary["dropped"] and summary["pending"] == 0
    np.testing.assert_array_equal(res["frame_id"], np.arange(50))
    for k in ("R", "intensity"):
        np.testing.assert_allclose(res[k], ref[k], rtol=1e-5)


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


class Decoded:
    """Messages as a ZeroMQ source would yield them (decoded, or Rejected); an exception in the
    list is raised where it stands, as a broken source would."""

    def __init__(self, messages, protocol="simple"):
        self.messages, self.protocol = messages, protocol

    def __iter__(self):
        for parts in self.messages:
            if isinstance(parts, Exception):
                raise parts
            try:
                decode = decode_simple if self.protocol == "simple" else decode_karabo
                for f in decode(parts, 1 << 20):
                    f.t_received = time.perf_counter()
                    yield f
            except Rejected as rej:
                yield rej

    def close(self):
        pass


def test_out_of_range_ids_are_rejected_and_predictions_kept(model_dir, tmp_path):
    body = raw_frame(0).tobytes()
    msgs = [encode_simple(i, raw_frame(i)) for i in range(10)]
    msgs.insert(3, [json.dumps({"frame_id": 10**30, "dtype": "float32", "shape": [33, 41]}).encode(), body])
    msgs.insert(7, [msgpack.packb({"frame_id": 2**64 - 1, "dtype": "float32", "shape": [33, 41]}), body])
    summary, res = run_stream(model_dir, Decoded(msgs), tmp_path, batch_size=4)
    assert (summary["received"], summary["predicted"], summary["rejected"]) == (12, 10, 2) and summary["balanced"]
    assert sum(v for k, v in summary["reasons"].items() if k.startswith("bad frame_id")) == 2
    np.testing.assert_array_equal(res["frame_id"], np.arange(10))

    from karabo_bridge.serializer import serialize

    def train(tid, image):
        return [bytes(p) for p in serialize({"a": {"d": image}}, {"a": {"timestamp.tid": tid}})]

    with pytest.raises(Rejected, match="too large for per-pulse"):  # 10**15 * 10000 + pulse > 2**63
        decode_karabo(train(10**15, np.stack([raw_frame(0)] * 2)), 1 << 20)
    with pytest.raises(Rejected, match="bad train id"):
        decode_karabo(train(2**64 - 1, raw_frame(0)), 1 << 20)
    assert decode_karabo(train(10**15, raw_frame(0)), 1 << 20)[0].frame_id == 10**15  # fits int64


def test_predictions_made_are_written_when_the_run_fails(model_dir, tmp_path):
    st = make_raw_store(tmp_path / "raw.zarr", 40)
    sink = ZarrSink(tmp_path / "p.zarr", ["R", "intensity"], {})
    runner = StreamPredictor(str(model_dir), ReplaySource(st.path), [sink],
                             StreamOptions(batch_size=8, workers=1, max_latency_ms=1000))
    real, calls = runner.model.run, []

    def failing_third_batch(images):
        calls.append(len(images))
        if len(calls) == 3:
            raise RuntimeError("model failed")
        return real(images)

    runner.model.run = failing_third_batch
    with pytest.raises(RuntimeError, match="model failed"):
        runner.run()
    np.testing.assert_array_equal(results(tmp_path / "p.zarr")["frame_id"], np.arange(16))  # the two batches before
    summary = zarr.open_group(str(tmp_path / "p.zarr"), mode="r").attrs["stream"]["summary"]
    assert summary["predicted"] == 16 and not summary["balanced"]


def test_deep_json_header_is_rejected_and_a_reader_death_ends_the_run(model_dir, tmp_path):
    msgs = [encode_simple(i, raw_frame(i), header="json") for i in range(20)]
    msgs.insert(10, [b'{"a":' + b"[" * 60000, raw_frame(0).tobytes()])
    summary, res = run_stream(model_dir, Decoded(msgs), tmp_path, batch_size=4)
    assert (summary["received"], summary["predicted"], summary["rejected"]) == (21, 20, 1)
    assert summary["balanced"] and summary["error"] is None
    assert any(k.startswith("JSON header nested deeper") for k in summary["reasons"])
    # whatever stops the reader early ends the run unbalanced, with the reason, predictions kept
    broken = msgs[:5] + [ConnectionError("the detector link broke")] + msgs[5:]
    summary, res = run_stream(model_dir, Decoded(broken), tmp_path, name="broken.zarr", batch_size=4)
    assert summary["error"] == "the stream reader stopped: ConnectionError: the detector link broke"
    assert not summary["balanced"] and summary["predicted"] == 5
    np.testing.assert_array_equal(res["frame_id"], np.arange(5))


def test_part_over_the_size_limit_reconnects_and_lost_frames_are_counted(model_dir, tmp_path):
    port = free_port()
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.bind(f"tcp://127.0.0.1:{port}")
    src = ZmqSource(f"tcp://127.0.0.1:{port}", pattern="PULL", protocol="simple", max_bytes=1 << 20, timeout_s=0.2)
    sink = ZarrSink(tmp_path / "p.zarr", ["R", "intensity"], {})
    runner = StreamPredictor(str(model_dir), src, [sink], StreamOptions(batch_size=4, idle_timeout_s=2.0))
    out = {}
    th = threading.Thread(target=lambda: out.update(runner.run()))
    th.start()

    def wait_for(cond, timeout):
        t0 = time.time()
        while not cond() and time.time() - t0 < timeout:
            time.sleep(0.02)
        return cond()

    try:
        for k in range(10):
            push.send_multipart(encode_simple(k, raw_frame(k), seq=k))
        assert wait_for(lambda: runner.counts.received == 10, 30)
        # 4 MiB: over libzmq's MAXMSGSIZE (2 x 1 MiB + 1 MiB), which drops the connection for good
        push.send_multipart([simple_header(10, np.float32, (33, 41), seq=10), b"\0" * (4 << 20)])
        assert wait_for(lambda: src.reconnects >= 1, 15), "the dropped connection was never restored"
        # the sender goes on; what it sent before it saw the old connection gone is lost with it
        k, t0 = 11, time.time()
        while runner.counts.received <= 10 and time.time() - t0 < 30:
            push.send_multipart(encode_simple(k, raw_frame(k), seq=k))
            k, _ = k + 1, time.sleep(0.01)
        for k in range(k, k + 5):
            push.send_multipart(encode_simple(k, raw_frame(k), seq=k))
        n_sent = k + 1
        th.join(timeout=60)
    finally:
        runner.stop()
        th.join(timeout=10)
        push.close()
    s = out
    assert s["reconnects"] >= 1 and s["error"] is None
    assert s["sent"] == n_sent == s["received"] + s["lost"] and s["lost"] >= 1 and not s["balanced"]
    ids = results(tmp_path / "p.zarr")["frame_id"]
    assert ids[:10].tolist() == list(range(10)) and ids[-1] == n_sent - 1 and len(ids) == s["predicted"] == s["received"]


def test_cli_refuses_what_it_did_not_create_and_reports_failures(model_dir, tmp_path):
    import os

    st = make_raw_store(tmp_path / "raw.zarr", 8)
    user = tmp_path / "userout"
    user.mkdir()
    (user / "thesis.tex").write_text("my thesis")
    stream = ("predict", "stream", str(model_dir), "--source")
    proc = run_cli(*stream, str(st.path), "--max-frames", "4", "--out", str(user), "--overwrite")
    assert proc.returncode == 2 and "not a predictions store made by factory" in error_line(proc)
    assert os.listdir(user) == ["thesis.tex"] and (user / "thesis.tex").read_text() == "my thesis"
    proc = run_cli(*stream, str(st.path), "--out", str(st.path), "--overwrite")
    assert proc.returncode == 2 and "is the input" in error_line(proc)
    assert DatasetStore.open(st.path).n_samples == 8
    proc = run_cli(*stream, str(st.path), "--pub", "tcp://127.0.0.1:notaport")
    assert proc.returncode == 2 and "--pub 'tcp://127.0.0.1:notaport'" in error_line(proc)
    assert "Traceback" not in proc.stderr
    frames = tmp_path / "frames"  # frames of a shape the model cannot take: every one rejected
    frames.mkdir()
    for i in range(3):
        np.save(frames / f"{i}.npy", np.ones((10, 10), np.float32))
    proc = run_cli(*stream, str(frames), "--json")
    assert proc.returncode == 1 and "no frame was predicted: 3 of 3 rejected" in error_line(proc)
    assert json.loads(proc.stdout)["rejected"] == 3


def test_a_model_trained_through_the_measured_detector_streams_through_it(tmp_path):
    """Frames for a model whose training set went through `augment --detector ag-clusters` take the
    detector model's path (orientation, saturation, log display, valid pixels), as Fig. 5 does."""
    from factory.msft.detector_response import AG_CLUSTER_DETECTOR as det
    from models.stream.pipeline import FrameModel

    torch.manual_seed(1)
    net = build("resnet-tanh", input_shape=[128, 128], stacks=[1, 1, 1, 1], widths=[4, 8, 8, 8], stem=4)
    net.eval()
    desc = {"name": "scatter", "input": "log10", "log_floor": -6.0, "out_shape": [128, 128], "scale": [0.0, 1.0],
            "dims": ["row", "col"]}
    labels = ["radius", "q0", "q1", "q2", "q3"]
    card = {"architecture": {"name": "resnet-tanh", "kwargs": {"input_shape": [128, 128], "stacks": [1, 1, 1, 1],
                                                               "widths": [4, 8, 8, 8], "stem": 4}},
            "labels": labels, "task": "regress", "preprocessing": desc,
            "label_scaling": {"names": labels, "methods": ["minmax", "minmax", "none", "none", "none"],
                              "offset": [30.0, 0.9, 0.0, 0.0, 0.0], "scale": [130.0, 0.1, 1.0, 1.0, 1.0]},
            "input": {"shape": [128, 128], "mean_std": [0.0, 1.0]}}
    plain = save_model(tmp_path / "plain", net, card)
    through = save_model(tmp_path / "det", net, {**card, "training_set": {
        "path": "aug.zarr", "kind": "msft", "config": {"step": "augment", "detector": "ag-clusters"}}})
    yy, xx = np.meshgrid(np.arange(128) - 64.0, np.arange(128) - 64.0, indexing="ij")
    r = np.hypot(yy, xx) + 0.5
    frames = [np.log10(np.exp(-r / (6 + k)) * (1.2 + np.sin(r / (1.5 + 0.3 * k) + xx / 9)) + 1e-7).astype(np.float32)
              for k in range(3)]
    bad = frames[0].copy()
    bad[5, 5] = np.nan
    fm = FrameModel(str(through), optimize="none")
    ok, out, reasons = fm.run([*frames, bad])
    assert fm.detector == "ag-clusters" and ok.tolist() == [True, True, True, False]
    assert reasons == ["preprocessing: the frame holds NaN or Inf"]
    pred = Predictor(through, device="cpu")
    want = pred.predict(np.stack([det.apply(10.0 ** f.astype(np.float64)).astype(np.float32) for f in frames]))
    for n in labels:
        np.testing.assert_allclose(out[n], want[n], rtol=1e-5, atol=1e-6)
    # the same network without the detector in its card reads the frames through the scatter preprocessing
    ok2, out2, _ = FrameModel(str(plain), optimize="none").run(frames)
    assert ok2.all() and not np.allclose(out2["radius"], out["radius"])
