"""Fig. 4b of Stielow et al., MLST 2020: fit many images, score the fits with the App. C errors
against the number of simulations, and put a trained network beside them (its error, and its
cost in simulations: training images plus training time)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from factory.compute import Executor, resolve_executor
from factory.errors import StoreError
from factory.logs import get_logger
from factory.outputs import ResultFolder

from .model import QUAT, ForwardModel, relative_error, to_params
from .simplex import FitResult, FitSettings, fit_image

log = get_logger(__name__)


def error_trace(res: FitResult, true_radius: float, true_quat, model: ForwardModel) -> np.ndarray:
    """(simulations, 5) App. C errors of the best-so-far parameters after each simulation."""
    out = np.empty((res.simulations, 5))
    last_x, last = None, None
    for k in range(res.simulations):
        xk = res.trace_best_x[k]
        if last_x is None or not np.array_equal(xk, last_x):
            radius, q = to_params(xk, model.radius_range)
            last = relative_error(radius, q, true_radius, true_quat, model.radius_range, model.group)
            last_x = xk
        out[k] = last
    return out


def network_cost(model_folder: str | Path, seconds_per_simulation: float) -> dict[str, Any]:
    """The network's cost in simulations: its training images plus its training time in simulations."""
    from ..artifact import read_description

    desc = read_description(model_folder)
    hist = desc.get("training", {}).get("history", [])
    train_s = float(sum(h.get("epoch_s", 0.0) for h in hist))
    n_train = int(desc.get("training_set", {}).get("split", {}).get("n_train") or 0)
    n_val = int(desc.get("training_set", {}).get("split", {}).get("n_val") or 0)
    n_sims = n_train + n_val
    equiv = train_s / seconds_per_simulation if seconds_per_simulation > 0 else float("nan")
    return {"model": str(model_folder), "training_images": n_sims, "training_s": train_s,
            "training_in_simulations": equiv, "total_simulations": n_sims + equiv}


def _quantiles(a: np.ndarray, axis=0) -> dict[str, Any]:
    return {"median": np.median(a, axis=axis), "q05": np.quantile(a, 0.05, axis=axis),
            "q95": np.quantile(a, 0.95, axis=axis)}


def forward_fit(targets: np.ndarray, model: ForwardModel, settings: FitSettings | None = None, *,
                truths: dict[str, np.ndarray] | None = None, out: str | Path | None = None,
                network: str | Path | None = None, network_images: np.ndarray | None = None,
                progress: bool = False, executor: Executor | None = None) -> dict[str, Any]:
    """Fit every target image; with ``truths`` (radius, q0..q3) score them as in Stielow et al., MLST 2020, Fig. 4b.

    ``network``: a trained scattering model folder; it predicts ``network_images`` (the
    targets as network input; default: the targets themselves) and its error and cost in
    simulations are reported beside the fit's.  Writes ``forward_fit.json`` and ``fig4b.png``
    into ``out`` when given.  The starts run on ``executor`` (default: the one
    ``settings.parallel`` resolves to for the estimated work, one for all images).
    """
    s = (settings or FitSettings()).check()
    targets = _check_targets(targets, model, truths)
    folder = ResultFolder(out, ("fig4b.png", "forward_fit.json")) if out is not None else None  # before any work
    sec_per_sim = _seconds_per_simulation(model)
    evaluations = s.starts * (1.5 * s.iterations + 5) + 1.5 * s.polish  # about 1.5 per Nelder-Mead iteration
    ex = executor if executor is not None else resolve_executor(
        s.parallel, s.address, work_s=len(targets) * evaluations * sec_per_sim)
    fits, traces = [], []
    try:
        for i, tgt in enumerate(targets):
            res = fit_image(tgt, model, s, index=i, executor=ex)
            fits.append(res)
            if truths is not None:
                traces.append(error_trace(res, truths["radius"][i], [truths[q][i] for q in QUAT], model))
            if progress:
                extra = ""
                if traces:
                    extra = f", mean error {100 * traces[-1][-1].mean():.3f} %, max {100 * traces[-1][-1].max():.3f} %"
                log.info("[forward-fit] image %d/%d: %d simulations, %.1f s%s", i + 1, len(targets), res.simulations,
                         res.seconds, extra)
        where = ex.describe()
    finally:
        if executor is None:
            ex.close()
    report = _fit_report(s, model, fits, sec_per_sim, where)
    if traces:
        _add_errors(report, traces)
    if network is not None:
        report["network"] = _network_beside(network, network_images if network_images is not None else targets,
                                            truths, model, sec_per_sim)
    if folder is not None:
        if "curve" in report:
            report["figure"] = str(plot_fig4b(report["curve"], report.get("network"), folder.file("fig4b.png")))
        folder.write_text("forward_fit.json", json.dumps(report, indent=1, default=jsonable))
    return report


