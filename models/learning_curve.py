"""Learning curves (Shvetsov-Shilovski & Lein, PRA 2023, Fig. 2b): train at several N, fit MAE = a N^b + c.

Every model is scored on the same held-out samples (the validation split does not depend
on N; ``data.max_train = N`` keeps a seeded subset of the training split).  The fit gives
the N needed for a target MAE: ``N = ((target - c) / a)^(1 / b)`` (infinite when the target
is at or below the asymptote c).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from factory.errors import ConfigError
from factory.outputs import check_disjoint, staged_output, user_path
from factory.store import DatasetStore

from .evaluate import evaluate
from .figures import _plt
from .train import train
from .train_config import TrainConfig
from .train_job import training_split
from .train_runs import MANIFEST_VERSION, owned_output, write_manifest

SCHEMA = "factory.learning-curve"
#: a learning-curve folder: its manifest, one run per N, the summary and the figure
is_learning_curve_folder = owned_output(SCHEMA, frozenset({"learning-curve.json", "learning-curve.png"}),
                                        pattern=r"N-\d{6,}")

PAPER_FIT = (7.241, -0.526, 0.075)  # Shvetsov-Shilovski & Lein, PRA 2023, Fig. 2b (R, I and CEP random)


def power_law(n, a, b, c):
    return a * np.power(n, b) + c


def fit_power_law(n, mae) -> tuple[float, float, float]:
    """Least-squares (a, b, c) of MAE = a N^b + c with a > 0, b < 0, c >= 0 (needs >= 3 points)."""
    from scipy.optimize import OptimizeWarning, curve_fit

    n, mae = np.asarray(n, dtype=np.float64), np.asarray(mae, dtype=np.float64)
    if len(n) < 3:
        raise ConfigError(f"a learning-curve fit needs at least 3 sizes, got {len(n)}")
    b0 = -0.5
    c0 = max(0.0, float(mae.min()) * 0.5)
    a0 = max(1e-9, float((mae[0] - c0) / n[0] ** b0))
    with warnings.catch_warnings():  # 3 points determine the fit exactly: no covariance
        warnings.simplefilter("ignore", OptimizeWarning)
        popt, _ = curve_fit(power_law, n, mae, p0=(a0, b0, c0), bounds=([0.0, -5.0, 0.0], [np.inf, 0.0, np.inf]),
                            maxfev=20000)
    return tuple(float(v) for v in popt)


def n_for_target(a: float, b: float, c: float, target: float) -> float:
    """Training-set size at which the fit reaches ``target`` (inf if never)."""
    if target <= c or a <= 0 or b >= 0:
        return math.inf
    return float(((target - c) / a) ** (1.0 / b))


def learning_curve(config: TrainConfig, store: str | Path, out: str | Path, sizes: list[int], *,
                   target: float | None = None, label: str | None = None, overwrite: bool = False,
                   progress: bool = True, address: str | None = None) -> dict[str, Any]:
    """Train ``config`` at each N in ``sizes`` on ``store``; fit and plot; returns the summary.

    The whole folder is built in a hidden sibling and renamed into place when complete;
    ``overwrite`` replaces only a learning-curve folder the project made.

    Parameters
    ----------
    config : TrainConfig
        The training recipe; ``data.max_train`` is set to each N.
    store : str or pathlib.Path
        The processed store (a local path); every model is scored on its same held-out
        samples.
    out : str or pathlib.Path
        The learning-curve folder: one run ``N-<n>/`` per size, ``learning-curve.json`` and
        ``learning-curve.png``.
    sizes : list of int
        Training-set sizes N, each between the batch size and the training split's size.
    target : float, optional
        A target MAE (in the label's unit): the fit's N to reach it is reported.
    label : str, optional
        The label scored; default the config's first label.
    overwrite : bool, optional
        Replace an existing learning-curve folder made by factory.
    progress : bool, optional
        Show progress bars.
    address : str, optional
        The Ray cluster of the training runs; default ``RAY_ADDRESS``, else an embedded
        local Ray.

    Returns
    -------
    dict
        ``label``, ``unit``, ``held_out``, ``points`` (``N``, ``mae``, ``wall_s``,
        ``epochs`` per size), with three or more sizes ``fit`` (``a``, ``b``, ``c`` of
        MAE = a N^b + c) and with ``target`` the N it needs, and ``figure``.

    Raises
    ------
    ConfigError
        A size out of range, or a label the config does not train.
    StoreError
        The store is missing, incomplete or damaged.
    OutputError
        ``out`` overlaps the store or exists and is not a learning-curve folder to replace.
    """
    store, out = user_path(store), user_path(out)
    check_disjoint(out, [store])
    ds = DatasetStore.open(store)
    split = training_split(ds, config.data.val_fraction, config.data.split_seed)
    sizes = sorted({int(s) for s in sizes})
    if not sizes or sizes[0] < config.optim.batch_size or sizes[-1] > len(split.train):
        raise ConfigError(f"sizes {sizes} must lie in [batch size {config.optim.batch_size}, "
                          f"training split {len(split.train)}]")
    label = label or config.data.labels[0]
    if label not in config.data.labels:
        raise ConfigError(f"--label {label!r}: the config trains {config.data.labels}")
    held = split.held_out()
    points = []
    with staged_output(out, overwrite=overwrite, what="learning-curve folder", recognise=is_learning_curve_folder) as tmp:
        tmp.mkdir()
        write_manifest(tmp, {"schema": SCHEMA, "version": MANIFEST_VERSION, "store": str(store), "sizes": sizes})
        for n in sizes:
            cfg = config.model_copy(update={"data": config.data.model_copy(update={"max_train": n})})
            res = train(cfg, store, tmp / f"N-{n:06d}", progress=progress, address=address)
            ev = evaluate(res.model, store, None, indices=held)
            points.append({"N": n, "mae": ev["per_label"][label]["mae"], "wall_s": res.wall_s,
                           "epochs": res.epochs_done})
        from factory.plots import label_units

        summary: dict[str, Any] = {"label": label, "unit": label_units(ds, [label])[label], "held_out": int(len(held)),
                                   "points": points}
        if len(points) >= 3:
            a, b, c = fit_power_law([p["N"] for p in points], [p["mae"] for p in points])
            summary["fit"] = {"a": a, "b": b, "c": c}
            if target is not None:
                summary["target"] = {"mae": target, "N": n_for_target(a, b, c, target)}
        plot_learning_curve(summary, tmp / "learning-curve.png")
        summary["figure"] = str(out / "learning-curve.png")
        (tmp / "learning-curve.json").write_text(json.dumps(summary, indent=1))
    return summary


def learning_curve_figure(summary: dict[str, Any]):
    """MAE (in the label's unit) against the training-set size, the fit and the paper's."""
    from factory.plots.style import KNOWN_UNITS, axis_label

    plt = _plt()
    n = np.array([p["N"] for p in summary["points"]], dtype=float)
    m = np.array([p["mae"] for p in summary["points"]])
    fig, ax = plt.subplots(figsize=(5.4, 3.7), layout="constrained")
    ax.plot(n, m, "o", label="measured")
    grid = np.logspace(np.log10(n.min()), np.log10(max(n.max(), summary.get("target", {}).get("N", 0) or 0) * 1.2
                                                    if np.isfinite(summary.get("target", {}).get("N", np.inf)) else n.max() * 10), 100)
    if "fit" in summary:
        f = summary["fit"]
        ax.plot(grid, power_law(grid, f["a"], f["b"], f["c"]), "-",
                label=f"fit {f['a']:.3g} N^{f['b']:.3f} + {f['c']:.3g}")
    if summary["label"] == "R":
        ax.plot(grid, power_law(grid, *PAPER_FIT), ":", color="gray",
                label="Shvetsov-Shilovski & Lein, PRA 2023, Fig. 2b (R, I, CEP)")
    if "target" in summary:
        ax.axhline(summary["target"]["mae"], color="k", lw=0.6, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training images N (count)")
    label = summary["label"]
    ax.set_ylabel(axis_label(label, summary.get("unit", KNOWN_UNITS.get(label)), "MAE of "))
    ax.legend(fontsize=8)
    return fig


def plot_learning_curve(summary: dict[str, Any], path: str | Path) -> Path:
    from factory.plots import save

    return save(learning_curve_figure(summary), path)
