"""Figures of dataset stores (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .store import DatasetStore  # noqa: E402


def plot_samples(
    store: DatasetStore, out: str | Path, n: int = 8, log: bool = False, labels: list[str] | None = None
) -> Path:
    """A montage of the first ``n`` done samples with their labels in the titles."""
    done = np.flatnonzero(store.done_mask())[:n]
    if len(done) == 0:
        raise ValueError(f"{store.path}: no finished samples to plot")
    coords = store.coords()
    dims = store.meta["image_dims"][1:]
    params = store.params()
    labels = labels or store.param_names[:3]
    cols = min(4, len(done))
    rows = int(np.ceil(len(done) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i in zip(axes.flat, done):
        img = store.images[int(i)]
        if log:
            img = np.log10(np.maximum(img / max(img.max(), 1e-300), 1e-6))
        if len(dims) == 2:
            y, x = coords[dims[0]], coords[dims[1]]
            ax.imshow(img, origin="lower", extent=(x[0], x[-1], y[0], y[-1]), aspect="auto", cmap="viridis")
            ax.set_axis_on()
            ax.set_xlabel(dims[1], fontsize=7)
            ax.set_ylabel(dims[0], fontsize=7)
            ax.tick_params(labelsize=6)
        else:
            ax.plot(coords[dims[0]], img)
            ax.set_axis_on()
        title = ", ".join(f"{k}={params[k][i]:.3g}" for k in labels if k in params)
        ax.set_title(f"#{i}: {title}", fontsize=7)
    fig.suptitle(f"{store.kind}: {store.path.name}", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_param_hist(store: DatasetStore, out: str | Path, names: list[str] | None = None) -> Path:
    """Histograms of the labels of the done samples (checks the sampling ranges by eye)."""
    done = store.done_mask()
    params = store.params(names)
    k = len(params)
    cols = min(4, k)
    rows = int(np.ceil(k / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (name, values) in zip(axes.flat, params.items()):
        ax.set_axis_on()
        ax.hist(values[done], bins=20, color="tab:blue")
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
