"""Figures of dataset stores: a montage of samples and histograms of the labels.

Axes, titles and colour bars take their quantities and units from the store (coordinate
``units`` attributes, the simulator's label units, the preprocessing description); panels of
an augmented store are titled with the filter that made them.  ``*_figure`` builds the
matplotlib Figure, ``plot_*`` writes it as PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..store import DatasetStore
from .style import axis_label, colorbar, coord_units, image_scale, label_units, plt, save, value_text

#: decades below each image's maximum shown by a log montage
LOG_DECADES = 6.0


def _filter_names(store: DatasetStore) -> list[str] | None:
    names = (store.meta.get("augmentation") or {}).get("filters")
    return [str(n) for n in names] if isinstance(names, list) else None


def _title(store: DatasetStore, i: int, labels: list[str], params: dict, units: dict, filters) -> str:
    parts = []
    for k in labels:
        if k not in params:
            continue
        v = float(params[k][i])
        if k == "augmentation" and filters and 0 <= int(v) < len(filters):
            parts.insert(0, filters[int(v)])
        else:
            parts.append(value_text(k, v, units.get(k)))
    return f"#{i}: " + ", ".join(parts)


def samples_figure(store: DatasetStore, n: int = 8, log: bool = False, labels: list[str] | None = None):
    """The montage of :func:`plot_samples` as a matplotlib Figure."""
    done = np.flatnonzero(store.done_mask())[:n]
    if len(done) == 0:
        raise ValueError(f"{store.path}: no finished samples to plot")
    coords = store.coords()
    cunits = coord_units(store)
    dims = store.meta["image_dims"][1:]
    filters = _filter_names(store)
    labels = list(labels or store.param_names[:3])
    if filters and "augmentation" in store.param_names and "augmentation" not in labels:
        labels.insert(0, "augmentation")
    params = store.params([k for k in labels if k in store.param_names])
    units = label_units(store, list(params))
    scale, already_log = image_scale(store.meta, log)
    log = log and not already_log  # never the log of a log-scaled image
    cols = min(4, len(done))
    rows = int(np.ceil(len(done) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i in zip(axes.flat, done):
        img = np.asarray(store.images[int(i)], dtype=np.float64)
        ax.set_axis_on()
        if log:
            img = np.log10(np.maximum(img / max(img.max(), 1e-300), 10.0**-LOG_DECADES))
        if len(dims) == 2:
            y, x = coords[dims[0]], coords[dims[1]]
            im = ax.imshow(img, origin="lower", extent=(x[0], x[-1], y[0], y[-1]), aspect="auto", cmap="viridis",
                           **({"vmin": -LOG_DECADES, "vmax": 0.0} if log else {}))
            ax.set_ylabel(axis_label(dims[0], cunits[dims[0]]), fontsize=7)
            colorbar(fig, ax, im, scale, fontsize=6)
        else:
            ax.plot(coords[dims[0]], img)
            ax.set_ylabel(scale, fontsize=7)
        ax.set_xlabel(axis_label(dims[-1], cunits[dims[-1]]), fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_title(_title(store, int(i), labels, params, units, filters), fontsize=7)
    fig.suptitle(f"{store.kind}: {store.path.name}", fontsize=9)
    return fig


def plot_samples(
    store: DatasetStore, out: str | Path, n: int = 8, log: bool = False, labels: list[str] | None = None
) -> Path:
    """A montage of the first ``n`` done samples: axes and labels with their units, a colour bar
    naming the scale (log10 of each image over its maximum with ``log``; a log-scaled network
    input is shown as stored), filter names on augmented samples."""
    return save(samples_figure(store, n=n, log=log, labels=labels), out)


def param_hist_figure(store: DatasetStore, names: list[str] | None = None):
    """The histograms of :func:`plot_param_hist` as a matplotlib Figure."""
    done = store.done_mask()
    params = store.params(names)
    units = label_units(store, list(params))
    k = len(params)
    cols = min(4, k)
    rows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols, 2.3 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (name, values) in zip(axes.flat, params.items()):
        ax.set_axis_on()
        ax.hist(values[done], bins=20, color="tab:blue")
        ax.set_xlabel(axis_label(name, units.get(name)), fontsize=7)
        ax.set_ylabel("count", fontsize=7)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
    return fig


def plot_param_hist(store: DatasetStore, out: str | Path, names: list[str] | None = None) -> Path:
    """Histograms of the labels of the done samples (checks the sampling ranges by eye)."""
    return save(param_hist_figure(store, names), out)
