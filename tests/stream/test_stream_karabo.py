"""European XFEL karabo-bridge end to end: AGIPD trains in the layouts karabo_bridge's own
simulation sends (trainId/pulseId/cellId metadata, online (modules, fs, ss, cells) layout),
assembled with EXtra-geom, cut to the model's frame, predicted per pulse, republished as a
karabo-bridge server that karabo_bridge.Client reads; and what ends a run non-zero."""

import json
import threading
import time

import numpy as np
import pytest
import torch
from karabo_bridge import Client, ServerInThread
from karabo_bridge.serializer import serialize
from karabo_bridge.simulation import AGIPD, LPD, AGIPDModule

from factory.processing import preprocess
from factory.processing.description import FrameCrop, Scatter
from models.artifact import Predictor, save_model
from models.networks import build
from models.stream.detectors import DETECTORS, load_geometry
from models.stream.pipeline import StreamOptions, StreamPredictor, verdict
from models.stream.protocol import Rejected, decode_karabo
from models.stream.sinks import KaraboSink, ZarrSink
from models.stream.sources import ZmqSource
from factory.testing import error_line, run_cli
from factory.testing import free_port
from models.testing import raw_frame

SOURCE = "SPB_DET_AGIPD1M-1/CAL/APPEND_CORRECTED"
LABELS = ["radius", "intensity"]


@pytest.fixture(scope="module")
def scatter_model(tmp_path_factory):
    """A tiny ResNet (tanh) on 32 x 32 scattering images from raw 64 x 64 frames."""
    torch.manual_seed(1)
    kwargs = {"input_shape": [32, 32], "stacks": [1, 1], "widths": [8, 16], "stem": 8, "outputs": 2}
    net = build("resnet-tanh", **kwargs)
    net.eval()
    desc = Scatter.build(out_shape=(32, 32)).with_input_axes({"y": np.linspace(-1, 1, 64),
                                                               "x": np.linspace(-1, 1, 64)}).to_dict()
    folder = tmp_path_factory.mktemp("scatter-model")
    save_model(folder, net, {
        "architecture": {"name": "resnet-tanh", "kwargs": kwargs}, "labels": LABELS, "task": "regress",
        "preprocessing": desc, "input": {"shape": [32, 32], "mean_std": [0.5, 0.25]},
        "label_scaling": {"names": LABELS, "methods": ["minmax", "minmax"], "offset": [5.0, 0.0], "scale": [20.0, 1.0]},
    })
    return folder


def packed(data, meta):
    return [bytes(p) for p in serialize(data, meta)]


