"""Classical alternatives to the networks (Shvetsov-Shilovski & Lein, PRA 2023, Sec. V).

Methods (keys of :data:`METHODS`):

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

Every method gets the same training samples (the store's samples outside its test split)
and is scored on the same test samples (the test store's test split, else all of it; never
interpolated samples).  Timings are wall-clock seconds including the feature extraction a
method needs (features shared by several methods are extracted once and their time is
counted for each).  HOG/SIFT extraction and the direct comparisons run as Ray tasks when
the work is large enough to pay for it (:func:`models.features.use_ray`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from factory.errors import ConfigError, StoreError
from factory.store import DatasetStore

from .features import SIFT_COLS, SIFT_DIM, BagOfWords, hog_cell, store_features, use_ray

METHODS: dict[str, str] = {
    "mse": "direct comparison + MSE",
    "mse+refs": "direct comparison + MSE, more references",
    "sift": "direct comparison + SIFT",
    "sift+refs": "direct comparison + SIFT, more references",
    "svr-hog": "SVM + HOG",
    "dt-hog": "DT + HOG",
    "xgb-hog": "XGBoost + HOG",
    "svr-sift": "SVM + SIFT (bag of words)",
}
DEFAULT_METHODS = ["mse", "sift", "svr-hog", "dt-hog", "xgb-hog", "svr-sift"]
FEATURES = {"mse": "pixels", "mse+refs": "pixels", "sift": "sift", "sift+refs": "sift", "svr-hog": "hog",
            "dt-hog": "hog", "xgb-hog": "hog", "svr-sift": "sift"}
TRAIN, VAL, TEST = 0, 1, 2


@dataclass
class BaselineOptions:
    """Options of every method; the defaults follow the paper where it says, else common practice."""

    hog_cell: tuple[int, int] | None = None       # None: an 8 x 8 grid of cells (16 x 32 px at 128 x 256)
    hog_orientations: int = 9
    sift_upsampling: int = 2
    sift_c_dog: float | None = None               # None: skimage's default contrast threshold
    sift_max_keypoints: int = 128
    sift_max_distance: float | None = None        # None: the median nearest distance between training images
    sift_ratio: float = 0.8                       # Lowe's ratio test inside each reference
    sift_tolerance: float | None = 0.05           # key points match only within this fraction of the image size
    bow_words: int = 64
    svr_C: float = 10.0
    svr_epsilon: float = 0.01                     # in units of the label's standard deviation
    dt_min_samples_leaf: int = 2
    dt_max_depth: int | None = None
    xgb_estimators: int = 300
    xgb_depth: int = 4
    xgb_learning_rate: float = 0.05
    xgb_max_bin: int = 32                         # histogram bins per feature (xgboost's 256 is ~10x slower here)
    xgb_jobs: int = 1                             # xgboost threads (raise on a machine of your own)
    interpolate: int = 0                          # references added by interpolation (mse+refs, sift+refs)
    interpolate_axes: tuple[str, ...] = ("R", "intensity")
    seed: int = 0
    parallel: str = "auto"                        # auto, ray, local
    address: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "BaselineOptions":
        data = dict(data or {})
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(data) - known)
        if bad:
            raise ConfigError(f"unknown baseline option(s) {bad}; known: {', '.join(sorted(known))}")
        for k in ("hog_cell", "interpolate_axes"):
            if data.get(k) is not None and not isinstance(data[k], tuple):
                data[k] = tuple(data[k])
        return cls(**data)

    def sift_options(self) -> dict[str, Any]:
        return {"upsampling": self.sift_upsampling, "c_dog": self.sift_c_dog, "max_keypoints": self.sift_max_keypoints}

    def hog_options(self, shape) -> dict[str, Any]:
        return {"cell": hog_cell(shape, self.hog_cell), "orientations": self.hog_orientations}


# -- the image sets ------------------------------------------------------------------------------
@dataclass
class ImageSet:
    """Selected samples of a store with their labels."""

    path: str
    indices: np.ndarray
    labels: dict[str, np.ndarray]
    shape: tuple[int, ...]
    which: str = ""

    def __len__(self) -> int:
        return len(self.indices)

    def images(self) -> np.ndarray:
        st = DatasetStore.open(self.path)
        return np.asarray(st.images.get_orthogonal_selection((np.asarray(self.indices),)), dtype=np.float32)


def _split(st: DatasetStore) -> np.ndarray | None:
    from factory.processing.steps import read_split

    return read_split(st)


def check_labels(st: DatasetStore, labels: list[str], role: str) -> None:
    missing = [n for n in labels if n not in st.param_names]
    if missing:
        raise StoreError(f"{role} store {st.path} has no label(s) {missing} (it has {st.param_names}); "
                         "choose --label from those, or use a store that carries the labels")


def training_set(path: str | Path, labels: list[str], indices: np.ndarray | None = None) -> ImageSet:
    """Done samples outside the store's test split (train + validation), or the given ``indices``."""
    st = DatasetStore.open(path)
    check_labels(st, labels, "training")
    done = st.done_mask()
    split = _split(st)
    if indices is not None:
        idx = np.asarray(indices, dtype=np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= st.n_samples):
            raise StoreError(f"{st.path}: sample indices must lie in 0..{st.n_samples - 1}")
        which = f"{len(idx)} given samples"
    else:
        idx = np.flatnonzero(done & (split != TEST) if split is not None else done)
        which = "samples outside the test split" if split is not None else "all done samples"
    if len(idx) < 2:
        raise StoreError(f"{st.path}: {len(idx)} done training samples (outside the test split); need at least 2")
    p = _finite_labels(st, labels, idx, "training")
    return ImageSet(str(st.path), idx, p, tuple(st.images.shape[1:]), which)


