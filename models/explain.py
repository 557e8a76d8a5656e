"""Explanations of the networks (Shvetsov-Shilovski & Lein, PRA 2023, Sec. VI) through captum, and the
occlusion dictionary.

- :func:`attribute`: per-pixel maps of (N, H, W) images for a trained network (the 7-class
  R classifier or a regression network):

  * ``occlusion`` (``captum.attr.Occlusion``): a window (default 1/8 of the image per side,
    stride half a window) filled with the training images' mean (zero after the network's
    input standardisation: a "gray square") slides over the image; the map is the drop of the
    class probability (classifier; the paper's occlusion sensitivity) or of the predicted
    value (regression, in label units) averaged over the windows covering each pixel;
  * ``gradcam`` (``captum.attr.LayerGradCam``) on the activation of the last convolutional
    stage (before its pooling), ReLU-ed and upsampled bilinearly to the image;
  * ``lime`` (``captum.attr.Lime``) on a grid of superpixels (default 16 x 16 cells), the
    perturbed superpixels set to the mean, ``lime_samples`` perturbations per image.

  The target is the predicted class (or a given one) for a classifier and the output of
  ``label`` for a regression network.  :func:`save_overlays` writes PNG overlays.

- :func:`occlusion_dictionary`: the "dictionary" classifier of Shvetsov-Shilovski & Lein, PRA 2023.
  From the classifier's held-out images it picks ``per_cell`` images per (R class x intensity third), takes the
  part of each whose map exceeds ``threshold`` (fraction of the map's maximum, or absolute
  probability drop with ``relative=False``) and classifies every other held-out image by
  the entry whose part is nearest in MSE.  The control replaces every part by a random region
  of the same area (the top pixels of a smoothed random field, so the regions are blob-like
  as the occlusion parts are), ``n_random`` times.  Grad-CAM and LIME dictionaries are the
  same with their maps (``method``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from factory.errors import ConfigError, StoreError
from factory.outputs import ResultFolder

METHODS = ("occlusion", "gradcam", "lime")


# -- the network as a forward function ------------------------------------------------------------------
class Explained:
    """A loaded network, its task and the forward function captum calls."""

    def __init__(self, model: str | Path | Any, label: str | None = None):
        import torch

        from .artifact import ModelError, load_network

        if isinstance(model, (str, Path)):
            self.folder = str(model)
            self.net, self.card = load_network(model, "cpu")
            self.task, labels, shape = self.card.task, list(self.card.labels), list(self.card.input.shape)
        else:  # a bare torch module: a classifier of any input
            self.folder, self.card = None, None
            self.net, self.task, labels, shape = model, "classify", [], None
        self.net.eval()
        self.shape = shape
        if shape is not None and len(shape) != 2:
            raise ModelError(f"{model}: takes {len(shape)}D inputs; explanations are for 2D image networks")
        if self.task == "regress":
            label = label or (labels[0] if labels else None)
            if label not in labels:
                raise ModelError(f"{model}: predicts {labels}; no output {label!r}")
            self.output = labels.index(label)
        else:
            self.output = None
        self.label = label
        norm = getattr(self.net, "norm", None)
        self.fill = float(norm.mean) if norm is not None else 0.0  # the "gray square": the training mean
        self.torch = torch
        # a regression output in label units = raw * scale + offset (the card's label scaling)
        scaling = self.card.scaling() if self.card is not None and self.task == "regress" else None
        self.scale, self.offset = ((float(scaling.scale[self.output]), float(scaling.offset[self.output]))
                                   if scaling is not None else (1.0, 0.0))

    def model_card(self):
        """The model card (a model folder's); ModelError for a bare module."""
        if self.card is None:
            from .artifact import ModelError

            raise ModelError("a bare torch module has no model card; pass a model folder")
        return self.card

    def forward(self, x):
        out = self.net(x)
        if self.task == "classify":
            return self.torch.softmax(out, dim=1)
        return out

    def predict(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        """Class index (classifier) or the explained output (regression, in label units: the
        network's scaled output through the card's label scaling) per image."""
        with self.torch.no_grad():
            outs = [self.forward(self.torch.from_numpy(np.asarray(images[s:s + batch], dtype=np.float32)))
                    for s in range(0, len(images), batch)]
        out = self.torch.cat(outs).numpy()
        return out.argmax(1) if self.task == "classify" else out[:, self.output] * self.scale + self.offset

    def probabilities(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        with self.torch.no_grad():
            return self.torch.cat([self.forward(self.torch.from_numpy(np.asarray(images[s:s + batch], dtype=np.float32)))
                                   for s in range(0, len(images), batch)]).numpy()

    def last_conv_layer(self):
        """The last convolutional stage's activation (before its pooling): Grad-CAM's usual layer."""
        nn = self.torch.nn
        last = self.net.feature_blocks()[-1]
        mods = list(last.modules())
        if not any(isinstance(m, nn.Conv2d) for m in mods):
            from .artifact import ModelError

            raise ModelError("Grad-CAM needs a convolutional network (no Conv2d in its last feature block)")
        acts = [m for m in mods if isinstance(m, (nn.ReLU, nn.Tanh))]
        return acts[-1] if acts else last


def default_window(shape: tuple[int, int]) -> tuple[int, int]:
    return max(1, shape[0] // 8), max(1, shape[1] // 8)


def attribute(model: str | Path | Explained, images: np.ndarray, method: str = "occlusion", *,
              target: np.ndarray | int | None = None, label: str | None = None,
              window: tuple[int, int] | None = None, stride: tuple[int, int] | None = None,
              lime_cells: tuple[int, int] = (16, 16), lime_samples: int = 200, seed: int = 0,
              batch: int = 64) -> np.ndarray:
    """(N, H, W) float32 attribution maps (see the module docstring)."""
    import torch
    from captum.attr import LayerAttribution, LayerGradCam, Lime, Occlusion

    if method not in METHODS:
        raise ConfigError(f"explanation method {method!r}: choose {', '.join(METHODS)}")
    ex = model if isinstance(model, Explained) else Explained(model, label)
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    shape = ex.shape
    if shape is not None and list(x.shape[1:]) != list(shape):
        raise StoreError(f"the images are {x.shape[1]} x {x.shape[2]} but the network takes {shape[0]} x {shape[1]}")
    h, w = x.shape[1:]
    if ex.task == "classify":
        tgt = ex.predict(x) if target is None else np.broadcast_to(np.asarray(target), (len(x),))
    else:
        tgt = np.full(len(x), ex.output)
    tgt = [int(t) for t in tgt]
    xt = torch.from_numpy(x)
    torch.manual_seed(seed)
    if method == "occlusion":
        win = tuple(window or default_window((h, w)))
        st = tuple(stride or (max(1, win[0] // 2), max(1, win[1] // 2)))
        occ = Occlusion(ex.forward)
        maps = [occ.attribute(xt[i:i + 1], sliding_window_shapes=win, strides=st, baselines=ex.fill, target=tgt[i],
                              perturbations_per_eval=batch).detach().numpy()[0] for i in range(len(x))]
    elif method == "gradcam":
        layer = ex.last_conv_layer()
        gc = LayerGradCam(ex.forward, layer)
        maps = []
        for i in range(len(x)):
            a = gc.attribute(xt[i:i + 1], target=tgt[i], relu_attributions=True)
            a = LayerAttribution.interpolate(a, (h, w), interpolate_mode="bilinear")
            maps.append(a.detach().numpy()[0, 0])
    else:
        cy, cx = lime_cells
        rows = np.minimum(np.arange(h) * cy // h, cy - 1)
        cols = np.minimum(np.arange(w) * cx // w, cx - 1)
        mask = torch.from_numpy((rows[:, None] * cx + cols[None, :]).astype(np.int64))[None]
        lime = Lime(ex.forward)
        maps = [lime.attribute(xt[i:i + 1], baselines=ex.fill, target=tgt[i], feature_mask=mask, n_samples=lime_samples,
                               perturbations_per_eval=batch).detach().numpy()[0] for i in range(len(x))]
    # each method is linear in the explained output: a regression map in label units (the card's scale)
    return (np.asarray(maps, dtype=np.float64) * ex.scale).astype(np.float32)


def map_label(method: str, ex: Explained, unit: str | None = None) -> str:
    """What a map's colour bar shows, with its unit."""
    from factory.plots.style import axis_label

    what = "probability of the class" if ex.task == "classify" else axis_label(ex.label, unit, "predicted ")
    return {"occlusion": f"occlusion: drop of {what}",
            "gradcam": "Grad-CAM (arb. u., ReLU of the weighted activation)",
            "lime": f"LIME weight: change of {what}"}.get(method, f"attribution ({what})")


def overlay_figure(image: np.ndarray, m: np.ndarray, *, title: str | None = None, alpha: float = 0.5,
                   map_label: str = "attribution (arb. u.)", fontsize: float = 8, frame: dict | None = None):
    """One image (gray) with its map over it (magma, or a diverging map for signed maps;
    ``alpha``) and the map's colour bar; ``frame``: the image's axes (:func:`image_frame`)."""
    from .figures import _plt

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 5 * image.shape[0] / image.shape[1] + 0.7), layout="constrained")
    _overlay(fig, ax, image, m, alpha, map_label, fontsize, frame)
    if title:
        ax.set_title(title, fontsize=fontsize)
    return fig


def montage_figure(images: np.ndarray, maps: np.ndarray, *, titles: list[str] | None = None, alpha: float = 0.5,
                   map_label: str = "attribution (arb. u.)", n: int = 12, frame: dict | None = None):
    """Up to ``n`` overlays in a grid, each with its colour bar."""
    from .figures import _plt

    plt = _plt()
    n = min(len(images), n)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows * images.shape[1] / images.shape[2] + 0.8),
                             squeeze=False, layout="constrained")
    for k, ax in enumerate(axes.ravel()):
        if k < n:
            _overlay(fig, ax, images[k], maps[k], alpha, map_label, 6, frame)
            if titles:
                ax.set_title(titles[k], fontsize=7)
        else:
            ax.axis("off")
    return fig


def save_overlays(images: np.ndarray, maps: np.ndarray, out: str | Path, *, titles: list[str] | None = None,
                  prefix: str = "explain", alpha: float = 0.5, map_label: str = "attribution (arb. u.)",
                  frame: dict | None = None) -> list[Path]:
    """One PNG per image: the image in gray with the map over it (magma, ``alpha``, a colour bar
    named ``map_label``), and a montage."""
    from factory.plots import save

    folder = out if isinstance(out, ResultFolder) else ResultFolder(out, overlay_names(prefix, len(images)))
    paths = [save(overlay_figure(im, m, title=titles[i] if titles else None, alpha=alpha, map_label=map_label,
                                 frame=frame), folder.file(f"{prefix}-{i:03d}.png"), dpi=90)
             for i, (im, m) in enumerate(zip(images, maps))]
    if len(images):
        paths.append(save(montage_figure(images, maps, titles=titles, alpha=alpha, map_label=map_label, frame=frame),
                          folder.file(f"{prefix}-montage.png"), dpi=90))
    return paths


def overlay_names(prefix: str, n: int) -> list[str]:
    """The files :func:`save_overlays` writes for ``n`` images."""
    return [f"{prefix}-{i:03d}.png" for i in range(n)] + ([f"{prefix}-montage.png"] if n else [])


def image_frame(store) -> dict | None:
    """The extent and axis labels (with units) of a store's 2D images, for the overlays."""
    from factory.plots.style import axis_label, coord_units

    dims = store.meta["image_dims"][1:]
    if len(dims) != 2:
        return None
    c, u = store.coords(), coord_units(store)
    y, x = c[dims[0]], c[dims[1]]
    return {"extent": (float(x[0]), float(x[-1]), float(y[0]), float(y[-1])),
            "xlabel": axis_label(dims[1], u[dims[1]]), "ylabel": axis_label(dims[0], u[dims[0]])}


def _overlay(fig, ax, image, m, alpha, map_label, fontsize, frame=None):
    from factory.plots.style import colorbar

    frame = frame or {"xlabel": "input column (px)", "ylabel": "input row (px)"}
    kw = {"origin": "lower", "aspect": "auto", "extent": frame.get("extent")}
    ax.imshow(image, cmap="gray", **kw)
    lim = float(np.max(np.abs(m))) or 1.0
    signed = m.min() < 0  # a signed map on a diverging map centred on zero, else magma from zero
    im = ax.imshow(m, cmap="RdBu_r" if signed else "magma", alpha=alpha, vmin=-lim if signed else 0.0, vmax=lim, **kw)
    colorbar(fig, ax, im, map_label, fontsize=fontsize)
    ax.set_xlabel(frame["xlabel"], fontsize=fontsize)
    ax.set_ylabel(frame["ylabel"], fontsize=fontsize)
    ax.tick_params(labelsize=max(fontsize - 2, 5))


def explain_store(model: str | Path, store: str | Path, out: str | Path, *, method: str = "occlusion", n: int = 8,
                  indices: list[int] | None = None, label: str | None = None, **kw) -> dict[str, Any]:
    """Maps of ``n`` held-out images of ``store`` (or ``indices``) as PNG overlays and maps.npz."""
    from factory.store import DatasetStore

    from .evaluate import select_samples

    ex = Explained(model, label)
    card = ex.model_card()
    ds = DatasetStore.open(store)
    shape = list(card.input.shape)
    if list(ds.images.shape[1:]) != list(shape):
        raise StoreError(f"{ds.path}: images are {list(ds.images.shape[1:])} but the model takes {shape}; "
                         "explain it on a store preprocessed like its training store")
    if indices is None:
        pool, which = select_samples(ds, card, "auto")
        if len(pool) == 0:
            raise StoreError(f"{ds.path}: no images to explain ({which} is empty); use a store with done samples")
        idx = np.asarray(pool[:n], dtype=np.int64)
    else:
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) == 0 or idx.min() < 0 or idx.max() >= ds.n_samples:
            raise StoreError(f"{ds.path}: sample indices must lie in 0..{ds.n_samples - 1}")
    folder = ResultFolder(out, [*overlay_names(method, len(idx)), f"{method}-maps.npz", f"{method}.json"])
    images = np.asarray(ds.images.get_orthogonal_selection((idx,)), dtype=np.float32)
    t0 = time.perf_counter()
    maps = attribute(ex, images, method, **kw)
    dt = time.perf_counter() - t0
    from factory.plots import label_units, value_text

    pred = ex.predict(images)  # label units (the card's scaling undone)
    names = [n for n in card.labels if n in ds.param_names]
    truth = ds.params(names) if names else {}
    units = label_units(ds, list(card.labels))
    titles = []
    for j, i in enumerate(idx):
        t = ", ".join(value_text(k, truth[k][i], units.get(k)) for k in names)
        p = f"class {int(pred[j])}" if ex.task == "classify" else f"predicted {value_text(ex.label, pred[j], units.get(ex.label))}"
        titles.append(f"#{int(i)} {method}: {p} (true {t})")
    pngs = save_overlays(images, maps, folder, titles=titles, prefix=method, frame=image_frame(ds),
                         map_label=map_label(method, ex, units.get(ex.label) if ex.label else None))
    maps_file = folder.savez(f"{method}-maps.npz", index=idx, maps=maps, prediction=pred)
    res = {"model": str(model), "store": str(ds.path), "method": method, "samples": idx.tolist(),
           "seconds_per_image": dt / len(idx), "figures": [str(p) for p in pngs], "maps": str(maps_file),
           "titles": titles}
    folder.write_text(f"{method}.json", json.dumps(res, indent=1))
    return res


# -- the occlusion dictionary --------------------------------------------------------------------------
def random_masks(areas: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, smooth: float) -> np.ndarray:
    """Masks with exactly ``areas[i]`` pixels each: the top pixels of a Gaussian-smoothed random field."""
    from scipy.ndimage import gaussian_filter

    out = np.zeros((len(areas), shape[0] * shape[1]), dtype=bool)
    for i, a in enumerate(areas):
        field = gaussian_filter(rng.standard_normal(shape), smooth, mode="wrap").ravel()
        out[i, np.argsort(-field, kind="stable")[: int(a)]] = True
    return out.reshape(len(areas), *shape)


def dictionary_classify(images: np.ndarray, masks: np.ndarray, parts: np.ndarray, classes: np.ndarray,
                        batch: int = 256) -> np.ndarray:
    """Class of the entry whose masked part is nearest (MSE over its mask) to each image."""
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    m = masks.reshape(len(masks), -1).astype(np.float64)
    z = (parts.reshape(len(parts), -1) * m).astype(np.float64)
    area = np.maximum(m.sum(1), 1.0)
    zz = (z * z).sum(1)
    out = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), batch):
        xb = x[s:s + batch]
        mse = ((xb * xb) @ m.T - 2.0 * (xb @ z.T) + zz[None]) / area[None]
        out[s:s + batch] = classes[np.argmin(mse, axis=1)]
    return out


def occlusion_dictionary(model: str | Path, store: str | Path, out: str | Path | None = None, *,
                         method: str = "occlusion", per_cell: int = 3, threshold: float = 0.2, relative: bool = True,
                         intensity_label: str = "intensity", intensity_bins: int = 3, n_random: int = 10,
                         max_test: int | None = None, seed: int = 0, window: tuple[int, int] | None = None,
                         stride: tuple[int, int] | None = None, lime_samples: int = 200,
                         progress: bool = False) -> dict[str, Any]:
    """The dictionary classifier of Shvetsov-Shilovski & Lein, PRA 2023, from ``method`` maps, against
    random areas (see the module docstring)."""
    from .artifact import ModelError

    names = [f"dictionary-{method}{ext}" for ext in (".png", ".npz", ".json")]
    folder = ResultFolder(out, names) if out is not None else None  # before any work
    ex = Explained(model)
    if ex.task != "classify":
        raise ModelError(f"{model}: a {ex.task} model; the dictionary needs the R classifier "
                         "(factory train pmd-classifier/small ...)")
    ds, pool, which = _held_out_pool(ex, store)
    cl = ex.model_card().classes
    cls, chosen, rest = _choose_entries(ds, cl, pool, which, intensity_label, intensity_bins, per_cell, max_test, seed)
    shape = list(ex.shape)
    dict_idx, test_idx = pool[chosen], pool[rest]
    read = lambda idx: np.asarray(ds.images.get_orthogonal_selection((np.asarray(idx),)), dtype=np.float32)
    dict_imgs, test_imgs = read(dict_idx), read(test_idx)
    t0 = time.perf_counter()
    maps = attribute(ex, dict_imgs, method, target=cls[chosen], window=window, stride=stride,
                     lime_samples=lime_samples, seed=seed) if len(dict_imgs) else np.zeros((0, *shape))
    t_maps = time.perf_counter() - t0
    lim = threshold * maps.reshape(len(maps), -1).max(1)[:, None, None] if relative else threshold
    masks = maps > lim
    keep = masks.reshape(len(masks), -1).sum(1) > 0
    if not keep.any():
        raise ModelError(f"no {method} map exceeds the threshold {threshold}{' of its maximum' if relative else ''}; "
                         "lower --threshold")
    masks, parts, classes = masks[keep], dict_imgs[keep], cls[chosen][keep]
    true = cls[rest]
    acc = float(np.mean(dictionary_classify(test_imgs, masks, parts, classes) == true))
    areas = masks.reshape(len(masks), -1).sum(1)
    smooth = max(1.0, min(shape) / 16)
    rand_acc = [float(np.mean(dictionary_classify(test_imgs, random_masks(areas, tuple(shape), np.random.default_rng(
        [seed, 11, r]), smooth), parts, classes) == true)) for r in range(n_random)]
    net_acc = float(np.mean(ex.predict(test_imgs) == true))
    res = {
        "model": str(model), "store": str(ds.path), "method": method, "held_out": which,
        "dictionary_entries": int(len(masks)), "dropped_empty": int((~keep).sum()), "test_images": int(len(test_idx)),
        "threshold": threshold, "relative_threshold": relative, "mean_area_fraction": float(areas.mean() / np.prod(shape)),
        "accuracy": acc, "random_area": {"mean": float(np.mean(rand_acc)), "min": float(np.min(rand_acc)),
                                         "max": float(np.max(rand_acc)), "draws": rand_acc},
        "network_accuracy": net_acc, "chance": float(np.bincount(true, minlength=len(cl.edges) - 1).max() / len(true)),
        "seconds_maps": t_maps, "dictionary_samples": dict_idx.tolist(), "test_samples": test_idx.tolist(),
        "paper": {"occlusion": "67-72 %", "random": "~35 % (20-46 %)", "gradcam": "54 %", "lime": "59 %"},
    }
    if progress:
        from factory.logs import get_logger

        get_logger(__name__).info("[dictionary] %s: accuracy %.3f, random areas %.3f (%.3f-%.3f), network %.3f", method,
                                  acc, np.mean(rand_acc), np.min(rand_acc), np.max(rand_acc), net_acc)
    if folder is not None:
        res["figure"] = str(_dictionary_figure(parts, masks, classes, folder.file(names[0]),
                                               _input_scale(ex.model_card().preprocessing)))
        folder.savez(names[1], masks=masks, parts=parts, classes=classes, samples=dict_idx[keep])
        folder.write_text(names[2], json.dumps(res, indent=1))
    return res


def _input_scale(pre) -> str:
    from factory.plots.style import input_scale

    return input_scale(pre.to_dict() if hasattr(pre, "to_dict") else pre)


def _held_out_pool(ex: Explained, store: str | Path):
    """(store, the classifier's held-out computed samples of it, which ones in words)."""
    from factory.store import DatasetStore

    from .evaluate import select_samples

    card = ex.model_card()
    cl = card.classes
    ds = DatasetStore.open(store)
    shape = list(card.input.shape)
    if list(ds.images.shape[1:]) != shape:
        raise StoreError(f"{ds.path}: images are {list(ds.images.shape[1:])} but the classifier takes {shape}")
    if cl.label not in ds.param_names:
        raise StoreError(f"{ds.path}: no label {cl.label!r} to score the classes on (it has {ds.param_names})")
    pool, which = select_samples(ds, card, "auto")
    if "interpolated" in ds.param_names:
        pool = pool[ds.params(["interpolated"])["interpolated"][pool] < 0.5]
    if len(pool) < 2:  # one image for the dictionary and one to classify, at the very least
        raise StoreError(f"{ds.path}: {len(pool)} held-out computed images ({which}) are too few for a dictionary "
                         "and a test; use a larger store")
    return ds, pool, which


def _choose_entries(ds, cl, pool: np.ndarray, which: str, intensity_label: str, intensity_bins: int, per_cell: int,
                    max_test: int | None, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class of every pool sample, positions of the dictionary entries: ``per_cell`` per
    (class x intensity bin), positions of the test images)."""
    from .data import class_index

    p = ds.params([cl.label] + ([intensity_label] if intensity_label in ds.param_names else []))
    cls = class_index(p[cl.label][pool], list(cl.edges))
    if intensity_label in p:
        iv = p[intensity_label][pool]
        edges = np.linspace(iv.min(), iv.max(), intensity_bins + 1)
        ibin = np.clip(np.searchsorted(edges, iv, side="right") - 1, 0, intensity_bins - 1)
    else:
        ibin = np.zeros(len(pool), dtype=np.int64)
    rng = np.random.default_rng([seed, 3])
    chosen = []
    for c in range(len(cl.edges) - 1):
        for b in range(int(ibin.max()) + 1):
            cand = np.flatnonzero((cls == c) & (ibin == b))
            chosen += rng.choice(cand, min(per_cell, len(cand)), replace=False).tolist()
    chosen = np.array(sorted(chosen), dtype=np.int64)
    rest = np.setdiff1d(np.arange(len(pool)), chosen)
    if len(chosen) == 0 or len(rest) == 0:
        raise StoreError(f"{ds.path}: {len(pool)} held-out images ({which}) are too few for a dictionary and a test")
    if max_test is not None and len(rest) > max_test:
        rest = np.sort(rng.choice(rest, max_test, replace=False))
    return cls, chosen, rest


def dictionary_figure(parts, masks, classes, scale_label: str = "network input (arb. u.)"):
    """Fig. 8 of Shvetsov-Shilovski & Lein, PRA 2023: dictionary images (top) and their extracted
    parts (bottom), one per class (up to 8), each with a colour bar naming the input's scale."""
    from factory.plots.style import colorbar

    from .figures import _plt

    plt = _plt()
    pick = []
    for c in np.unique(classes):
        pick += np.flatnonzero(classes == c)[:1].tolist()
    pick = pick[:8]
    fig, axes = plt.subplots(2, len(pick), figsize=(3.0 * len(pick), 3.6), squeeze=False, layout="constrained")
    for j, i in enumerate(pick):
        lim = dict(vmin=float(np.min(parts[i])), vmax=float(np.max(parts[i])))
        im = axes[0, j].imshow(parts[i], cmap="viridis", origin="lower", aspect="auto", **lim)
        axes[0, j].set_title(f"class {int(classes[i])}", fontsize=8)
        colorbar(fig, axes[0, j], im, scale_label, fontsize=5)
        im = axes[1, j].imshow(np.where(masks[i], parts[i], np.nan), cmap="viridis", origin="lower", aspect="auto", **lim)
        axes[1, j].set_title("extracted part", fontsize=7)
        colorbar(fig, axes[1, j], im, scale_label, fontsize=5)
        for a in axes[:, j]:
            a.set_xlabel("column (px)", fontsize=6)
            a.set_ylabel("row (px)", fontsize=6)
            a.tick_params(labelsize=5)
    return fig


def _dictionary_figure(parts, masks, classes, path: Path, scale_label: str = "network input (arb. u.)") -> Path:
    from factory.plots import save

    return save(dictionary_figure(parts, masks, classes, scale_label), path, dpi=90)


__all__ = ["METHODS", "Explained", "attribute", "dictionary_classify", "dictionary_figure", "explain_store",
           "map_label", "montage_figure", "occlusion_dictionary", "overlay_figure", "overlay_names", "random_masks", "save_overlays"]
