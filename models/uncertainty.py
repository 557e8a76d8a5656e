"""Per-frame uncertainty: MC-dropout spread, its calibration, and an out-of-distribution score.

- **MC-dropout** (Gal & Ghahramani 2016): ``T`` stochastic forward passes with dropout on and
  batch norm in eval mode; the spread (standard deviation) of the outputs per label, in the
  label's physical unit.  For the PMD CNNs (dropout directly before a linear head, the only
  stochastic layer) the convolutional features are computed once and only ``head(dropout(f))``
  is drawn ``T`` times: exactly the same distribution as ``T`` full passes, at the cost of one.
  The prediction itself stays the deterministic one (dropout off), which is the limit of the
  MC mean for a linear head (inverted dropout keeps the expectation).
- **Calibration** (:func:`calibrate`): per label a factor ``s`` scaling the spread so that
  ``|prediction - true| <= s * std`` holds for 68.27 % of the validation split (by
  construction), then the coverage of the 68 % and 95 % intervals (``± s·std``, ``± 1.96·s·std``)
  is measured on the held-out test split, before and after scaling.
- **OOD score**: the Mahalanobis distance of the penultimate-layer features (the head's input)
  from the training images' features (mean, Ledoit-Wolf shrunk covariance), with a threshold at
  the 99th percentile of the validation scores; a frame is flagged when its score, or its
  calibrated spread (per label above the 99th percentile of validation), is above threshold.
  The ROC AUC of test frames against blank/noise frames (zeros, uniform noise, Poisson noise at
  the frame's mean) and of measured-like (augmented, :mod:`factory.processing.augment`) frames
  against the same blank/noise frames is reported.

Stored beside the model (no pickle): ``calibration.json`` (typed, :class:`Calibration`) and
``ood.safetensors`` (feature mean and precision matrix); the JSON records the SHA-256 of the
weights and of the OOD file, so a calibration of other weights or a damaged file is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .card import ModelError
from factory.jsonfile import read_json

FILENAME = "calibration.json"
OOD_FILE = "ood.safetensors"
WEIGHTS = "weights.safetensors"  # models.artifact.WEIGHTS (not imported: artifact imports this module)
FORMAT = "factory-calibration"
VERSION = 1
Z68, Z95 = 1.0, 1.959964
P68 = 0.682689


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Coverage(_Frozen):
    """Fraction of true values inside the intervals ``prediction ± z·s·std`` (68 %: z = 1, 95 %: z = 1.96)."""

    c68: float = Field(ge=0, le=1)
    c95: float = Field(ge=0, le=1)


class LabelCalibration(_Frozen):
    scale: float = Field(gt=0)                 # calibrated std = scale * MC-dropout std
    std_threshold: float = Field(ge=0)         # flag above this calibrated std (physical unit)
    coverage_before: Coverage                  # test split, unscaled std
    coverage_after: Coverage                   # test split, scaled std
    coverage_calibration: Coverage             # validation split, scaled (68 % by construction)
    median_std: float = Field(ge=0)            # calibrated, test split


class OODRecord(_Frozen):
    features: int = Field(ge=1)
    percentile: float = Field(gt=0, lt=100)
    threshold: float = Field(ge=0)             # of the Mahalanobis distance
    sha256: str                                # of ood.safetensors
    roc_auc: dict[str, float] = Field(default_factory=dict)


class Calibration(_Frozen):
    format: Literal["factory-calibration"] = FORMAT
    version: Literal[1] = VERSION
    method: Literal["mc-dropout"] = "mc-dropout"
    mc_samples: int = Field(ge=2)
    labels: tuple[str, ...]
    weights_sha256: str
    store: str
    n_fit: int = Field(ge=1)                   # training images the OOD statistics were fitted on
    n_calibration: int = Field(ge=1)           # validation images the scale was fitted on
    n_test: int = Field(ge=1)                  # held-out images the coverage is reported on
    per_label: dict[str, LabelCalibration]
    ood: OODRecord
    created: str | None = None

    @classmethod
    def read(cls, folder: str | Path) -> "Calibration":
        path = Path(folder) / FILENAME
        try:
            data = read_json(path)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: damaged calibration ({str(exc).splitlines()[0]}); run factory calibrate again") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelError(f"{path}: not a {FORMAT} file")
        if data.get("version") != VERSION:
            raise ModelError(f"{path}: calibration version {data.get('version')!r} is unknown (this reads {VERSION})")
        try:
            cal = cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ModelError(f"{path}: damaged calibration ({'.'.join(map(str, first['loc']))}: {first['msg']}); "
                             "run factory calibrate again") from None
        if set(cal.per_label) != set(cal.labels):
            raise ModelError(f"{path}: damaged calibration (per_label does not match labels)")
        return cal

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / FILENAME
        tmp = path.with_name(f".{FILENAME}.tmp")
        tmp.write_text(json.dumps(self.model_dump(mode="json"), indent=1))
        tmp.replace(path)
        return path


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class OODStats:
    """Mean and precision matrix of the training features; the Mahalanobis distance of new ones."""

    def __init__(self, mean: np.ndarray, precision: np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.precision = np.asarray(precision, dtype=np.float64)

    @classmethod
    def fit(cls, features: np.ndarray) -> "OODStats":
        from sklearn.covariance import LedoitWolf

        f = np.asarray(features, dtype=np.float64)
        lw = LedoitWolf().fit(f)
        return cls(lw.location_, lw.precision_)

    def score(self, features: np.ndarray) -> np.ndarray:
        d = np.asarray(features, dtype=np.float64) - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, self.precision, d), 0.0))

    def save(self, path: str | Path) -> str:
        from safetensors.numpy import save_file

        save_file({"mean": self.mean, "precision": self.precision}, str(path))
        return sha256(path)

    @classmethod
    def load(cls, path: str | Path, expect_sha256: str) -> "OODStats":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: missing (the calibration needs it); run factory calibrate again")
        if sha256(path) != expect_sha256:
            raise ModelError(f"{path}: damaged or replaced (checksum differs from the calibration's); "
                             "run factory calibrate again")
        try:
            t = load_file(str(path))
            stats = cls(t["mean"], t["precision"])
        except (SafetensorError, KeyError) as exc:
            raise ModelError(f"{path}: damaged OOD statistics ({exc})") from None
        if stats.precision.shape != (len(stats.mean), len(stats.mean)):
            raise ModelError(f"{path}: damaged OOD statistics (shapes {stats.mean.shape}, {stats.precision.shape})")
        return stats


# -- the network's stochastic passes ------------------------------------------------------------

def dropout_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]


def _fast_head(model: torch.nn.Module) -> bool:
    """Whether ``forward`` ends in ``head(dropout(flatten(features)))`` with that dropout the only one
    (the PMD CNNs): then only the head needs drawing."""
    drops = dropout_layers(model)
    return (isinstance(getattr(model, "head", None), torch.nn.Linear) and len(drops) == 1
            and getattr(model, "dropout", None) is drops[0])


@torch.no_grad()
def forward_features(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(deterministic outputs, penultimate features = the input of ``model.head``) in eval mode."""
    got: list[torch.Tensor] = []
    hook = model.head.register_forward_pre_hook(lambda _m, args: got.append(args[0].detach()))
    try:
        model.eval()
        out = model(x)
    finally:
        hook.remove()
    return out, got[-1]