# -- layouts, as karabo_bridge's simulation sends them --------------------------------------
def test_layouts_of_the_simulation_give_one_frame_per_pulse_with_train_and_pulse_ids():
    # one AGIPD module online, (fs, ss, cells) = (128, 512, 64): 64 frames of 512 x 128, not 128 of 512 x 64
    data, meta = AGIPDModule("SPB_DET_AGIPD1M-1/DET/0CH0:xtdf", raw=True).gen_data(10_000_000_000)
    src = next(iter(data))
    assert data[src]["image.data"].shape == (128, 512, 64) and data[src]["image.trainId"].dtype == np.uint64
    frames = decode_karabo(packed(data, meta), 64 << 20)  # no --karabo-key: image.data, metadata skipped
    assert len(frames) == 64 and {f.image.shape for f in frames} == {(512, 128)}
    assert [(f.train_id, f.pulse_id) for f in frames] == [(10_000_000_000, p) for p in range(64)]
    assert frames[5].frame_id == 10_000_000_000 * 10_000 + 5 and frames[5].train_size == 64
    np.testing.assert_array_equal(frames[5].image, data[src]["image.data"][:, :, 5].T)
    assert frames[5].meta == {"source": src, "detector": "agipd", "cell_id": 5}

    class Few(AGIPD):
        pulses = 3

    for like in ("online", "file"):  # all 16 modules: (16, 128, 512, 3) online, (3, 16, 512, 128) file
        data, meta = Few(SOURCE, raw=False, data_like=like).gen_data(7)
        arr = data[SOURCE]["image.data"]
        frames = decode_karabo(packed(data, meta), 64 << 20)
        assert [f.pulse_id for f in frames] == [0, 1, 2] and {f.image.shape for f in frames} == {(16, 512, 128)}
        want = np.transpose(arr, (3, 0, 2, 1)) if like == "online" else arr
        np.testing.assert_array_equal(frames[2].image, want[2])

    class FewLPD(LPD):
        pulses = 2

    data, meta = FewLPD("FXE_DET_LPD1M-1/CAL/APPEND_CORRECTED", raw=False).gen_data(9)
    frames = decode_karabo(packed(data, meta), 64 << 20)
    assert len(frames) == 2 and frames[0].meta["detector"] == "lpd" and frames[0].image.shape == (16, 256, 256)

    # a shape both layouts fit is refused with the reason, and --layout settles it
    amb = {SOURCE: {"image.data": np.zeros((128, 512, 128), np.float32)}}
    with pytest.raises(Rejected, match="AGIPD-1M data fit both the online and the file layout; pass --layout"):
        decode_karabo(packed(amb, {SOURCE: {"timestamp.tid": 1}}), 64 << 20)
    assert len(decode_karabo(packed(amb, {SOURCE: {"timestamp.tid": 1}}), 64 << 20, layout="file")) == 128
    # multi-module data of a source that names no detector, without --detector: refused with the hint
    with pytest.raises(Rejected, match="pass --detector"):
        decode_karabo(packed({"cam": {"d": np.zeros((2, 3, 4, 5), np.float32)}}, {"cam": {"timestamp.tid": 1}}), 1 << 20)
    # the per-pulse metadata is checked: a trainId that is not the train's, repeated pulse ids
    data, meta = AGIPDModule("SPB_DET_AGIPD1M-1/DET/0CH0:xtdf", raw=True).gen_data(5)
    src = next(iter(data))
    bad = {src: {**data[src], "image.trainId": data[src]["image.trainId"] + 1}}
    with pytest.raises(Rejected, match="trainId array differs from the train id 5"):
        decode_karabo(packed(bad, meta), 64 << 20)
    bad = {src: {**data[src], "image.pulseId": np.zeros(64, np.uint64)}}
    with pytest.raises(Rejected, match="pulseId values not unique"):
        decode_karabo(packed(bad, meta), 64 << 20)


def test_frame_crop_is_centred_on_the_beam_and_averages_the_pixels_there():
    img = np.arange(12 * 10, dtype=np.float64).reshape(12, 10)
    img[1, 2] = np.nan  # a missing pixel
    crop = FrameCrop.fit(img.shape, (2, 2))  # the largest bin that fits: 5 (10 // 2)
    assert (crop.bin, crop.to_dict()) == (5, {"name": "crop-bin", "shape": [2, 2], "bin": 5, "fill": 0.0})
    out = crop.apply(img, centre=(5.0, 4.0))  # rows 1..10, columns 0..9
    block = img[1:6, 0:5]
    assert out[0, 0] == pytest.approx(np.nanmean(block)) and out[1, 1] == pytest.approx(img[6:11, 5:10].mean())
    # a window over the image's edge: blocks outside are the fill value, partial ones the mean of what is there
    out = FrameCrop.fit(img.shape, (2, 2), bin=4).apply(img, centre=(0.0, 9.0))  # rows -3..4, columns 6..13
    assert out[0, 1] == 0.0 and out[1, 1] == 0.0
    assert out[0, 0] == pytest.approx(img[0, 6:10].mean()) and out[1, 0] == pytest.approx(img[1:5, 6:10].mean())


