"""Classical alternatives to the networks (Shvetsov-Shilovski & Lein, PRA 107, 033106 (2023), Sec. V).

Methods (keys of :data:`METHODS`, each a :class:`~.methods.Method` in :data:`~.methods.REGISTRY`):

- ``mse``: direct comparison, the label of the reference image nearest in mean squared error
  (the references are the training images).  ``mse+refs``: the same with more references,
  interpolated in-process from the training samples (``interpolate``; leak-free: only
  training samples are interpolated) and/or read from reference stores.
- ``sift``: direct comparison by SIFT match counts: a test key point matches a reference if
  its nearest descriptor there is closer than ``sift_max_distance`` and passes Lowe's ratio
  test within that reference, considering only reference key points within ``sift_tolerance``
  (5 %) of the image size of it (the usual geometric check of SIFT matching; all PMDs share
  one momentum frame; ``None`` turns it off); the reference with the most matches wins (ties:
  the smaller mean matched distance).  ``sift+refs`` as above.
- ``svr-hog``, ``dt-hog``, ``xgb-hog``: support vector regression (RBF kernel), a decision
  tree and gradient-boosted trees (xgboost) on HOG features (cells 16 x 32 at 128 x 256).
- ``svr-sift``: support vector regression on a bag of visual words of SIFT descriptors.

Modules: :mod:`.options` (every method's options), :mod:`.imagesets` (training and test
samples), :mod:`.direct` (the direct comparisons), :mod:`.regressors` (regressors on
features), :mod:`.methods` (the Method protocol and registry: a new method is one
``register`` call), :mod:`.references` (interpolated references), :mod:`.run` (fit, predict,
score, report).  Feature extraction and comparisons run on an executor (the ``parallel``
option, or one given); this package never imports Ray or Dask.
"""

from .direct import DirectMSE, DirectSIFT
from .imagesets import ImageSet, check_labels, check_shapes, evaluation_set, training_set
from .methods import DEFAULT_METHODS, FEATURES, METHODS, REGISTRY, Fitted, Method, register
from .options import BaselineOptions
from .references import interpolated_references
from .regressors import REGRESSORS, FeatureRegressor, make_regressor
from .run import Baselines, MethodTiming, markdown_report, plot_methods, run_baselines, score

__all__ = ["DEFAULT_METHODS", "FEATURES", "METHODS", "REGISTRY", "REGRESSORS", "BaselineOptions", "Baselines",
           "DirectMSE", "DirectSIFT", "FeatureRegressor", "Fitted", "ImageSet", "Method", "MethodTiming", "check_labels",
           "check_shapes", "evaluation_set", "interpolated_references", "make_regressor", "markdown_report",
           "plot_methods", "register", "run_baselines", "score", "training_set"]
