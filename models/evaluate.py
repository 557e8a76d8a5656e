"""Evaluation of a trained model on a store, and the figures.

:func:`evaluate` predicts the held-out samples of a store (or all of them) with
:class:`~models.artifact.Predictor` and reports per output the MAE (next to the MAE of the
mean predictor, the training mean), RMSE and median absolute error, with a predicted-vs-true
plot and error histograms.  Classifiers report accuracy and a confusion matrix.  Scattering
models (radius + quaternion) are also scored with the relative errors of Stielow, Schmidt,
Peltz, Fennel & Scheel, Mach. Learn.: Sci. Technol. (2020), App. C (each of the five absolute
errors over its allowed range: the radius range, and the span of the fundamental domain per
quaternion component; mean and max of the five per image) after the predicted quaternion is
normalised and projected into the fundamental domain, with the histogram of their Fig. 4a.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from factory.errors import StoreError
from factory.outputs import ResultFolder
from factory.store import DatasetStore

from .artifact import QUAT, Predictor, check_compatible, project_quaternions, read_card, store_preprocessing
from .card import ModelCard, as_card
from .data import ChunkStream, class_index, make_split, read_labels
from .figures import _plt  # noqa: F401  (re-exported: it lived here)
from .figures import (error_hist_figure, history_figure, plot_error_hist, plot_history, plot_pred_vs_true,
                      plot_relative_errors, pred_true_panel, pred_vs_true_figure, relative_errors_figure)


def _model_name(model) -> str:
    p = Path(model).resolve()
    return p.parent.name if p.name == "model" else p.name


def select_samples(store: DatasetStore, card: ModelCard | dict[str, Any], subset: str = "auto") -> tuple[np.ndarray, str]:
    """Indices to evaluate: ``auto`` = the held-out split of the model's own training store,
    the store's test split (else all done samples) for any other store."""
    ts = as_card(card).training_set
    sp = ts.split if ts is not None else None
    same = ts is not None and ts.config_hash == store.config_hash and store.config_hash
    if subset == "all":
        return np.flatnonzero(store.done_mask()), "all done samples"
    if same or subset in ("train", "val", "test"):
        split = make_split(store, (sp.val_fraction if sp else None) or 0.2, (sp.seed if sp else None) or 0)
        if subset in ("train", "val", "test"):
            return getattr(split, subset), f"the {subset} split"
        return split.held_out(), ("the test split" if len(split.test) else "the validation split") + " of the training store"
    split = store.split_codes()
    if split is not None:
        test = np.flatnonzero(store.done_mask() & (split == 2))
        if len(test):
            return test, "the store's test split"
    return np.flatnonzero(store.done_mask()), "all done samples"


def radius_range(store: DatasetStore, card: ModelCard | dict[str, Any]) -> tuple[float, float]:
    """The allowed radius range (nm) for App. C: from the store's or the training set's config."""
    ts = as_card(card).training_set
    for cfg in (store.meta.get("config", {}), ts.config if ts is not None else {}):
        rng = (cfg.get("simulator") or {}).get("radius_nm") if isinstance(cfg, dict) else None
        if rng:
            return float(rng[0]), float(rng[1])
    for src in store.meta.get("lineage", []):
        rng = ((src.get("config") or {}).get("simulator") or {}).get("radius_nm")
        if rng:
            return float(rng[0]), float(rng[1])
    return 30.0, 160.0


def misorientation_deg(qp: np.ndarray, qt: np.ndarray, group: str = "I") -> np.ndarray:
    """Smallest rotation angle (degrees) between predicted and true orientation, over the group."""
    from factory.geometry import multiply, rotation_angle
    from factory.geometry.symmetry import equivalent_orientations

    conj = np.asarray(qt, dtype=np.float64) * np.array([1.0, -1.0, -1.0, -1.0])
    d = multiply(conj[:, None, :], equivalent_orientations(np.asarray(qp, dtype=np.float64), group))
    return np.degrees(rotation_angle(d)).min(axis=1)


def predict_store(predictor: Predictor, store: DatasetStore, indices: np.ndarray, batch_size: int = 128):
    """Predictions for ``indices`` read chunk by chunk; (ordered indices, predictions, seconds)."""
    stream = ChunkStream(path=str(store.path), indices=indices, targets=np.arange(store.n_samples),
                         batch_size=batch_size, shuffle=False, window_chunks=2)
    order, outs = [], []
    t_net = 0.0
    for x, idx in stream:
        t0 = time.perf_counter()
        outs.append(predictor.raw(x.numpy()))
        t_net += time.perf_counter() - t0
        order.append(idx.numpy())
    order = np.concatenate(order)
    raw = np.concatenate(outs)
    return order, raw, t_net


