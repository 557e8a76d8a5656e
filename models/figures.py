"""The figures of training and evaluation: loss curves, predicted against true, error histograms.

:func:`history_figure` (loss and validation metrics per epoch), :func:`pred_vs_true_figure`
and :func:`pred_true_panel`, :func:`error_hist_figure`, and :func:`relative_errors_figure`
(Fig. 4a of Stielow et al., MLST 2020); each ``plot_*`` saves its figure.  Matplotlib is
imported when a figure is drawn (:func:`_plt`), not with this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _plt():
    from factory.plots.style import plt

    return plt


def _unit(name: str, units: dict[str, str | None] | None) -> str | None:
    from factory.plots.style import KNOWN_UNITS

    return (units or {}).get(name, KNOWN_UNITS.get(name))


def _groups(history: list[dict[str, Any]], units: dict[str, str | None] | None) -> dict[str, list[str]]:
    """The validation metrics of a history grouped by unit (one axes each): MAE per label unit,
    accuracy apart."""
    from factory.plots.style import unit_text

    keys = sorted({k for h in history for k in h if k.startswith("val_mae_") or k == "val_accuracy"})
    groups: dict[str, list[str]] = {}
    for k in keys:
        if k == "val_accuracy":
            groups.setdefault("validation accuracy (fraction)", []).append(k)
            continue
        u = _unit(k[len("val_mae_"):], units)
        text = f"({unit_text(u)})" if u else "(dimensionless)" if u == "" else ""
        groups.setdefault(f"validation MAE {text}".strip(), []).append(k)
    return groups


def history_figure(history: list[dict[str, Any]], title: str = "", units: dict[str, str | None] | None = None):
    """Loss per epoch (log scale) on one axes, then one axes per unit of the validation MAEs
    (radius in nm apart from the dimensionless quaternions) and one for accuracy; legends
    outside the data."""
    plt = _plt()
    ep = [h["epoch"] for h in history]
    groups = _groups(history, units)
    n = 1 + len(groups)
    fig, axes = plt.subplots(n, 1, figsize=(6.4, 2.3 * n + 0.3), sharex=True, squeeze=False, layout="constrained")
    ax = axes[0, 0]
    ax.plot(ep, [h["train_loss"] for h in history], "o-", ms=3, label="training")
    ax.plot(ep, [h["val_loss"] for h in history], "s-", ms=3, label="validation")
    ax.set_yscale("log")
    ax.set_ylabel("loss (scaled labels,\ndimensionless)", fontsize=8)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(title)
    for ax, (ylabel, keys) in zip(axes[1:, 0], groups.items()):
        for k in keys:
            ax.plot(ep, [h.get(k, np.nan) for h in history], "o-", ms=3, label=k.replace("val_mae_", "").replace("val_", ""))
        if ylabel.startswith("validation MAE"):
            ax.set_yscale("log")
        ax.set_ylabel(ylabel, fontsize=8)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    axes[-1, 0].set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def plot_history(history: list[dict[str, Any]], out: str | Path, title: str = "",
                 units: dict[str, str | None] | None = None) -> Path:
    """loss.png: see :func:`history_figure` (``units``: of the labels; default the known ones)."""
    from factory.plots import save

    return save(history_figure(history, title, units), out)


def pred_true_panel(ax, t: np.ndarray, p: np.ndarray, label: str, title: str, *, unit: str | None = None,
                    mean_predictor_mae: float | None = None, **title_kw) -> bool:
    """Predicted against true ``label`` (axes in its ``unit``, default the known one) on ``ax``,
    with the diagonal; a title in red, saying so, when the predictions are no better than the
    mean predictor (MAE >= ``mean_predictor_mae``).  Returns whether it was flagged."""
    from factory.plots.style import axis_label

    unit = unit if unit is not None else _unit(label, None)
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.scatter(t, p, s=6, alpha=0.6)
    ax.set_xlabel(axis_label(label, unit, "true "))
    ax.set_ylabel(axis_label(label, unit, "predicted "))
    worse = mean_predictor_mae is not None and float(np.mean(np.abs(p - t))) >= mean_predictor_mae
    if worse:
        title = f"{title}\nworse than the mean predictor (MAE {mean_predictor_mae:.3g})"
        title_kw = {**title_kw, "color": "tab:red"}
    ax.set_title(title, **title_kw)
    return worse


def pred_vs_true_figure(true: dict[str, np.ndarray], pred: dict[str, np.ndarray], title: str = "",
                        units: dict[str, str | None] | None = None,
                        mean_predictor_mae: dict[str, float | None] | None = None):
    """One predicted-vs-true panel per label, MAE with its unit in the title; a label whose MAE is
    not below the mean predictor's is flagged in red."""
    from factory.plots.style import unit_text

    plt = _plt()
    names = list(true)
    fig, axes = plt.subplots(1, len(names), figsize=(3.5 * len(names), 3.6), squeeze=False, layout="constrained")
    for ax, n in zip(axes[0], names):
        u = _unit(n, units)
        mae = float(np.mean(np.abs(pred[n] - true[n])))
        pred_true_panel(ax, true[n], pred[n], n, f"{n}: MAE {mae:.3g} {unit_text(u) if u not in (None, 'code') else ''}".strip(),
                        unit=u, mean_predictor_mae=(mean_predictor_mae or {}).get(n), fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def plot_pred_vs_true(true: dict[str, np.ndarray], pred: dict[str, np.ndarray], out: str | Path,
                      title: str = "", units: dict[str, str | None] | None = None,
                      mean_predictor_mae: dict[str, float | None] | None = None) -> Path:
    from factory.plots import save

    return save(pred_vs_true_figure(true, pred, title, units, mean_predictor_mae), out)


def error_hist_figure(true: dict[str, np.ndarray], pred: dict[str, np.ndarray],
                      units: dict[str, str | None] | None = None):
    """Histograms of predicted - true per label, in the label's unit, counts on y."""
    from factory.plots.style import axis_label

    plt = _plt()
    names = list(true)
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.1), squeeze=False, layout="constrained")
    for ax, n in zip(axes[0], names):
        ax.hist(pred[n] - true[n], bins=40)
        ax.set_xlabel(axis_label(n, _unit(n, units), "predicted $-$ true "))
        ax.set_ylabel("count")
    return fig


