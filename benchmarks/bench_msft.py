"""MSFT benchmark: this implementation against the one before it and the straightforward numpy MSFT.

Paper grid (Stielow, Schmidt, Peltz, Fennel & Scheel, Mach. Learn.: Sci. Technol. (2020),
App. B): 192 voxels per side (318.75 nm box), slices zero-padded to 512 x 512, central
128 x 128 detector crop, lambda = 13.5 nm, absorption length 12.5 nm; icosahedra in random
orientations.

Measured in one process on the *same density arrays*, in interleaved rounds after a warm-up
that builds caches and FFTW plans (median and minimum times reported):

- ``reference``: the straightforward implementation (numpy ``fft2`` of every zero-padded
  512 x 512 slice, Ewald phase on the full grid, sum, crop), the baseline of the speed-up;
- ``after``: every (method, backend) of the current code, with a Backend of ``--threads``
  threads passed in;
- ``before``: the same (method, backend) of the implementation at git revision ``--before``
  (loaded from git into a private package), run with the same thread count through its own
  channel (FACTORY_FFT_THREADS and torch's global thread setting).

Each fast path's intensity is compared with the baseline as max |I - I_ref| / max I_ref.
Also timed: the whole per-image cost of ``MSFTSimulator.simulate`` at the tiny / small /
paper presets; with a CUDA GPU, batched paper-grid throughput (images/s) of the torch path.

    python benchmarks/bench_msft.py                 # full run, a few minutes on 2 cores
    python benchmarks/bench_msft.py --quick         # three particles
    python benchmarks/bench_msft.py --before none   # without the before/after comparison
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from factory.backend import Backend, has_cuda  # noqa: E402
from factory.geometry import sample_fundamental  # noqa: E402
from factory.msft.multislice import MSFTParams, amplitude, relative_difference  # noqa: E402
from factory.msft.shapes import density  # noqa: E402
from machine import cpu_model  # benchmarks/machine.py (the script's folder is on sys.path)
from records import record  # benchmarks/records.py: writes benchmarks/records/msft.json

N, VOXEL, PAD, CROP = 192, 318.75 / 192, 512, 128
BEFORE = "d32a23f"  # the last revision with the two MSFT implementations (multislice.py, torch_msft.py)
# (method, backend); "auto"/"auto" on a CPU is the pruned DFT with torch/MKL GEMMs (the default)
FAST = [("auto", "auto"), ("dft", "numpy"), ("fft", "fftw"), ("fft", "numpy"), ("dft", "torch"), ("fft", "torch")]


def load_before(rev: str):
    """The MSFT module (multislice) of revision ``rev`` as a private package; None if it cannot be read."""
    files = {"backend.py": "factory/backend.py", "msft/multislice.py": "factory/msft/multislice.py",
             "msft/torch_msft.py": "factory/msft/torch_msft.py"}
    root = Path(tempfile.mkdtemp(prefix="msft-before-")) / "_msft_before"
    (root / "msft").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "msft" / "__init__.py").write_text("")
    for dst, src in files.items():
        try:
            text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{src}"], check=True,
                                  capture_output=True, text=True).stdout
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:
            print(f"before: cannot read {src} at {rev}: {exc}")
            return None
        text = text.replace("from .shapes import", "from factory.msft.shapes import")
        text = text.replace("from ..geometry", "from factory.geometry")
        (root / dst).write_text(text)
    sys.path.insert(0, str(root.parent))
    return importlib.import_module("_msft_before.msft.multislice")


def timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def bench_paper_grid(radii, rounds: int, threads: int, before) -> list[dict]:
    """Per particle: ``rounds`` interleaved rounds (reference once, then every path, after and before, 3 times)."""
    rng = np.random.default_rng(2026)
    rows = []
    for R in radii:
        q = sample_fundamental(rng)
        t_vox, rho = timed(lambda: density("icosahedron", R, q, n=N, voxel_nm=VOXEL), 3)
        ref_params = MSFTParams(voxel_nm=VOXEL, pad=PAD, crop=CROP, method="reference")
        calls = {}
        for m, b in FAST:
            p = MSFTParams(voxel_nm=VOXEL, pad=PAD, crop=CROP, method=m, backend=b)
            be = Backend.create(b, threads=threads, device="cpu" if b == "torch" else None)
            calls[f"{m}/{b}"] = (lambda p=p, be=be: amplitude(rho, p, backend=be))
            if before is not None:
                pb = before.MSFTParams(voxel_nm=VOXEL, pad=PAD, crop=CROP, method=m, backend=b)
                calls[f"{m}/{b} before"] = (lambda pb=pb: before.amplitude(rho, pb))
        amps = {key: fn() for key, fn in calls.items()}  # warm-up: caches, FFTW plans
        t_ref, ts = [], {key: [] for key in calls}
        ref = None
        for _ in range(rounds):
            t0 = time.perf_counter()
            ref = np.abs(amplitude(rho, ref_params)) ** 2
            t_ref.append(time.perf_counter() - t0)
            for _ in range(3):
                for key, fn in calls.items():  # after and before take turns
                    t0 = time.perf_counter()
                    amps[key] = fn()
                    ts[key].append(time.perf_counter() - t0)
        row = {"radius_nm": R, "quat": [round(float(c), 4) for c in q], "t_voxelise_s": t_vox,
               "t_reference_median_s": statistics.median(t_ref), "t_reference_min_s": min(t_ref)}
        for key in calls:
            tm, tn = statistics.median(ts[key]), min(ts[key])
            row[key] = {"t_median_s": tm, "t_min_s": tn, "speedup_median": row["t_reference_median_s"] / tm,
                        "speedup_min": row["t_reference_min_s"] / tn,
                        "rel_diff": relative_difference(np.abs(amps[key]) ** 2, ref)}
        rows.append(row)
        lines = [f"R={R:5.1f} nm  reference {row['t_reference_median_s'] * 1e3:7.1f} ms "
                 f"(min {row['t_reference_min_s'] * 1e3:7.1f})  voxelise {t_vox * 1e3:6.1f} ms"]
        for m, b in FAST:
            key = f"{m}/{b}"
            r = row[key]
            line = (f"    {key:10s} {r['t_median_s'] * 1e3:7.1f} ms (min {r['t_min_s'] * 1e3:6.1f})"
                    f"  speedup x{r['speedup_median']:6.1f}  rel. diff {r['rel_diff']:.1e}")
            if f"{key} before" in row:
                rb = row[f"{key} before"]
                line += (f" | before {rb['t_median_s'] * 1e3:7.1f} ms (min {rb['t_min_s'] * 1e3:6.1f})"
                         f"  after/before {r['t_median_s'] / rb['t_median_s']:.2f} (minima {r['t_min_s'] / rb['t_min_s']:.2f})")
            lines.append(line)
        print("\n".join(lines), f"\n    load {os.getloadavg()[0]:.1f}", flush=True)
    return rows


def bench_presets(samples: int, threads: int) -> dict:
    from factory.config import load_config
    from factory.msft.simulator import MSFTSimulator
    from factory.simulators import rng_for

    out = {}
    for size in ("tiny", "small", "paper"):
        sim = MSFTSimulator(load_config(f"msft/{size}").simulator, threads=threads)
        sim.simulate(sim.sample_params(0, 0), rng_for(0, 0, 1))  # warm-up (caches)
        ts = []
        for i in range(1, samples + 1):
            p = sim.sample_params(0, i)
            t = time.perf_counter()
            sim.simulate(p, rng_for(0, i, 1))
            ts.append(time.perf_counter() - t)
        out[size] = {"mean_s": float(np.mean(ts)), "median_s": float(np.median(ts)), "max_s": float(np.max(ts)),
                     "samples": samples}
        print(f"preset {size:5s}: per image (voxelise + MSFT + detector) mean {np.mean(ts) * 1e3:7.1f} ms, "
              f"median {np.median(ts) * 1e3:7.1f} ms, max {np.max(ts) * 1e3:7.1f} ms over {samples} sampled labels",
              flush=True)
    return out


def bench_gpu(batch: int, rounds: int) -> dict | None:
    if not has_cuda():
        print("GPU: none present, batched torch throughput not measured")
        return None
    import torch

    from factory.msft.transform import amplitude_array
    from factory.msft.voxelise import density_batch

    be = Backend.create("torch", device="cuda")
    rng = np.random.default_rng(1)
    radii = rng.uniform(30, 160, batch)
    quats = sample_fundamental(rng, batch)
    params = MSFTParams(voxel_nm=VOXEL, pad=PAD, crop=CROP, backend="torch")
    out = {}
    for method in ("dft", "fft"):
        for _ in range(2):  # warm-up
            rho = density_batch(be, "icosahedron", radii, quats, n=N, voxel_nm=VOXEL)
            amp = amplitude_array(rho, params, be, method=method)
        be.synchronize()
        t = time.perf_counter()
        for _ in range(rounds):
            rho = density_batch(be, "icosahedron", radii, quats, n=N, voxel_nm=VOXEL)
            amp = amplitude_array(rho, params, be, method=method)
            (amp.abs() ** 2).float().cpu()
        be.synchronize()
        dt = time.perf_counter() - t
        out[method] = batch * rounds / dt
        print(f"GPU {torch.cuda.get_device_name()}: {method}: {out[method]:.0f} paper-grid images/s "
              f"(batch {batch}, voxelise + MSFT + copy back)", flush=True)
    return out


def summarise(rows, keys) -> dict:
    out = {}
    for key in keys:
        if key not in rows[0]:
            continue
        t = [r[key]["t_median_s"] for r in rows]
        out[key] = {"worst_speedup_median": min(r[key]["speedup_median"] for r in rows),
                    "worst_speedup_from_minima": min(r[key]["speedup_min"] for r in rows),
                    "mean_time_s": float(np.mean(t)), "max_rel_diff": max(r[key]["rel_diff"] for r in rows)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="three particles, fewer repeats")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per particle")
    ap.add_argument("--threads", type=int, default=1, help="threads per process (FFTs, torch kernels)")
    ap.add_argument("--before", default=BEFORE, help="git revision of the implementation to compare with ('none': skip)")
    ap.add_argument("--no-presets", action="store_true")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--gpu-batch", type=int, default=64)
    args = ap.parse_args()
    radii = [30.0, 95.0, 155.0] if args.quick else [30.0, 60.0, 95.0, 125.0, 155.0]
    import torch

    os.environ["FACTORY_FFT_THREADS"] = str(args.threads)  # the old implementation's channel only
    torch.set_num_threads(args.threads)  # the same for both (the new one sets it inside its calls)
    before = None if args.before == "none" else load_before(args.before)
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu_model(),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs",
        "numpy": np.__version__,
        "torch": torch.__version__,
        "threads": args.threads,
        "before": args.before,
        "load_avg_before": os.getloadavg(),
    }
    print(json.dumps(info))
    print(f"paper grid: {N}^3 voxels of {VOXEL:.4f} nm, pad {PAD}, crop {CROP}; icosahedra, absorption 12.5 nm")
    rows = bench_paper_grid(radii, rounds=2 if args.quick else args.rounds, threads=args.threads, before=before)
    presets = None if args.no_presets else bench_presets(4 if args.quick else 12, args.threads)
    gpu = bench_gpu(args.gpu_batch, 5)
    info["load_avg_after"] = os.getloadavg()
    keys = [f"{m}/{b}" for m, b in FAST] + [f"{m}/{b} before" for m, b in FAST]
    summary = summarise(rows, keys)
    t_ref = [r["t_reference_median_s"] for r in rows]
    print(f"reference (numpy fft2 per slice): {np.mean(t_ref):.2f} s per image (mean of medians over {len(rows)} particles)")
    for key, s in summary.items():
        line = (f"{key:17s}: mean {s['mean_time_s'] * 1e3:6.1f} ms/image; per-image mean speedup x{np.mean(t_ref) / s['mean_time_s']:.1f}; "
                f"worst particle x{s['worst_speedup_median']:.1f} (from minima x{s['worst_speedup_from_minima']:.1f}); "
                f"max relative difference {s['max_rel_diff']:.1e}")
        if not key.endswith("before") and f"{key} before" in summary:
            line += f"; after/before {s['mean_time_s'] / summary[f'{key} before']['mean_time_s']:.2f}"
        print(line)
    print(json.dumps({"load_avg_after": info["load_avg_after"]}))
    if args.json:
        args.json.write_text(json.dumps({"info": info, "paper_grid": rows, "summary": summary, "presets": presets,
                                         "gpu_images_per_s": gpu}, indent=2))
    write_record(args, rows, summary, presets, gpu)


def write_record(args, rows, summary, presets, gpu) -> None:
    """benchmarks/records/msft.json: the summary printed above, a row per particle."""
    t_ref = float(np.mean([r["t_reference_median_s"] for r in rows]))
    figures = {"reference_mean": (t_ref, "s")}
    for key, s in summary.items():
        name = key.replace("/", "_").replace(" ", "_")
        figures[f"{name}_mean"] = (1e3 * s["mean_time_s"], "ms")
        if not key.endswith("before"):
            figures[f"{name}_speedup_mean"] = (t_ref / s["mean_time_s"], "x")
            figures[f"{name}_worst_speedup"] = (s["worst_speedup_median"], "x")
            figures[f"{name}_max_rel_diff"] = s["max_rel_diff"]
            if f"{key} before" in summary:
                figures[f"{name}_after_over_before"] = s["mean_time_s"] / summary[f"{key} before"]["mean_time_s"]
    for size, p in (presets or {}).items():
        figures[f"preset_{size}_mean"] = (1e3 * p["mean_s"], "ms")
        figures[f"preset_{size}_max"] = (1e3 * p["max_s"], "ms")
    for method, rate in (gpu or {}).items():
        figures[f"gpu_{method}_images_per_s"] = (rate, "images/s")
    before = any(f"{m}/{b} before" in rows[0] for m, b in FAST)
    columns = (["R (nm)", "reference (s)"] + [f"`{m}` {b}" + (" after / before (ms)" if before else " (ms)") for m, b in FAST]
               + ["max rel. diff"])
    table_rows = []
    for r in rows:
        cells = [r["radius_nm"], round(r["t_reference_median_s"], 3)]
        for m, b in FAST:
            after = f"{1e3 * r[f'{m}/{b}']['t_median_s']:.1f}"
            old = r.get(f"{m}/{b} before")
            cells.append(after + (f" / {1e3 * old['t_median_s']:.1f}" if old else ""))
        table_rows.append(cells + [f"{max(r[f'{m}/{b}']['rel_diff'] for m, b in FAST):.1e}"])
    record("msft", title="MSFT on the paper grid: this implementation, the one before it, and the plain numpy MSFT",
           figures=figures,
           table={"title": f"Per particle: median times, {args.threads} thread(s)"
                           + (f"; before = {args.before}" if before else ""), "columns": columns, "rows": table_rows})


if __name__ == "__main__":
    main()
