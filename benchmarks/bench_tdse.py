"""TDSE split-operator benchmark: time per step vs the FFTs that step needs, and pyFFTW vs numpy.

    python benchmarks/bench_tdse.py                 # small and paper grids
    python benchmarks/bench_tdse.py --grids small --steps 50
    python benchmarks/bench_tdse.py --grids small --modes     # precision x mask.every per PMD

For each grid (the `small` and `paper` presets' boxes) one run measures, interleaved and taking
the best of ``--repeats``:

- ``step``: one real-time step of :class:`factory.tdse.Propagator` (velocity gauge, H2+
  potential, pulse, mask + mask-method accumulation every step, batch 1);
- ``ffts``: the FFTs that step needs (2 + 1 per mask step) with the same library, plans,
  buffers and threads;
- ``naive``: a straightforward numpy implementation of the same step (numpy.fft, the 2D
  kinetic exponential and 2D Volkov phase recomputed each step, no fused kernels).

It prints ``step / ffts`` (the target is <= 1.5) per backend and ``naive / step`` (the pyFFTW
speed-up).  ``--modes`` instead times a step at double / single precision with the mask (and
its extra FFT) every 1, 2 or 4 steps, interleaved, as ratios to double precision every step.
Results depend on the machine and its load; numbers go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from factory import backend as fb
from factory.tdse.config import PRESETS, make_config, preset_values
from factory.tdse.grid import Grid
from factory.tdse.mask import absorbing_mask
from factory.tdse.potentials import h2plus, potential
from factory.tdse.fftops import make_ops
from factory.tdse.propagator import Propagator
from factory.tdse.pulse import Pulse


def build(preset: str, backend: str, precision: str = "double", every: int = 1):
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


def bench(preset: str, steps: int, repeats: int, backends: list[str], naive: bool) -> dict:
    out = {}
    for be in backends:
        g, V, psi0, M, dt, prop = build(preset, be)
        ops = prop.ops
        prop.run(2)  # warm-up
        # separate buffers with the same library/plans/threads (FFTW wisdom makes them identical);
        # tiny random data so that the unnormalised transforms cannot overflow
        fops = make_ops(be, ops.shape)
        a, b = fops.empty(), fops.empty()
        rng = np.random.default_rng(0)

        def refill():
            for buf in (a, b):
                buf[...] = fops.asarray(1e-100 * (rng.standard_normal(ops.shape) + 1j * rng.standard_normal(ops.shape)))

        def ffts(n):
            nonlocal a, b
            for _ in range(n):
                a = fops.fft(a)
                a = fops.ifft(a)
                b = fops.fft(b)
            fops.synchronize()

        t_step, t_fft, c_step, c_fft = [], [], [], []
        for _ in range(repeats):  # interleave so that machine load hits both alike
            t0, c0 = time.perf_counter(), time.process_time()
            prop.run(steps)
            t_step.append((time.perf_counter() - t0) / steps)
            c_step.append((time.process_time() - c0) / steps)
            refill()
            t0, c0 = time.perf_counter(), time.process_time()
            ffts(steps)
            t_fft.append((time.perf_counter() - t0) / steps)
            c_fft.append((time.process_time() - c0) / steps)
        out[be] = {"step_ms": 1e3 * min(t_step), "ffts_ms": 1e3 * min(t_fft),
                   "ratio": min(t_step) / min(t_fft), "cpu_ratio": min(c_step) / min(c_fft),
                   "threads": getattr(ops, "fft_threads", getattr(ops, "threads", None))}
        del fops, a, b
        if naive and be == backends[0]:
            nv = Naive(g, V, psi0, M, dt, Pulse(3e14))
            nv.step()
            t_nv = best(lambda n: [nv.step() for _ in range(n)], max(1, steps // 2), repeats)
            out["naive-numpy"] = {"step_ms": 1e3 * t_nv}
        del prop
    return out


MODES = [("double", 1), ("single", 1), ("single", 2), ("single", 4)]


def bench_modes(preset: str, steps: int, repeats: int, backend: str) -> dict:
    """Seconds per step of each (precision, mask.every), interleaved, best of ``repeats``."""
    props = {m: build(preset, backend, *m)[-1] for m in MODES}
    steps = max(4, steps - steps % 4)  # whole mask periods
    times: dict[tuple, list[float]] = {m: [] for m in MODES}
    for p in props.values():
        p.run(4)
    for _ in range(repeats):
        for m, p in props.items():
            t0 = time.perf_counter()
            p.run(steps)
            times[m].append((time.perf_counter() - t0) / steps)
    return {m: min(t) for m, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grids", nargs="+", default=["small", "paper"], choices=list(PRESETS))
    ap.add_argument("--steps", type=int, default=0, help="steps per timing (default: 40 small, 3 paper)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backends", nargs="+", default=["fftw", "numpy"])
    ap.add_argument("--modes", action="store_true", help="compare precision x mask.every instead")
    args = ap.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# TDSE split-operator benchmark, {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, one FFT thread per process (Backend threads=1), numpy {np.__version__}, load average {load:.1f}")
    for preset in args.grids:
        g = Grid(**preset_values(preset)["grid"])
        steps = args.steps or (40 if g.nx * g.ny < 1 << 21 else 5)
        if args.modes:
            res = bench_modes(preset, steps, args.repeats, args.backends[0])
            n = make_config(preset).n_steps()
            print(f"\n## {preset}: {g.nx} x {g.ny}, {args.backends[0]}, batch 1, {n} steps per PMD")
            for (prec, every), t in res.items():
                print(f"  {prec:>6}, mask every {every}: {1e3 * t:7.2f} ms/step  {t * n:7.0f} s/PMD  "
                      f"x{res[MODES[0]] / t:.2f} vs double every step")
            continue
        res = bench(preset, steps, args.repeats, args.backends, naive=True)
        print(f"\n## {preset}: {g.nx} x {g.ny}, complex128, batch 1, mask + accumulation every step, {steps} steps x best of {args.repeats}")
        for be in args.backends:
            r = res[be]
            print(f"  {be:>6}: step {r['step_ms']:9.2f} ms   3 FFTs {r['ffts_ms']:9.2f} ms   step/FFTs = {r['ratio']:.2f} "
                  f"(CPU time: {r['cpu_ratio']:.2f}; threads {r['threads']})")
        nv = res["naive-numpy"]["step_ms"]
        print(f"  naive numpy step {nv:9.2f} ms   speed-up of {args.backends[0]} step over naive numpy: {nv / res[args.backends[0]]['step_ms']:.2f}x")
        if "numpy" in res and args.backends[0] != "numpy":
            print(f"  speed-up of {args.backends[0]} over the numpy backend (same kernels, numpy.fft): "
                  f"{res['numpy']['step_ms'] / res[args.backends[0]]['step_ms']:.2f}x")


if __name__ == "__main__":
    main()
