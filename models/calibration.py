"""Calibration of the per-frame uncertainty of a model on a simulated store (``factory calibrate``).

See :mod:`models.uncertainty` for the method; :func:`calibrate` fits and writes
``calibration.json`` + ``ood.safetensors`` beside the model and returns the report.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from factory.errors import StoreError
from factory.store import DatasetStore

from .artifact import WEIGHTS, Predictor, check_compatible, read_card, store_preprocessing
from .card import ModelError
from .data import make_split, read_labels
from .uncertainty import (Calibration, LabelCalibration, OODRecord, OODStats, OOD_FILE, coverage, subsample,
                          augmented, blank_and_noise, fit_scale, read_images, roc_auc, sha256)


def calibrate(model: str | Path, store: str | Path, *, mc_samples: int = 30, percentile: float = 99.0,
              max_samples: int = 4000, seed: int = 0, device: str | None = None) -> dict[str, Any]:
    """Fit and write the calibration of ``model`` (a regression network with dropout) on ``store``.

    The split is the model's own (its training store's split record: seed and validation
    fraction); without a test split, the validation split is halved (even positions: calibration,
    odd: test).  OOD statistics from up to ``max_samples`` training images, the scale from the
    validation split, the coverage and ROC AUCs on the test split.  Returns the report (the
    calibration as JSON plus ``path``)."""
    model = Path(model)
    card = read_card(model)
    if card.task != "regress":
        raise ModelError(f"{model}: calibration is for regression models (this one is a {card.task})")
    ds = DatasetStore.open(store)
    check_compatible(card, preprocessing=store_preprocessing(ds), what="model", where=model)
    if list(ds.images.shape[1:]) != list(card.input.shape):
        raise StoreError(f"{ds.path}: images are {list(ds.images.shape[1:])} but the model takes {list(card.input.shape)}")
    missing = [n for n in card.labels if n not in ds.param_names]
    if missing:
        raise StoreError(f"{ds.path}: no true values of {missing}; calibrate on a store with the model's labels")
    sp = card.training_set.split if card.training_set is not None else None
    split = make_split(ds, (sp.val_fraction if sp else None) or 0.2, (sp.seed if sp else None) or 0)
    cal_idx, test_idx = split.val, split.test
    if not len(test_idx) or np.array_equal(cal_idx, test_idx):
        cal_idx, test_idx = split.val[0::2], split.val[1::2]
    if len(cal_idx) < 2 or len(test_idx) < 2:
        raise StoreError(f"{ds.path}: too few held-out samples to calibrate ({len(split.val)} validation, "
                         f"{len(split.test)} test)")
    fit_idx = subsample(split.train, max_samples, seed)
    cal_idx, test_idx = subsample(cal_idx, max_samples, seed + 1), subsample(test_idx, max_samples, seed + 2)

    pred = Predictor(model, device=device, mc_samples=mc_samples, calibration=None)
    labels = list(card.labels)
    all_y = read_labels(ds, labels)

    fit_feat = pred.features(read_images(ds, fit_idx))
    ood = OODStats.fit(fit_feat)

    def run(idx):
        x = read_images(ds, idx)
        out = pred.predict(x)
        return x, out, all_y[idx]

    _, cal_out, cal_y = run(cal_idx)
    x_test, test_out, test_y = run(test_idx)
    per_label: dict[str, LabelCalibration] = {}
    for j, n in enumerate(labels):
        err_c, std_c = cal_out[n] - cal_y[:, j], cal_out[f"{n}_std"]
        s = fit_scale(err_c, std_c)
        err_t, std_t = test_out[n] - test_y[:, j], test_out[f"{n}_std"]
        per_label[n] = LabelCalibration(
            scale=s, std_threshold=float(np.percentile(s * std_c, percentile)),
            coverage_before=coverage(err_t, std_t), coverage_after=coverage(err_t, s * std_t),
            coverage_calibration=coverage(err_c, s * std_c), median_std=float(np.median(s * std_t)))

    cal_scores = ood.score(pred.features(read_images(ds, cal_idx)))
    test_scores = ood.score(pred.features(x_test))
    rng = np.random.default_rng(seed)
    noise = {k: ood.score(pred.features(v)) for k, v in blank_and_noise(x_test, rng).items()}
    aug_scores = ood.score(pred.features(augmented(x_test, rng)))
    all_noise = np.concatenate(list(noise.values()))
    auc = {"test_vs_blank_noise": roc_auc(test_scores, all_noise),
           "augmented_vs_blank_noise": roc_auc(aug_scores, all_noise),
           "test_vs_augmented": roc_auc(test_scores, aug_scores),
           **{f"test_vs_{k}": roc_auc(test_scores, v) for k, v in noise.items()}}
    threshold = float(np.percentile(cal_scores, percentile))
    ood_sha = ood.save(model / OOD_FILE)
    cal = Calibration(
        mc_samples=mc_samples, labels=tuple(labels), weights_sha256=sha256(model / WEIGHTS), store=str(ds.path),
        n_fit=len(fit_idx), n_calibration=len(cal_idx), n_test=len(test_idx), per_label=per_label,
        ood=OODRecord(features=int(fit_feat.shape[1]), percentile=percentile, threshold=threshold, sha256=ood_sha,
                      roc_auc=auc),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    path = cal.write(model)
    flagged_test = float(np.mean(test_scores > threshold))
    return {**cal.model_dump(mode="json"), "path": str(path),
            "ood_flagged_fraction": {"test": flagged_test, "augmented": float(np.mean(aug_scores > threshold)),
                                     **{k: float(np.mean(v > threshold)) for k, v in noise.items()}}}


__all__ = ["calibrate"]