def evaluation_set(path: str | Path, labels: list[str], *, same_as_train: bool = False,
             indices: np.ndarray | None = None) -> ImageSet:
    """The test split (all done samples of a separate store without one); never interpolated samples."""
    st = DatasetStore.open(path)
    check_labels(st, labels, "test")
    done = st.done_mask()
    split = _split(st)
    if indices is not None:
        idx, which = np.asarray(indices, dtype=np.int64), f"{len(indices)} given samples"
    elif split is not None and (done & (split == TEST)).any():
        idx, which = np.flatnonzero(done & (split == TEST)), "the test split"
    elif same_as_train:
        raise StoreError(f"{st.path}: the training store has no test split to score on; pass a separate test store "
                         "or split it (factory process split STORE --split 0.8,0.1,0.1)")
    else:
        idx, which = np.flatnonzero(done), "all done samples"
    if "interpolated" in st.param_names:
        interp = st.params(["interpolated"])["interpolated"][idx] > 0.5
        idx = idx[~interp]
    if len(idx) == 0:
        raise StoreError(f"{st.path}: no computed (non-interpolated) done samples to test on ({which})")
    if idx.min() < 0 or idx.max() >= st.n_samples:
        raise StoreError(f"{st.path}: sample indices must lie in 0..{st.n_samples - 1}")
    return ImageSet(str(st.path), idx, _finite_labels(st, labels, idx, "test"), tuple(st.images.shape[1:]), which)


def _finite_labels(st: DatasetStore, labels: list[str], idx: np.ndarray, role: str) -> dict[str, np.ndarray]:
    p = st.params(labels)
    out = {n: np.asarray(p[n][idx], dtype=np.float64) for n in labels}
    for n, v in out.items():
        bad = np.flatnonzero(~np.isfinite(v))
        if len(bad):
            raise StoreError(f"{role} store {st.path}: {len(bad)} of {len(v)} samples have no value for label {n!r} "
                             f"(NaN; first: sample {int(idx[bad[0]])}); label them or leave them out")
    return out


def check_shapes(train: ImageSet, *others: ImageSet) -> None:
    for o in others:
        if tuple(o.shape) != tuple(train.shape):
            raise StoreError(f"image sizes differ: {o.path} has {' x '.join(map(str, o.shape))} images but the training "
                             f"store {train.path} has {' x '.join(map(str, train.shape))}; preprocess both the same "
                             "way (factory process preprocess ... --mode pmd2d)")


