"""Streaming rate against the inference ceiling, measured in ONE run, interleaved.

For each network (the PMD CNN on 512 x 512 raw frames, the ResNet-34 (tanh) on 128 x 128) and
each round, three measurements back to back on the same frozen model (random weights; the
preprocessing is the real one), with the same torch threads and worker count as the pipeline:

- ``infer``: the ceiling: W threads (W = the pipeline's workers), each running
  ``Predictor.predict`` on batches of the pipeline's size that were preprocessed beforehand; no
  I/O, no queueing;
- ``prep+infer``: the ceiling including preprocessing: W threads each running
  ``FrameModel.run`` (the model's recorded preprocessing of every raw frame, then the network)
  on batches of raw frames;
- ``pipeline``: ``StreamPredictor`` fed by an in-process source at unlimited rate (``--policy
  wait``: every frame predicted), i.e. the reader thread, the bounded queue, batching,
  in-order emission and the summary.

The load average is printed before every measurement, and the fractions pipeline / ceiling are
computed within each round (ratios of neighbours in time, not absolute speeds), then their
median over the rounds.  Beside wall-clock frames/s, the process's CPU time per frame (all its
threads) is recorded: on cores shared with other work it is far steadier than the rate, and
its ratio (ceiling CPU-ms/frame over pipeline CPU-ms/frame) is the fraction the pipeline would
reach on cores of its own.  ``--stages`` adds a per-stage time account of one pipeline run
(preprocessing, inference, waiting in the main loop), taken inside the run.

    python benchmarks/bench_stream_ceiling.py [--rounds 5] [--frames 320] [--batch 32]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stream import make_model  # noqa: E402  (the same models and frames as bench_stream.py)
from machine import cpu_model  # noqa: E402
from records import record  # noqa: E402  benchmarks/records.py: writes benchmarks/records/stream_ceiling.json

from models.stream.pipeline import FrameModel, StreamOptions, StreamPredictor  # noqa: E402
from models.stream.protocol import Frame  # noqa: E402


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def threaded(work, workers: int, frames: int, batch: int) -> float:
    """frames/s of ``workers`` threads taking batches of ``batch`` frames off one counter."""
    left = [frames // batch]
    lock = threading.Lock()

    def loop():
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            work()

    threads = [threading.Thread(target=loop) for _ in range(workers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (frames // batch) * batch / (time.perf_counter() - t0)


class InProcessSource:
    """``n`` frames as fast as the predictor takes them (no I/O): the same pixels every time."""

    def __init__(self, frame: np.ndarray, n: int):
        self.frame, self.n = frame, n

    def __iter__(self):
        for i in range(self.n):
            yield Frame(i, self.frame, t_received=time.perf_counter())


def pipeline_rate(folder: Path, frame: np.ndarray, frames: int, batch: int, workers: int,
                  stages: bool = False) -> tuple[float, float, dict]:
    """(frames/s, CPU-ms per frame of the run (not of building the predictor), stage account)."""
    opt = StreamOptions(batch_size=batch, max_latency_ms=20, queue_size=4 * batch, max_frames=frames,
                        workers=workers, policy="wait")
    runner = StreamPredictor(str(folder), InProcessSource(frame, frames), [], opt)
    account: dict[str, float] = collections.defaultdict(float)
    if stages:  # time accounting per stage, summed over the worker threads
        fm = runner.model
        apply, predict = fm._apply, fm.predictor.predict

        def timed(name, fn):
            def inner(*a, **k):
                t = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    account[name] += time.perf_counter() - t  # float += under the GIL: close enough
            return inner

        def cpu_of(name, fn):  # the CPU time of the thread that runs fn (workers, reader, main loop)
            def inner(*a, **k):
                t = time.thread_time()
                try:
                    return fn(*a, **k)
                finally:
                    account[name + " (CPU)"] += time.thread_time() - t
            return inner

        fm._apply = timed("preprocess", apply)
        fm.predictor.predict = timed("inference", predict)
        run = fm.run
        fm.run = cpu_of("workers", timed("worker busy (FrameModel.run)", run))
        get_batch = runner.queue.get_batch
        runner.queue.get_batch = timed("main: get_batch", get_batch)
        emit = runner._emit
        runner._emit = timed("main: emit", emit)
        runner._receive = cpu_of("reader thread", runner._receive)
        runner._loop = cpu_of("main loop", runner._loop)
    cpu0 = time.process_time()
    s = runner.run()
    cpu = 1e3 * (time.process_time() - cpu0) / frames
    assert s["balanced"] and s["predicted"] == frames, s
    if stages:
        account["wall"] = s["wall_s"]
    return s["rate"], cpu, dict(account)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--frames", type=int, default=320, help="frames per measurement (a multiple of --batch)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0, help="0: the pipeline's auto (CPU cores up to 4)")
    ap.add_argument("--kinds", nargs="+", default=["pmd-cnn", "resnet-tanh"])
    ap.add_argument("--stages", action="store_true", help="add a per-stage time account of one pipeline run")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ceiling-"))
    workers = args.workers or max(1, min(4, os.cpu_count() or 1))
    threads = 1 if workers > 1 else torch.get_num_threads()  # as StreamPredictor.run sets them
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"workers {workers}, torch threads {threads}, batch {args.batch}, {args.frames} frames per measurement, "
          f"load average {load()}")
    figures, table = {}, []
    for kind in args.kinds:
        folder, frame = make_model(tmp / kind, kind)
        fm = FrameModel(str(folder))  # frozen TorchScript, as the pipeline makes it
        raw = [frame] * args.batch
        ready = np.stack([fm._apply(fm.preprocessing, f) if fm.preprocessing else f for f in raw])
        default_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        for _ in range(2):  # warm-up (TorchScript profiling runs, caches), on the worker threads
            threaded(lambda: (fm.predictor.predict(ready), fm.run(raw)), workers, workers * args.batch, args.batch)
        torch.set_num_threads(default_threads)
        rows = []
        print(kind)
        for r in range(args.rounds):
            row = {}
            for what in ("infer", "prep+infer", "pipeline"):
                la = load()
                if what == "pipeline":  # StreamPredictor sets (and restores) the torch threads itself
                    row[what], row[what + " cpu"], _ = pipeline_rate(folder, frame, args.frames, args.batch, workers)
                else:
                    torch.set_num_threads(threads)
                    work = (lambda: fm.predictor.predict(ready)) if what == "infer" else (lambda: fm.run(raw))
                    cpu0 = time.process_time()  # CPU seconds of every thread of this process
                    row[what] = threaded(work, workers, args.frames, args.batch)
                    row[what + " cpu"] = 1e3 * (time.process_time() - cpu0) / args.frames
                    torch.set_num_threads(default_threads)
                print(f"  round {r + 1}  {what:11s} {row[what]:7.1f} frames/s  {row[what + ' cpu']:6.2f} CPU-ms/frame"
                      f"   (load {la})")
            for c in ("infer", "prep+infer"):
                row[f"pipe/{c}"] = row["pipeline"] / row[c]
                row[f"pipe/{c} cpu"] = row[c + " cpu"] / row["pipeline cpu"]
            print(f"  round {r + 1}  pipeline / infer {row['pipe/infer']:.2f} (CPU {row['pipe/infer cpu']:.2f})   "
                  f"pipeline / prep+infer {row['pipe/prep+infer']:.2f} (CPU {row['pipe/prep+infer cpu']:.2f})")
            rows.append(row)
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]} if rows else {}
        if rows:
            print(f"  median of {args.rounds}: infer {med['infer']:.1f}, prep+infer {med['prep+infer']:.1f}, pipeline "
                  f"{med['pipeline']:.1f} frames/s; CPU-ms/frame {med['infer cpu']:.2f} / {med['prep+infer cpu']:.2f}"
                  f" / {med['pipeline cpu']:.2f}")
            print(f"  median fractions: pipeline / infer {med['pipe/infer']:.2f} (CPU {med['pipe/infer cpu']:.2f}), "
                  f"pipeline / prep+infer {med['pipe/prep+infer']:.2f} (CPU {med['pipe/prep+infer cpu']:.2f})  "
                  f"(load {load()})")
            for what in ("infer", "prep+infer", "pipeline"):
                key = f"{kind}_{what.replace('+', '_')}"
                figures.update({key: (med[what], "frames/s"), f"{key}_cpu": (med[what + " cpu"], "CPU-ms/frame")})
            for c in ("infer", "prep+infer"):
                key = f"{kind}_pipeline_over_{c.replace('+', '_')}"
                figures.update({key: med[f"pipe/{c}"], f"{key}_cpu": med[f"pipe/{c} cpu"]})
            table.append([kind, *(f"{med[w]:.1f}, {med[w + ' cpu']:.2f}" for w in ("infer", "prep+infer", "pipeline")),
                          *(f"{med[f'pipe/{c}']:.2f} ({med[f'pipe/{c} cpu']:.2f})" for c in ("infer", "prep+infer"))])
        if args.stages:
            rate, _, acc = pipeline_rate(folder, frame, args.frames, args.batch, workers, stages=True)
            wall = acc.pop("wall")
            print(f"  stages of one pipeline run ({rate:.1f} frames/s, {wall:.2f} s wall, {workers} workers: "
                  f"{workers * wall:.2f} worker-s):")
            for k, v in acc.items():
                print(f"    {k:32s} {v:7.2f} s  {1e3 * v / args.frames:6.2f} ms/frame")
                stage = "_".join("".join(c if c.isalnum() else " " for c in k.lower()).split())
                figures[f"{kind}_stage_{stage}"] = (1e3 * v / args.frames, "ms/frame")
    if figures:
        record("stream_ceiling", title="Streaming pipeline against the inference ceiling, in one run", figures=figures,
               table={"title": f"Medians of {args.rounds} rounds: frames/s, CPU-ms/frame; {workers} workers, torch threads "
                               f"{threads}, batch {args.batch}, {args.frames} frames per measurement",
                      "columns": ["network", "infer", "prep+infer", "pipeline", "pipeline / infer: wall (CPU)",
                                  "pipeline / prep+infer: wall (CPU)"], "rows": table})


if __name__ == "__main__":
    main()
