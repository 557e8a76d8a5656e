"""Regressors on image features: one scikit-learn / xgboost model per label, by name from a registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from factory.errors import ConfigError

from .options import BaselineOptions


def _svr(opts: BaselineOptions):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    return make_pipeline(StandardScaler(), SVR(kernel="rbf", C=opts.svr_C, epsilon=opts.svr_epsilon, gamma="scale",
                                               cache_size=500))


def _decision_tree(opts: BaselineOptions):
    from sklearn.tree import DecisionTreeRegressor

    return DecisionTreeRegressor(min_samples_leaf=opts.dt_min_samples_leaf, max_depth=opts.dt_max_depth,
                                 random_state=opts.seed)


def _xgboost(opts: BaselineOptions):
    from xgboost import XGBRegressor

    return XGBRegressor(n_estimators=opts.xgb_estimators, max_depth=opts.xgb_depth,
                        learning_rate=opts.xgb_learning_rate, subsample=0.8, colsample_bytree=0.5,
                        max_bin=opts.xgb_max_bin, tree_method="hist", n_jobs=opts.xgb_jobs, random_state=opts.seed)


#: regressor name -> a fresh model built from the options
REGRESSORS: dict[str, Callable[[BaselineOptions], Any]] = {"svr": _svr, "dt": _decision_tree, "xgb": _xgboost}


def make_regressor(kind: str, opts: BaselineOptions):
    """A fresh regressor of ``kind`` (a key of :data:`REGRESSORS`)."""
    if kind not in REGRESSORS:
        raise ConfigError(f"regressor {kind!r}: choose one of {', '.join(REGRESSORS)}")
    return REGRESSORS[kind](opts)


class FeatureRegressor:
    """One regressor per label on standardised targets (SVR's epsilon is then in standard deviations)."""

    def __init__(self, kind: str, opts: BaselineOptions):
        self.kind, self.opts = kind, opts

    def fit(self, X: np.ndarray, labels: dict[str, np.ndarray]) -> "FeatureRegressor":
        self.models, self.scale = {}, {}
        for k, y in labels.items():
            y = np.asarray(y, dtype=np.float64)
            mu, sd = float(y.mean()), float(y.std()) or 1.0
            self.scale[k] = (mu, sd)
            self.models[k] = make_regressor(self.kind, self.opts).fit(X, (y - mu) / sd)
        self.n_references = len(X)
        return self

    def predict(self, X: np.ndarray, executor=None) -> dict[str, np.ndarray]:
        return {k: m.predict(X) * self.scale[k][1] + self.scale[k][0] for k, m in self.models.items()}


__all__ = ["REGRESSORS", "FeatureRegressor", "make_regressor"]
