"""The baseline methods behind one :class:`Method` protocol, and their registry.

A method names the features it works on (``pixels``, ``hog`` or ``sift``, extracted once per
image set and shared by the methods that use them), whether it takes more references than the
training set (``+refs``), and builds a fitted model from features and labels.  A fitted model
predicts labels from features on an executor, and says how many images it holds.
A new method is one class (or one instance of these) and one :func:`register` call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from factory.compute import Executor
from factory.errors import ConfigError

from ..features import BagOfWords
from .direct import DirectMSE, DirectSIFT
from .options import BaselineOptions
from .regressors import FeatureRegressor


@runtime_checkable
class Fitted(Protocol):
    """A fitted method."""

    n_references: int  # images it compares with, or was trained on

    def predict(self, features: Any, executor: Executor | None = None) -> dict[str, np.ndarray]:
        """Predicted labels of the images whose features are given."""


@runtime_checkable
class Method(Protocol):
    """A classical method: its name, title, features, and how it is fitted."""

    name: str
    title: str
    features: str             # "pixels", "hog" or "sift"
    more_references: bool     # also compare with interpolated references and reference stores

    def fit(self, features: Any, labels: dict[str, np.ndarray], opts: BaselineOptions) -> Fitted:
        """A fitted model from training (or reference) features and their labels."""


@dataclass(frozen=True)
class MSEComparison:
    """The nearest reference image by mean squared error gives every label."""

    name: str
    title: str
    more_references: bool = False
    features: str = "pixels"

    def fit(self, features, labels, opts: BaselineOptions) -> Fitted:
        return DirectMSE().fit(features, labels)


@dataclass(frozen=True)
class SIFTComparison:
    """The reference with the most SIFT key-point matches gives every label."""

    name: str
    title: str
    more_references: bool = False
    features: str = "sift"

    def fit(self, features, labels, opts: BaselineOptions) -> Fitted:
        return DirectSIFT(opts.sift_max_distance, opts.sift_ratio, opts.sift_tolerance, opts.seed).fit(
            list(features), labels)


@dataclass(frozen=True)
class Regression:
    """A regressor (``svr``, ``dt``, ``xgb``) per label on the feature vectors."""

    name: str
    title: str
    features: str
    regressor: str
    more_references: bool = False

    def fit(self, features, labels, opts: BaselineOptions) -> Fitted:
        return FeatureRegressor(self.regressor, opts).fit(features, labels)


class WordsRegressor:
    """SIFT descriptors -> a bag-of-visual-words histogram -> a regressor per label."""

    def __init__(self, bow: BagOfWords, regressor: FeatureRegressor):
        self.bow, self.regressor = bow, regressor
        self.n_references = regressor.n_references

    def predict(self, features, executor: Executor | None = None) -> dict[str, np.ndarray]:
        return self.regressor.predict(self.bow.transform(features))


@dataclass(frozen=True)
class BagOfWordsRegression:
    """A regressor per label on bag-of-visual-words histograms of SIFT descriptors."""

    name: str
    title: str
    regressor: str
    features: str = "sift"
    more_references: bool = False

    def fit(self, features, labels, opts: BaselineOptions) -> Fitted:
        bow = BagOfWords(opts.bow_words, opts.seed).fit(features)
        return WordsRegressor(bow, FeatureRegressor(self.regressor, opts).fit(bow.transform(features), labels))


REGISTRY: dict[str, Method] = {}
METHODS: dict[str, str] = {}   # method name -> its title (the table's row names)
FEATURES: dict[str, str] = {}  # method name -> the features it uses


def register(method: Method) -> Method:
    """Add ``method`` to the registry under its name (a name is registered once)."""
    if method.name in REGISTRY:
        raise ValueError(f"baseline method {method.name!r} is registered already")
    REGISTRY[method.name] = method
    METHODS[method.name] = method.title
    FEATURES[method.name] = method.features
    return method


for _m in (
    MSEComparison("mse", "direct comparison + MSE"),
    MSEComparison("mse+refs", "direct comparison + MSE, more references", more_references=True),
    SIFTComparison("sift", "direct comparison + SIFT"),
    SIFTComparison("sift+refs", "direct comparison + SIFT, more references", more_references=True),
    Regression("svr-hog", "SVM + HOG", "hog", "svr"),
    Regression("dt-hog", "DT + HOG", "hog", "dt"),
    Regression("xgb-hog", "XGBoost + HOG", "hog", "xgb"),
    BagOfWordsRegression("svr-sift", "SVM + SIFT (bag of words)", "svr"),
):
    register(_m)

DEFAULT_METHODS = ["mse", "sift", "svr-hog", "dt-hog", "xgb-hog", "svr-sift"]


def get_method(name: str) -> Method:
    if name not in REGISTRY:
        raise ConfigError(f"unknown method(s) [{name!r}]; choose from {', '.join(REGISTRY)}")
    return REGISTRY[name]


__all__ = ["DEFAULT_METHODS", "FEATURES", "METHODS", "REGISTRY", "BagOfWordsRegression", "Fitted", "MSEComparison",
           "Method", "Regression", "SIFTComparison", "WordsRegressor", "get_method", "register"]