# -- end to end ----------------------------------------------------------------------------
def agipd_trains(geom, n_trains, pulses, damaged=True, first_tid=10_000_000_000):
    """AGIPD-1M trains as karabo_bridge's simulation makes them (online layout, trainId/pulseId/
    cellId), with rings centred on the beam instead of noise; pulse ids 4, 12, 20, ...
    ``damaged``: pulse 2 of train 1 is blank (every pixel 0: rejected), pulse 1 has masked (NaN) pixels."""

    class Few(AGIPD):
        pass

    Few.pulses = pulses
    xyz = geom.get_pixel_positions()  # (16, 512, 128, 3) metres
    r = np.hypot(xyz[..., 0], xyz[..., 1])
    trains, files = [], []
    for t in range(n_trains):
        data, meta = Few(SOURCE, raw=False).gen_data(first_tid + t)
        file_like = np.stack([(1 + np.cos(r / (0.002 + 0.0004 * (t * pulses + p)))) ** 2 * np.exp(-r / 0.04) + 1e-3
                              for p in range(pulses)]).astype(np.float32)  # (pulses, modules, ss, fs)
        if t == 1 and damaged:
            file_like[2] = 0.0
            file_like[1, 3, 100:140, 20:60] = np.nan
        data[SOURCE]["image.data"] = np.ascontiguousarray(np.transpose(file_like, (1, 3, 2, 0)))  # online
        data[SOURCE]["image.pulseId"] = (4 + 8 * np.arange(pulses)).astype(np.uint64)
        trains.append((data, meta))
        files.append(file_like)
    return trains, files


def test_agipd_trains_end_to_end_match_offline_and_are_republished(scatter_model, tmp_path):
    n_trains, pulses = 5, 4
    geom = load_geometry(DETECTORS["agipd"])
    geom.write_crystfel_geom(str(tmp_path / "agipd.geom"))  # the stream assembles with a CrystFEL file
    trains, files = agipd_trains(geom, n_trains, pulses)
    port, pub_port = free_port(), free_port()
    server = ServerInThread(f"tcp://127.0.0.1:{port}", sock="REP", maxlen=n_trains)  # the package's own server
    server.start()
    for data, meta in trains:
        server.feed(data, meta)
    pub = KaraboSink(f"tcp://127.0.0.1:{pub_port}", LABELS)
    received, client_error = [], []

    def read():
        client = Client(f"tcp://127.0.0.1:{pub_port}", timeout=60)
        try:
            while len(received) < n_trains:
                received.append(client.next())
        except Exception as exc:  # reported below
            client_error.append(exc)
        finally:
            client._context.destroy(linger=0)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        src = ZmqSource(f"tcp://127.0.0.1:{port}", pattern="REQ", protocol="karabo", max_bytes=64 << 20)
        sink = ZarrSink(tmp_path / "p.zarr", LABELS, {})
        summary = StreamPredictor(str(scatter_model), src, [sink, pub],
                                  StreamOptions(max_frames=n_trains * pulses, batch_size=3,
                                                geometry=str(tmp_path / "agipd.geom"))).run()
        reader.join(timeout=60)
    finally:
        pub.close()
        server.stop()
    assert not client_error and len(received) == n_trains

    # every pulse frame predicted or rejected with a reason
    n = n_trains * pulses
    assert summary["received"] == n and summary["predicted"] == n - 1 and summary["rejected"] == 1
    assert summary["balanced"] and summary["source_lost"] is None and summary["reconnects"] == 0
    (reason, count), = summary["reasons"].items()
    assert count == 1 and reason.startswith("preprocessing: image has no positive value")
    record = summary["detectors"]["agipd/assembled"]
    assert record["image_shape"] == [1256, 1092] and record["crop"]["bin"] == 17
    assert record["geometry"] == str((tmp_path / "agipd.geom").resolve())
    assert summary["sinks"]["KaraboSink"] == {"schema": "factory.predictions/1", "source": "factory/predictions",
                                              "trains": n_trains, "unsent": 0}

    # the offline reference: the same trains assembled with EXtra-geom, cut as recorded, Predictor
    crop = FrameCrop.model_validate(record["crop"])
    pred = Predictor(scatter_model, device="cpu")
    desc = pred.description["preprocessing"]
    ids, ready = [], []
    for t, file_like in enumerate(files):
        for p in range(pulses):
            if (t, p) == (1, 2):
                continue
            image, centre = geom.position_modules(file_like[p])
            ready.append(preprocess.apply(desc, crop.apply(image, centre)))
            ids.append((10_000_000_000 + t, 4 + 8 * p))
    ref = pred.predict(np.stack(ready))

    # what karabo_bridge.Client read: one message per train, frame ids (trainId, pulseId)
    got_ids, got = [], {k: [] for k in LABELS}
    for t, (data, meta) in enumerate(received):
        d, m = data["factory/predictions"], meta["factory/predictions"]
        assert m["timestamp.tid"] == 10_000_000_000 + t and d["complete"] and d["schema"] == "factory.predictions/1"
        assert d["trainId"].dtype == np.uint64 and (d["trainId"] == 10_000_000_000 + t).all()
        got_ids += list(zip(d["trainId"].tolist(), d["pulseId"].tolist()))
        for k in LABELS:
            got[k] += d[f"prediction.{k}"].tolist()
        if t == 1:  # the blank pulse: rejected, with its reason
            assert d["rejected.pulseId"].tolist() == [20] and "no positive value" in d["rejected.reason"][0]
            assert d["cellId"].tolist() == [0, 1, 3]
        else:
            assert len(d["rejected.pulseId"]) == 0 and d["cellId"].tolist() == [0, 1, 2, 3]
    assert got_ids == ids
    for k in LABELS:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-6)
    # the Zarr store: frame id = trainId * 10000 + pulseId
    import zarr

    fid = zarr.open_group(str(tmp_path / "p.zarr"), mode="r")["frame_id"][:]
    np.testing.assert_array_equal(fid, [t * 10_000 + p for t, p in ids])
    # a run with 1 of 20 rejected passes the default --max-reject (0.5), not 0.01
    assert verdict(summary) is None
    assert verdict(summary, 0.01).startswith("1 of 20 frames rejected (5% > --max-reject 1%")


