"""Labels in physical units from network-ready images: :class:`Predictor`.

The network of a model folder (:func:`models.model_folder.load_network`) with the card's label
scaling undone; orientation quaternions are normalised and projected into the fundamental
domain (:func:`project_quaternions`); optionally MC-dropout spread, OOD score and flags
(:mod:`models.uncertainty`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .card import ModelError
from .model_folder import load_network

QUAT = ["q0", "q1", "q2", "q3"]


class Predictor:
    """Labels in physical units from network-ready images (as stored in a processed store).

    ``mc_samples = T > 0`` (a regression network with dropout): :meth:`predict` also gives
    ``<label>_std``, the spread of ``T`` MC-dropout passes in the label's unit, scaled by the
    calibration beside the model (``calibration="auto"``: ``calibration.json`` when there is one;
    None: unscaled), and, when calibrated, ``ood_score`` (Mahalanobis distance of the penultimate
    features) and ``flagged`` (score or spread above the calibration's thresholds); see
    ``models.uncertainty``.  The ``<label>`` values stay the deterministic prediction.

    Parameters
    ----------
    folder : str or pathlib.Path
        A model folder or checkpoint.
    device : str, optional
        Torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``); default the GPU when there is one.
    batch_size : int, optional
        Images per forward pass.
    mc_samples : int, optional
        MC-dropout passes per image (0: off, else >= 2; a regression network with dropout).
    calibration : {"auto", None}, optional
        ``"auto"``: scale the spread and flag with ``calibration.json`` beside the model when
        there is one; None: unscaled spread, no OOD score.
    seed : int, optional
        Seed of the dropout masks.

    Raises
    ------
    ModelError
        The model is missing or damaged, or ``mc_samples`` is set for a network that cannot
        give MC-dropout (a classifier, no dropout, fewer than 2 passes).
    """

    def __init__(self, folder: str | Path, device: str | None = None, batch_size: int = 64, mc_samples: int = 0,
                 calibration: str | None = "auto", seed: int = 0):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model, self.card = load_network(folder, self.device)
        self.net = self.model  # the eager network (``model`` may be replaced by an optimised one)
        self.batch_size = batch_size
        self.labels: list[str] = list(self.card.labels)
        self.task: str = self.card.task
        self.scaling = self.card.scaling()
        self.group = self.card.postprocess.group if self.card.postprocess else None
        self.mc_samples = int(mc_samples)
        self.calibration = self.ood = None
        if self.mc_samples:
            from .uncertainty import dropout_layers, load_calibration

            if self.mc_samples < 2 or self.task != "regress" or not dropout_layers(self.net):
                raise ModelError(f"{folder}: MC-dropout needs mc_samples >= 2 and a regression network with dropout "
                                 f"(this is a {self.task} {self.card.architecture.describe()})")
            loaded = load_calibration(folder) if calibration == "auto" else None
            if loaded is not None:
                self.calibration, self.ood = loaded
            self._gen = torch.Generator(device=self.device).manual_seed(seed)

    @property
    def description(self) -> dict[str, Any]:
        """The card as a plain dict (for code that reads it by key)."""
        return self.card.to_dict()

    @torch.no_grad()
    def raw(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        outs = []
        for s in range(0, len(images), self.batch_size):
            x = torch.from_numpy(images[s : s + self.batch_size]).to(self.device)
            outs.append(self.model(x).float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, len(self.labels)), dtype=np.float32)

    @torch.no_grad()
    def features(self, images: np.ndarray) -> np.ndarray:
        """The penultimate-layer features (the input of the network's head), (N, F)."""
        from .uncertainty import forward_features

        images = np.asarray(images, dtype=np.float32)
        outs = [forward_features(self.net, torch.from_numpy(images[s : s + self.batch_size]).to(self.device))[1]
                for s in range(0, len(images), self.batch_size)]
        return torch.cat(outs).double().cpu().numpy() if outs else np.zeros((0, 0))

    @torch.no_grad()
    def mc(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(deterministic raw outputs, MC mean, MC std (both raw, i.e. scaled labels), features)
        from ``mc_samples`` dropout passes."""
        from .uncertainty import forward_features, mc_outputs

        images = np.asarray(images, dtype=np.float32)
        det, mean, std, feat = [], [], [], []
        for s in range(0, len(images), self.batch_size):
            x = torch.from_numpy(images[s : s + self.batch_size]).to(self.device)
            out, f = forward_features(self.net, x)
            draws = mc_outputs(self.net, x, self.mc_samples, self._gen, features=f).double()
            det.append(out.double())
            mean.append(draws.mean(0))
            std.append(draws.std(0))
            feat.append(f.double())
        if not det:
            k = len(self.labels)
            return np.zeros((0, k)), np.zeros((0, k)), np.zeros((0, k)), np.zeros((0, 0))
        return tuple(torch.cat(a).cpu().numpy() for a in (det, mean, std, feat))  # type: ignore[return-value]

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """``{label: values}``; a classifier gives ``{"class": index, "probabilities": (N, C)}``.
        With ``mc_samples``: also ``<label>_std`` and, when calibrated, ``ood_score`` and ``flagged``.

        Parameters
        ----------
        images : numpy.ndarray
            ``(N, *input_shape)`` network-ready images, preprocessed as the model's training
            set (as a processed store holds them).

        Returns
        -------
        dict of str to numpy.ndarray
            ``(N,)`` values per label in the label's physical unit (orientation quaternions
            normalised and projected into the fundamental domain); for a classifier the class
            index and the ``(N, C)`` probabilities.

        Raises
        ------
        ModelError
            The calibration's OOD statistics do not fit the network.
        """
        if self.mc_samples:
            return self._predict_uncertain(images)
        out = self.raw(images)
        if self.task == "classify":
            p = torch.softmax(torch.from_numpy(out), 1).numpy()
            return {"class": p.argmax(1), "probabilities": p}
        return self._labels(out)

    def _predict_uncertain(self, images: np.ndarray) -> dict[str, np.ndarray]:
        det, _, std, feat = self.mc(images)
        res = self._labels(det)
        scale = np.abs(np.asarray(self.scaling.scale)) if self.scaling else np.ones(len(self.labels))
        flagged = np.zeros(len(det), dtype=bool)
        cal = self.calibration
        for j, n in enumerate(self.labels):
            res[f"{n}_std"] = std[:, j] * scale[j] * (cal.per_label[n].scale if cal else 1.0)
            if cal:
                flagged |= res[f"{n}_std"] > cal.per_label[n].std_threshold
        if cal is not None and self.ood is not None:
            if feat.shape[1] != len(self.ood.mean):
                raise ModelError(f"the calibration's OOD statistics have {len(self.ood.mean)} features, "
                                 f"the network {feat.shape[1]}; run factory calibrate again")
            res["ood_score"] = self.ood.score(feat)
            res["flagged"] = flagged | (res["ood_score"] > cal.ood.threshold)
        return res

    def _labels(self, out: np.ndarray) -> dict[str, np.ndarray]:
        y = self.scaling.inverse(out) if self.scaling else out.astype(np.float64)
        res = {n: y[:, j] for j, n in enumerate(self.labels)}
        if self.group and all(q in res for q in QUAT):
            q = project_quaternions(np.column_stack([res[n] for n in QUAT]), self.group)
            res.update({n: q[:, j] for j, n in enumerate(QUAT)})
        return res


def project_quaternions(q: np.ndarray, group: str = "I") -> np.ndarray:
    """Normalise predicted quaternions and project them into the group's fundamental domain."""
    from factory.geometry import normalize, project_to_fundamental

    q = np.asarray(q, dtype=np.float64)
    bad = ~np.isfinite(q).all(1) | (np.linalg.norm(q, axis=1) < 1e-12)
    q = np.where(bad[:, None], np.array([1.0, 0.0, 0.0, 0.0]), q)
    return project_to_fundamental(normalize(q), group)
