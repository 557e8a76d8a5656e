"""Fidelity and cost of the ``fast`` TDSE preset against ``small`` (issue 17, item 3).

    python benchmarks/tdse_fast_fidelity.py                     # full: small vs fast, ~10 min on one core
    python benchmarks/tdse_fast_fidelity.py --cache /tmp/fid    # reuse PMDs computed before (not the timed ones)
    python benchmarks/tdse_fast_fidelity.py --scale test        # tiny vs a cheaper tiny, seconds (the test)

What is compared is what a network sees: the preprocessed 128 x 256 image (log10(P / max P)
clipped at -5, bicubic, 0..255; :func:`factory.processing.preprocess.apply` with the per-image
window the quickstart and Table I use, and with one global window for the whole set).  At each
(R, I) point (H2+, CEP = 0, alpha = 0):

- ``fidelity``: the RMS difference (in 0..255 grey levels) between the candidate's input and the
  reference's at the same (R, I);
- ``threshold``: the RMS difference between the reference's inputs at R and at R + dR, same I,
  with dR = 0.07 a.u. (the CNN's mean absolute error on R in Shvetsov-Shilovski & Lein, Phys.
  Rev. A 107, 033106 (2023)): the change of the input that the network's own error in R stands
  for.  A candidate whose input differs from the reference's by less than that is closer to the
  reference than a PMD whose R is off by the CNN's error, so it cannot be told apart at the
  network's resolution.  (The project's own CNN errs by 0.5-0.9 a.u. on tiny data, so 0.07 is
  the strict choice.)  Also printed: the relative L2 difference of the raw PMDs.
- ``cost``: seconds per PMD (ground state + propagation, batches of the point's intensities) of
  reference and candidate, timed in this run, interleaved point by point; their ratio.
- ``background``: the candidate's per-sample ``background`` diagnostic (field-free background
  bound, with the float32 rounding floor in single precision) against the smallest physical
  yield of its sampling range (the corner R_min, I_min, computed here with the candidate),
  which must be >= 100x larger (issue 17).

``--cache DIR`` keeps the PMDs of the untimed runs (R + dR, the corner) as .npz between runs; the
timed reference and candidate runs are always computed fresh.

A full run of the preset comparison (``--scale full``, no ``--candidate`` or overrides) writes its
figures to benchmarks/records/tdse_fast_fidelity.json (benchmarks/records.py), from which
benchmarks/render.py writes BENCHMARKS.md; test-scale runs and explorations write no record.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from factory.processing.preprocess import apply, pmd2d_description
from factory.tdse import make_config, momentum_distributions

#: the CNN's mean absolute error on R (a.u.) in Shvetsov-Shilovski & Lein, PRA 107, 033106 (2023)
DR_CNN = 0.07
#: (R, intensities) points: each R's intensities are one batch
FULL_POINTS = ((2.0, (1e14, 3e14)), (8.0, (1e14, 3e14)))
#: the smallest-yield corner of the presets' range is (R_min, I_min) of the candidate's sampling
SCALES = {
    # reference, candidate, overrides of each, points
    "full": ("small", "fast", {}, {}, FULL_POINTS),
    # seconds: tiny (to 1 t_f) against tiny with twice the time step and the mask every 4
    "test": ("tiny", "tiny", {"t_end": 1.0}, {"t_end": 1.0, "dt": 0.2, "mask": {"beta": 0.02, "every": 4}},
             ((3.0, (2e14,)),)),
}


def _machine() -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import cpu_model
    import records  # noqa: F401  (notes the load average at the start, for the record)

    return {"cpu": cpu_model(), "load_average": list(os.getloadavg()),
            "date": datetime.date.today().isoformat(), "omp_threads": os.environ.get("OMP_NUM_THREADS")}


def _key(preset: str, overrides: dict, R: float, intensities) -> str:
    cfg = make_config(preset, **overrides).model_dump(mode="json", exclude={"sampling"})  # the preset's numbers too
    text = json.dumps([cfg, R, list(intensities)], sort_keys=True)
    return f"{preset}-{hashlib.sha1(text.encode()).hexdigest()[:12]}-R{R:g}"


def _run(preset: str, overrides: dict, R: float, intensities, cache: Path | None = None) -> dict:
    """PMDs of H2+ at R for the intensities (one batch), with wall seconds per PMD."""
    path = cache / (_key(preset, overrides, R, intensities) + ".npz") if cache else None
    if path is not None and path.exists():
        d = np.load(path)
        return {**{k: d[k] for k in d.files}, "fresh": False}
    t0 = time.perf_counter()
    res = momentum_distributions("H2+", R, list(intensities), preset=preset, **overrides)
    sec = (time.perf_counter() - t0) / len(res)
    out = {"pmd": np.stack([r.pmd for r in res]), "kx": res[0].kx, "ky": res[0].ky,
           "yield": np.array([r.total_yield for r in res]), "background": np.array([r.background for r in res]),
           "seconds": np.float64(sec)}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **out)
    return {**out, "fresh": True}


def network_input(run: dict, b: int, window: str = "per-image", kmax=None) -> np.ndarray:
    desc = pmd2d_description(window, kmax)
    return apply(desc, run["pmd"][b], {"ky": run["ky"], "kx": run["kx"]}).astype(np.float64)


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def _rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _global_kmax(runs: list[dict]) -> tuple[float, float]:
    """One symmetric window for all images: the widest signal box (log10 P/max > -5) of the references."""
    from factory.processing.preprocess import signal_window

    ky = kx = 0.0
    for run in runs:
        for img in run["pmd"]:
            y0, y1, x0, x1 = signal_window(img, run["ky"], run["kx"], -5.0)
            ky, kx = max(ky, abs(y0), abs(y1)), max(kx, abs(x0), abs(x1))
    return ky, kx


def measure(reference: str = "small", candidate: str = "fast", ref_overrides: dict | None = None,
            cand_overrides: dict | None = None, points=FULL_POINTS, dR: float = DR_CNN,
            cache: Path | None = None, cache_references: bool = False, corner: bool = True, log=print) -> dict:
    """Fidelity, threshold, cost and background of ``candidate`` against ``reference``."""
    ro, co = dict(ref_overrides or {}), dict(cand_overrides or {})
    refs, cands, shifted = [], [], []
    for R, intensities in points:  # interleaved: reference, candidate, per point
        refs.append(_run(reference, ro, R, intensities, cache if cache_references else None))
        cands.append(_run(candidate, co, R, intensities))
        fid = [_rms(network_input(cands[-1], b), network_input(refs[-1], b)) for b in range(len(intensities))]
        log(f"R = {R:g}: {reference} {float(refs[-1]['seconds']):.1f} s/PMD, "
            f"{candidate} {float(cands[-1]['seconds']):.1f} s/PMD; per-image input RMS diff {np.round(fid, 3)}")
        shifted.append(_run(reference, ro, round(R + dR, 9), intensities, cache))
    kmax = _global_kmax(refs)
    rows = []
    for (R, intensities), ref, cand, sh in zip(points, refs, cands, shifted):
        for b, intensity in enumerate(intensities):
            row = {"R": R, "intensity": intensity}
            for window in ("per-image", "global"):
                x_ref = network_input(ref, b, window, kmax)
                row[window] = {"fidelity_rms": _rms(network_input(cand, b, window, kmax), x_ref),
                               "threshold_rms": _rms(network_input(sh, b, window, kmax), x_ref)}
                row[window]["ratio"] = row[window]["fidelity_rms"] / row[window]["threshold_rms"]
            same = ref["pmd"][b].shape == cand["pmd"][b].shape
            row["pmd_rel_l2"] = _rel_l2(cand["pmd"][b], ref["pmd"][b]) if same else None
            row["yield_ref"], row["yield_cand"] = float(ref["yield"][b]), float(cand["yield"][b])
            row["background_cand"] = float(cand["background"][b])
            rows.append(row)
    # the cost ratio from the points whose reference was computed in this run (else the cached times)
    timed = [i for i, r in enumerate(refs) if r["fresh"]] or list(range(len(refs)))
    t_ref = float(np.mean([refs[i]["seconds"] for i in timed]))
    t_cand = float(np.mean([cands[i]["seconds"] for i in timed]))
    out = {"reference": reference, "candidate": candidate, "ref_overrides": ro, "cand_overrides": co, "dR": dR,
           "global_kmax": list(kmax), "points": rows,
           "cost": {"reference_s": t_ref, "candidate_s": t_cand, "ratio": t_ref / t_cand,
                    "timed_R": [points[i][0] for i in timed], "in_this_run": any(r["fresh"] for r in refs)},
           "passes": all(r["per-image"]["ratio"] < 1 for r in rows)}
    if corner:
        full = make_config(candidate, **co)  # the preset's own sampling range
        r_lo, i_lo = full.sampling.bounds("R")[0], full.sampling.bounds("intensity")[0]
        c = _run(candidate, co, r_lo, (i_lo,), cache)
        bg, y = float(c["background"][0]), float(c["yield"][0])
        out["corner"] = {"R": r_lo, "intensity": i_lo, "yield": y, "background": bg, "ratio": y / bg,
                         "passes": y >= 100 * bg, "steps": full.n_steps()}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    ap.add_argument("--cache", type=Path, default=None, help="keep the untimed PMDs (R + dR, the corner) here")
    ap.add_argument("--cache-references", action="store_true",
                    help="also take the references at R from --cache where there (the cost ratio then comes from "
                         "the points whose reference is computed in this run)")
    ap.add_argument("--candidate", default=None, help="candidate preset (default: the scale's)")
    ap.add_argument("--candidate-overrides", default="{}", help="JSON overrides of the candidate (explore)")
    ap.add_argument("--json", type=Path, default=None, help="write the result here")
    args = ap.parse_args(argv)
    reference, candidate, ro, co, points = SCALES[args.scale]
    co = {**co, **json.loads(args.candidate_overrides)}
    candidate = args.candidate or candidate
    machine = _machine()
    out = measure(reference, candidate, ro, co, points, cache=args.cache, cache_references=args.cache_references)
    out["machine"] = {**machine, "load_average_end": list(os.getloadavg())}
    for r in out["points"]:
        p, g = r["per-image"], r["global"]
        print(f"R = {r['R']:g}, I = {r['intensity']:.0e}: input RMS diff {p['fidelity_rms']:.3f} vs threshold "
              f"{p['threshold_rms']:.3f} ({p['ratio']:.2f}; global window {g['fidelity_rms']:.3f} vs "
              f"{g['threshold_rms']:.3f}); PMD rel. L2 {r['pmd_rel_l2']}; yield {r['yield_ref']:.3e} -> "
              f"{r['yield_cand']:.3e}; background {r['background_cand']:.2e}")
    c = out["cost"]
    print(f"cost: {out['reference']} {c['reference_s']:.1f} s/PMD, {out['candidate']} {c['candidate_s']:.1f} s/PMD, "
          f"ratio {c['ratio']:.2f} (timed at R = {c['timed_R']}, in this run: {c['in_this_run']}); "
          f"passes: {out['passes']}")
    if "corner" in out:
        k = out["corner"]
        print(f"corner R = {k['R']:g}, I = {k['intensity']:.0e}: yield {k['yield']:.3e}, background "
              f"{k['background']:.2e}, ratio {k['ratio']:.0f} (>= 100: {k['passes']})")
    print(json.dumps(out["machine"]))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    if args.scale == "full" and args.candidate is None and not json.loads(args.candidate_overrides):
        write_record(out)
    return 0


def write_record(out: dict) -> None:
    """benchmarks/records/tdse_fast_fidelity.json: cost, fidelity per point, background corner."""
    from records import record

    c = out["cost"]
    figures = {"cost_reference_s": (c["reference_s"], "s"), "cost_candidate_s": (c["candidate_s"], "s"),
               "cost_ratio": (c["ratio"], "x")}
    rows = []
    for r in out["points"]:
        p = f"R{r['R']:g}_I{r['intensity'] / 1e14:g}e14"
        for window in ("per-image", "global"):
            w = window.replace("-", "_")
            figures[f"{p}_{w}_fidelity_rms"] = (r[window]["fidelity_rms"], "grey levels")
            figures[f"{p}_{w}_threshold_rms"] = (r[window]["threshold_rms"], "grey levels")
        if r["pmd_rel_l2"] is not None:
            figures[f"{p}_pmd_rel_l2"] = r["pmd_rel_l2"]
        rows.append([f"{r['R']:g}", f"{r['intensity']:.0e}",
                     *(f"{r[w]['fidelity_rms']:.2f} / {r[w]['threshold_rms']:.2f}" for w in ("per-image", "global")),
                     None if r["pmd_rel_l2"] is None else f"{r['pmd_rel_l2']:.2g}"])
    if "corner" in out:
        k = out["corner"]
        figures.update(corner_background=k["background"], corner_yield=k["yield"],
                       corner_yield_over_background=(k["ratio"], "x"))
    record("tdse_fast_fidelity", title=f"The `{out['candidate']}` TDSE preset against `{out['reference']}`",
           figures=figures,
           table={"title": f"Fidelity: RMS difference of the network inputs, `{out['candidate']}` vs `{out['reference']}` at "
                           f"the same (R, I) / `{out['reference']}` at R + {out['dR']:g} a.u. vs R (the threshold)",
                  "columns": ["R (a.u.)", "I (W/cm^2)", "per-image window", "global window", "PMD rel. L2"], "rows": rows})


if __name__ == "__main__":
    raise SystemExit(main())
