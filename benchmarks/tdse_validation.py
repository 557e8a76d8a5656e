"""TDSE validation figures for the README: energies, mask-method yield vs absorbed norm, and
the PMD's convergence against a grid with dx and dt halved, per preset.

    python benchmarks/tdse_validation.py --presets tiny small          # ~30 min on 2 cores
    python benchmarks/tdse_validation.py --presets tiny --json

For H2+ (R = 2, alpha = 0, CEP = 0) at each intensity it prints

- ``absorbed``: the norm the mask removed (1 - norm left in the box);
- ``yield``: the mask-method PMD integrated over the whole momentum grid (and over the stored
  |kx|, |ky| <= k_out window);
- ``yield / absorbed - 1``: the two differ by the overlap of the removed pieces with what is
  still in the box and by the Coulomb tail that Volkov propagation of the removed parts neglects
  (the overlap term, -2 Re <psi_in|psi_out(T)>, cannot be separated on the periodic FFT grid: the
  Volkov-propagated removed parts wrap around the box, so only the sum is reported).

Convergence: the stored PMD at 3e14 W/cm^2 against the same box with dx, dy and dt halved
(:func:`factory.tdse.api.refined`), as a relative L2 difference of the images.

Field-free background: at the ends of the preset's R range (and R = 2, 4), the ground state
propagated exactly as a PMD run but without a pulse, batched with the weakest pulse of the
range (the preset's lowest intensity) at the same R.  It prints the field-free ``yield`` (what a
PMD's ``yield`` holds with no field: issue 17 asks for >= 100x below the smallest physical
yield), the field-free ``absorbed`` norm (also counts the stationary state's high-momentum grid
tail that reaches the mask, outside the stored window), the per-sample ``background``
diagnostic (an upper bound on the initial state's continuum population, computed with the
ground state, plus the float32 rounding floor in single precision),
``removed`` (the population the stationarity filter took out of the imaginary-time state:
about the field-free yield without the filter) and the ground state's cost next to one
propagation's.  ``--precision single`` shows the float32 rounding floor instead.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import time

import numpy as np

from factory.tdse import (Propagator, absorbing_mask, compute_pmds, config_for, ground_state, h2plus, hehplus,
                          make_config, potential)
from factory.tdse.api import geometry_key, ground_state_for, refined
from factory.tdse.mask import pmd_from_amplitude
from factory.tdse.reference import fd_ground_energy


def energies(preset: str) -> dict:
    out = {}
    for name, mol, R in (("H2+", h2plus(0.5), 2.0), ("HeH+", hehplus(), 1.4)):
        gs = ground_state(name, R, preset=preset)
        out[name] = {"R": R, "E0": gs.energy, "fd": fd_ground_energy(mol, R), "steps": gs.steps}
    return out


def yields(preset: str, intensities: list[float]) -> list[dict]:
    cfg = config_for("H2+", 2.0, intensities, 0.0, 0.0, preset)
    g = cfg.build_grid()
    gs = ground_state_for(cfg, "H2+", 2.0, 0.0)
    V = potential(cfg.molecule("H2+"), 2.0, 0.0, g.x, g.y)
    pulses = [cfg.pulse_for(i, 0.0) for i in intensities]
    n = cfg.n_steps()
    mask = absorbing_mask(g, cfg.mask.radius, cfg.mask.beta)
    t0 = time.perf_counter()
    prop = Propagator(g, V, gs.psi, cfg.dt, pulses, n, mask, cfg.mask.every, True, cfg.backend, k_window=None)
    prop.run(n)
    seconds = time.perf_counter() - t0
    amp, norms, lost = prop.amplitude(), prop.norms(), prop.absorbed()
    rows = []
    for b, inten in enumerate(intensities):
        full = pmd_from_amplitude(g, amp[b], None, prop.window).total_yield
        win = pmd_from_amplitude(g, amp[b], cfg.k_out, prop.window).total_yield
        absorbed = float(lost[b])
        rows.append({"intensity": inten, "absorbed": absorbed, "yield": full, "yield_window": win,
                     "ratio_minus_1": full / absorbed - 1.0,
                     "norm_left": float(norms[b]), "seconds_per_pmd": seconds / len(intensities)})
    return rows


def convergence(preset: str, intensity: float) -> dict:
    run = [{"molecule": "H2+", "R": 2.0, "alpha": 0.0, "intensity": intensity, "cep": 0.0}]
    cfg = config_for("H2+", 2.0, intensity, 0.0, 0.0, preset)
    t0 = time.perf_counter()
    p0 = compute_pmds(cfg, run)[0]
    t1 = time.perf_counter()
    p1 = compute_pmds(refined(cfg), run)[0]
    t2 = time.perf_counter()
    rel = float(np.linalg.norm(p0.pmd - p1.pmd) / np.linalg.norm(p1.pmd))
    peak = float(np.max(np.abs(p0.pmd - p1.pmd)) / p1.pmd.max())
    return {"intensity": intensity, "rel_l2": rel, "max_rel_to_peak": peak,
            "yield": p0.total_yield, "yield_fine": p1.total_yield,
            "E0": p0.energy, "E0_fine": p1.energy, "seconds": t1 - t0, "seconds_fine": t2 - t1,
            "grid": [cfg.grid.nx, cfg.grid.ny], "dt": cfg.dt}


def background(preset: str, radii: list[float] | None = None, precision: str = "double") -> list[dict]:
    """Field-free yield vs the weakest pulse's yield at each R (see the module docstring)."""
    base = make_config(preset)  # the preset's own sampling ranges
    r_lo, r_hi = base.sampling.bounds("R")
    i_lo = base.sampling.bounds("intensity")[0]
    radii = radii or sorted({r for r in (r_lo, 2.0, 4.0, r_hi) if r_lo <= r <= r_hi})
    rows = []
    for R in radii:
        cfg = config_for("H2+", R, [0.0, i_lo], 0.0, 0.0, preset, precision=precision)
        t0 = time.perf_counter()
        gs = ground_state_for(cfg, "H2+", R, 0.0)
        t_gs = time.perf_counter() - t0
        runs = [{"molecule": "H2+", "R": R, "alpha": 0.0, "intensity": i, "cep": 0.0} for i in (0.0, i_lo)]
        t0 = time.perf_counter()
        free, weak = compute_pmds(cfg, runs, {geometry_key("H2+", R, 0.0): gs})
        t_prop = time.perf_counter() - t0
        rows.append({"R": R, "precision": precision, "field_free_yield": free.total_yield,
                     "field_free_absorbed": free.absorbed, "background": free.background,
                     "removed": gs.nonstationary, "intensity": i_lo, "yield": weak.total_yield,
                     "ratio": weak.total_yield / max(free.total_yield, 1e-300),
                     "seconds_ground_state": t_gs, "seconds_propagation": t_prop, "filter_steps": gs.filter_steps,
                     "imaginary_steps": gs.steps, "n_steps": cfg.n_steps()})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "small"], choices=["tiny", "small", "paper"])
    ap.add_argument("--intensities", nargs="+", type=float, default=[1e14, 2e14, 4e14])
    ap.add_argument("--no-convergence", action="store_true", help="skip the (8x costlier) refined run")
    ap.add_argument("--no-background", action="store_true", help="skip the field-free background (2 runs per R)")
    ap.add_argument("--background-R", nargs="+", type=float, default=None,
                    help="R values (a.u.) of the background check (default: the range's ends and 2, 4 inside it)")
    ap.add_argument("--precision", choices=["double", "single"], default="double", help="of the background check")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    report = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "load": os.getloadavg()[0], "presets": {}}
    for preset in args.presets:
        r = {"energies": energies(preset), "yields": yields(preset, args.intensities)}
        if not args.no_convergence:
            r["convergence"] = convergence(preset, 3e14)
        if not args.no_background:
            r["background"] = background(preset, args.background_R, args.precision)
        report["presets"][preset] = r
        if not args.json:
            print(f"\n## {preset}")
            for name, e in r["energies"].items():
                print(f"  E0 {name:4s} R={e['R']}: {e['E0']:.6f}  FD {e['fd']:.6f}  diff {e['E0'] - e['fd']:+.1e} a.u.")
            print("  I (W/cm^2)   absorbed   yield(all k)  yield(|k|<=k_out)  yield/absorbed-1  s/PMD")
            for y in r["yields"]:
                print(f"  {y['intensity']:.1e}   {y['absorbed']:.3e}  {y['yield']:.3e}     {y['yield_window']:.3e}"
                      f"      {y['ratio_minus_1']:+.3f}            {y['seconds_per_pmd']:.0f}")
            if "convergence" in r:
                c = r["convergence"]
                print(f"  convergence at 3e14 vs dx/2, dt/2: rel L2 {c['rel_l2']:.2e}, max |diff| / peak "
                      f"{c['max_rel_to_peak']:.2e}, yield {c['yield']:.4e} vs {c['yield_fine']:.4e} "
                      f"({c['seconds']:.0f} s vs {c['seconds_fine']:.0f} s)")
            if "background" in r:
                print("  field-free background (H2+, no pulse, same run; vs the weakest pulse at that R):")
                print("  R    field-free yield  absorbed   background removed    | I (W/cm^2)  yield      ratio    "
                      "| ground state / propagation")
                for b in r["background"]:
                    print(f"  {b['R']:<4g} {b['field_free_yield']:.2e}          {b['field_free_absorbed']:.2e}   "
                          f"{b['background']:.2e}   {b['removed']:.2e}   | {b['intensity']:.1e}     "
                          f"{b['yield']:.2e}   {b['ratio']:.1e}  | {b['seconds_ground_state']:.1f} s / "
                          f"{b['seconds_propagation']:.0f} s for 2 ({b['precision']})")
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"\n{report['date']}, {report['machine']}, load at start {report['load']:.1f}")


if __name__ == "__main__":
    main()
