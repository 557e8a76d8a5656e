"""TDSE split-operator benchmark: time per step vs the FFTs that step needs, fused vs numpy kernels.

    python benchmarks/bench_tdse.py                 # small and paper grids
    python benchmarks/bench_tdse.py --grids small --steps 50 --repeats 7
    python benchmarks/bench_tdse.py --grids small --profile   # time per operation inside a step
    python benchmarks/bench_tdse.py --grids small --modes     # precision x mask.every per PMD

For each grid (the `small` and `paper` presets' boxes) one run measures, interleaved (every
repeat runs each variant once, in turn, so the machine's load hits all alike) and taking the
best of ``--repeats``:

- ``step``: one real-time step of :class:`factory.tdse.Propagator` (velocity gauge, H2+
  potential, pulse, mask + mask-method accumulation every step, batch 1), once per elementwise
  kernel set (``--kernels``: ``numba``, the fused single-pass loops, and ``numpy``, the
  multi-pass numpy reference);
- ``ffts`` (the FFT floor): the FFTs that step needs (2 + 1 per mask step) with the same
  library, plans, buffers and threads on arrays of the same shape;
- ``naive``: a straightforward numpy implementation of the same step (numpy.fft, the 2D
  kinetic exponential and 2D Volkov phase recomputed each step, no fused kernels).

It prints ``step / ffts`` (the target is <= 1.5) per backend and kernel set, ``naive / step``
(the speed-up) and the load average before and after, with the CPU model.  ``--profile`` times
each operation of the step (FFTs, kinetic, split, accumulate, ...) inside real steps;
``--modes`` times a step at double / single precision with the mask (and its extra FFT) every
1, 2 or 4 steps, per kernel set, interleaved, as ratios to double precision every step.
Results depend on the machine and its load; the figures go to benchmarks/records/tdse_step.json
(``--modes``: tdse_modes.json, ``--profile``: tdse_profile.json; ``_threads<N>`` added with
``--threads N`` > 1), from which benchmarks/render.py writes BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from machine import cpu_model  # benchmarks/machine.py (the script's folder is on sys.path)
from records import record  # benchmarks/records.py: writes benchmarks/records/tdse_{step,modes,profile}.json

from factory.backend import Backend
from factory.tdse.config import PRESETS, make_config, preset_values
from factory.tdse.grid import Grid
from factory.tdse.mask import absorbing_mask
from factory.tdse.potentials import h2plus, potential
from factory.tdse.fftops import make_ops
from factory.tdse.propagator import Propagator
from factory.tdse.pulse import Pulse


def build(preset: str, backend: str | Backend, precision: str = "double", every: int = 1):
    p = preset_values(preset)
    g = Grid(**p["grid"])
    V = potential(h2plus(), 2.0, 0.0, g.x, g.y)
    psi0 = np.exp(-0.5 * (g.x[None, :] ** 2 + g.y[:, None] ** 2)).astype(np.complex128)
    psi0 /= np.sqrt((np.abs(psi0) ** 2).sum() * g.area_element)
    M = absorbing_mask(g, p["mask"]["radius"], p["mask"]["beta"])
    cfg = make_config(preset)
    prop = Propagator(g, V, psi0, p["dt"], [Pulse(3e14)], 100000, M, every, True, backend, precision,
                      k_window=cfg.collect_window())
    return g, V, psi0, M, p["dt"], prop


class Naive:
    """The same physics written the plain numpy way (the reference for the speed-up)."""

    def __init__(self, g: Grid, V, psi0, M, dt, pulse: Pulse):
        self.g, self.dt, self.pulse = g, dt, pulse
        self.KX, self.KY = np.meshgrid(g.kx, g.ky)
        self.K2 = self.KX**2 + self.KY**2
        self.Vh = np.exp(-0.5j * dt * V)
        self.M = M
        self.psi = psi0.copy()
        self.acc = np.zeros_like(psi0)
        self.t, self.alpha = 0.0, 0.0

    def step(self):
        a = float(self.pulse.vector_potential(self.t + 0.5 * self.dt))
        psi = self.Vh * self.psi
        psik = np.fft.fft2(psi)
        psik *= np.exp(-1j * self.dt * (0.5 * self.K2 + a * self.KX))
        psi = self.Vh * np.fft.ifft2(psik)
        self.t += self.dt
        self.alpha += a * self.dt
        removed = (1 - self.M) * psi
        self.psi = self.M * psi
        theta = 0.5 * self.K2 * self.t + self.KX * self.alpha
        self.acc += np.exp(1j * theta) * np.fft.fft2(removed)


def best(fn, n: int, repeats: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn(n)
        times.append((clock() - t0) / n)
    return min(times)


def timed(fops, bufs: list, fn, n: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``n`` calls ``bufs[:] = fn(*bufs)`` (FFTs), in chunks between which
    the buffers are refilled (untimed) with tiny random data: the transforms are unnormalised
    (x N per forward + inverse pair), so the values must stay in range (1e-100 .. 1e37 over 25
    pairs in double, 1e-20 .. 1e2 over 4 in single on 800 x 400)."""
    rng = np.random.default_rng(0)
    scale, chunk = (1e-20, 4) if bufs[0].dtype == np.complex64 else (1e-100, 25)
    wall = cpu = 0.0
    for start in range(0, n, chunk):
        for buf in bufs:
            buf[...] = fops.asarray(scale * (rng.standard_normal(buf.shape) + 1j * rng.standard_normal(buf.shape)))
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(min(chunk, n - start)):
            bufs[:] = fn(*bufs)
        fops.synchronize()
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
    return wall, cpu


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def bench(preset: str, steps: int, repeats: int, backends: list[str], kernels: list[str], threads: int,
          naive: bool) -> dict:
    out = {}
    for name in backends:
        props = {}
        for k in kernels:
            g, V, psi0, M, dt, props[k] = build(preset, Backend.create(name, threads=threads, kernels=k))
            props[k].run(2)  # warm-up (and numba's first call)
        shape = props[kernels[0]].ops.shape
        # separate buffers with the same library/plans/threads (FFTW wisdom makes them identical)
        fops = make_ops(Backend.create(name, threads=threads), shape)
        bufs = [fops.empty(), fops.empty()]

        def ffts(a, b, fops=fops):
            a = fops.ifft(fops.fft(a))
            return a, fops.fft(b)

        t_step = {k: [] for k in kernels}
        c_step = {k: [] for k in kernels}
        t_fft, c_fft = [], []
        for _ in range(repeats):  # interleave so that machine load hits all alike
            for k, prop in props.items():
                t0, c0 = time.perf_counter(), time.process_time()
                prop.run(steps)
                t_step[k].append((time.perf_counter() - t0) / steps)
                c_step[k].append((time.process_time() - c0) / steps)
            wall, cpu = timed(fops, bufs, ffts, steps)
            t_fft.append(wall / steps)
            c_fft.append(cpu / steps)
        for k, prop in props.items():
            ops = prop.ops
            out[(name, k)] = {"step_ms": 1e3 * min(t_step[k]), "ffts_ms": 1e3 * min(t_fft),
                              "ratio": min(t_step[k]) / min(t_fft), "cpu_ratio": min(c_step[k]) / min(c_fft),
                              "median_ratio": float(np.median(t_step[k]) / np.median(t_fft)),
                              "threads": getattr(ops, "fft_threads", getattr(ops, "threads", None)),
                              "kernels": getattr(ops, "kernels", "torch")}
        del fops, bufs
        if naive and name == backends[0]:
            nv = Naive(g, V, psi0, M, dt, Pulse(3e14))
            nv.step()
            t_nv = best(lambda n: [nv.step() for _ in range(n)], max(1, steps // 2), repeats)
            out["naive-numpy"] = {"step_ms": 1e3 * t_nv}
        del props
    return out


OPS = ("fft", "ifft", "kinetic", "split", "accumulate", "mul", "mul_conj", "expi")


def profile(preset: str, steps: int, backend: Backend, precision: str = "double", every: int = 1) -> dict:
    """ms per step spent in each operation of real steps (the ops' methods wrapped with timers)."""
    prop = build(preset, backend, precision, every)[-1]
    prop.run(2)
    ops, spent = prop.ops, dict.fromkeys(OPS, 0.0)
    for op in OPS:
        fn = getattr(ops, op)

        def timed(*args, _fn=fn, _op=op):
            t0 = time.perf_counter()
            r = _fn(*args)
            spent[_op] += time.perf_counter() - t0
            return r

        setattr(ops, op, timed)
    t0 = time.perf_counter()
    prop.run(steps)
    total = time.perf_counter() - t0
    return {"total": 1e3 * total / steps, **{op: 1e3 * v / steps for op, v in spent.items()}}


MODES = [("double", 1), ("single", 1), ("single", 2), ("single", 4)]


def bench_modes(preset: str, steps: int, repeats: int, backend: str, kernels: list[str], threads: int) -> dict:
    """Seconds per step of each (kernels, precision, mask.every), interleaved, best of ``repeats``;
    and per precision the FFT pair (forward + inverse) and one forward FFT on planned buffers, so
    that each mode's FFT floor is ``pair + single / every``."""
    props = {(k, *m): build(preset, Backend.create(backend, threads=threads, kernels=k), *m)[-1]
             for k in kernels for m in MODES}
    steps = max(4, steps - steps % 4)  # whole mask periods
    times: dict[tuple, list[float]] = {m: [] for m in props}
    shape = next(iter(props.values())).ops.shape
    fft_ops = {}
    for prec, dtype in (("double", np.complex128), ("single", np.complex64)):
        fops = make_ops(Backend.create(backend, threads=threads), shape, dtype)
        fft_ops[prec] = (fops, [fops.empty()])
        times[("pair", prec)], times[("one", prec)] = [], []
    for p in props.values():
        p.run(4)
    for _ in range(repeats):
        for m, p in props.items():
            t0 = time.perf_counter()
            p.run(steps)
            times[m].append((time.perf_counter() - t0) / steps)
        for prec, (fops, bufs) in fft_ops.items():
            times[("pair", prec)].append(timed(fops, bufs, lambda a: [fops.ifft(fops.fft(a))], steps)[0] / steps)
            times[("one", prec)].append(timed(fops, bufs, lambda a: [fops.fft(a)], steps)[0] / steps)
    return {m: min(t) for m, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grids", nargs="+", default=["small", "paper"], choices=list(PRESETS))
    ap.add_argument("--steps", type=int, default=0, help="steps per timing (default: 40 small, 3 paper)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backends", nargs="+", default=["fftw", "numpy"])
    ap.add_argument("--kernels", nargs="+", default=["numba", "numpy"], choices=["numba", "numpy"])
    ap.add_argument("--threads", type=int, default=1, help="Backend threads (FFT and kernel threads)")
    ap.add_argument("--modes", action="store_true", help="compare precision x mask.every instead")
    ap.add_argument("--profile", action="store_true", help="time each operation inside real steps instead")
    ap.add_argument("--precision", default="double", choices=["double", "single"], help="--profile: precision")
    ap.add_argument("--every", type=int, default=1, help="--profile: mask period")
    args = ap.parse_args()
    print(f"# TDSE split-operator benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {cpu_model()}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, Backend threads={args.threads}, numpy {np.__version__}, load average {load()}")
    figures: dict = {}
    rows: list = []
    for preset in args.grids:
        g = Grid(**preset_values(preset)["grid"])
        steps = args.steps or (40 if g.nx * g.ny < 1 << 21 else 5)
        if args.profile:
            print(f"\n## {preset}: {g.nx} x {g.ny}, {args.precision} precision, mask + accumulation every {args.every} "
                  f"step(s), {steps} steps, ms per step in each operation")
            for name in args.backends:
                for k in args.kernels:
                    r = profile(preset, steps, Backend.create(name, threads=args.threads, kernels=k), args.precision,
                                args.every)
                    parts = "  ".join(f"{op} {v:.2f}" for op, v in r.items() if op != "total" and v > 0)
                    print(f"  {name:>6}/{k:<5}: step {r['total']:.2f}   {parts}")
                    figures.update({f"{preset}_{name}_{k}_{op}": (v, "ms") for op, v in r.items()
                                    if op == "total" or v > 0})
            continue
        if args.modes:
            res = bench_modes(preset, steps, args.repeats, args.backends[0], args.kernels, args.threads)
            n = make_config(preset).n_steps()
            print(f"\n## {preset}: {g.nx} x {g.ny}, {args.backends[0]}, batch 1, {n} steps per PMD, {steps} steps x "
                  f"best of {args.repeats}; load average {load()} at the end")
            ref = res[(args.kernels[-1], *MODES[0])]
            for prec in ("double", "single"):
                pair, one = res[("pair", prec)], res[("one", prec)]
                print(f"  FFT pair {prec}: {1e3 * pair:.2f} ms, one FFT {1e3 * one:.2f} ms")
                figures.update({f"{preset}_fft_pair_{prec}": (1e3 * pair, "ms"), f"{preset}_fft_one_{prec}": (1e3 * one, "ms")})
            for key, t in res.items():
                if len(key) != 3:
                    continue
                k, prec, every = key
                floor = res[("pair", prec)] + res[("one", prec)] / every
                print(f"  {k:>5} {prec:>6}, mask every {every}: {1e3 * t:7.2f} ms/step  {t * n:7.0f} s/PMD  "
                      f"x{ref / t:.2f} vs {args.kernels[-1]} double every step   step / FFT floor {t / floor:.2f}")
                p = f"{preset}_{k}_{prec}_every{every}"
                figures.update({f"{p}_step": (1e3 * t, "ms"), f"{p}_s_per_pmd": (t * n, "s"),
                                f"{p}_step_over_floor": t / floor, f"{p}_speedup": (ref / t, "x")})
                rows.append([preset, k, prec, every, round(1e3 * t, 2), round(t * n), round(t / floor, 2),
                             round(ref / t, 2)])
            continue
        res = bench(preset, steps, args.repeats, args.backends, args.kernels, args.threads, naive=True)
        print(f"\n## {preset}: {g.nx} x {g.ny}, complex128, batch 1, mask + accumulation every step, {steps} steps x "
              f"best of {args.repeats}; load average {load()} at the end")
        for name in args.backends:
            for k in args.kernels:
                r = res[(name, k)]
                print(f"  {name:>6}/{r['kernels']:<5}: step {r['step_ms']:8.2f} ms   3 FFTs {r['ffts_ms']:8.2f} ms   "
                      f"step/FFTs = {r['ratio']:.2f} (medians {r['median_ratio']:.2f}; CPU time {r['cpu_ratio']:.2f}; "
                      f"threads {r['threads']})")
                p = f"{preset}_{name}_{k}"
                figures.update({f"{p}_step": (r["step_ms"], "ms"), f"{p}_ffts": (r["ffts_ms"], "ms"),
                                f"{p}_step_over_ffts": r["ratio"], f"{p}_step_over_ffts_median": r["median_ratio"],
                                f"{p}_step_over_ffts_cpu": r["cpu_ratio"]})
                rows.append([f"{preset} {g.nx} x {g.ny}", name, r["kernels"], round(r["step_ms"], 2), round(r["ffts_ms"], 2),
                             round(r["ratio"], 2), round(r["median_ratio"], 2), round(r["cpu_ratio"], 2)])
        first = res[(args.backends[0], args.kernels[0])]["step_ms"]
        nv = res["naive-numpy"]["step_ms"]
        print(f"  naive numpy step {nv:8.2f} ms   speed-up of {args.backends[0]}/{args.kernels[0]} over naive numpy: "
              f"{nv / first:.2f}x")
        figures.update({f"{preset}_naive_numpy_step": (nv, "ms"), f"{preset}_speedup_over_naive": (nv / first, "x")})
        if len(args.kernels) > 1:
            for name in args.backends:
                a, b = (res[(name, k)]["step_ms"] for k in args.kernels[:2])
                print(f"  {name}: {args.kernels[0]} kernels vs {args.kernels[1]}: {b / a:.2f}x")
    write_record(args, figures, rows)


def write_record(args, figures: dict, rows: list) -> None:
    """benchmarks/records/tdse_{step,modes,profile}[_threads<N>].json: the figures printed above."""
    mode = "profile" if args.profile else "modes" if args.modes else "step"
    name = f"tdse_{mode}" + (f"_threads{args.threads}" if args.threads != 1 else "")
    title = {"step": "TDSE split-operator step against its FFT floor", "modes": "TDSE precision and mask period",
             "profile": "TDSE step: time per operation inside real steps"}[mode]
    if args.threads != 1:
        title += f", {args.threads} threads"
    table = None
    if mode == "step":
        table = {"title": "complex128, batch 1, mask + accumulation every step; best of the repeats",
                 "columns": ["grid", "FFTs", "elementwise kernels", "step (ms)", "its 3 FFTs (ms)", "step / FFTs",
                             "medians", "CPU time"], "rows": rows}
    elif mode == "modes":
        table = {"title": f"{args.backends[0]}, batch 1; per kernel set, precision and mask period",
                 "columns": ["grid", "kernels", "precision", "mask + accumulation every", "ms/step", "s per PMD",
                             "step / FFT floor", f"x vs {args.kernels[-1]} double every step"], "rows": rows}
    record(name, title=title, figures=figures, table=table)


if __name__ == "__main__":
    main()
