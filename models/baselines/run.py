"""Fit the chosen baseline methods on a training set and score them on a test set.

Every method gets the same training samples (the store's samples outside its test split)
and is scored on the same test samples (the test store's test split, else all of it; never
interpolated samples).  Timings are wall-clock seconds including the feature extraction a
method needs (features shared by several methods are extracted once and their time is
counted for each).  Feature extraction and the direct comparisons run on an executor: the
one given, else the one the ``parallel`` option resolves to for the work at hand
(:func:`factory.compute.resolve_executor`: Ray when it pays, else in this process).
"""

from __future__ import annotations

import contextlib
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from factory.compute import Executor, resolve_executor
from factory.errors import ConfigError
from factory.logs import get_logger
from factory.outputs import ResultFolder
from factory.plots import save
from factory.store import DatasetStore

from ..features import EXTRACTORS, hog_cell, store_features, work_s
from .imagesets import ImageSet, check_labels, check_shapes, evaluation_set, training_set
from .methods import DEFAULT_METHODS, METHODS, REGISTRY
from .options import BaselineOptions
from .references import interpolated_references

log = get_logger(__name__)


@dataclass
class MethodTiming:
    train_s: float = 0.0
    predict_s: float = 0.0
    n_train: int = 0


class Baselines:
    """Fit the chosen methods on a training set; predict any image set of the same size."""

    def __init__(self, methods: list[str] | None = None, labels: list[str] | None = None,
                 options: BaselineOptions | None = None, executor: Executor | None = None):
        self.methods = list(methods or DEFAULT_METHODS)
        bad = [m for m in self.methods if m not in REGISTRY]
        if bad:
            raise ConfigError(f"unknown method(s) {bad}; choose from {', '.join(REGISTRY)}")
        self.labels = list(labels or ["R"])
        self.opts = options or BaselineOptions()
        self.executor = executor
        self.models: dict[str, Any] = {}
        self.timing: dict[str, MethodTiming] = {m: MethodTiming() for m in self.methods}
        self.feature_s: dict[str, float] = {}
        self.notes: list[str] = []
        self.where: set[str] = set()

    @contextlib.contextmanager
    def _executor_for(self, work: float):
        """The given executor, else the one ``parallel`` resolves to for ``work`` CPU seconds (closed after)."""
        if self.executor is not None:
            self.where.add(self.executor.describe())
            yield self.executor
            return
        ex = resolve_executor(self.opts.parallel, self.opts.address, work_s=work)
        self.where.add(ex.describe())
        try:
            yield ex
        finally:
            ex.close()

    # features with their (wall) extraction time, cached per image set
    def _features(self, s: ImageSet, kind: str, cache: dict) -> tuple[Any, float]:
        key = (s.path, kind, hash(np.asarray(s.indices).tobytes()))
        if key not in cache:
            t0 = time.perf_counter()
            with self._executor_for(work_s(kind, len(s), s.shape)) as ex:
                val, _ = store_features(s.path, s.indices, kind, self.opts.feature_options(kind, s.shape), ex)
            cache[key] = (val, time.perf_counter() - t0)
        return cache[key]

    def fit(self, train: ImageSet, references: list[ImageSet] = (), progress: bool = False) -> "Baselines":
        check_shapes(train, *references)
        hog_cell(train.shape, self.opts.hog_cell)  # refuse an impossible HOG cell before any work
        needs_refs = [m for m in self.methods if REGISTRY[m].more_references]
        if needs_refs and not references and not self.opts.interpolate:
            raise ConfigError(f"{needs_refs} need more references: pass reference stores or interpolate > 0")
        self.train_set = train
        self._cache: dict = {}
        for ref in references:
            check_labels(DatasetStore.open(ref.path), self.labels, "reference")
        for name in self.methods:
            method = REGISTRY[name]
            t0 = time.perf_counter()
            feats, fs = self._features(train, method.features, self._cache)
            self.feature_s[f"{method.features} (training, {len(train)} images)"] = fs
            labels, extra = dict(train.labels), 0.0
            if method.more_references:
                feats, labels, extra = self._more_references(train, feats, references, method.features)
            model = method.fit(feats, labels, self.opts)
            self.models[name] = model
            self.timing[name] = MethodTiming(train_s=time.perf_counter() - t0 + fs + extra,
                                             n_train=int(model.n_references))
            if progress:
                log.info("[baselines] fitted %s on %d images in %.2f s", name, model.n_references,
                         self.timing[name].train_s)
        return self

    def _more_references(self, train: ImageSet, feats, references: list[ImageSet], kind: str):
        """Training features plus interpolated references plus reference stores (and the seconds spent)."""
        t0 = time.perf_counter()
        labels = {k: [np.asarray(v)] for k, v in train.labels.items()}
        parts = [feats]
        if self.opts.interpolate:
            pix, _ = self._features(train, "pixels", self._cache)
            imgs, lab = interpolated_references(train, pix, self.opts.interpolate, tuple(self.opts.interpolate_axes),
                                                self.opts.seed)
            parts.append(EXTRACTORS[kind](imgs, self.opts.feature_options(kind, train.shape)))
            for k in labels:
                labels[k].append(lab[k])
        spent = time.perf_counter() - t0
        for ref in references:
            f, fs = self._features(ref, kind, self._cache)
            spent += fs
            parts.append(f)
            for k in labels:
                labels[k].append(ref.labels[k])
        merged = np.concatenate(parts) if isinstance(feats, np.ndarray) else [d for p in parts for d in p]
        return merged, {k: np.concatenate(v) for k, v in labels.items()}, spent

    def predict(self, test: ImageSet, progress: bool = False) -> dict[str, dict[str, Any]]:
        """``{method: {"pred": {label: values}, "predict_s": seconds, ...}}`` for a test set."""
        check_shapes(self.train_set, test)
        cache: dict = {}
        out: dict[str, dict[str, Any]] = {}
        for name in self.methods:
            t0 = time.perf_counter()
            feats, fs = self._features(test, REGISTRY[name].features, cache)
            model = self.models[name]
            work = model.work_s(feats) if hasattr(model, "work_s") else 0.0
            with self._executor_for(work) as ex:
                pred = model.predict(feats, ex)
            notes = model.prediction_notes() if hasattr(model, "prediction_notes") else {}
            dt = time.perf_counter() - t0 + fs
            out[name] = {"pred": pred, "predict_s": dt, **notes}
            if progress:
                log.info("[baselines] %s predicted %d images in %.2f s", name, len(test), dt)
        return out

    def describe(self) -> str:
        """Where features and comparisons ran."""
        return f"{platform.machine()}, " + ("; ".join(sorted(self.where)) or "in-process")