def test_idle_server_is_no_reconnect_storm_and_a_lost_source_fails_the_run(scatter_model):
    geom = load_geometry(DETECTORS["agipd"])
    trains, _ = agipd_trains(geom, 2, 2, damaged=False)
    port = free_port()
    server = ServerInThread(f"tcp://127.0.0.1:{port}", sock="REP", maxlen=4)
    server.start()
    for data, meta in trains:
        server.feed(data, meta)
    # the server stays up with nothing more to send: replies time out, the connection is fine
    src = ZmqSource(f"tcp://127.0.0.1:{port}", pattern="REQ", timeout_s=0.4)
    summary = StreamPredictor(str(scatter_model), src, [], StreamOptions(idle_timeout_s=2.0)).run()
    assert summary["predicted"] == 4 and summary["reconnects"] == 0 and summary["timeouts"] >= 2
    assert summary["source_lost"] is None and verdict(summary) is None
    # the server goes away and does not come back: the run fails, saying so
    src = ZmqSource(f"tcp://127.0.0.1:{port}", pattern="REQ", timeout_s=5)
    runner = StreamPredictor(str(scatter_model), src, [], StreamOptions(idle_timeout_s=2.0))
    out = {}
    th = threading.Thread(target=lambda: out.update(runner.run()))
    th.start()
    t0 = time.time()
    while not src.connected and time.time() - t0 < 20:
        time.sleep(0.05)
    server.stop()
    th.join(timeout=60)
    assert out["reconnects"] == 1 and out["source_lost"] and "did not come back" in out["source_lost"]
    assert verdict(out).startswith(f"lost the source: tcp://127.0.0.1:{port} dropped the connection")