def _check_targets(targets, model: ForwardModel, truths) -> np.ndarray:
    """The targets as a float64 stack of the forward model's image size, with the labels scoring needs."""
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim != 3 or len(targets) == 0:
        raise StoreError(f"forward fit needs a stack of images (N, H, W); got shape {targets.shape}")
    probe = model(float(np.mean(model.radius_range)), np.array([1.0, 0.0, 0.0, 0.0]))
    if probe.shape != targets.shape[1:]:
        raise StoreError(f"the target images are {targets.shape[1]} x {targets.shape[2]} but the forward model gives "
                         f"{probe.shape[0]} x {probe.shape[1]}; use the simulator settings the images were made with")
    if truths is not None:
        missing = [k for k in ["radius", *QUAT] if k not in truths]
        if missing:
            raise StoreError(f"forward fit scoring needs the labels radius, q0..q3; missing {missing}")
    return targets


def _seconds_per_simulation(model: ForwardModel, repeats: int = 3) -> float:
    t0 = time.perf_counter()
    for _ in range(repeats):
        model(float(np.mean(model.radius_range)), np.array([1.0, 0.0, 0.0, 0.0]))
    return (time.perf_counter() - t0) / repeats


def _fit_report(s: FitSettings, model: ForwardModel, fits: list[FitResult], sec_per_sim: float,
                where: str) -> dict[str, Any]:
    return {
        "images": len(fits), "settings": {k: v for k, v in asdict(s).items() if k != "address"},
        "forward_model": {"shape": model.shape, "radius_range": list(model.radius_range), "group": model.group,
                          "config": model.config.model_dump(mode="json") if model.config is not None else "function",
                          "seconds_per_simulation": sec_per_sim},
        "fits": [{"radius": f.radius, "quaternion": f.quaternion, "objective": f.objective, "simulations": f.simulations,
                  "seconds": f.seconds, "best_start": f.best_start} for f in fits],
        "simulations_per_image": float(np.mean([f.simulations for f in fits])),
        "seconds_per_image": float(np.mean([f.seconds for f in fits])),
        "where": where,
    }


def _add_errors(report: dict[str, Any], traces: list[np.ndarray]) -> None:
    """Each fit's final App. C errors, their summary, and the Fig. 4b curve (median and 90 % band)."""
    final = np.array([t[-1] for t in traces])
    for row, t in zip(report["fits"], final):
        row["relative_error"] = dict(zip(["radius", *QUAT], t.tolist()))
        row["mean_error"], row["max_error"] = float(t.mean()), float(t.max())
    report["final"] = {"median_mean_error": float(np.median(final.mean(1))),
                       "median_max_error": float(np.median(final.max(1))),
                       "worst_max_error": float(final.max()),
                       "fraction_max_below_1pct": float(np.mean(final.max(1) < 0.01))}
    n = min(len(t) for t in traces)
    per = np.array([t[:n].mean(1) for t in traces])  # (images, sims): mean of the five errors
    grid = np.unique(np.round(np.geomspace(1, n, min(n, 60))).astype(int))
    q = _quantiles(per[:, grid - 1])
    report["curve"] = {"simulations": grid.tolist(), **{k: v.tolist() for k, v in q.items()}}
    after = {}
    for frac in (0.1, 0.25, 0.5, 1.0):  # median error after this many simulations
        mark = int(min(max(round(frac * n), 1), n))
        after[str(mark)] = float(np.median(per[:, mark - 1]))
    report["median_error_after"] = after


