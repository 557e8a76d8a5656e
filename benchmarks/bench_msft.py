"""MSFT benchmark: the straightforward numpy MSFT vs the fast paths, measured in one run.

Paper grid (seed 003, App. B): 192 voxels per side (318.75 nm box), slices zero-padded to
512 x 512, central 128 x 128 detector crop, lambda = 13.5 nm, absorption length 12.5 nm.

The baseline is the straightforward implementation (``method="reference"``): numpy ``fft2``
of every zero-padded 512 x 512 slice, Ewald phase on the full grid, sum, crop.  Each fast
path is timed on the *same density arrays* in the same process, in interleaved rounds after
a warm-up that builds caches and FFTW plans (median and minimum times reported), and its
intensity is compared with the baseline as max |I - I_ref| / max I_ref.  Also timed: voxelisation, and the whole
per-image cost of ``MSFTSimulator.simulate`` at the tiny / small / paper presets.  With a
CUDA GPU, batched paper-grid throughput (images/s) of the torch path is measured too.

    python benchmarks/bench_msft.py            # full run, about 1-2 minutes on 2 cores
    python benchmarks/bench_msft.py --quick    # fewer particles
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from factory import backend as backends  # noqa: E402
from factory.geometry import sample_fundamental  # noqa: E402
from factory.msft.multislice import MSFTParams, amplitude, relative_difference  # noqa: E402
from factory.msft.shapes import density  # noqa: E402

N, VOXEL, PAD, CROP = 192, 318.75 / 192, 512, 128
# (method, backend); "auto"/"auto" on a CPU is the pruned DFT with torch/MKL GEMMs (the default)
FAST = [("auto", "auto"), ("dft", "numpy"), ("fft", "fftw"), ("fft", "numpy"), ("dft", "torch"), ("fft", "torch")]


def timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def bench_paper_grid(radii, rounds: int) -> list[dict]:
    """Per particle: ``rounds`` interleaved rounds (reference once, then every fast path a few times).

    Interleaving exposes all methods to the same background load; the ratios use both the
    median and the minimum time of each (the minimum is the least-disturbed estimate).
    """
    rng = np.random.default_rng(2026)
    rows = []
    for R in radii:
        q = sample_fundamental(rng)
        t_vox, rho = timed(lambda: density("icosahedron", R, q, n=N, voxel_nm=VOXEL), 3)
        ref_params = MSFTParams(voxel_nm=VOXEL, pad=PAD, crop=CROP, method="reference")
        fast = {f"{m}/{b}": MSFTParams(voxel_nm=VOXEL, pad=PAD, crop=CROP, method=m, backend=b) for m, b in FAST}
        amps = {key: amplitude(rho, p) for key, p in fast.items()}  # warm-up: caches, FFTW plans
        t_ref, t_fast = [], {key: [] for key in fast}
        ref = None
        for _ in range(rounds):
            t0 = time.perf_counter()
            ref = np.abs(amplitude(rho, ref_params)) ** 2
            t_ref.append(time.perf_counter() - t0)
            for key, p in fast.items():
                for _ in range(3):
                    t0 = time.perf_counter()
                    amps[key] = amplitude(rho, p)
                    t_fast[key].append(time.perf_counter() - t0)
        row = {"radius_nm": R, "quat": [round(float(c), 4) for c in q], "t_voxelise_s": t_vox,
               "t_reference_median_s": statistics.median(t_ref), "t_reference_min_s": min(t_ref)}
        for key in fast:
            tm, tn = statistics.median(t_fast[key]), min(t_fast[key])
            row[key] = {"t_median_s": tm, "t_min_s": tn, "speedup_median": row["t_reference_median_s"] / tm,
                        "speedup_min": row["t_reference_min_s"] / tn,
                        "rel_diff": relative_difference(np.abs(amps[key]) ** 2, ref)}
        rows.append(row)
        print(
            f"R={R:5.1f} nm  reference {row['t_reference_median_s'] * 1e3:7.1f} ms (min {row['t_reference_min_s'] * 1e3:7.1f})"
            f"  voxelise {t_vox * 1e3:6.1f} ms\n"
            + "\n".join(f"    {key:10s} {row[key]['t_median_s'] * 1e3:7.1f} ms (min {row[key]['t_min_s'] * 1e3:6.1f})"
                        f"  speedup x{row[key]['speedup_median']:6.1f} (from minima x{row[key]['speedup_min']:6.1f})"
                        f"  rel. diff {row[key]['rel_diff']:.1e}" for key in fast),
            flush=True,
        )
    return rows


def bench_presets(samples: int) -> dict:
    from factory.config import load_config
    from factory.msft.simulator import MSFTSimulator
    from factory.simulators import rng_for

    out = {}
    for size in ("tiny", "small", "paper"):
        sim = MSFTSimulator(load_config(f"msft/{size}").simulator)
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
    if not backends.has_cuda():
        print("GPU: none present, batched torch throughput not measured")
        return None
    import torch

    from factory.msft.torch_msft import amplitude_batch_tensor, density_batch_torch

    rng = np.random.default_rng(1)
    radii = rng.uniform(30, 160, batch)
    quats = sample_fundamental(rng, batch)
    params = MSFTParams(voxel_nm=VOXEL, pad=PAD, crop=CROP, backend="torch")
    out = {}
    for method in ("dft", "fft"):
        for _ in range(2):  # warm-up
            rho = density_batch_torch("icosahedron", radii, quats, n=N, voxel_nm=VOXEL, device="cuda")
            amp = amplitude_batch_tensor(rho, params, method=method)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(rounds):
            rho = density_batch_torch("icosahedron", radii, quats, n=N, voxel_nm=VOXEL, device="cuda")
            amp = amplitude_batch_tensor(rho, params, method=method)
            img = (amp.abs() ** 2).float().cpu()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t
        out[method] = batch * rounds / dt
        print(f"GPU {torch.cuda.get_device_name()}: {method}: {out[method]:.0f} paper-grid images/s "
              f"(batch {batch}, voxelise + MSFT + copy back)", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="three particles, fewer repeats")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per particle")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--gpu-batch", type=int, default=64)
    args = ap.parse_args()
    radii = [30.0, 95.0, 155.0] if args.quick else [30.0, 60.0, 95.0, 125.0, 155.0]
    import torch

    info = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, {platform.processor() or ''}".strip(", "),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "fftw_threads": backends.fftw_threads(),
        "load_avg_before": os.getloadavg(),
    }
    print(json.dumps(info))
    print(f"paper grid: {N}^3 voxels of {VOXEL:.4f} nm, pad {PAD}, crop {CROP}; icosahedra, absorption 12.5 nm")
    rows = bench_paper_grid(radii, rounds=2 if args.quick else args.rounds)
    presets = bench_presets(4 if args.quick else 12)
    gpu = bench_gpu(args.gpu_batch, 5)
    info["load_avg_after"] = os.getloadavg()
    summary = {}
    for m, b in FAST:
        key = f"{m}/{b}"
        sp = [r[key]["speedup_median"] for r in rows]
        sm = [r[key]["speedup_min"] for r in rows]
        t = [r[key]["t_median_s"] for r in rows]
        summary[key] = {"worst_speedup_median": min(sp), "worst_speedup_from_minima": min(sm),
                        "mean_time_s": float(np.mean(t)), "max_rel_diff": max(r[key]["rel_diff"] for r in rows)}
    t_ref = [r["t_reference_median_s"] for r in rows]
    print(f"reference (numpy fft2 per slice): {np.mean(t_ref):.2f} s per image (mean of medians over {len(rows)} particles)")
    for key, s in summary.items():
        print(f"{key:10s}: mean {s['mean_time_s'] * 1e3:6.1f} ms/image; per-image mean speedup x{np.mean(t_ref) / s['mean_time_s']:.1f}; "
              f"worst particle x{s['worst_speedup_median']:.1f} (from minima x{s['worst_speedup_from_minima']:.1f}); "
              f"max relative difference {s['max_rel_diff']:.1e}")
    print(json.dumps({"load_avg_after": info["load_avg_after"]}))
    if args.json:
        args.json.write_text(json.dumps({"info": info, "paper_grid": rows, "summary": summary, "presets": presets,
                                         "gpu_images_per_s": gpu}, indent=2))


if __name__ == "__main__":
    main()
