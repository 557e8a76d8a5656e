"""Model artefacts: weights (safetensors) + the model card (:mod:`models.card`), loadable safely.

A model folder (also every training checkpoint) holds::

    weights.safetensors   the state dict (tensors only; no pickle)
    model.json            the model card: architecture, task and labels, label scaling, input
                          standardisation, the store's preprocessing description, the training
                          set's lineage, the training config and history (typed, versioned)
    optimizer.pt          (checkpoints only) optimizer state, read with torch.load(weights_only=True)

:func:`read_card` / :func:`load_network` give the typed :class:`~models.card.ModelCard`;
:func:`read_description` / :func:`load_model` give the same card as a plain dict (its JSON
form) for code that reads it by key.  :class:`Predictor` turns network-ready images into
labels in physical units (unscaled; for orientation labels the quaternion is normalised and
projected into the fundamental domain).  :func:`check_compatible` refuses a checkpoint whose
architecture, preprocessing or labels differ.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from factory.errors import StoreError
from factory.outputs import check_file_output
from factory.processing.description import Description, DescriptionError, recorded

from .card import FILENAME as DESCRIPTION
from .card import FORMAT, VERSION, Architecture, ModelCard, ModelError, as_card
from .networks import count_parameters, from_description

WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.pt"
QUAT = ["q0", "q1", "q2", "q3"]


def save_model(folder: str | Path, model: torch.nn.Module, card: ModelCard | dict[str, Any]) -> Path:
    """Write the weights and the card (a ``ModelCard``, or its plain form) into ``folder``.

    Parameters
    ----------
    folder : str or pathlib.Path
        The model folder, created if needed; ``weights.safetensors`` and ``model.json`` in it
        are replaced.
    model : torch.nn.Module
        The network (a DistributedDataParallel wrapper is unwrapped); its state dict is saved
        from the CPU.
    card : ModelCard or dict
        The model card or its plain form; its parameter count is set from ``model``.

    Returns
    -------
    pathlib.Path
        ``folder``.

    Raises
    ------
    ModelError
        ``card`` is not a valid model card.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    card = as_card(card).model_copy(update={"parameters": count_parameters(_unwrap(model), trainable_only=False)})
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    card.write(folder)
    return folder


def read_card(folder: str | Path) -> ModelCard:
    """The validated model card of a model folder or checkpoint; ModelError in one line if it
    is missing, damaged, foreign or of a newer version.

    Parameters
    ----------
    folder : str or pathlib.Path
        A model folder or checkpoint (holding ``model.json``).

    Returns
    -------
    ModelCard
        Architecture, task and labels, label scaling, input statistics, preprocessing,
        training set and training record.

    Raises
    ------
    ModelError
        No ``model.json``, or a damaged, foreign or newer card.
    """
    return ModelCard.read(folder)


def read_description(folder: str | Path) -> dict[str, Any]:
    """The model card as a plain dict (its JSON form), for code that reads it by key."""
    return read_card(folder).to_dict()


def load_state(folder: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a model folder or checkpoint; ModelError naming the file if it is damaged."""
    folder = Path(folder)
    path = folder / WEIGHTS
    if path.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except SafetensorError as exc:
            raise ModelError(f"{path}: damaged weights ({exc}); restore the file or retrain") from None
    if (folder / "weights.pt").is_file():
        return load_torch(folder / "weights.pt", "weights")
    raise ModelError(f"{folder}: no {WEIGHTS}")


def load_torch(path: str | Path, what: str) -> Any:
    """``torch.load(weights_only=True)`` of a file; ModelError naming the file if it is damaged."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{path}: damaged {what} ({first})") from None


