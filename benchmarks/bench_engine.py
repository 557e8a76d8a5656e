"""Generation-engine benchmark: overhead per sample and the 1 -> 2 worker speed-up, tasks vs warm actors.

    python benchmarks/bench_engine.py [--rounds 3] [--seconds 30] [--config blobs/small]

Everything is measured in this one run, on one embedded Ray:

(a) overhead: the `blobs` simulator called in a plain loop in this process (no Ray, no store)
    against the engine (Ray tasks + Zarr writes + done flags) on the same cheap samples;
(b) parallel speed-up: the same CPU-bound generation (sized so that one worker takes about
    ``--seconds``) with 1 and 2 workers, on warm Ray actors (the pools are started and their
    simulators built before timing) and on Ray tasks, plus the plain loop, *interleaved*: each
    round runs every variant once, in turn, so a change in the machine's load hits all of
    them alike; the speed-up of a round is t(1 worker) / t(2 workers) of that round.

The load average is printed before and after every run: on a shared machine the other
processes take CPU from the 2-worker runs first, and the ratio says so.  Ray is given 5
logical CPUs so that a 1-actor and a 2-actor pool (an actor holds its CPU while it lives)
and 2 task slots can stay up side by side; idle actors use no CPU, and never more than 2
workers compute at once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import ray

from factory.compute import RayExecutor
from factory.compute.ray_executor import WORKER_NICENESS
from factory.config import load_config
from factory.engine import compute_block, generate
from machine import cpu_model  # benchmarks/machine.py (the script's folder is on sys.path)
from records import record  # benchmarks/records.py: writes benchmarks/records/engine.json


def load() -> float:
    return round(os.getloadavg()[0], 2)


def direct_loop(cfg) -> float:
    t0 = time.perf_counter()
    for s in range(0, cfg.samples, cfg.chunk):
        compute_block(cfg, s, min(s + cfg.chunk, cfg.samples))
    return time.perf_counter() - t0


COMPUTE_S: list[float] = []  # the workers' own compute seconds of the last engine run


def engine_run(cfg, out: Path, **kw) -> float:
    t0 = time.perf_counter()
    rep = generate(cfg, out, overwrite=True, progress=False, **kw)
    COMPUTE_S[:] = [rep.compute_s]
    return time.perf_counter() - t0


def heavy_config(spec: str, seconds: float, chunk: int):
    """A CPU-bound config whose plain loop takes about ``seconds`` (blobs: work_repeats; others: samples)."""
    if spec.startswith("blobs/"):
        samples, repeats = 16 * chunk, 50
        for _ in range(2):  # two rounds of rescaling: the first probe is short and noisy
            probe = load_config(spec, [f"simulator.work_repeats={repeats}", f"chunk={chunk}"], samples=chunk)
            per_repeat = min(direct_loop(probe) for _ in range(2)) / (repeats * chunk)
            repeats = max(1, round(seconds / (samples * per_repeat)))
        return load_config(spec, [f"simulator.work_repeats={repeats}", f"chunk={chunk}"], samples=samples)
    probe = load_config(spec, [f"chunk={chunk}"], samples=chunk)
    direct_loop(probe)  # builds the simulator (plans) outside the timing
    per_sample = direct_loop(probe) / chunk
    samples = chunk * max(4, round(seconds / (per_sample * chunk)))
    return load_config(spec, [f"chunk={chunk}"], samples=samples)


def overhead(tmp: Path, samples: int) -> dict:
    cheap = load_config("blobs/small", ["chunk=16"], samples=samples)
    engine_run(cheap, tmp / "warm.zarr", workers=1)  # warm-up: worker processes, imports
    t_direct = direct_loop(cheap)
    t_engine = engine_run(cheap, tmp / "cheap.zarr", workers=1)
    return {"samples": samples, "direct_loop_s": round(t_direct, 3), "engine_1_worker_s": round(t_engine, 3),
            "overhead_ms_per_sample": round((t_engine - t_direct) / samples * 1e3, 3)}


def speedup(tmp: Path, cfg, rounds: int) -> dict:
    pools = {1: RayExecutor(workers=1, mode="actors"), 2: RayExecutor(workers=2, mode="actors")}
    warm = cfg.model_copy(update={"samples": cfg.chunk * 2})  # the same simulator, fewer samples
    for w, ex in pools.items():  # start the actors and build their simulators before timing
        engine_run(warm, tmp / f"warm{w}.zarr", executor=ex)
    engine_run(warm, tmp / "warm-tasks.zarr", workers=2)  # Ray's task workers: started, simulator cached
    variants = {
        "direct loop": lambda out: direct_loop(cfg),
        "actors, 1 worker": lambda out: engine_run(cfg, out, executor=pools[1]),
        "actors, 2 workers": lambda out: engine_run(cfg, out, executor=pools[2]),
        "tasks, 1 worker": lambda out: engine_run(cfg, out, workers=1),
        "tasks, 2 workers": lambda out: engine_run(cfg, out, workers=2),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    compute: dict[str, list[float]] = {k: [] for k in variants if k != "direct loop"}
    loads: list[float] = []
    for r in range(rounds):
        for k, run in variants.items():
            before = load()
            t = run(tmp / f"run-{r}-{k.replace(', ', '-').replace(' ', '_')}.zarr")
            after = load()
            loads += [before, after]
            times[k].append(t)
            inside = ""
            if k in compute:
                compute[k].append(COMPUTE_S[0])
                inside = f" (blocks computed {COMPUTE_S[0]:6.2f} s in the workers)"
            print(f"round {r + 1}/{rounds}  {k:<18} {t:7.2f} s{inside}   load {before:.2f} -> {after:.2f}", flush=True)
    for ex in pools.values():
        ex.close()
    ratio = {m: [a / b for a, b in zip(times[f"{m}, 1 worker"], times[f"{m}, 2 workers"])] for m in ("actors", "tasks")}
    return {
        "config": {"kind": cfg.kind, "samples": cfg.samples, "chunk": cfg.chunk},
        "seconds": {k: [round(t, 2) for t in v] for k, v in times.items()},
        "worker_compute_seconds": {k: [round(t, 2) for t in v] for k, v in compute.items()},
        "speedup_1_to_2": {m: {"per_round": [round(x, 3) for x in v], "median": round(statistics.median(v), 3)}
                           for m, v in ratio.items()},
        "engine_vs_direct_1_worker": round(statistics.median(times["actors, 1 worker"]) /
                                           statistics.median(times["direct loop"]), 3),
        "load": {"min": min(loads), "median": statistics.median(loads), "max": max(loads)},
    }


def write_record(res: dict) -> None:
    """benchmarks/records/engine.json: the figures printed below, per-round seconds as a table."""
    s = res["speedup"]
    slug = lambda k: k.replace(", ", "_").replace(" ", "_")  # noqa: E731  "actors, 1 worker" -> "actors_1_worker"
    figures = {"overhead_per_sample": (res["overhead"]["overhead_ms_per_sample"], "ms")}
    for m, v in s["speedup_1_to_2"].items():
        figures[f"speedup_1_to_2_{m}_median"] = (v["median"], "x")
    figures["engine_vs_plain_loop_1_actor"] = (s["engine_vs_direct_1_worker"], "")
    for k, v in s["seconds"].items():
        figures[f"{slug(k)}_median"] = (round(statistics.median(v), 2), "s")
    for k, v in s["worker_compute_seconds"].items():  # compute_s / (workers x wall), median over the rounds
        mode, workers = k.split(", ")[0], int(k.split(", ")[1].split()[0])
        busy = [100 * c / (workers * t) for c, t in zip(v, s["seconds"][k])]
        figures[f"worker_busy_{mode}_{workers}"] = (round(statistics.median(busy), 1), "%")
    for q in ("min", "median", "max"):
        figures[f"load_{q}"] = s["load"][q]
    rounds = len(next(iter(s["seconds"].values())))
    rows = [[k] + v + [round(statistics.median(v), 2),
                       ", ".join(f"{c:.2f}" for c in s["worker_compute_seconds"].get(k, [])) or None]
            for k, v in s["seconds"].items()]
    cfg = s["config"]
    record("engine", title="Generation engine: plain loop, warm actors and tasks, 1 and 2 workers",
           figures=figures,
           table={"title": f"{cfg['kind']}: {cfg['samples']} samples in blocks of {cfg['chunk']}; seconds per round "
                           f"(Ray workers at nice {res['worker_niceness']})",
                  "columns": ["variant"] + [f"round {r + 1} (s)" for r in range(rounds)]
                             + ["median (s)", "blocks computed in the workers per round (s)"],
                  "rows": rows})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="blobs/small", help="preset of the CPU-bound generation")
    ap.add_argument("--seconds", type=float, default=30.0, help="about how long one worker takes")
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--overhead-samples", type=int, default=256)
    ap.add_argument("--niceness", type=int, default=WORKER_NICENESS,
                    help="nice value of Ray's workers (factory's embedded Ray: 0; Ray's own default: 15)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    ray.init(address="local", num_cpus=5, include_dashboard=False, configure_logging=False,  # never a cluster found here
             _system_config={"worker_niceness": args.niceness})
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "cores": os.cpu_count(),
           "load_at_start": load(), "worker_niceness": args.niceness}
    print(f"{res['date']}  {res['cpu']}, {res['cores']} cores, load {res['load_at_start']}, "
          f"Ray workers at nice {args.niceness}", flush=True)
    res["overhead"] = overhead(tmp, args.overhead_samples)
    o = res["overhead"]
    print(f"overhead: {o['samples']} cheap samples, direct {o['direct_loop_s']} s, engine {o['engine_1_worker_s']} s: "
          f"{o['overhead_ms_per_sample']} ms per sample", flush=True)
    cfg = heavy_config(args.config, args.seconds, args.chunk)
    res["speedup"] = speedup(tmp, cfg, args.rounds)
    ray.shutdown()
    write_record(res)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    s = res["speedup"]
    print(f"\n{cfg.kind}: {cfg.samples} samples in blocks of {cfg.chunk}; load {s['load']}")
    for k, v in s["seconds"].items():
        print(f"  {k:<18} {statistics.median(v):7.2f} s (median of {v})")
    for m, v in s["speedup_1_to_2"].items():
        print(f"  speed-up 1 -> 2 workers, {m}: {v['median']:.2f}x (rounds {v['per_round']})")
    print(f"  engine (1 actor) / plain loop: {s['engine_vs_direct_1_worker']:.3f}")


if __name__ == "__main__":
    main()
