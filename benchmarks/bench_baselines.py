"""Classical baselines benchmark: training and prediction time of every method relative to the
direct comparison by MSE, measured in the same run on the same images.

    python benchmarks/bench_baselines.py                        # 400 training, 100 test, 64 x 128, ~3 min
    python benchmarks/bench_baselines.py --n-train 2250 --n-test 750 --shape 128,256   # the paper's sizes

The images are PMD-like synthetic images (models/shifted_synthetic.py); what is timed is the
methods, not the physics.  Times are wall-clock and include the feature extraction (HOG, SIFT)
a method needs; ``--parallel local`` keeps everything in-process, ``ray`` spreads the feature
extraction and the comparisons over Ray tasks (``--address`` for a cluster).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=400)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--shape", default="64,128")
    ap.add_argument("--methods", default="mse,sift,svr-hog,dt-hog,xgb-hog,svr-sift")
    ap.add_argument("--parallel", default="local", choices=["auto", "ray", "local"])
    ap.add_argument("--address", default=None)
    args = ap.parse_args()

    from records import record  # benchmarks/records.py (the script's folder is on sys.path); notes the load now

    from models.baselines import BaselineOptions, run_baselines
    from models.shifted_synthetic import make_pmd_store

    shape = tuple(int(v) for v in args.shape.split(","))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if "mse" not in methods:
        methods.insert(0, "mse")
    with tempfile.TemporaryDirectory(prefix="bench-baselines-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        make_pmd_store(tmp / "train.zarr", n=args.n_train, shape=shape, seed=0, split=(0.8, 0.2, 0.0))
        make_pmd_store(tmp / "test.zarr", n=args.n_test, shape=shape, seed=1)
        t_data = time.perf_counter() - t0
        rep = run_baselines(tmp / "train.zarr", tmp / "test.zarr", methods=methods, labels=["R"],
                            options=BaselineOptions(parallel=args.parallel, address=args.address))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, load average {load:.1f}; {args.n_train} training and "
          f"{args.n_test} test images of {shape[0]} x {shape[1]} (made in {t_data:.1f} s); parallel={args.parallel}")
    base = rep["methods"]["mse"]
    print(f"{'method':<10} {'MAE R':>8} {'train s':>9} {'x MSE':>8} {'predict ms/img':>15} {'x MSE':>8}")
    figures, rows = {}, []
    for m, r in rep["methods"].items():
        print(f"{m:<10} {r['scores']['R']['mae']:>8.4f} {r['train_s']:>9.2f} {r['train_s'] / base['train_s']:>8.1f} "
              f"{r['ms_per_image']:>15.2f} {r['ms_per_image'] / base['ms_per_image']:>8.1f}")
        figures.update({f"{m}_mae_R": r["scores"]["R"]["mae"], f"{m}_train": (r["train_s"], "s"),
                        f"{m}_train_over_mse": (r["train_s"] / base["train_s"], "x"),
                        f"{m}_predict": (r["ms_per_image"], "ms/image"),
                        f"{m}_predict_over_mse": (r["ms_per_image"] / base["ms_per_image"], "x")})
        rows.append([m, round(r["scores"]["R"]["mae"], 4), f"{r['train_s']:.2f} s ({r['train_s'] / base['train_s']:.1f})",
                     f"{r['ms_per_image']:.2f} ms ({r['ms_per_image'] / base['ms_per_image']:.1f})"])
    record("baselines", title="Classical baselines", figures=figures,
           table={"title": f"{args.n_train} training and {args.n_test} test images of {shape[0]} x {shape[1]}, "
                           f"parallel={args.parallel}",
                  "columns": ["method", "MAE R", "training (x MSE)", "prediction per image (x MSE)"], "rows": rows})


if __name__ == "__main__":
    main()