#: what :func:`evaluate` may write into ``out`` (each name with the call's ``tag``)
RESULT_FILES = (("predictions", ".npz"), ("metrics", ".json"), ("relative-errors", ".png"),
                ("pred-vs-true", ".png"), ("errors", ".png"))


def evaluate(model: str | Path, store: str | Path, out: str | Path | None = None, *, subset: str = "auto",
             batch_size: int = 128, device: str | None = None, check_preprocessing: bool = True,
             tag: str = "", indices: np.ndarray | None = None) -> dict[str, Any]:
    """Score ``model`` on ``store`` (``subset``: auto, all, train, val, test; or explicit
    ``indices``); writes metrics.json and figures into ``out`` when given.

    Parameters
    ----------
    model : str or pathlib.Path
        A model folder (``OUT/model`` of a training run) or a checkpoint.
    store : str or pathlib.Path
        A complete processed store, preprocessed as the model's training set was.
    out : str or pathlib.Path, optional
        Folder for ``metrics.json``, ``predictions.npz`` and the figures (``pred-vs-true.png``,
        ``errors.png``, ``relative-errors.png`` for orientations); nothing is written without.
    subset : {"auto", "all", "train", "val", "test"}, optional
        Which samples: ``auto`` is the held-out split of the model's own training store, else
        the store's test split (all done samples without one); ``train``/``val``/``test`` are
        the training run's split.
    batch_size : int, optional
        Images per forward pass.
    device : str, optional
        Torch device (``"cpu"``, ``"cuda"``); default the GPU when there is one.
    check_preprocessing : bool, optional
        Refuse a store whose preprocessing differs from the model's training set.
    tag : str, optional
        Suffix of the result file names (``metrics<tag>.json``, ...).
    indices : numpy.ndarray, optional
        Explicit sample indices to score (overrides ``subset``).

    Returns
    -------
    dict
        ``model``, ``store``, ``samples``, ``subset`` (in words), ``device`` and
        ``inference_images_per_s``; a regression adds ``per_label`` (``mae``, ``rmse``,
        ``median_ae``, ``mae_mean_predictor`` in the label's unit), for orientations
        ``relative_error`` (Stielow et al. 2020, App. C) and, with ``out``, ``figures``; a
        classifier adds ``accuracy``, ``confusion`` and ``chance``.

    Raises
    ------
    StoreError
        The store is missing, incomplete or damaged, its images are not the model's input
        shape, or there are no samples to score.
    ModelError
        The model is missing or damaged, or was trained on differently preprocessed images.
    OutputError
        ``out`` cannot hold the results (a file, or result files that are not ours).
    """
    folder = ResultFolder(out, [f"{stem}{tag}{ext}" for stem, ext in RESULT_FILES]) if out else None  # before any work
    ds = DatasetStore.open(store)
    card = read_card(model)
    if check_preprocessing:
        check_compatible(card, preprocessing=store_preprocessing(ds), what="model", where=model)
    if list(ds.images.shape[1:]) != list(card.input.shape):
        raise StoreError(f"{ds.path}: images are {list(ds.images.shape[1:])} but the model takes {list(card.input.shape)}")
    if indices is not None:
        idx, which = np.asarray(indices, dtype=np.int64), f"{len(indices)} given samples"
    else:
        idx, which = select_samples(ds, card, subset)
    if len(idx) == 0:
        raise StoreError(f"{ds.path}: no samples to evaluate ({which})")
    pred_obj = Predictor(model, device=device, batch_size=batch_size)
    order, raw, t_net = predict_store(pred_obj, ds, idx, batch_size)
    names = list(card.labels)
    y = read_labels(ds, names)[order]
    res: dict[str, Any] = {"model": str(model), "store": str(ds.path), "samples": int(len(order)), "subset": which,
                           "inference_images_per_s": len(order) / t_net if t_net > 0 else None,
                           "device": str(pred_obj.device)}
    if card.task == "classify":
        true_c, pred_c = _classifier_scores(card, y, raw, res)
        if folder:
            folder.savez(f"predictions{tag}.npz", index=order, true_class=true_c, pred_class=pred_c)
            folder.write_text(f"metrics{tag}.json", json.dumps(res, indent=1))
        return res
    scaled = pred_obj.scaling.inverse(raw) if pred_obj.scaling else raw
    pred = {n: scaled[:, j] for j, n in enumerate(names)}
    true = {n: y[:, j] for j, n in enumerate(names)}
    scatter = bool(pred_obj.group and set(QUAT) <= set(names) and "radius" in names)
    if scatter:  # as Stielow et al. (2020): normalise and project into the fundamental domain before scoring
        qp = project_quaternions(np.column_stack([pred[q] for q in QUAT]), pred_obj.group)
        pred.update({q: qp[:, j] for j, q in enumerate(QUAT)})
    res["per_label"] = _per_label(card, pred, true)
    if scatter:
        res["relative_error"], rel = _relative_error(ds, card, pred, true, pred_obj.group)
        if folder:
            res["figures"] = {"fig4a": str(plot_relative_errors(rel["mean"], rel["max"],
                                                                folder.file(f"relative-errors{tag}.png")))}
    if folder:
        from factory.plots import label_units

        units = label_units(ds, names)
        figs = res.setdefault("figures", {})
        figs["pred_vs_true"] = str(plot_pred_vs_true(
            true, pred, folder.file(f"pred-vs-true{tag}.png"), title=_model_name(model), units=units,
            mean_predictor_mae={n: v["mae_mean_predictor"] for n, v in res["per_label"].items()}))
        figs["errors"] = str(plot_error_hist(true, pred, folder.file(f"errors{tag}.png"), units=units))
        folder.savez(f"predictions{tag}.npz", index=order, **{f"true_{n}": true[n] for n in names},
                 **{f"pred_{n}": pred[n] for n in names})
        folder.write_text(f"metrics{tag}.json", json.dumps(res, indent=1))
    return res


