"""The Monte Carlo simplex: Nelder-Mead runs from random starts (one piece of work each, on an
executor), the best end point optionally polished, every objective evaluation recorded."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from factory.compute import PARALLEL, Executor, resolve_executor
from factory.errors import ConfigError

from .model import ForwardModel, project, objective, to_params, to_vector


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


@dataclass
class FitSettings:
    starts: int = 50                 # random starts (the paper: 50)
    iterations: int = 50             # Nelder-Mead iterations per start (the paper: 50)
    polish: int = 0                  # extra iterations from the best start (0: none)
    seed: int = 0
    step: tuple[float, float] = (0.05, 0.1)  # initial simplex: radius (fraction of range), angle (rad)
    parallel: str = "auto"           # where the starts run: auto, local, ray, dask (factory.compute.resolve_executor)
    address: str | None = None

    def check(self) -> "FitSettings":
        if self.starts < 1 or self.iterations < 1 or self.polish < 0:
            raise ConfigError(f"forward fit: need starts >= 1, iterations >= 1, polish >= 0 (got {self.starts}, "
                              f"{self.iterations}, {self.polish})")
        if self.parallel not in PARALLEL:
            raise ConfigError(f"parallel {self.parallel!r}: choose {', '.join(PARALLEL)}")
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


def fit_image(target: np.ndarray, model: ForwardModel, settings: FitSettings | None = None,
              index: int = 0, executor: Executor | None = None) -> FitResult:
    """Monte Carlo simplex fit of one image; ``index`` varies the random starts per image.

    The starts run on ``executor`` (default: the one ``settings.parallel`` resolves to), one
    piece each, then the polish as one more piece."""
    s = (settings or FitSettings()).check()
    target = np.asarray(target, dtype=np.float64)
    t0 = time.perf_counter()
    shared = (model.spec(), target)
    starts = random_starts(s.starts, s.seed, model.radius_range, model.group, index)
    ex = executor if executor is not None else resolve_executor(s.parallel, s.address)
    try:
        runs = ex.map(simplex_run, [(x0, s.iterations, s.step) for x0 in starts], shared=shared,
                      name="factory.simplex")
        ends = [int(np.argmin(r["f"])) for r in runs]
        best_start = int(np.argmin([r["f"][e] for r, e in zip(runs, ends)]))
        if s.polish:
            x_best = runs[best_start]["x"][ends[best_start]]
            step = (s.step[0] / 5, s.step[1] / 5)
            runs += ex.map(simplex_run, [(x_best, s.polish, step)], shared=shared, name="factory.simplex")
    finally:
        if executor is None:
            ex.close()
    return _result(runs, model, best_start, time.perf_counter() - t0)


def _result(runs: list[dict[str, Any]], model: ForwardModel, best_start: int, seconds: float) -> FitResult:
    """The runs' evaluations in order, the best-so-far point after each, and the best end point."""
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
                     seconds=seconds, best_start=best_start, trace_objective=np.minimum.accumulate(f),
                     trace_best_x=x[best_idx], start_evaluations=[r["evaluations"] for r in runs])


__all__ = ["FitResult", "FitSettings", "fit_image", "random_starts", "simplex_run"]