def test_cli_on_the_simulation_server_and_runs_that_exit_non_zero(scatter_model, model_dir, tmp_path):
    from karabo_bridge.server import SimServerInThread

    port = free_port()
    # karabo_bridge's own simulation server: one AGIPD module, raw, online layout (128, 512, 64)
    sim = SimServerInThread(f"tcp://127.0.0.1:{port}", detector="AGIPDModule", raw=True, debug=False)
    sim.start()
    try:
        stream = ("predict", "stream", str(scatter_model), "--source", f"tcp://127.0.0.1:{port}", "--json")
        proc = run_cli(*stream, "--max-frames", "128")
        assert proc.returncode == 0, proc.stderr
        s = json.loads(proc.stdout[proc.stdout.index("{"):])  # after the lines of the server (a thread of this process)
        assert s["received"] == s["predicted"] == 128 and s["reconnects"] == 0
        assert s["detectors"]["agipd/module"]["crop"] == {"name": "crop-bin", "shape": [64, 64], "bin": 2, "fill": 0.0}
        # the wrong layout forced: every train rejected, the run fails with one error line
        proc = run_cli(*stream, "--max-frames", "2", "--layout", "file")
        assert proc.returncode == 1 and json.loads(proc.stdout[proc.stdout.index("{"):])["rejected"] == 2
        assert "no frame was predicted: 2 of 2 rejected (AGIPD-1M data fit no file layout x2)" in error_line(proc)
    finally:
        sim.stop()
    # more than --max-reject of the frames rejected: non-zero, with the counts
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        np.save(frames / f"{i}.npy", raw_frame(i) if i else np.ones((10, 10), np.float32))
    proc = run_cli("predict", "stream", str(model_dir), "--source", str(frames), "--max-reject", "0.2")
    assert proc.returncode == 1
    assert "1 of 4 frames rejected (25% > --max-reject 20%" in error_line(proc)
    proc = run_cli("predict", "stream", str(model_dir), "--source", str(frames), "--geometry", str(frames / "0.npy"))
    assert proc.returncode == 2 and "--geometry needs --detector" in error_line(proc)
    proc = run_cli("predict", "stream", str(model_dir), "--source", str(frames), "--detector", "agipd",
                   "--geometry", str(frames / "0.npy"))
    assert proc.returncode == 2 and "0.npy: not a CrystFEL geometry of the AGIPD-1M" in error_line(proc)


def test_msgpack_predictions_follow_the_versioned_schema(model_dir, tmp_path):
    import msgpack
    import zmq

    from models.stream.sinks import PubSink
    from models.stream.sources import ReplaySource

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        np.save(frames / f"{i}.npy", raw_frame(i) if i != 2 else np.ones((10, 10), np.float32))
    port = free_port()
    pub = PubSink(f"tcp://127.0.0.1:{port}")
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVTIMEO, 10_000)
    sub.connect(f"tcp://127.0.0.1:{port}")
    time.sleep(0.5)  # PUB/SUB: the subscription reaches the publisher before the first message
    try:
        summary = StreamPredictor(str(model_dir), ReplaySource(frames), [pub], StreamOptions(batch_size=2)).run()
        msgs = [msgpack.unpackb(sub.recv()) for _ in range(5)]
    finally:
        sub.close(linger=0)
        pub.close()
    assert {m["schema"] for m in msgs} == {"factory.predictions/1"}
    assert [(m["status"], m.get("frame_id")) for m in msgs] == [("predicted", 0), ("predicted", 1), ("rejected", 2),
                                                                ("predicted", 3), ("end", None)]
    assert set(msgs[0]) == {"schema", "status", "frame_id", "train_id", "pulse_id", "latency_ms", "values"}
    assert msgs[0]["train_id"] is None and set(msgs[0]["values"]) == {"R", "intensity"}
    assert msgs[2]["reason"].startswith("preprocessing: frame shape (10, 10)")
    assert msgs[4]["summary"]["predicted"] == 3 == summary["predicted"] and summary["sinks"]["PubSink"]["messages"] == 5