def plot_error_hist(true: dict[str, np.ndarray], pred: dict[str, np.ndarray], out: str | Path,
                    units: dict[str, str | None] | None = None) -> Path:
    from factory.plots import save

    return save(error_hist_figure(true, pred, units), out)


def relative_errors_figure(mean: np.ndarray, mx: np.ndarray):
    """Fig. 4a of Stielow et al. (2020): histograms of the per-image mean and max relative error
    (%, log axis with ticks at 1, 2 and 5 of each decade)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.4), layout="constrained")
    allv = np.concatenate([mean, mx]) * 100
    lo = max(1e-3, float(np.percentile(allv, 0.5)) if len(allv) else 1e-2)
    bins = np.logspace(np.log10(lo), np.log10(max(allv.max() if len(allv) else 1.0, lo * 10)), 40)
    ax.hist(np.clip(mean * 100, bins[0], None), bins=bins, alpha=0.7, color="tab:blue", label="mean error")
    ax.hist(np.clip(mx * 100, bins[0], None), bins=bins, alpha=0.6, color="tab:red", label="max error")
    ax.axvline(np.median(mean) * 100, color="tab:blue", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlim(bins[0], bins[-1])
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # >= 3 ticks in the >= 1 decade shown
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("relative prediction error (%)")
    ax.set_ylabel("count (test images)")
    ax.set_title(f"median mean error {np.median(mean) * 100:.2f} %")
    ax.legend()
    return fig


def plot_relative_errors(mean: np.ndarray, mx: np.ndarray, out: str | Path) -> Path:
    """relative-errors.png: see :func:`relative_errors_figure`."""
    from factory.plots import save

    return save(relative_errors_figure(mean, mx), out)