@torch.no_grad()
def mc_outputs(model: torch.nn.Module, x: torch.Tensor, samples: int, generator: torch.Generator | None = None,
               features: torch.Tensor | None = None) -> torch.Tensor:
    """(samples, N, outputs): the network with dropout on and batch norm in eval mode."""
    drops = dropout_layers(model)
    if not drops:
        raise ModelError("MC-dropout needs a network with dropout (this one has none)")
    if _fast_head(model):
        if features is None:
            _, features = forward_features(model, x)
        p = float(model.dropout.p)
        keep = torch.rand((samples, *features.shape), generator=generator, device=features.device) >= p
        f = features.unsqueeze(0) * keep / max(1.0 - p, 1e-12)
        return model.head(f)
    model.eval()
    try:
        for d in drops:
            d.train()
        return torch.stack([model(x) for _ in range(samples)])
    finally:
        model.eval()


# -- calibration ------------------------------------------------------------------------------

def coverage(err: np.ndarray, std: np.ndarray) -> Coverage:
    ok = std > 0
    r = np.where(ok, np.abs(err) / np.where(ok, std, 1.0), np.where(np.abs(err) == 0, 0.0, np.inf))
    return Coverage(c68=float(np.mean(r <= Z68)), c95=float(np.mean(r <= Z95)))


