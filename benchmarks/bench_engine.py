"""Generation-engine benchmark: overhead per sample and the 1 -> 2 worker speed-up.

    python benchmarks/bench_engine.py [--samples 256] [--repeats 400]

Everything is measured in this one run: (a) the analytic `blobs` simulator called in a plain
loop in this process (no Ray, no store) against the full engine (Ray tasks + Zarr writes +
done flags) on the same samples, giving the engine's overhead per sample; (b) the same
CPU-bound generation with 1 and with 2 workers, giving the parallel speed-up.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import ray

from factory.config import load_config
from factory.engine import compute_block, generate


def direct_loop(cfg) -> float:
    t0 = time.perf_counter()
    for s in range(0, cfg.samples, cfg.chunk):
        compute_block(cfg, s, min(s + cfg.chunk, cfg.samples))
    return time.perf_counter() - t0


def engine_run(cfg, out: Path, workers: int) -> float:
    t0 = time.perf_counter()
    generate(cfg, out, overwrite=True, workers=workers, progress=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=200, help="work_repeats of the CPU-bound run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    # (a) overhead: a cheap 64x64 image per sample, 16 samples per block
    cheap = load_config("blobs/small", ["chunk=16"], samples=args.samples)
    engine_run(cheap, tmp / "warm.zarr", 2)  # warm-up: worker processes, imports
    t_direct = direct_loop(cheap)
    t_engine1 = engine_run(cheap, tmp / "a.zarr", 1)
    overhead_ms = (t_engine1 - t_direct) / args.samples * 1e3
    # (b) speed-up: CPU-bound samples (work_repeats), 1 vs 2 workers
    heavy = load_config("blobs/small", [f"simulator.work_repeats={args.repeats}", "chunk=8"], samples=64)
    t_direct_heavy = direct_loop(heavy)
    t_w1 = engine_run(heavy, tmp / "w1.zarr", 1)
    t_w2 = engine_run(heavy, tmp / "w2.zarr", 2)
    res = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {ray.cluster_resources().get('CPU')} CPUs for Ray",
        "samples": args.samples,
        "direct_loop_s": round(t_direct, 3),
        "engine_1_worker_s": round(t_engine1, 3),
        "overhead_ms_per_sample": round(overhead_ms, 3),
        "heavy_direct_s": round(t_direct_heavy, 3),
        "heavy_1_worker_s": round(t_w1, 3),
        "heavy_2_workers_s": round(t_w2, 3),
        "engine_vs_direct_1_worker": round(t_w1 / t_direct_heavy, 3),
        "speedup_1_to_2_workers": round(t_w1 / t_w2, 3),
    }
    ray.shutdown()
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"cheap samples ({args.samples} x 64x64): direct loop {t_direct:.3f} s, engine 1 worker {t_engine1:.3f} s")
    print(f"  engine overhead per sample: {overhead_ms:.2f} ms (Ray task + Zarr write + done flag, per-block amortised)")
    print(f"CPU-bound samples (64, {args.repeats} repeats): direct {t_direct_heavy:.2f} s, "
          f"1 worker {t_w1:.2f} s, 2 workers {t_w2:.2f} s")
    print(f"  engine/direct at 1 worker: {t_w1 / t_direct_heavy:.3f}x   speed-up 1 -> 2 workers: {t_w1 / t_w2:.2f}x")


if __name__ == "__main__":
    main()