def score(pred: dict[str, np.ndarray], true: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {k: {"mae": float(np.mean(np.abs(pred[k] - true[k]))),
                "rmse": float(np.sqrt(np.mean((pred[k] - true[k]) ** 2))),
                "median_ae": float(np.median(np.abs(pred[k] - true[k])))} for k in true}


#: what :func:`run_baselines` writes into ``out``
RESULT_FILES = ("predictions.npz", "pred-vs-true.png", "baselines.json", "baselines.md")


def run_baselines(train_store: str | Path, test_store: str | Path | None = None, *, methods: list[str] | None = None,
                  labels: list[str] | None = None, out: str | Path | None = None,
                  references: list[str | Path] = (), options: BaselineOptions | None = None,
                  progress: bool = False, executor: Executor | None = None) -> dict[str, Any]:
    """Fit every method on ``train_store`` and score it on ``test_store`` (default: the training
    store's own test split); writes baselines.json, baselines.md, predictions.npz and
    pred-vs-true.png into ``out`` when given.

    Parameters
    ----------
    train_store : str or pathlib.Path
        The processed store whose done samples outside its test split are the training set
        (and the references of the direct comparisons).
    test_store : str or pathlib.Path, optional
        The store to score on: its test split, or all its done computed samples when it has
        none; default the training store's test split.
    methods : list of str, optional
        Keys of ``METHODS`` (``mse``, ``sift``, ``svr-hog``, ``dt-hog``, ``xgb-hog``,
        ``svr-sift``, ``mse+refs``, ``sift+refs``); default ``DEFAULT_METHODS``.
    labels : list of str, optional
        The labels to predict; default ``["R"]``.
    out : str or pathlib.Path, optional
        Folder for the report files; nothing is written without.
    references : list of str or pathlib.Path, optional
        More reference stores for the ``+refs`` methods.
    options : BaselineOptions, optional
        Every method's options (HOG, SIFT, regressor settings, interpolated references,
        ``parallel``); default ``BaselineOptions()``.
    progress : bool, optional
        Show progress bars.
    executor : Executor, optional
        Where feature extraction and comparisons run (not closed); default the one
        ``options.parallel`` resolves to.

    Returns
    -------
    dict
        The report: ``train_store``, ``test_store``, ``labels``, ``n_train``, ``n_test``,
        ``image_shape``, ``options``, ``methods`` (per method: its ``name``, ``scores`` per
        label (``mae``, ``rmse``, ``median_ae``), ``train_s``, ``predict_s``,
        ``ms_per_image``), ``mean_predictor`` (MAE per label), ``where`` and ``wall_s``.

    Raises
    ------
    ConfigError
        An unknown method.
    StoreError
        A store is missing, incomplete or damaged, lacks a label, has no samples to train
        or test on, or its images are of another size.
    OutputError
        ``out`` cannot hold the results.
    """
    folder = ResultFolder(out, RESULT_FILES) if out is not None else None  # before any work
    labels = list(labels or ["R"])
    opts = options or BaselineOptions()
    same = test_store is None or Path(test_store).resolve() == Path(train_store).resolve()
    train = training_set(train_store, labels)
    test = evaluation_set(test_store or train_store, labels, same_as_train=same)
    refs = [training_set(r, labels) for r in references]
    check_shapes(train, test, *refs)
    b = Baselines(methods, labels, opts, executor)
    t_all = time.perf_counter()
    b.fit(train, refs, progress=progress)
    preds = b.predict(test, progress=progress)
    report = {"train_store": str(train.path), "test_store": str(test.path), "labels": labels,
              "n_train": len(train), "n_test": len(test), "train_samples": train.which, "test_samples": test.which,
              "image_shape": list(train.shape), "options": opts.as_record(), "methods": {},
              "mean_predictor": {k: float(np.mean(np.abs(test.labels[k] - np.mean(train.labels[k])))) for k in labels},
              "where": None, "wall_s": None}
    for m in b.methods:
        p = preds[m]
        report["methods"][m] = {
            "name": METHODS[m], "scores": score(p["pred"], test.labels), "train_s": b.timing[m].train_s,
            "predict_s": p["predict_s"], "ms_per_image": 1000 * p["predict_s"] / len(test),
            "references_or_train": b.timing[m].n_train, **({"no_keypoints": p["no_keypoints"]} if "no_keypoints" in p else {})}
    report["wall_s"] = time.perf_counter() - t_all
    report["where"] = b.describe()
    if folder is not None:
        folder.savez("predictions.npz", index=test.indices, **{f"true_{k}": v for k, v in test.labels.items()},
                 **{f"pred_{m}_{k}": v for m in b.methods for k, v in preds[m]["pred"].items()})
        report["figure"] = str(plot_methods(test.labels, {m: preds[m]["pred"] for m in b.methods}, labels[0],
                                            folder.file("pred-vs-true.png")))
        folder.write_text("baselines.json", json.dumps(report, indent=1, default=str))
        folder.write_text("baselines.md", markdown_report(report))
    return report


def markdown_report(report: dict[str, Any]) -> str:
    labels = report["labels"]
    head = "| method | " + " | ".join(f"MAE {k}" for k in labels) + " | training s | prediction s | ms / image | images used |"
    rows = [head, "|" + " --- |" * (5 + len(labels))]
    for m, r in report["methods"].items():
        maes = " | ".join(f"{r['scores'][k]['mae']:.4g}" for k in labels)
        rows.append(f"| {r['name']} (`{m}`) | {maes} | {r['train_s']:.2f} | {r['predict_s']:.2f} | "
                    f"{r['ms_per_image']:.2f} | {r['references_or_train']} |")
    mp = " | ".join(f"{report['mean_predictor'][k]:.4g}" for k in labels)
    rows.append(f"| (mean of the training labels) | {mp} | | | | |")
    return (f"Training: {report['n_train']} images ({report['train_samples']}) of `{report['train_store']}`; "
            f"test: {report['n_test']} images ({report['test_samples']}) of `{report['test_store']}`; "
            f"images {' x '.join(map(str, report['image_shape']))}; {report['where']}.\n\n" + "\n".join(rows) + "\n")


def plot_methods(true: dict[str, np.ndarray], preds: dict[str, dict[str, np.ndarray]], label: str,
                 path: str | Path) -> Path:
    """Figs. 6a/7 of Shvetsov-Shilovski & Lein, PRA 2023: predicted vs true ``label``, one panel per method."""
    from ..figures import _plt, pred_true_panel

    plt = _plt()
    n = len(preds)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.1 * rows), squeeze=False)
    t = true[label]
    for ax, (m, p) in zip(axes.ravel(), preds.items()):
        pred_true_panel(ax, t, p[label], label, f"{METHODS.get(m, m)}\nMAE {np.mean(np.abs(p[label] - t)):.3g}",
                        fontsize=8)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    return save(fig, path, dpi=100)


__all__ = ["Baselines", "MethodTiming", "markdown_report", "plot_methods", "run_baselines", "score"]