def load_network(folder: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, ModelCard]:
    """(network in eval mode, model card) from a model folder or checkpoint.

    Parameters
    ----------
    folder : str or pathlib.Path
        A model folder or checkpoint.
    device : str or torch.device, optional
        Where the network is placed.

    Returns
    -------
    tuple of (torch.nn.Module, ModelCard)
        The network rebuilt from the card's architecture with the stored weights, in eval
        mode, and the card.

    Raises
    ------
    ModelError
        A missing or damaged card or weights file, or weights that do not fit the described
        architecture.
    """
    card = read_card(folder)
    try:
        model = from_description(card.architecture.model_dump())
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{folder}: cannot rebuild the architecture ({exc})") from None
    try:
        model.load_state_dict(load_state(folder))
    except RuntimeError as exc:
        raise ModelError(f"{folder}: weights do not fit the described architecture ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), card


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """(network in eval mode, the card as a plain dict) from a model folder or checkpoint.

    Parameters
    ----------
    folder : str or pathlib.Path
        A model folder or checkpoint.
    device : str or torch.device, optional
        Where the network is placed.

    Returns
    -------
    tuple of (torch.nn.Module, dict)
        The network in eval mode and the card's JSON form (as ``model.json`` holds it).

    Raises
    ------
    ModelError
        As ``load_network``.
    """
    model, card = load_network(folder, device)
    return model, card.to_dict()


def first_difference(a: Any, b: Any, path: str = "", root: str = "value", sep: str = "!=") -> str:
    """The first key path where two nested dicts differ, with both values (``path: a sep b``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k), root, sep)
        return path
    return f"{path or root}: {a!r} {sep} {b!r}"


def store_preprocessing(store: Any) -> Description | dict[str, Any] | None:
    """A store's ``meta["preprocessing"]``, typed for a known kind (a synthetic set's own record
    as it is); StoreError naming the store if the description is damaged."""
    try:
        return recorded(store.meta.get("preprocessing"))
    except DescriptionError as exc:
        raise StoreError(f"{store.path}: {exc}; process the store again") from None


def _function_of(preprocessing: Any) -> Any:
    """The preprocessing without the raw frames' axes (``input_axes``), as plain data: two stores
    processed by the same function from raw grids of different sizes give the same network input.
    A description of a known kind is compared as typed (its JSON form), another record as it is."""
    pre = recorded(preprocessing)
    if isinstance(pre, dict):
        return {k: v for k, v in pre.items() if k != "input_axes"}
    return pre.function() if pre is not None else None


def describe_arch(arch: Architecture | dict[str, Any]) -> str:
    return (arch if isinstance(arch, Architecture) else Architecture.model_validate(arch)).describe()


def check_compatible(card: ModelCard | dict[str, Any], *, architecture: Architecture | dict[str, Any] | None = None,
                     preprocessing: Any = "unchecked", labels: list[str] | None = None, what: str = "checkpoint",
                     where: str | Path = "") -> None:
    """Refuse a checkpoint/model whose architecture, preprocessing or labels differ."""
    card = as_card(card, where or "model card")
    where = f"{where}: " if where else ""
    if architecture is not None:
        want = architecture if isinstance(architecture, Architecture) else Architecture.model_validate(architecture)
        if card.architecture != want:
            raise ModelError(
                f"{where}the {what} is a {card.architecture.describe()} but this run builds a {want.describe()}; "
                "use a matching config or a new --out folder"
            )
    if preprocessing != "unchecked" and _function_of(card.preprocessing) != _function_of(preprocessing):
        raise ModelError(
            f"{where}the {what} was trained on images preprocessed differently from this store "
            f"({first_difference(_function_of(card.preprocessing), _function_of(preprocessing))}); "
            "process the store the same way or train a new model"
        )
    if labels is not None and list(card.labels) != list(labels):
        raise ModelError(f"{where}the {what} predicts {list(card.labels)} but {labels} were asked for")


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


#: export format -> (default file name in the model folder, kind of file it replaces)
EXPORT_FILES = {"export": ("model.pt2", "zip"), "torchscript": ("model.ts", "zip"), "onnx": ("model.onnx", "onnx")}


def export_model(folder: str | Path, out: str | Path | None = None, fmt: str = "export") -> Path:
    """Export the network for deployment.

    ``export`` (default): ``torch.export`` program ``model.pt2`` (``torch.export.load(path).module()``);
    ``torchscript``: ``model.ts`` (``torch.jit``, deprecated by PyTorch but still loadable from C++);
    ``onnx``: ``model.onnx`` (needs the onnx package).  The exported graph maps network-ready
    images (any batch size) to the raw (scaled) outputs; label scaling and preprocessing stay
    in the model card ``model.json`` next to it.

    Parameters
    ----------
    folder : str or pathlib.Path
        A model folder or checkpoint.
    out : str or pathlib.Path, optional
        The file to write; default ``model.pt2``, ``model.ts`` or ``model.onnx`` in
        ``folder``.  An existing file is replaced only when it is of the same kind.
    fmt : {"export", "torchscript", "onnx"}, optional
        The export format.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ModelError
        An unknown format, a missing or damaged model, or ONNX without the onnx package.
    OutputError
        ``out`` exists and is not a file of that kind.
    """
    folder = Path(folder)
    if fmt not in EXPORT_FILES:
        raise ModelError(f"export format {fmt!r}: choose export, torchscript or onnx")
    name, kind = EXPORT_FILES[fmt]
    out = check_file_output(out or folder / name, kind)  # before any work: replaces only a file of its kind
    model, card = load_network(folder)
    shape = card.input.shape
    example = torch.zeros((2, *shape), dtype=torch.float32)
    if fmt == "export":
        batch = torch.export.Dim("batch", min=1, max=1 << 16)
        prog = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(prog, str(out))
    elif fmt == "torchscript":
        import warnings

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.trace(model, example, check_trace=False).save(str(out))
    elif fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise ModelError("ONNX export needs the onnx package: python3 -m pip install onnx onnxscript") from None
        torch.onnx.export(model, (example,), str(out), input_names=["images"], output_names=["outputs"],
                          dynamic_axes={"images": {0: "batch"}, "outputs": {0: "batch"}})
    return out


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


__all__ = ["DESCRIPTION", "FORMAT", "OPTIMIZER", "QUAT", "VERSION", "WEIGHTS", "ModelCard", "ModelError", "Predictor",
           "check_compatible", "describe_arch", "export_model", "first_difference", "load_model", "load_network",
           "load_state", "load_torch", "project_quaternions", "read_card", "read_description", "save_model",
           "store_preprocessing"]