# -- direct comparison ----------------------------------------------------------------------------
def _nearest_mse_block(refs: np.ndarray, ref_sq: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Index of the nearest reference (squared Euclidean = MSE x pixels) for each test row."""
    t = test.reshape(len(test), -1).astype(np.float32)
    out = np.empty(len(t), dtype=np.int64)
    step = max(1, int(2e7 // max(1, len(refs))))  # bounded (test block x references) distance matrix
    for s in range(0, len(t), step):
        tb = t[s:s + step]
        d = ref_sq[None, :] - 2.0 * (tb @ refs.T)
        out[s:s + step] = np.argmin(d, axis=1)
    return out


class DirectMSE:
    """The nearest reference image by mean squared error gives every label."""

    def fit(self, images: np.ndarray, labels: dict[str, np.ndarray]) -> "DirectMSE":
        self.refs = np.asarray(images, dtype=np.float32).reshape(len(images), -1)
        self.ref_sq = np.einsum("ij,ij->i", self.refs, self.refs, dtype=np.float64).astype(np.float32)
        self.labels = {k: np.asarray(v, dtype=np.float64) for k, v in labels.items()}
        return self

    def nearest(self, images: np.ndarray, parallel: str = "auto", address: str | None = None) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        work = len(images) * self.refs.size * 2e-10 * 1.0
        blocks = max(1, min(16, len(images) // 16))
        if blocks > 1 and use_ray(parallel, work, address):
            import ray

            task = ray.remote(num_cpus=1)(_nearest_mse_block)
            r, q = ray.put(self.refs), ray.put(self.ref_sq)
            parts = np.array_split(np.arange(len(images)), blocks)
            return np.concatenate(ray.get([task.remote(r, q, images[p]) for p in parts]))
        return _nearest_mse_block(self.refs, self.ref_sq, images)

    def predict(self, images: np.ndarray, **kw) -> dict[str, np.ndarray]:
        j = self.nearest(images, **kw)
        return {k: v[j] for k, v in self.labels.items()}


def _sift_scores(t: np.ndarray, ref: np.ndarray, ref_sq: np.ndarray, ref_pos: np.ndarray, starts: np.ndarray,
                 owner: np.ndarray, n_ref: int, max_distance: float, ratio: float,
                 tolerance: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(matches per reference, summed matched distance per reference, nearest distance per test key point).

    ``t``: (k, 131) test key points; ``ref`` (M, 128) reference descriptors, ``ref_pos`` (M, 2)
    their positions, grouped by reference (``starts``, ``owner``).  With ``tolerance``, only key
    points within that fraction of the image height and width of each other can match.
    """
    td = t[:, :SIFT_DIM].astype(np.float32)
    d2 = (np.einsum("ij,ij->i", td, td)[:, None] + ref_sq[None, :] - 2.0 * (td @ ref.T))
    d = np.sqrt(np.maximum(d2, 0.0))
    if tolerance is not None:
        far = (np.abs(t[:, None, SIFT_DIM] - ref_pos[None, :, 0]) > tolerance) | \
              (np.abs(t[:, None, SIFT_DIM + 1] - ref_pos[None, :, 1]) > tolerance)
        d = np.where(far, np.inf, d)
    nonempty = np.flatnonzero(np.diff(np.append(starts, ref.shape[0])) > 0)
    s = starts[nonempty]
    d1 = np.full((len(t), n_ref), np.inf, dtype=np.float32)
    d2nd = np.full((len(t), n_ref), np.inf, dtype=np.float32)
    if len(s):
        d1[:, nonempty] = np.minimum.reduceat(d, s, axis=1)
        masked = np.where(d <= d1[:, owner], np.inf, d)
        d2nd[:, nonempty] = np.minimum.reduceat(masked, s, axis=1)
    match = (d1 < max_distance) & (d1 < ratio * d2nd)
    nearest = d.min(1) if d.shape[1] else np.full(len(t), np.inf)
    return match.sum(0), np.where(match, d1, 0.0).sum(0), nearest


def _sift_predict_block(descs: list[np.ndarray], ref: np.ndarray, ref_sq: np.ndarray, ref_pos: np.ndarray,
                        starts: np.ndarray, owner: np.ndarray, n_ref: int, max_distance: float, ratio: float,
                        tolerance: float | None) -> np.ndarray:
    """Index of the best reference per test image (-1 for an image without key points)."""
    out = np.full(len(descs), -1, dtype=np.int64)
    for i, t in enumerate(descs):
        if len(t) == 0:
            continue
        cnt, dsum, _ = _sift_scores(t, ref, ref_sq, ref_pos, starts, owner, n_ref, max_distance, ratio, tolerance)
        mean_d = np.where(cnt > 0, dsum / np.maximum(cnt, 1), np.inf)
        best = int(np.lexsort((mean_d, -cnt))[0])  # most matches, then the smallest mean matched distance
        if cnt[best] == 0:  # nothing matches anywhere: count nearest key points without thresholds
            cnt2, dsum2, _ = _sift_scores(t, ref, ref_sq, ref_pos, starts, owner, n_ref, np.inf, 1.0, tolerance)
            mean2 = np.where(cnt2 > 0, dsum2 / np.maximum(cnt2, 1), np.inf)
            best = int(np.lexsort((mean2, -cnt2))[0])
        out[i] = best
    return out


class DirectSIFT:
    """The reference with the most SIFT matches gives every label.

    ``max_distance``: descriptor distance below which two key points match (None: the median
    distance from a training key point to its nearest one in another training image);
    ``ratio``: Lowe's ratio test inside each reference; ``tolerance``: only key points within
    this fraction of the image size of each other can match (the images share one momentum
    frame, so this is the usual geometric verification of SIFT matching; None: descriptors only).
    """

    def __init__(self, max_distance: float | None = None, ratio: float = 0.8, tolerance: float | None = 0.05,
                 seed: int = 0):
        self.max_distance = max_distance
        self.ratio = ratio
        self.tolerance = tolerance
        self.seed = seed

    def fit(self, keypoints: list[np.ndarray], labels: dict[str, np.ndarray]) -> "DirectSIFT":
        counts = np.array([len(d) for d in keypoints])
        if counts.sum() == 0:
            raise ConfigError("SIFT found no key points in any reference image; direct comparison by SIFT needs "
                              "structured images (check the preprocessing, or lower sift_c_dog)")
        allk = np.concatenate([np.asarray(d, dtype=np.float32).reshape(-1, SIFT_COLS) for d in keypoints])
        self.ref = np.ascontiguousarray(allk[:, :SIFT_DIM])
        self.ref_pos = np.ascontiguousarray(allk[:, SIFT_DIM:SIFT_DIM + 2])
        self.ref_sq = np.einsum("ij,ij->i", self.ref, self.ref).astype(np.float32)
        self.starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.owner = np.repeat(np.arange(len(keypoints)), counts)
        self.n_ref = len(keypoints)
        self.labels = {k: np.asarray(v, dtype=np.float64) for k, v in labels.items()}
        self.fallback = {k: float(np.mean(v)) for k, v in self.labels.items()}
        if self.max_distance is None:
            self.max_distance = self._auto_distance(keypoints)
        return self

    def _auto_distance(self, keypoints: list[np.ndarray]) -> float:
        """The median distance from a key point to its nearest key point in another training image."""
        rng = np.random.default_rng(self.seed)
        have = [i for i, d in enumerate(keypoints) if len(d)]
        pick = rng.choice(have, min(len(have), 50), replace=False)
        near = []
        for i in pick:
            keep = self.owner != i
            m = int(keep.sum())
            _, _, nd = _sift_scores(keypoints[i], self.ref[keep], self.ref_sq[keep], self.ref_pos[keep],
                                    np.array([0]), np.zeros(m, dtype=np.int64), 1, np.inf, 1.0, self.tolerance)
            near.append(nd)
        near = np.concatenate(near) if near else np.zeros(0)
        near = near[np.isfinite(near)]
        return float(np.median(near)) if len(near) else float("inf")

    def _args(self):
        return (self.ref, self.ref_sq, self.ref_pos, self.starts, self.owner, self.n_ref, float(self.max_distance),
                self.ratio, self.tolerance)

    def nearest(self, keypoints: list[np.ndarray], parallel: str = "auto", address: str | None = None) -> np.ndarray:
        args = self._args()
        work = sum(len(d) for d in keypoints) * self.ref.size * 1e-9
        blocks = max(1, min(16, len(keypoints) // 8))
        if blocks > 1 and use_ray(parallel, work, address):
            import ray

            task = ray.remote(num_cpus=1)(_sift_predict_block)
            refs = [ray.put(a) for a in args[:5]]
            parts = np.array_split(np.arange(len(keypoints)), blocks)
            return np.concatenate(ray.get([task.remote([keypoints[i] for i in p], *refs, *args[5:]) for p in parts]))
        return _sift_predict_block(keypoints, *args)

    def predict(self, keypoints: list[np.ndarray], **kw) -> dict[str, np.ndarray]:
        j = self.nearest(keypoints, **kw)
        self.last_no_keypoints = int((j < 0).sum())
        return {k: np.where(j >= 0, v[np.maximum(j, 0)], self.fallback[k]) for k, v in self.labels.items()}


# -- regressors on features ----------------------------------------------------------------------------
def make_regressor(method: str, opts: BaselineOptions):
    """A fresh scikit-learn / xgboost regressor (one per label) for a feature-based method."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if method in ("svr-hog", "svr-sift"):
        from sklearn.svm import SVR

        return make_pipeline(StandardScaler(), SVR(kernel="rbf", C=opts.svr_C, epsilon=opts.svr_epsilon, gamma="scale",
                                                   cache_size=500))
    if method == "dt-hog":
        from sklearn.tree import DecisionTreeRegressor

        return DecisionTreeRegressor(min_samples_leaf=opts.dt_min_samples_leaf, max_depth=opts.dt_max_depth,
                                     random_state=opts.seed)
    if method == "xgb-hog":
        from xgboost import XGBRegressor

        return XGBRegressor(n_estimators=opts.xgb_estimators, max_depth=opts.xgb_depth,
                            learning_rate=opts.xgb_learning_rate, subsample=0.8, colsample_bytree=0.5,
                            max_bin=opts.xgb_max_bin, tree_method="hist", n_jobs=opts.xgb_jobs,
                            random_state=opts.seed)
    raise ConfigError(f"method {method!r} is not a feature regressor")


class FeatureRegressor:
    """One regressor per label on standardised targets (SVR's epsilon is then in standard deviations)."""

    def __init__(self, method: str, opts: BaselineOptions):
        self.method, self.opts = method, opts

    def fit(self, X: np.ndarray, labels: dict[str, np.ndarray]) -> "FeatureRegressor":
        self.models, self.scale = {}, {}
        for k, y in labels.items():
            y = np.asarray(y, dtype=np.float64)
            mu, sd = float(y.mean()), float(y.std()) or 1.0
            self.scale[k] = (mu, sd)
            self.models[k] = make_regressor(self.method, self.opts).fit(X, (y - mu) / sd)
        return self

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return {k: m.predict(X) * self.scale[k][1] + self.scale[k][0] for k, m in self.models.items()}


# -- interpolated references -------------------------------------------------------------------------
def interpolated_references(train: ImageSet, images: np.ndarray, n: int, axes: tuple[str, ...],
                            seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``n`` references interpolated (Delaunay-linear) from the training samples in the ``axes`` plane."""
    from factory.processing.interpolate import interpolation_weights, sample_inside_hull

    st = DatasetStore.open(train.path)
    missing = [a for a in axes if a not in st.param_names]
    if missing:
        raise StoreError(f"{st.path}: interpolation axes {missing} are not labels of the training store "
                         f"({st.param_names}); set interpolate_axes")
    p = st.params(sorted(set(axes) | set(train.labels)))
    pts = np.column_stack([p[a][train.indices] for a in axes])
    rng = np.random.default_rng([seed, 7])
    targets = sample_inside_hull(pts, n, rng)
    try:
        w = interpolation_weights(pts, targets)
    except ValueError as exc:
        raise StoreError(f"interpolating references: {exc}") from None
    out = np.einsum("mk,mk...->m...", w.weights, images.astype(np.float64)[w.index]).astype(np.float32)
    labels = {}
    for k in train.labels:
        labels[k] = targets[:, axes.index(k)] if k in axes else np.einsum("mk,mk->m", w.weights, train.labels[k][w.index])
    return out, labels


# -- the whole comparison -------------------------------------------------------------------------------
@dataclass
class MethodTiming:
    train_s: float = 0.0
    predict_s: float = 0.0
    n_train: int = 0


class Baselines:
    """Fit the chosen methods on a training set; predict any image set of the same size."""

    def __init__(self, methods: list[str] | None = None, labels: list[str] | None = None,
                 options: BaselineOptions | None = None):
        self.methods = list(methods or DEFAULT_METHODS)
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ConfigError(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}")
        self.labels = list(labels or ["R"])
        self.opts = options or BaselineOptions()
        self.models: dict[str, Any] = {}
        self.timing: dict[str, MethodTiming] = {m: MethodTiming() for m in self.methods}
        self.feature_s: dict[str, float] = {}
        self.notes: list[str] = []

    # features with their (wall) extraction time, cached per image set
    def _features(self, s: ImageSet, kind: str, cache: dict) -> tuple[Any, float]:
        key = (s.path, kind, hash(np.asarray(s.indices).tobytes()))
        if key not in cache:
            t0 = time.perf_counter()
            if kind == "pixels":
                val = s.images()
            else:
                opts = self.opts.hog_options(s.shape) if kind == "hog" else self.opts.sift_options()
                val, _ = store_features(s.path, s.indices, kind, opts, self.opts.parallel, self.opts.address)
            cache[key] = (val, time.perf_counter() - t0)
        return cache[key]

    def fit(self, train: ImageSet, references: list[ImageSet] = (), progress: bool = False) -> "Baselines":
        check_shapes(train, *references)
        hog_cell(train.shape, self.opts.hog_cell)  # refuse an impossible HOG cell before any work
        needs_refs = [m for m in self.methods if m.endswith("+refs")]
        if needs_refs and not references and not self.opts.interpolate:
            raise ConfigError(f"{needs_refs} need more references: pass reference stores or interpolate > 0")
        self.train_set = train
        self._cache: dict = {}
        for ref in references:
            check_labels(DatasetStore.open(ref.path), self.labels, "reference")
        for m in self.methods:
            t0 = time.perf_counter()
            kind = FEATURES[m]
            feats, fs = self._features(train, kind, self._cache)
            self.feature_s[f"{kind} (training, {len(train)} images)"] = fs
            extra = 0.0
            if m in ("mse", "mse+refs"):
                imgs, labels = feats, dict(train.labels)
                if m == "mse+refs":
                    imgs, labels, extra = self._more_references(train, feats, references, "pixels")
                model = DirectMSE().fit(imgs, labels)
            elif m in ("sift", "sift+refs"):
                descs, labels = list(feats), dict(train.labels)
                if m == "sift+refs":
                    descs, labels, extra = self._more_references(train, feats, references, "sift")
                model = DirectSIFT(self.opts.sift_max_distance, self.opts.sift_ratio, self.opts.sift_tolerance,
                                   self.opts.seed).fit(descs, labels)
            elif m == "svr-sift":
                bow = BagOfWords(self.opts.bow_words, self.opts.seed).fit(feats)
                model = (bow, FeatureRegressor(m, self.opts).fit(bow.transform(feats), train.labels))
            else:
                model = FeatureRegressor(m, self.opts).fit(feats, train.labels)
            self.models[m] = model
            n_refs = len(model.refs) if isinstance(model, DirectMSE) else (model.n_ref if isinstance(model, DirectSIFT)
                                                                             else len(train))
            self.timing[m] = MethodTiming(train_s=time.perf_counter() - t0 + fs + extra, n_train=int(n_refs))
            if progress:
                print(f"[baselines] fitted {m} on {n_refs} images in {self.timing[m].train_s:.2f} s", flush=True)
        return self

    def _more_references(self, train: ImageSet, feats, references: list[ImageSet], kind: str):
        """Training features plus interpolated references plus reference stores (and the seconds spent)."""
        t0 = time.perf_counter()
        labels = {k: [np.asarray(v)] for k, v in train.labels.items()}
        parts = [feats] if kind == "pixels" else [list(feats)]
        if self.opts.interpolate:
            pix, _ = self._features(train, "pixels", self._cache)
            imgs, lab = interpolated_references(train, pix, self.opts.interpolate, tuple(self.opts.interpolate_axes),
                                                self.opts.seed)
            if kind == "pixels":
                parts.append(imgs)
            else:
                from .features import sift_all

                parts.append(sift_all(imgs, **self.opts.sift_options()))
            for k in labels:
                labels[k].append(lab[k])
        spent = time.perf_counter() - t0
        for ref in references:
            f, fs = self._features(ref, kind, self._cache)
            spent += fs
            parts.append(f if kind == "pixels" else list(f))
            for k in labels:
                labels[k].append(ref.labels[k])
        merged = np.concatenate(parts) if kind == "pixels" else [d for p in parts for d in p]
        return merged, {k: np.concatenate(v) for k, v in labels.items()}, spent

    def predict(self, test: ImageSet, progress: bool = False) -> dict[str, dict[str, Any]]:
        """``{method: {"pred": {label: values}, "predict_s": seconds, ...}}`` for a test set."""
        check_shapes(self.train_set, test)
        cache: dict = {}
        out: dict[str, dict[str, Any]] = {}
        for m in self.methods:
            t0 = time.perf_counter()
            kind = FEATURES[m]
            feats, fs = self._features(test, kind, cache)
            model = self.models[m]
            extra: dict[str, Any] = {}
            if isinstance(model, (DirectMSE, DirectSIFT)):
                pred = model.predict(feats, parallel=self.opts.parallel, address=self.opts.address)
                if isinstance(model, DirectSIFT):
                    extra["no_keypoints"] = model.last_no_keypoints
            elif m == "svr-sift":
                bow, reg = model
                pred = reg.predict(bow.transform(feats))
            else:
                pred = model.predict(feats)
            dt = time.perf_counter() - t0 + fs
            out[m] = {"pred": pred, "predict_s": dt, **extra}
            if progress:
                print(f"[baselines] {m} predicted {len(test)} images in {dt:.2f} s", flush=True)
        return out


def score(pred: dict[str, np.ndarray], true: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    return {k: {"mae": float(np.mean(np.abs(pred[k] - true[k]))),
                "rmse": float(np.sqrt(np.mean((pred[k] - true[k]) ** 2))),
                "median_ae": float(np.median(np.abs(pred[k] - true[k])))} for k in true}


def run_baselines(train_store: str | Path, test_store: str | Path | None = None, *, methods: list[str] | None = None,
                  labels: list[str] | None = None, out: str | Path | None = None,
                  references: list[str | Path] = (), options: BaselineOptions | None = None,
                  progress: bool = False) -> dict[str, Any]:
    """Fit every method on ``train_store`` and score it on ``test_store`` (default: the training
    store's own test split); writes baselines.json, baselines.md, predictions.npz and
    pred-vs-true.png into ``out`` when given."""
    labels = list(labels or ["R"])
    opts = options or BaselineOptions()
    same = test_store is None or Path(test_store).resolve() == Path(train_store).resolve()
    train = training_set(train_store, labels)
    test = evaluation_set(test_store or train_store, labels, same_as_train=same)
    refs = [training_set(r, labels) for r in references]
    check_shapes(train, test, *refs)
    b = Baselines(methods, labels, opts)
    t_all = time.perf_counter()
    b.fit(train, refs, progress=progress)
    preds = b.predict(test, progress=progress)
    report = {"train_store": str(train.path), "test_store": str(test.path), "labels": labels,
              "n_train": len(train), "n_test": len(test), "train_samples": train.which, "test_samples": test.which,
              "image_shape": list(train.shape), "options": _options_dict(opts), "methods": {},
              "mean_predictor": {k: float(np.mean(np.abs(test.labels[k] - np.mean(train.labels[k])))) for k in labels},
              "where": _where(), "wall_s": None}
    for m in b.methods:
        p = preds[m]
        report["methods"][m] = {
            "name": METHODS[m], "scores": score(p["pred"], test.labels), "train_s": b.timing[m].train_s,
            "predict_s": p["predict_s"], "ms_per_image": 1000 * p["predict_s"] / len(test),
            "references_or_train": b.timing[m].n_train, **({"no_keypoints": p["no_keypoints"]} if "no_keypoints" in p else {})}
    report["wall_s"] = time.perf_counter() - t_all
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / "predictions.npz", index=test.indices, **{f"true_{k}": v for k, v in test.labels.items()},
                 **{f"pred_{m}_{k}": v for m in b.methods for k, v in preds[m]["pred"].items()})
        report["figure"] = str(plot_methods(test.labels, {m: preds[m]["pred"] for m in b.methods}, labels[0],
                                            out / "pred-vs-true.png"))
        (out / "baselines.json").write_text(json.dumps(report, indent=1, default=str))
        (out / "baselines.md").write_text(markdown_report(report))
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
    from .evaluate import _plt, pred_true_panel

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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _options_dict(opts: BaselineOptions) -> dict[str, Any]:
    d = asdict(opts)
    d.pop("address", None)
    return d


def _where() -> str:
    import os
    import platform

    try:
        import ray

        if ray.is_initialized():
            return f"{platform.machine()}, Ray with {int(ray.cluster_resources().get('CPU', 0))} CPU(s) for features/comparisons"
    except Exception:  # noqa: BLE001 - Ray is optional here
        pass
    return f"{platform.machine()}, in-process ({os.cpu_count()} CPUs)"


__all__ = ["DEFAULT_METHODS", "METHODS", "BaselineOptions", "Baselines", "DirectMSE", "DirectSIFT", "FeatureRegressor",
           "ImageSet", "check_shapes", "interpolated_references", "markdown_report", "run_baselines", "score",
           "evaluation_set", "training_set"]