def fit_scale(err: np.ndarray, std: np.ndarray) -> float:
    """The factor ``s`` with ``|err| <= s * std`` for 68.27 % of the samples."""
    ratio = np.abs(err) / np.maximum(std, 1e-300)
    s = float(np.quantile(ratio, P68, method="higher"))
    return s if s > 0 and np.isfinite(s) else 1.0


def read_images(store, idx: np.ndarray) -> np.ndarray:
    idx = np.sort(np.asarray(idx, dtype=np.int64))
    return np.asarray(store.images.oindex[idx], dtype=np.float32)


def subsample(idx: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(idx) <= n:
        return np.sort(idx)
    return np.sort(np.random.default_rng(seed).choice(idx, n, replace=False))


def blank_and_noise(images: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Frames no detector should send the network: blank (zeros), uniform noise up to each frame's
    maximum, Poisson noise at each frame's mean."""
    hi = np.maximum(images.reshape(len(images), -1).max(1), 1e-6)
    mean = np.maximum(images.reshape(len(images), -1).mean(1), 1e-6)
    shape = images.shape[1:]
    return {
        "zeros": np.zeros_like(images),
        "uniform": (rng.uniform(0, 1, images.shape) * hi.reshape(-1, *[1] * len(shape))).astype(np.float32),
        "poisson": rng.poisson(mean.reshape(-1, *[1] * len(shape)), images.shape).astype(np.float32),
    }


def augmented(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Measured-like frames: each test frame through one of the filters 1..10 of Stielow et al. (App. D)."""
    from factory.processing.augment import augment

    if images.ndim != 3:
        return images.copy()
    return np.stack([augment(img, int(rng.integers(1, 11)), rng) for img in images])


def roc_auc(inlier: np.ndarray, outlier: np.ndarray) -> float:
    """ROC AUC of the score separating ``outlier`` (positive, higher) from ``inlier``."""
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(inlier)), np.ones(len(outlier))]
    s = np.nan_to_num(np.r_[inlier, outlier], nan=np.inf, posinf=1e300)
    return float(roc_auc_score(y, s))


def load_calibration(folder: str | Path) -> tuple[Calibration, OODStats] | None:
    """The calibration beside a model (None when there is none); ModelError when it is damaged or
    was made for other weights."""
    folder = Path(folder)
    if not (folder / FILENAME).exists():
        return None
    cal = Calibration.read(folder)
    if (folder / WEIGHTS).is_file() and sha256(folder / WEIGHTS) != cal.weights_sha256:
        raise ModelError(f"{folder / FILENAME}: made for other weights (the model was retrained or replaced); "
                         "run factory calibrate again")
    return cal, OODStats.load(folder / OOD_FILE, cal.ood.sha256)


def stream_fields(labels: list[str]) -> list[str]:
    """The extra per-frame fields an uncertain prediction carries: ``<label>_std``, ``ood_score``, ``flagged``."""
    return [f"{n}_std" for n in labels] + ["ood_score", "flagged"]


__all__ = ["Calibration", "Coverage", "FILENAME", "LabelCalibration", "OODRecord", "OODStats", "OOD_FILE",
           "augmented", "blank_and_noise", "coverage", "read_images", "subsample", "dropout_layers", "fit_scale", "forward_features",
           "load_calibration", "mc_outputs", "roc_auc", "sha256", "stream_fields"]
