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

from factory.tdse import Propagator, absorbing_mask, compute_pmds, config_for, ground_state, h2plus, hehplus, potential
from factory.tdse.api import ground_state_for, refined
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "small"], choices=["tiny", "small", "paper"])
    ap.add_argument("--intensities", nargs="+", type=float, default=[1e14, 2e14, 4e14])
    ap.add_argument("--no-convergence", action="store_true", help="skip the (8x costlier) refined run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    report = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "load": os.getloadavg()[0], "presets": {}}
    for preset in args.presets:
        r = {"energies": energies(preset), "yields": yields(preset, args.intensities)}
        if not args.no_convergence:
            r["convergence"] = convergence(preset, 3e14)
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
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"\n{report['date']}, {report['machine']}, load at start {report['load']:.1f}")


if __name__ == "__main__":
    main()
