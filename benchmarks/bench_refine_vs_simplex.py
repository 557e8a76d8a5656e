"""Network guess + gradient refinement against the Monte Carlo simplex, side by side in ONE run.

Stielow, Schmidt, Peltz, Fennel & Scheel, Mach. Learn.: Sci. Technol. (2020), Fig. 4b: the
Monte Carlo simplex (50 random starts x 50 Nelder-Mead iterations, ~4 simulations each)
reaches a median App. C error of 0.37 % on 30 images.  Here, on the same 30 noiseless
simulated images (``--config``, default the ``tiny`` MSFT preset: 48^3 voxels -> 64 x 64):

(a) the simplex baseline, :func:`models.forward_fit.fit_image` (``--starts`` x ``--iterations``,
    no polish), every objective evaluation one simulation;
(b) a network-like initial guess refined by :func:`models.forward_fit.gradient.refine`
    (L-BFGS by default) through the differentiable torch MSFT, every forward+backward pass
    counted as ``cost_per_pass`` simulations: its time over that of one forward simulation
    of (a), measured in this run (:func:`measure_cost`, before and after, in interleaved
    rounds; the largest of the wall-time and CPU-time ratios is used; an end-to-end wall
    check, the runs' own seconds per pass over seconds per simplex evaluation, is printed).

The initial guess is NOT a trained network: it is the true parameters perturbed by a
network-like error (radius + N(0, ``--radius-sigma``) nm, orientation turned about a random
axis by |N(0, ``--angle-sigma``)| deg); the App. C error distribution of these guesses is
measured and reported.  The network's own cost (training set and training) is not counted.

For both methods: the App. C mean error (mean of the five relative errors) of the
best-so-far parameters (lowest loss seen) against the number of simulations, the median and
the 5-95 % band over the images, and the simulations each needs to reach a median of
0.37 %.  Writes ``refine_vs_simplex.json`` and ``refine_vs_simplex.png`` into ``--out`` and
prints a table.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/bench_refine_vs_simplex.py --out bench-refine
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402
from records import record  # noqa: E402  benchmarks/records.py: writes benchmarks/records/refine_vs_simplex.json

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAPER_MEDIAN = 0.0037  # Stielow et al. (2020), Fig. 4b


def _first_reach(sims: np.ndarray, median: np.ndarray, level: float) -> float | None:
    hit = np.flatnonzero(median <= level)
    return float(sims[hit[0]]) if len(hit) else None


def _timed(f):
    w0, c0 = time.perf_counter(), time.process_time()
    out = f()
    return out, time.perf_counter() - w0, time.process_time() - c0


def _run(images, truths, guesses, fm, args):
    """Per image, refinement then the simplex back to back (both see the same machine load);
    the wall and process CPU seconds of each around the call."""
    from models.forward_fit import FitSettings, error_trace, fit_image, relative_error
    from models.forward_fit.gradient import refine

    s = FitSettings(starts=args.starts, iterations=args.iterations, polish=0, seed=args.seed, parallel="local")
    ref = {"errors": [], "wall": 0.0, "cpu": 0.0, "passes": []}
    mcs = {"errors": [], "wall": 0.0, "cpu": 0.0, "sims": []}
    for i, img in enumerate(images):
        (r0, q0), (rt, qt) = guesses[i], truths[i]
        res, wall, cpu = _timed(lambda: refine(img, fm, r0, q0, steps=args.passes, lr=args.lr, optimizer=args.optimizer,
                                               cost=1.0, precision=args.precision))
        ref["wall"] += wall
        ref["cpu"] += cpu
        ref["passes"].append(res.passes)
        rb, qb = res.best_so_far()
        err = np.array([relative_error(a, b, rt, qt, fm.radius_range, fm.group).mean() for a, b in zip(rb, qb)])
        ref["errors"].append(np.concatenate([err, np.full(args.passes - len(err), err[-1])]))  # stopped early: stays
        fit, wall_s, cpu_s = _timed(lambda: fit_image(img, fm, s, index=i))
        mcs["wall"] += wall_s
        mcs["cpu"] += cpu_s
        mcs["sims"].append(fit.simulations)
        mcs["errors"].append(error_trace(fit, rt, qt, fm).mean(axis=1))
        print(f"  image {i + 1}/{len(images)}: refinement {res.passes} passes, {wall:.2f} s, guess "
              f"{100 * relative_error(r0, q0, rt, qt, fm.radius_range, fm.group).mean():.3f} % -> {100 * err[-1]:.5f} %; "
              f"simplex {fit.simulations} simulations, {wall_s:.1f} s -> {100 * mcs['errors'][-1][-1]:.4f} %", flush=True)
    n = min(len(t) for t in mcs["errors"])  # every image's trace up to the shortest run
    mcs["errors"] = np.array([t[:n] for t in mcs["errors"]])
    mcs["sims_axis"] = np.arange(1, n + 1, dtype=float)
    ref["errors"] = np.array(ref["errors"])
    return ref, mcs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="tiny", help="MSFT preset (tiny, small) or YAML")
    ap.add_argument("--images", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--starts", type=int, default=8,
                    help="simplex random starts (the paper: 50; the curve to ~85 simulations per start)")
    ap.add_argument("--iterations", type=int, default=50, help="Nelder-Mead iterations per start")
    ap.add_argument("--optimizer", default="lbfgs", choices=["lbfgs", "adam"])
    ap.add_argument("--passes", type=int, default=20, help="forward+backward passes per image (at most)")
    ap.add_argument("--lr", type=float, default=None, help="refinement step (default: L-BFGS 1, Adam 0.01)")
    ap.add_argument("--precision", default="complex64", choices=["complex64", "complex128"])
    ap.add_argument("--radius-sigma", type=float, default=3.0, help="guess: radius error sigma (nm)")
    ap.add_argument("--angle-sigma", type=float, default=2.5, help="guess: rotation angle sigma (deg)")
    ap.add_argument("--out", default="bench-refine")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from factory.geometry import canonical
    from models.forward_fit import ForwardModel, relative_error, simulate_targets
    from models.forward_fit.fig4b import jsonable
    from models.forward_fit.gradient import measure_cost, perturb

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    load_before = os.getloadavg()[0]
    print(f"{time.strftime('%Y-%m-%d %H:%M')} on {cpu_model()}, {os.cpu_count()} CPUs, load average {load_before:.2f}")
    fm = ForwardModel(args.config)
    images, labels = simulate_targets(fm, args.images, seed=args.seed)
    truths = [(float(labels["radius"][i]), np.array([labels[f"q{j}"][i] for j in range(4)]))
              for i in range(args.images)]
    rng = np.random.default_rng([args.seed, 41])
    guesses = [perturb(r, q, rng, radius_sigma_nm=args.radius_sigma, angle_sigma_deg=args.angle_sigma,
                       radius_range=fm.radius_range) for r, q in truths]
    guess_err = np.array([relative_error(g[0], g[1], t[0], t[1], fm.radius_range, fm.group)
                          for g, t in zip(guesses, truths)])
    print(f"MSFT {args.config}: {fm.config.n_voxels}^3 voxels -> {fm.config.crop} x {fm.config.crop}; "
          f"{args.images} images; guesses: median App. C mean error {100 * np.median(guess_err.mean(1)):.3f} % "
          f"(5-95 %: {100 * np.quantile(guess_err.mean(1), 0.05):.3f}-{100 * np.quantile(guess_err.mean(1), 0.95):.3f} %)",
          flush=True)

    cost0 = measure_cost(fm, repeats=30, precision=args.precision)
    print(f"cost before: simulation {1e3 * cost0['simulation_s']:.2f} ms, torch forward "
          f"{1e3 * cost0['torch_forward_s']:.2f} ms, forward+backward {1e3 * cost0['forward_backward_s']:.2f} ms "
          f"-> {cost0['cost_per_pass']:.2f} simulations per pass (CPU time: {cost0['cost_per_pass_cpu']:.2f})",
          flush=True)
    from models.forward_fit.gradient import refine

    refine(images[0], fm, truths[0][0] + 1.0, truths[0][1], steps=2, cost=1.0, precision=args.precision)  # warm-up
    print("per image: (b) network-like guess + gradient refinement, then (a) Monte Carlo simplex", flush=True)
    ref, mcs = _run(images, truths, guesses, fm, args)
    cost1 = measure_cost(fm, repeats=30, precision=args.precision)
    print(f"cost after: {cost1['cost_per_pass']:.2f} simulations per pass (CPU time: "
          f"{cost1['cost_per_pass_cpu']:.2f})", flush=True)
    n_pass, n_sim = float(np.sum(ref["passes"])), float(np.sum(mcs["sims"]))
    e2e = {"simplex_wall_s_per_evaluation": mcs["wall"] / n_sim, "simplex_cpu_s_per_evaluation": mcs["cpu"] / n_sim,
           "refine_wall_s_per_pass": ref["wall"] / n_pass, "refine_cpu_s_per_pass": ref["cpu"] / n_pass}
    e2e["pass_in_evaluations_wall"] = e2e["refine_wall_s_per_pass"] / e2e["simplex_wall_s_per_evaluation"]
    e2e["pass_in_evaluations_cpu"] = e2e["refine_cpu_s_per_pass"] / e2e["simplex_cpu_s_per_evaluation"]
    print(f"end to end (the runs' own times, interleaved per image): {1e3 * e2e['simplex_wall_s_per_evaluation']:.2f} ms "
          f"wall per simplex evaluation, {1e3 * e2e['refine_wall_s_per_pass']:.2f} ms per refinement pass: "
          f"{e2e['pass_in_evaluations_wall']:.2f} evaluations per pass (CPU time: {e2e['pass_in_evaluations_cpu']:.2f})",
          flush=True)
    # the largest of the ratios (microbenchmark before and after, wall and CPU; end to end, wall and
    # CPU): on a shared machine the wall times drift with the load; the conservative count
    cost = float(max(cost0["cost_per_pass"], cost1["cost_per_pass"], cost0["cost_per_pass_cpu"],
                     cost1["cost_per_pass_cpu"], e2e["pass_in_evaluations_wall"], e2e["pass_in_evaluations_cpu"]))
    ref["sims"] = cost * np.arange(1, args.passes + 1)
    mcs["sims"], mcs["simulations_per_image"] = mcs["sims_axis"], n_sim / len(images)
    ref["seconds"], mcs["seconds"] = ref["wall"], mcs["wall"]
    ref["passes_per_image"] = n_pass / len(images)

    rows, summary = [], {}
    for name, d in (("simplex", mcs), ("refine", ref)):
        med = np.median(d["errors"], axis=0)
        d["median"], d["q05"], d["q95"] = med, np.quantile(d["errors"], 0.05, axis=0), np.quantile(d["errors"], 0.95, axis=0)
        reach = _first_reach(d["sims"], med, PAPER_MEDIAN)
        summary[name] = {"simulations_to_0.37%": reach, "final_median": float(med[-1]),
                         "final_q95": float(d["q95"][-1]), "simulations_run": float(d["sims"][-1]),
                         "seconds_total": d["seconds"]}
    reach_s, reach_r = summary["simplex"]["simulations_to_0.37%"], summary["refine"]["simulations_to_0.37%"]
    ratio = reach_s / reach_r if reach_s and reach_r else None

    # the figure
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, d, colour, label in (("simplex", mcs, "tab:blue", f"Monte Carlo simplex ({args.starts} starts x "
                                                              f"{args.iterations} it.)"),
                                   ("refine", ref, "tab:red", f"network-like guess + {args.optimizer.upper()} "
                                                             f"refinement ({cost:.1f} sim./pass)")):
        ax.plot(d["sims"], 100 * d["median"], color=colour, label=label + ": median")
        ax.fill_between(d["sims"], 100 * d["q05"], 100 * d["q95"], color=colour, alpha=0.2, label="5-95 % of images")
    ax.scatter([cost * 0.5], [100 * np.median(guess_err.mean(1))], color="tab:red", marker="x",
               label="network-like guess, median (0 simulations; drawn at half a pass)")
    ax.axhline(100 * PAPER_MEDIAN, color="k", ls="--", lw=1, label="0.37 % (Stielow et al. 2020, Fig. 4b)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("scattering simulations per image\n(a forward+backward pass counted as the simulations it costs in time)")
    ax.set_ylabel("App. C mean relative error (%)")
    ax.set_title(f"{args.images} simulated icosahedra, MSFT {args.config} preset", fontsize=10)
    ax.set_ylim(bottom=max(1e-6, 0.5 * 100 * min(ref["median"].min(), mcs["median"].min())))
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(out / "refine_vs_simplex.png", dpi=130)

    report = {
        "command": "python " + " ".join([sys.argv[0]] + (argv if argv is not None else sys.argv[1:])),
        "settings": vars(args), "config": fm.config.model_dump(mode="json"),
        "threads": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "torch": torch.get_num_threads()},
        "guess": {"kind": "true parameters perturbed (no trained network)", "radius_sigma_nm": args.radius_sigma,
                  "angle_sigma_deg": args.angle_sigma, "mean_error_median": float(np.median(guess_err.mean(1))),
                  "mean_error_q05": float(np.quantile(guess_err.mean(1), 0.05)),
                  "mean_error_q95": float(np.quantile(guess_err.mean(1), 0.95)),
                  "per_param_median": np.median(guess_err, axis=0)},
        "cost": {"before": cost0, "after": cost1, "end_to_end": e2e, "cost_per_pass_used": cost},
        "summary": summary, "ratio_simulations_to_0.37%": ratio,
        "curves": {name: {"simulations": d["sims"], "median": d["median"], "q05": d["q05"], "q95": d["q95"]}
                   for name, d in (("simplex", mcs), ("refine", ref))},
        "refine_passes_per_image": ref["passes_per_image"], "simplex_simulations_per_image": mcs["simulations_per_image"],
        "truths": [{"radius": t[0], "quaternion": canonical(t[1])} for t in truths],
        "wall_s": time.perf_counter() - t_start,
        "machine": {"date": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_model(), "cpus": os.cpu_count(),
                    "load_average_before": load_before, "load_average_after": os.getloadavg()[0]},
    }
    (out / "refine_vs_simplex.json").write_text(json.dumps(report, indent=1, default=jsonable))

    print()
    print(f"{'method':<34} {'sims to 0.37 %':>15} {'final median':>13} {'final q95':>11} {'sims run':>9} {'wall s':>8}")
    for name, label in (("simplex", "(a) Monte Carlo simplex"), ("refine", "(b) guess + refinement")):
        s = summary[name]
        reach = f"{s['simulations_to_0.37%']:.0f}" if s["simulations_to_0.37%"] is not None else "not reached"
        print(f"{label:<34} {reach:>15} {100 * s['final_median']:>12.5f}% {100 * s['final_q95']:>10.5f}% "
              f"{s['simulations_run']:>9.0f} {s['seconds_total']:>8.1f}")
    print(f"guess median {100 * np.median(guess_err.mean(1)):.3f} %; one forward+backward pass = {cost:.2f} simulations "
          f"(pass / torch forward = {cost0['pass_over_torch_forward']:.2f}); "
          f"ratio of simulations to 0.37 %: {ratio if ratio is None else round(ratio, 1)}")
    print(f"wrote {out / 'refine_vs_simplex.json'} and {out / 'refine_vs_simplex.png'}; {report['wall_s']:.0f} s")
    figures = {}
    for name in ("simplex", "refine"):
        s = summary[name]
        if s["simulations_to_0.37%"] is not None:
            figures[f"{name}_simulations_to_0.37%"] = (s["simulations_to_0.37%"], "simulations")
        figures.update({f"{name}_final_median": (100 * s["final_median"], "%"),
                        f"{name}_final_q95": (100 * s["final_q95"], "%"),
                        f"{name}_simulations_run": (s["simulations_run"], "simulations"),
                        f"{name}_seconds": (s["seconds_total"], "s")})
    if ratio is not None:
        figures["ratio_simulations_to_0.37%"] = (ratio, "x")
    figures.update({"cost_per_pass": (cost, "simulations"),
                    "pass_over_torch_forward": (cost0["pass_over_torch_forward"], "x"),
                    "guess_median_error": (100 * float(np.median(guess_err.mean(1))), "%"),
                    "refine_passes_per_image": (ref["passes_per_image"], "passes"), "wall": (report["wall_s"], "s")})
    record("refine_vs_simplex", title="Gradient refinement against the Monte Carlo simplex", figures=figures,
           command=report["command"] if argv is not None else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
