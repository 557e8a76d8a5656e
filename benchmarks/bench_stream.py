"""Streaming benchmark: sustained frames/s and p50/p99 latency of `factory predict stream`
for the PMD CNN (raw 512 x 512 PMD frames -> 128 x 256) and the ResNet-34 (tanh) at 128 x 128,
fed over ZeroMQ (simple protocol, PUSH -> PULL on loopback) by a sender thread.

    python benchmarks/bench_stream.py [--frames 2000] [--batch 32] [--replicas 0]

Weights are random (throughput does not depend on them); the preprocessing is the real one.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import zmq

from factory.processing import preprocess
from models.artifact import save_model
from models.networks import build
from models.stream.pipeline import StreamOptions, StreamPredictor
from models.stream.protocol import encode_simple, simple_header
from models.stream.sources import ZmqSource


def make_model(folder: Path, kind: str) -> tuple[Path, np.ndarray]:
    if kind == "pmd-cnn":
        ky = kx = np.linspace(-3, 3, 512)
        yy, xx = np.meshgrid(ky, kx, indexing="ij")
        frame = (np.exp(-(xx**2 + 2 * yy**2)) * (1.5 + np.sin(3 * xx))).astype(np.float32)
        desc = preprocess.pmd2d_description("global", (2.5, 2.5))
        desc["input_axes"] = preprocess.input_axes({"ky": ky, "kx": kx})
        arch = {"name": "pmd-cnn", "kwargs": {"input_shape": [128, 256], "outputs": 1}}
        labels, shape = ["R"], [128, 256]
    else:
        r = np.hypot(*np.meshgrid(np.arange(128) - 63.5, np.arange(128) - 63.5, indexing="ij"))
        frame = (1e6 * np.sinc(r / 6) ** 2 + 1).astype(np.float32)
        desc = {"name": "scatter", "input": "intensity", "log_floor": -6.0, "out_shape": [128, 128]}
        arch = {"name": "resnet-tanh", "kwargs": {"input_shape": [128, 128], "outputs": 5}}
        labels, shape = ["radius", "q0", "q1", "q2", "q3"], [128, 128]
    net = build(arch["name"], **arch["kwargs"]).eval()
    save_model(folder, net, {"architecture": arch, "labels": labels, "task": "regress", "preprocessing": desc,
                             "input": {"shape": shape, "mean_std": [0.0, 1.0]}})
    return folder, frame


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(kind: str, frames: int, batch: int, replicas: int, tmp: Path, workers: int = 0, rate: float | None = None) -> dict:
    folder, frame = make_model(tmp / kind, kind)
    port = free_port()
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 64)
    push.bind(f"tcp://127.0.0.1:{port}")
    body = encode_simple(0, frame)[1]  # the same pixels every time, sent without copying

    def send():
        t_start = time.perf_counter()
        for i in range(frames):
            if rate:  # paced like a detector; otherwise as fast as the predictor takes them
                time.sleep(max(0.0, t_start + i / rate - time.perf_counter()))
            push.send_multipart([simple_header(i, frame.dtype, frame.shape), body], copy=False)

    src = ZmqSource(f"tcp://127.0.0.1:{port}", pattern="PULL", protocol="simple")
    runner = StreamPredictor(str(folder), src, [], StreamOptions(batch_size=batch, max_latency_ms=20,
                                                                 queue_size=4 * batch, max_frames=frames,
                                                                 replicas=replicas, workers=workers))
    t = threading.Thread(target=send)
    t.start()
    summary = runner.run()
    t.join()
    push.close(linger=0)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--replicas", type=int, default=0)
    ap.add_argument("--workers", type=int, default=0, help="in-process worker threads (0: auto)")
    ap.add_argument("--kinds", nargs="+", default=["pmd-cnn", "resnet-tanh"])
    args = ap.parse_args()
    from records import record  # benchmarks/records.py (the script's folder is on sys.path); notes the load now

    tmp = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}, device {dev}, batch {args.batch}, replicas {args.replicas}, "
          f"load average {os.getloadavg()[0]:.1f}")

    def show(label, s):
        print(f"  {label:44s} {s['predicted']:6d} frames {s['rate']:8.1f} frames/s  latency p50 {s['p50_ms']:7.1f} ms"
              f"  p99 {s['p99_ms']:7.1f} ms  balanced={s['balanced']}")

    figures, rows = {}, []
    for kind in args.kinds:
        n = args.frames if kind == "pmd-cnn" else max(200, args.frames // 10)
        print(kind)
        base = run(kind, n, args.batch, args.replicas, tmp, workers=1)
        show("1 worker (all cores on one batch), saturated", base)
        best = run(kind, n, args.batch, args.replicas, tmp, workers=args.workers)
        show(f"workers={args.workers or 'auto'}, saturated", best)
        print(f"  speed-up over 1 worker: {best['rate'] / base['rate']:.2f}x")
        paced = run(kind, n, args.batch, args.replicas, tmp, workers=args.workers, rate=0.8 * best["rate"])
        show(f"workers={args.workers or 'auto'}, paced at 80 % ({0.8 * best['rate']:.0f}/s)", paced)
        for label, s in (("saturated_1_worker", base), ("saturated", best), ("paced", paced)):
            figures.update({f"{kind}_{label}": (s["rate"], "frames/s"), f"{kind}_{label}_p50": (s["p50_ms"], "ms"),
                            f"{kind}_{label}_p99": (s["p99_ms"], "ms")})
        figures[f"{kind}_speedup"] = (best["rate"] / base["rate"], "x")
        rows.append([kind, n, f"{base['rate']:.1f} frames/s", f"{best['rate']:.1f} frames/s", f"{best['rate'] / base['rate']:.2f}x",
                     f"{paced['rate']:.0f} frames/s, {paced['p50_ms']:.0f} ms, {paced['p99_ms']:.0f} ms",
                     str(all(s["balanced"] for s in (base, best, paced)))])
    record("stream", title="Streaming prediction", figures=figures,
           table={"title": f"device {dev}, batch {args.batch}, replicas {args.replicas}, workers {args.workers or 'auto'}",
                  "columns": ["network", "frames", "1 worker, saturated", "workers, saturated", "speed-up",
                              "paced at 80 %: frames/s, p50 / p99 latency", "balanced"], "rows": rows})


if __name__ == "__main__":
    main()