def _classifier_scores(card: ModelCard, y: np.ndarray, raw: np.ndarray, res: dict[str, Any]):
    """Accuracy, confusion matrix and chance level into ``res``; (true, predicted) classes."""
    cl = card.classes
    true_c = class_index(y[:, list(card.labels).index(cl.label)], list(cl.edges))
    pred_c = raw.argmax(1)
    k = len(cl.edges) - 1
    conf = np.zeros((k, k), dtype=int)
    np.add.at(conf, (true_c, pred_c), 1)
    res.update({"accuracy": float((pred_c == true_c).mean()), "confusion": conf.tolist(),
                "chance": float(np.bincount(true_c, minlength=k).max() / len(true_c))})
    return true_c, pred_c


def _per_label(card: ModelCard, pred: dict[str, np.ndarray], true: dict[str, np.ndarray]) -> dict[str, Any]:
    """MAE, RMSE, median absolute error and the MAE of the mean predictor (the training mean)."""
    out = {}
    for n in card.labels:
        err = pred[n] - true[n]
        stats = card.label_stats.get(n)
        out[n] = {
            "mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2))),
            "median_ae": float(np.median(np.abs(err))),
            "mae_mean_predictor": float(np.mean(np.abs(true[n] - stats.mean))) if stats is not None else None,
        }
    return out


def _relative_error(ds: DatasetStore, card: ModelCard, pred: dict[str, np.ndarray], true: dict[str, np.ndarray],
                    group: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The App. C relative errors of Stielow et al. (2020), next to the mean predictor's."""
    from factory.geometry import relative_errors

    qp = np.column_stack([pred[q] for q in QUAT])
    qt = np.column_stack([true[q] for q in QUAT])
    rr = radius_range(ds, card)
    rel = relative_errors(pred["radius"], qp, true["radius"], qt, radius_range=rr, group=group)
    stats = card.label_stats
    base = None
    if all(q in stats for q in QUAT) and "radius" in stats:  # the mean predictor, scored the same way
        mean_q = np.array([stats[q].mean for q in QUAT])
        mq = project_quaternions(np.repeat(mean_q[None], len(qt), 0), group)
        base = relative_errors(np.full(len(qt), stats["radius"].mean), mq, true["radius"], qt, radius_range=rr,
                               group=group)
    summary = {
        "radius_range": list(rr), "median_mean": float(np.median(rel["mean"])),
        "mean_mean": float(np.mean(rel["mean"])), "median_max": float(np.median(rel["max"])),
        "fraction_mean_below_1pct": float(np.mean(rel["mean"] < 0.01)),
        "fraction_mean_below_5pct": float(np.mean(rel["mean"] < 0.05)),
        "per_param_median": dict(zip(["radius", *QUAT], np.median(rel["per_param"], 0).tolist())),
        "mean_predictor_median_mean": float(np.median(base["mean"])) if base else None,
        "misorientation_deg_median": float(np.median(misorientation_deg(qp, qt, group))),
    }
    return summary, rel


__all__ = ["RESULT_FILES", "error_hist_figure", "evaluate", "history_figure", "misorientation_deg", "plot_error_hist",
           "plot_history", "plot_pred_vs_true", "plot_relative_errors", "pred_true_panel", "pred_vs_true_figure",
           "predict_store", "radius_range", "relative_errors_figure", "select_samples"]
