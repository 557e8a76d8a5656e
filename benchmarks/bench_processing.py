"""Processing benchmark: images/s of each Dask step on this machine vs a plain single-threaded
numpy loop over the same images (same run), and the peak memory of a store larger than the
workers' memory limit.

    python benchmarks/bench_processing.py                 # step throughput, ~1 minute
    python benchmarks/bench_processing.py --big-gb 4      # + 4 GB store, 1 GB dask.distributed limit

Inputs are synthetic PMD-like ladders on a 512 x 512 (ky, kx) grid (the physics is not what is
timed here).  Each step runs with its default output chunk (what a user gets).  The plain loop reads the same Zarr images one chunk at a time and applies the
same pure functions with numpy, single-threaded, without Dask or writing.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from factory.processing import augment as A
from factory.processing import focal, preprocess
from factory.processing.steps import (augment_store, focal_average_store, interpolate_store, preprocess_store)
from factory.simulators import Coord
from factory.store import DatasetStore


def make_store(path: Path, groups: int, ladder: int, n: int = 512, chunk: int = 10) -> DatasetStore:
    ky = kx = np.linspace(-3, 3, n)
    yy, xx = np.meshgrid(ky, kx, indexing="ij")
    st = DatasetStore.create(path, kind="tdse", n_samples=groups * ladder, chunk=chunk,
                             coords=(Coord("ky", ky, "a.u."), Coord("kx", kx, "a.u.")),
                             param_names=["R", "intensity", "I0", "ladder_index"], config_hash=f"bench-{groups}",
                             extra_attrs={"simulator": {"ladder": ladder}})
    rng = np.random.default_rng(0)
    R = np.repeat(rng.uniform(1, 8, groups), ladder)
    I0 = np.repeat(rng.uniform(1e14, 4e14, groups), ladder)
    k = np.tile(np.arange(ladder), groups).astype(float)
    inten = I0 * (k + 1) / ladder
    for s, e in st.blocks():
        imgs = np.stack([(i / 1e14) ** 3 * np.exp(-(xx**2 + yy**2) / (0.5 + i / 2e14)) * (1.5 + np.sin(r * xx))
                         for r, i in zip(R[s:e], inten[s:e])]).astype(np.float32)
        st.write_block(s, imgs, {"R": R[s:e], "intensity": inten[s:e], "I0": I0[s:e], "ladder_index": k[s:e]})
    return st


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def plain_loop(st: DatasetStore, per_chunk) -> float:
    def run():
        for s, e in st.blocks():
            per_chunk(st.images[s:e], s, e)
    return timed(run)


def step_throughput(tmp: Path, workers: int) -> list[tuple[str, int, float, float]]:
    ladder, groups = 10, 24
    raw = make_store(tmp / "raw.zarr", groups, ladder)
    p = raw.params()
    coords = {"ky": raw.coords()["ky"], "kx": raw.coords()["kx"]}
    rows = []

    def focal_loop(imgs, s, e):
        for g in range(0, e - s, ladder):
            focal.focal_average(imgs[g:g + ladder], p["intensity"][s + g:s + g + ladder] / p["I0"][s + g])
    t_plain = plain_loop(raw, focal_loop)
    t_dask = timed(lambda: focal_average_store(raw.path, tmp / "focal.zarr", workers=workers, progress=False))
    rows.append(("focal-average (10-point ladders)", raw.n_samples, t_plain, t_dask))

    rep = focal_average_store(raw.path, tmp / "focal.zarr", progress=False)  # resume: nothing to do
    assert rep.blocks_computed == 0
    t_interp = timed(lambda: interpolate_store([tmp / "focal.zarr"], tmp / "interp.zarr", axes=["R", "I0"],
                                               samples=200, workers=workers, progress=False))
    fst = DatasetStore.open(tmp / "focal.zarr")
    from factory.processing.interpolate import interpolation_weights
    targets = DatasetStore.open(tmp / "interp.zarr").params()
    w = interpolation_weights(np.column_stack([fst.params()["R"], fst.params()["I0"]]),
                              np.column_stack([targets["R"], targets["I0"]]))
    src_imgs = fst.images[:]
    t_plain = timed(lambda: [w.apply(src_imgs, slice(i, i + 10)) for i in range(0, 200, 10)])
    rows.append(("interpolate (Delaunay, 24 -> 200)", 200, t_plain, t_interp))

    desc_src = tmp / "raw.zarr"
    t_dask = timed(lambda: preprocess_store([desc_src], tmp / "net.zarr", mode="pmd2d", workers=workers,
                                            progress=False))
    desc = DatasetStore.open(tmp / "net.zarr").meta["preprocessing"]
    t_plain = plain_loop(raw, lambda imgs, s, e: [preprocess.apply(desc, im, coords) for im in imgs])
    rows.append(("preprocess pmd2d (512x512 -> 128x256)", raw.n_samples, t_plain, t_dask))

    net = DatasetStore.open(tmp / "net.zarr", mode="r+")
    from factory.processing.steps import write_split
    write_split(net, np.zeros(net.n_samples, np.int8))
    t_dask = timed(lambda: augment_store(tmp / "net.zarr", tmp / "aug.zarr", factor=11, workers=workers,
                                         progress=False))
    def aug_loop(imgs, s, e):
        for j, im in enumerate(imgs):
            for f in range(11):
                A.augment(im, f, np.random.default_rng(s + j))
    t_plain = plain_loop(net, aug_loop)
    rows.append(("augment x11 (128x256)", net.n_samples * 11, t_plain, t_dask))
    return rows


def big_store_memory(tmp: Path, gb: float, limit_gb: float) -> dict:
    from distributed import Client, LocalCluster

    n = 512
    groups = int(gb * 2**30 / (n * n * 4) / 2)
    t0 = time.perf_counter()
    raw = make_store(tmp / "big.zarr", groups, 2, n=n, chunk=8)
    print(f"\nbig store: {raw.images.nbytes / 2**30:.2f} GiB of images ({raw.n_samples} x {n} x {n} float32), "
          f"written in {time.perf_counter() - t0:.0f} s")
    per_worker = limit_gb / 2
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=f"{per_worker}GiB", processes=True,
                      dashboard_address=None, host="127.0.0.1") as cluster:
        with Client(cluster) as client:
            pids = list(client.run(os.getpid).values())
            procs = [psutil.Process(p) for p in pids]
            peak = [0]
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    peak[0] = max(peak[0], sum(p.memory_info().rss for p in procs))
                    time.sleep(0.01)

            th = threading.Thread(target=sample)
            th.start()
            t = timed(lambda: preprocess_store([raw.path], tmp / "big-net.zarr", mode="pmd2d", chunk=8,
                                               address=cluster.scheduler_address, progress=False))
            stop.set()
            th.join()
    print(f"preprocessed on dask.distributed, 2 workers x {per_worker:.2f} GiB limit: {t:.0f} s "
          f"({raw.n_samples / t:.1f} images/s); peak worker RSS {peak[0] / 2**30:.2f} GiB "
          f"(limit {limit_gb:.2f} GiB, store {raw.images.nbytes / 2**30:.2f} GiB)")
    return {"big_store_size": (raw.images.nbytes / 2**30, "GiB"), "big_store_seconds": (t, "s"),
            "big_store_images_per_s": (raw.n_samples / t, "images/s"), "big_store_peak_rss": (peak[0] / 2**30, "GiB"),
            "big_store_memory_limit": (limit_gb, "GiB")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--big-gb", type=float, default=0.0, help="also process a store of this many GiB")
    ap.add_argument("--limit-gb", type=float, default=1.0)
    args = ap.parse_args()
    from records import record  # benchmarks/records.py (the script's folder is on sys.path); notes the load now

    tmp = Path(tempfile.mkdtemp(prefix="bench-processing-"))
    try:
        print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPUs, Dask threads = {args.workers}")
        print(f"{'step':40s} {'images':>7s} {'numpy loop img/s':>17s} {'dask img/s':>11s} {'ratio':>6s}")
        figures, rows = {}, []
        for name, n, tp, td in step_throughput(tmp, args.workers):
            print(f"{name:40s} {n:7d} {n / tp:17.1f} {n / td:11.1f} {tp / td:6.2f}")
            key = name.split(" (")[0].replace("-", "_").replace(" ", "_")  # "focal-average (...)" -> focal_average
            figures.update({f"{key}_loop": (n / tp, "images/s"), f"{key}_dask": (n / td, "images/s"),
                            f"{key}_ratio": tp / td})
            rows.append([name, n, round(n / tp, 1), round(n / td, 1), round(tp / td, 2)])
        if args.big_gb:
            figures.update(big_store_memory(tmp, args.big_gb, args.limit_gb))
        record("processing", title="Processing steps", figures=figures,
               table={"title": f"Dask threads = {args.workers}; each step with its default output chunk",
                      "columns": ["step", "images", "numpy loop img/s", "dask step img/s", "ratio"], "rows": rows})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
