"""Forward fitting of scattering images: the Monte Carlo simplex baseline of
Stielow, Schmidt, Peltz, Fennel & Scheel, Mach. Learn.: Sci. Technol. (2020) (Sec. 3, Fig. 4b).

For one target image, ``starts`` random points in parameter space (radius uniform in its
range, orientation uniform in the fundamental domain) each start a Nelder-Mead simplex
(:func:`scipy.optimize.minimize`, ``method="Nelder-Mead"``) of at most ``iterations``
iterations on the MSFT forward model; the objective is the mean squared difference of the
log images.  The best end point wins; ``polish`` optionally continues it for more
iterations (the paper stops after 50 x 50; a noiseless image is recovered to ~0.1 % only
with a polish, see the README).  Every objective evaluation is one simulation, counted.

The random starts run as Ray tasks (an initialised Ray is reused; otherwise an embedded
local one is started), the polish as one more task.  The search variables are the radius
scaled to [0, 1] over its range and the rotation vector of the orientation; results are
reported as (radius, q0..q3) with the quaternion projected into the fundamental domain
and scored with the App. C errors of Stielow et al., MLST 2020 (absolute error over the parameter's range; the
quaternion components over the span of the fundamental domain).

Fig. 4b: for each image the best-so-far error against the number of simulations (starts
taken in order, then the polish); the median and the 90 % quantile over the images, and
beside them the network's error with its cost in simulations (training-set size plus the
training time expressed in simulations).

Library use::

    fm = ForwardModel("tiny")                        # MSFT preset/config; noiseless, log images
    res = fit_image(fm(80.0, q), fm, FitSettings(starts=8, iterations=50, polish=300))
    res.radius, res.quaternion, res.simulations
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from factory.errors import ConfigError, StoreError

QUAT = ["q0", "q1", "q2", "q3"]


# -- the forward model -------------------------------------------------------------------------
class ForwardModel:
    """(radius in nm, quaternion w,x,y,z) -> the image the targets are compared with.

    ``config``: an MSFT preset name (``tiny``, ``small``, ``paper``), an ``msft`` YAML file, an
    :class:`~factory.msft.MSFTConfig` or its dict.  Noise is switched off (background 0, no
    photon noise) unless ``noiseless=False``.  ``preprocessing`` (a processed store's
    ``meta["preprocessing"]``) maps the simulated image to the store's representation;
    ``coords`` are the raw detector axes it needs.  ``function`` replaces the MSFT simulator by
    any callable ``(radius, q) -> image`` (tests, other forward models).
    """

    def __init__(self, config: Any = "tiny", *, shape: str = "icosahedron", noiseless: bool = True,
                 preprocessing: dict | None = None, coords: dict | None = None,
                 radius_range: tuple[float, float] | None = None, group: str | None = None,
                 function: Callable[[float, np.ndarray], np.ndarray] | None = None):
        self.shape = shape
        self.preprocessing = preprocessing
        self.coords = coords
        self.function = function
        if function is not None:
            self.config = None
            self.radius_range = tuple(float(v) for v in (radius_range or (30.0, 160.0)))
            self.group = group or "I"
            return
        from factory.msft.shapes import SHAPES, SYMMETRY
        from factory.msft.simulator import resolve_config

        if shape not in SHAPES:
            raise ConfigError(f"shape {shape!r}: choose one of {', '.join(SHAPES)}")
        try:
            cfg = resolve_config(config)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"forward model config {config!r}: {str(exc).splitlines()[0]}") from None
        if noiseless:
            cfg = cfg.model_copy(update={"background": 0.0, "fluence": None})
        self.config = cfg
        self.radius_range = tuple(float(v) for v in (radius_range or cfg.radius_nm))
        self.group = group or SYMMETRY[shape] or "C1"

    def spec(self) -> dict[str, Any]:
        """Plain data to rebuild this model in a Ray task."""
        return {"config": self.config.model_dump(mode="json") if self.config is not None else None,
                "shape": self.shape, "preprocessing": self.preprocessing,
                "coords": {k: np.asarray(v).tolist() for k, v in (self.coords or {}).items()} or None,
                "radius_range": list(self.radius_range), "group": self.group, "function": self.function}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "ForwardModel":
        coords = {k: np.asarray(v) for k, v in spec["coords"].items()} if spec.get("coords") else None
        return cls(spec["config"] if spec["config"] is not None else "tiny", shape=spec["shape"], noiseless=False,
                   preprocessing=spec["preprocessing"], coords=coords, radius_range=tuple(spec["radius_range"]),
                   group=spec["group"], function=spec["function"])

    def __call__(self, radius: float, quat) -> np.ndarray:
        q = np.asarray(quat, dtype=np.float64)
        if self.function is not None:
            img = np.asarray(self.function(float(radius), q), dtype=np.float64)
        else:
            from factory.msft.simulator import pattern

            img = np.asarray(pattern(self.shape, float(radius), q, self.config).image, dtype=np.float64)
        if self.preprocessing:
            from factory.processing.preprocess import apply

            img = np.asarray(apply(self.preprocessing, img, self.coords), dtype=np.float64)
        return img


# -- search variables <-> parameters ----------------------------------------------------------------
def to_params(x: np.ndarray, radius_range: tuple[float, float]) -> tuple[float, np.ndarray]:
    """Search vector (radius scaled to [0, 1], rotation vector) -> (radius nm, quaternion w,x,y,z)."""
    from scipy.spatial.transform import Rotation

    from factory.geometry import from_rotation

    lo, hi = radius_range
    radius = lo + float(x[0]) * (hi - lo)
    q = from_rotation(Rotation.from_rotvec(np.asarray(x[1:4], dtype=np.float64)))
    return radius, q


def to_vector(radius: float, quat, radius_range: tuple[float, float]) -> np.ndarray:
    from factory.geometry import to_rotation

    lo, hi = radius_range
    return np.concatenate([[(float(radius) - lo) / (hi - lo)], to_rotation(np.asarray(quat, dtype=np.float64)).as_rotvec()])


def project(radius: float, quat, group: str) -> tuple[float, np.ndarray]:
    from factory.geometry import canonical, project_to_fundamental

    q = project_to_fundamental(quat, group) if group not in ("C1", None) else canonical(quat)
    return float(radius), q


def relative_error(radius: float, quat, true_radius: float, true_quat, radius_range, group: str) -> np.ndarray:
    """App. C: the five per-parameter errors (radius, q0..q3) over their ranges."""
    from factory.geometry import relative_errors

    _, qp = project(radius, quat, group)
    _, qt = project(true_radius, true_quat, group)
    if group in ("C1", None):  # no symmetry: w in [0, 1], x, y, z in [-1, 1]
        lo, hi = radius_range
        return np.concatenate([[abs(radius - true_radius) / (hi - lo)], np.abs(qp - qt) / np.array([1.0, 2.0, 2.0, 2.0])])
    return relative_errors(radius, qp, true_radius, qt, radius_range=tuple(radius_range), group=group)["per_param"][0]


def objective(image: np.ndarray, target: np.ndarray) -> float:
    """Mean squared difference of the (log) images."""
    return float(np.mean((np.asarray(image, dtype=np.float64) - target) ** 2))


# -- one Nelder-Mead run (runs inside a Ray task or in-process) -----------------------------------
def _penalty(x: np.ndarray) -> float:
    """Distance outside the radius range (the simulator is only asked for radii inside it)."""
    return float(max(0.0, -x[0]) + max(0.0, x[0] - 1.0))


def simplex_run(spec: dict[str, Any], target: np.ndarray, x0: np.ndarray, iterations: int,
                step: tuple[float, float] = (0.05, 0.1), xatol: float = 1e-6, fatol: float = 1e-12) -> dict[str, Any]:
    """Nelder-Mead from ``x0`` for at most ``iterations`` iterations; every evaluation recorded."""
    from scipy.optimize import minimize

    model = ForwardModel.from_spec(spec)
    target = np.asarray(target, dtype=np.float64)
    trace_f: list[float] = []
    trace_x: list[np.ndarray] = []
    t0 = time.perf_counter()

    def fun(x):
        pen = _penalty(x)
        xc = np.array(x, dtype=np.float64)
        xc[0] = min(max(xc[0], 0.0), 1.0)
        radius, q = to_params(xc, model.radius_range)
        f = objective(model(radius, q), target) + 10.0 * pen * (1.0 + pen)
        trace_f.append(f)
        trace_x.append(xc)
        return f

    x0 = np.asarray(x0, dtype=np.float64)
    simplex = np.vstack([x0] + [x0 + np.eye(4)[k] * (step[0] if k == 0 else step[1]) for k in range(4)])
    res = minimize(fun, x0, method="Nelder-Mead",
                   options={"maxiter": int(iterations), "initial_simplex": simplex, "xatol": xatol,
                            "fatol": fatol, "maxfev": 10 * int(iterations) + 10})
    return {"f": np.asarray(trace_f), "x": np.asarray(trace_x), "iterations": int(res.nit),
            "evaluations": len(trace_f), "seconds": time.perf_counter() - t0}


# -- Monte Carlo simplex --------------------------------------------------------------------------
@dataclass
class FitSettings:
    starts: int = 50                 # random starts (the paper: 50)
    iterations: int = 50             # Nelder-Mead iterations per start (the paper: 50)
    polish: int = 0                  # extra iterations from the best start (0: none)
    seed: int = 0
    step: tuple[float, float] = (0.05, 0.1)  # initial simplex: radius (fraction of range), angle (rad)
    parallel: str = "auto"           # auto (Ray), ray, local
    address: str | None = None

    def check(self) -> "FitSettings":
        if self.starts < 1 or self.iterations < 1 or self.polish < 0:
            raise ConfigError(f"forward fit: need starts >= 1, iterations >= 1, polish >= 0 (got {self.starts}, "
                              f"{self.iterations}, {self.polish})")
        if self.parallel not in ("auto", "ray", "local"):
            raise ConfigError(f"parallel {self.parallel!r}: choose auto, ray or local")
        return self


@dataclass
class FitResult:
    radius: float
    quaternion: list[float]
    objective: float
    simulations: int
    seconds: float
    best_start: int
    # per evaluation, in the order starts 0..n-1 then the polish: objective and the best-so-far parameters
    trace_objective: np.ndarray = field(repr=False)
    trace_best_x: np.ndarray = field(repr=False)
    start_evaluations: list[int] = field(default_factory=list)

    def params_at(self, k: int, radius_range, group) -> tuple[float, np.ndarray]:
        radius, q = to_params(self.trace_best_x[k], radius_range)
        return project(radius, q, group)


def random_starts(n: int, seed: int, radius_range, group: str, index: int = 0) -> np.ndarray:
    """``n`` start vectors: radius uniform in its range, orientation uniform in the fundamental domain."""
    from factory.geometry import sample_fundamental

    rng = np.random.default_rng([seed, index, 17])
    r = rng.uniform(0.0, 1.0, n)
    if group in ("C1", None):
        from scipy.spatial.transform import Rotation

        from factory.geometry import from_rotation

        q = from_rotation(Rotation.random(n, random_state=rng))
    else:
        q = sample_fundamental(rng, n, group=group)
    return np.array([to_vector(radius_range[0] + ri * (radius_range[1] - radius_range[0]), qi, radius_range)
                     for ri, qi in zip(r, q)])


def _use_ray(parallel: str, address: str | None) -> bool:
    if parallel == "local":
        return False
    from cluster.connect import connect

    target = connect(address)
    return parallel == "ray" or target.cpus > 1


def fit_image(target: np.ndarray, model: ForwardModel, settings: FitSettings | None = None,
              index: int = 0) -> FitResult:
    """Monte Carlo simplex fit of one image; ``index`` varies the random starts per image."""
    s = (settings or FitSettings()).check()
    target = np.asarray(target, dtype=np.float64)
    t0 = time.perf_counter()
    spec = model.spec()
    starts = random_starts(s.starts, s.seed, model.radius_range, model.group, index)
    if _use_ray(s.parallel, s.address):
        import ray

        task = ray.remote(num_cpus=1, max_retries=2)(simplex_run)
        ref_t, ref_s = ray.put(target), ray.put(spec)
        runs = ray.get([task.remote(ref_s, ref_t, x0, s.iterations, s.step) for x0 in starts])
    else:
        task = None
        runs = [simplex_run(spec, target, x0, s.iterations, s.step) for x0 in starts]
    ends = [int(np.argmin(r["f"])) for r in runs]
    best_start = int(np.argmin([r["f"][e] for r, e in zip(runs, ends)]))
    if s.polish:
        x_best = runs[best_start]["x"][ends[best_start]]
        step = (s.step[0] / 5, s.step[1] / 5)
        if task is not None:
            import ray

            runs.append(ray.get(task.remote(ref_s, ref_t, x_best, s.polish, step)))
        else:
            runs.append(simplex_run(spec, target, x_best, s.polish, step))
    f = np.concatenate([r["f"] for r in runs])
    x = np.concatenate([r["x"] for r in runs])
    best_idx = np.zeros(len(f), dtype=np.int64)  # index of the best-so-far evaluation
    cur = 0
    for k in range(len(f)):
        if f[k] < f[cur]:
            cur = k
        best_idx[k] = cur
    radius, q = to_params(x[best_idx[-1]], model.radius_range)
    radius, q = project(radius, q, model.group)
    return FitResult(radius=radius, quaternion=q.tolist(), objective=float(f[best_idx[-1]]), simulations=len(f),
                     seconds=time.perf_counter() - t0, best_start=best_start, trace_objective=np.minimum.accumulate(f),
                     trace_best_x=x[best_idx], start_evaluations=[r["evaluations"] for r in runs])


# -- many images, Fig. 4b --------------------------------------------------------------------------
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
    from .artifact import read_description

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
                progress: bool = False) -> dict[str, Any]:
    """Fit every target image; with ``truths`` (radius, q0..q3) score them as in Stielow et al., MLST 2020, Fig. 4b.

    ``network``: a trained scattering model folder; it predicts ``network_images`` (the
    targets as network input; default: the targets themselves) and its error and cost in
    simulations are reported beside the fit's.  Writes ``forward_fit.json`` and ``fig4b.png``
    into ``out`` when given.
    """
    s = (settings or FitSettings()).check()
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
    t_sim = time.perf_counter()
    for _ in range(3):
        model(float(np.mean(model.radius_range)), np.array([1.0, 0.0, 0.0, 0.0]))
    sec_per_sim = (time.perf_counter() - t_sim) / 3
    fits, traces = [], []
    for i, tgt in enumerate(targets):
        res = fit_image(tgt, model, s, index=i)
        fits.append(res)
        if truths is not None:
            traces.append(error_trace(res, truths["radius"][i], [truths[q][i] for q in QUAT], model))
        if progress:
            extra = ""
            if traces:
                extra = f", mean error {100 * traces[-1][-1].mean():.3f} %, max {100 * traces[-1][-1].max():.3f} %"
            print(f"[forward-fit] image {i + 1}/{len(targets)}: {res.simulations} simulations, "
                  f"{res.seconds:.1f} s{extra}", flush=True)
    report: dict[str, Any] = {
        "images": len(targets), "settings": {k: v for k, v in asdict(s).items() if k != "address"},
        "forward_model": {"shape": model.shape, "radius_range": list(model.radius_range), "group": model.group,
                          "config": model.config.model_dump(mode="json") if model.config is not None else "function",
                          "seconds_per_simulation": sec_per_sim},
        "fits": [{"radius": f.radius, "quaternion": f.quaternion, "objective": f.objective, "simulations": f.simulations,
                  "seconds": f.seconds, "best_start": f.best_start} for f in fits],
        "simulations_per_image": float(np.mean([f.simulations for f in fits])),
        "seconds_per_image": float(np.mean([f.seconds for f in fits])),
    }
    curve = None
    if traces:
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
        curve = {"simulations": grid.tolist(), **{k: v.tolist() for k, v in q.items()}}
        after = {}
        for frac in (0.1, 0.25, 0.5, 1.0):  # median error after this many simulations
            mark = int(min(max(round(frac * n), 1), n))
            after[str(mark)] = float(np.median(per[:, mark - 1]))
        report["curve"] = curve
        report["median_error_after"] = after
    if network is not None:
        report["network"] = _network_beside(network, network_images if network_images is not None else targets,
                                            truths, model, sec_per_sim)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if curve is not None:
            report["figure"] = str(plot_fig4b(curve, report.get("network"), out / "fig4b.png"))
        (out / "forward_fit.json").write_text(json.dumps(report, indent=1, default=_jsonable))
    return report


def _network_beside(folder, images, truths, model: ForwardModel, sec_per_sim: float) -> dict[str, Any]:
    from .artifact import ModelError, Predictor

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


def plot_fig4b(curve: dict[str, Any], network: dict[str, Any] | None, path: str | Path) -> Path:
    """Fig. 4b of Stielow et al., MLST 2020: median (line) and 90 % band of the fit error against
    simulations; the network beside."""
    from .evaluate import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
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
    ax.set_xlabel("scattering simulations")
    ax.set_ylabel("mean relative error (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


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
    from .artifact import read_description

    pre = read_description(model_folder).get("preprocessing")
    if not pre or pre.get("name") != "scatter":
        return np.asarray(images, dtype=np.float32)
    from factory.processing.preprocess import apply

    return np.stack([apply(pre, im, {}) for im in images])


# -- stores ------------------------------------------------------------------------------------------
def msft_config_of_store(store) -> dict[str, Any] | None:
    """The ``simulator:`` section of the MSFT store a (processed) store was made from (following lineage)."""
    from factory.store import DatasetStore

    todo, seen = [store], set()
    while todo:
        st = todo.pop()
        cfg = st.meta.get("config", {})
        if isinstance(cfg, dict) and cfg.get("kind") == "msft":
            return cfg.get("simulator")
        for src in st.meta.get("lineage", []):
            p = src.get("path")
            if p and p not in seen:
                seen.add(p)
                try:
                    todo.append(DatasetStore.open(p))
                except StoreError:
                    continue
    return None


def forward_fit_store(store: str | Path, out: str | Path | None = None, *, n: int = 5,
                      indices: list[int] | None = None, settings: FitSettings | None = None,
                      config: Any = None, shape: str = "icosahedron", network: str | Path | None = None,
                      progress: bool = False) -> dict[str, Any]:
    """Fit ``n`` images (the test split first) of an MSFT store, raw or processed with ``scatter``."""
    from factory.store import DatasetStore

    ds = DatasetStore.open(store)
    missing = [k for k in ["radius", *QUAT] if k not in ds.param_names]
    if missing:
        raise StoreError(f"{ds.path}: no label(s) {missing}; forward fitting needs a scattering store (radius, q0..q3)")
    cfg = config if config is not None else msft_config_of_store(ds)
    if cfg is None:
        raise StoreError(f"{ds.path}: cannot find the MSFT simulator settings in the store or its lineage; pass --config")
    pre = ds.meta.get("preprocessing")
    coords = None
    if pre:
        coords = _raw_coords(ds)
    from factory.processing.steps import read_split

    if indices is None:
        done = ds.done_mask()
        split = read_split(ds)
        pool = np.flatnonzero(done & (split == 2)) if split is not None and (split == 2).any() else np.flatnonzero(done)
        indices = pool[:n].tolist()
    idx = np.asarray(indices, dtype=np.int64)
    if len(idx) == 0 or idx.max() >= ds.n_samples:
        raise StoreError(f"{ds.path}: no such samples {indices} (the store has {ds.n_samples})")
    images = np.asarray(ds.images.get_orthogonal_selection((idx,)), dtype=np.float64)
    p = ds.params(["radius", *QUAT])
    truths = {k: v[idx] for k, v in p.items()}
    rr = tuple(_radius_range(ds) or (cfg.get("radius_nm") if isinstance(cfg, dict) else None) or (30.0, 160.0))
    model = ForwardModel(cfg, shape=shape, preprocessing=pre, coords=coords, radius_range=rr)
    rep = forward_fit(images, model, settings, truths=truths, out=out, network=network, progress=progress)
    rep["store"] = str(ds.path)
    rep["indices"] = idx.tolist()
    if out is not None:
        (Path(out) / "forward_fit.json").write_text(json.dumps(rep, indent=1, default=_jsonable))
    return rep


def _radius_range(ds):
    """The radius range the store's simulator sampled (its attributes, else its sources')."""
    from factory.store import DatasetStore

    sim = ds.meta.get("simulator")
    if isinstance(sim, dict) and sim.get("radius_range_nm"):
        return sim["radius_range_nm"]
    if ds.meta.get("radius_range_nm"):
        return ds.meta["radius_range_nm"]
    for src in ds.meta.get("lineage", []):
        try:
            st = DatasetStore.open(src.get("path"))
        except (StoreError, TypeError):
            continue
        v = _radius_range(st)
        if v is not None:
            return v
    return None


def _raw_coords(ds) -> dict[str, np.ndarray] | None:
    from factory.processing.preprocess import frame_coords

    c = frame_coords(ds.meta["preprocessing"])
    return c or None


def _jsonable(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if callable(obj):
        return getattr(obj, "__name__", "function")
    return str(obj)


__all__ = ["FitResult", "FitSettings", "ForwardModel", "error_trace", "fit_image", "forward_fit", "forward_fit_store",
           "msft_config_of_store", "network_cost", "network_input", "objective", "plot_fig4b", "random_starts",
           "relative_error", "simplex_run", "simulate_targets", "to_params", "to_vector"]