def _network_beside(folder, images, truths, model: ForwardModel, sec_per_sim: float) -> dict[str, Any]:
    from ..artifact import ModelError, Predictor

    pred = Predictor(folder, device="cpu")
    if not ({"radius", *QUAT} <= set(pred.labels)):
        raise ModelError(f"{folder}: predicts {pred.labels}; forward fitting compares with a radius + quaternion model")
    images = np.asarray(images, dtype=np.float32)
    if list(images.shape[1:]) != list(pred.description["input"]["shape"]):
        raise StoreError(f"the network takes {pred.description['input']['shape']} images, the targets are "
                         f"{list(images.shape[1:])}; pass the network-ready images")
    t0 = time.perf_counter()
    p = pred.predict(images)
    dt = (time.perf_counter() - t0) / len(images)
    out = {**network_cost(folder, sec_per_sim), "seconds_per_image": dt}
    if truths is not None:
        errs = np.array([relative_error(p["radius"][i], [p[q][i] for q in QUAT], truths["radius"][i],
                                        [truths[q][i] for q in QUAT], model.radius_range, model.group)
                         for i in range(len(images))])
        m = errs.mean(1)
        out.update({"median_mean_error": float(np.median(m)), "q05": float(np.quantile(m, 0.05)),
                    "q95": float(np.quantile(m, 0.95)), "median_max_error": float(np.median(errs.max(1)))})
    return out


def fig4b_figure(curve: dict[str, Any], network: dict[str, Any] | None):
    """Fig. 4b of Stielow et al., MLST 2020: median (line) and 90 % band of the fit error against
    simulations; the network beside (its training cost in simulations)."""
    from ..figures import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.6), layout="constrained")
    x = np.asarray(curve["simulations"])
    ax.fill_between(x, np.asarray(curve["q05"]) * 100, np.asarray(curve["q95"]) * 100, color="tab:blue", alpha=0.25,
                    label="Monte Carlo simplex, 90 % band")
    ax.plot(x, np.asarray(curve["median"]) * 100, color="tab:blue", label="Monte Carlo simplex, median")
    if network and "median_mean_error" in network:
        c = network["total_simulations"]
        ax.errorbar([c], [network["median_mean_error"] * 100],
                    yerr=[[max(0.0, (network["median_mean_error"] - network["q05"]) * 100)],
                          [max(0.0, (network["q95"] - network["median_mean_error"]) * 100)]],
                    fmt="o", color="tab:red", capsize=3, label="network (training cost)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("scattering simulations (count)")
    ax.set_ylabel("mean relative error (%)")
    ax.legend(fontsize=7)
    return fig


def plot_fig4b(curve: dict[str, Any], network: dict[str, Any] | None, path: str | Path) -> Path:
    """fig4b.png: see :func:`fig4b_figure`."""
    from factory.plots import save

    return save(fig4b_figure(curve, network), path)


def simulate_targets(model: ForwardModel, n: int, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``n`` noiseless images at random parameters (radius uniform, orientation uniform in the domain)."""
    from factory.geometry import sample_fundamental

    rng = np.random.default_rng([seed, 23])
    lo, hi = model.radius_range
    radii = rng.uniform(lo + 0.02 * (hi - lo), hi - 0.02 * (hi - lo), n)
    quats = sample_fundamental(rng, n, group=model.group) if model.group not in ("C1", None) else \
        np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))
    images = np.stack([model(r, q) for r, q in zip(radii, quats)])
    return images, {"radius": radii, **{k: quats[:, j] for j, k in enumerate(QUAT)}}


def network_input(model_folder: str | Path, images: np.ndarray) -> np.ndarray:
    """Raw simulated (log) images as the network's input, through its recorded preprocessing."""
    from factory.processing.description import Scatter

    from ..artifact import read_card

    pre = read_card(model_folder).preprocessing
    if not isinstance(pre, Scatter):
        return np.asarray(images, dtype=np.float32)
    from factory.processing.preprocess import apply

    return np.stack([apply(pre, im, {}) for im in images])


def jsonable(obj):
    """JSON for what reports hold besides plain data (arrays, numpy scalars, a stand-in function)."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if callable(obj):
        return getattr(obj, "__name__", "function")
    return str(obj)


__all__ = ["error_trace", "forward_fit", "jsonable", "network_cost", "network_input", "plot_fig4b", "simulate_targets"]
