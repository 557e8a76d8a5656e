"""Model artefacts: weights (safetensors) + a plain JSON description, loadable safely.

A model folder (also every training checkpoint) holds::

    weights.safetensors   the state dict (tensors only; no pickle)
    model.json            architecture, task and labels, label scaling, input standardisation,
                          the store's preprocessing description, the training set's lineage,
                          the training config and history
    optimizer.pt          (checkpoints only) optimizer state, read with torch.load(weights_only=True)

:func:`load_model` rebuilds the network from the description and loads the weights;
:class:`Predictor` turns network-ready images into labels in physical units (unscaled; for
orientation labels the quaternion is normalised and projected into the fundamental domain).
:func:`check_compatible` refuses a checkpoint whose architecture or preprocessing differs.
"""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from factory.errors import FactoryError

from .data import LabelScaling
from .networks import count_parameters, from_description

FORMAT = "factory-model"
VERSION = 1
WEIGHTS = "weights.safetensors"
DESCRIPTION = "model.json"
OPTIMIZER = "optimizer.pt"
QUAT = ["q0", "q1", "q2", "q3"]


class ModelError(FactoryError):
    """A model artefact or checkpoint is missing, damaged or does not fit the request."""


def save_model(folder: str | Path, model: torch.nn.Module, description: dict[str, Any]) -> Path:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    desc = {"format": FORMAT, "version": VERSION, "parameters": count_parameters(_unwrap(model), trainable_only=False),
            **description}
    (folder / DESCRIPTION).write_text(json.dumps(desc, indent=1, default=_jsonable))
    return folder


def read_description(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / DESCRIPTION
    if not path.is_file():
        raise ModelError(f"{folder}: not a model folder (no {DESCRIPTION}); pass a trained model's folder")
    try:
        desc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: damaged description ({exc})") from None
    if desc.get("format") != FORMAT or int(desc.get("version", 0)) > VERSION:
        raise ModelError(f"{path}: not a {FORMAT} v{VERSION} description")
    return desc


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


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """(network in eval mode, description) from a model folder or checkpoint."""
    desc = read_description(folder)
    try:
        model = from_description(desc["architecture"])
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{folder}: cannot rebuild the architecture ({exc})") from None
    try:
        model.load_state_dict(load_state(folder))
    except RuntimeError as exc:
        raise ModelError(f"{folder}: weights do not fit the described architecture ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval(), desc


def first_difference(a: Any, b: Any, path: str = "", root: str = "value", sep: str = "!=") -> str:
    """The first key path where two nested dicts differ, with both values (``path: a sep b``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k), root, sep)
        return path
    return f"{path or root}: {a!r} {sep} {b!r}"


def _function_of(preprocessing: Any) -> Any:
    """The preprocessing without the raw frames' axes (``input_axes``): two stores processed by
    the same function from raw grids of different sizes give the same network input."""
    if isinstance(preprocessing, dict):
        return {k: v for k, v in preprocessing.items() if k != "input_axes"}
    return preprocessing


def describe_arch(arch: dict[str, Any]) -> str:
    kw = ", ".join(f"{k}={v}" for k, v in sorted(arch.get("kwargs", {}).items()))
    return f"{arch.get('name')}({kw})"


def check_compatible(desc: dict[str, Any], *, architecture: dict[str, Any] | None = None,
                     preprocessing: Any = "unchecked", labels: list[str] | None = None, what: str = "checkpoint",
                     where: str | Path = "") -> None:
    """Refuse a checkpoint/model whose architecture, preprocessing or labels differ."""
    where = f"{where}: " if where else ""
    if architecture is not None:
        have = desc.get("architecture", {})
        if have.get("name") != architecture.get("name") or have.get("kwargs") != architecture.get("kwargs"):
            raise ModelError(
                f"{where}the {what} is a {describe_arch(have)} but this run builds a {describe_arch(architecture)}; "
                "use a matching config or a new --out folder"
            )
    if preprocessing != "unchecked" and _function_of(desc.get("preprocessing")) != _function_of(preprocessing):
        raise ModelError(
            f"{where}the {what} was trained on images preprocessed differently from this store "
            f"({first_difference(_function_of(desc.get('preprocessing')), _function_of(preprocessing))}); "
            "process the store the same way or train a new model"
        )
    if labels is not None and list(desc.get("labels", [])) != list(labels):
        raise ModelError(f"{where}the {what} predicts {desc.get('labels')} but {labels} were asked for")


class Predictor:
    """Labels in physical units from network-ready images (as stored in a processed store)."""

    def __init__(self, folder: str | Path, device: str | None = None, batch_size: int = 64):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model, self.description = load_model(folder, self.device)
        self.batch_size = batch_size
        d = self.description
        self.labels: list[str] = list(d["labels"])
        self.task: str = d.get("task", "regress")
        self.scaling = LabelScaling.from_dict(d["label_scaling"]) if d.get("label_scaling") else None
        self.group = (d.get("postprocess") or {}).get("group")

    @torch.no_grad()
    def raw(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        outs = []
        for s in range(0, len(images), self.batch_size):
            x = torch.from_numpy(images[s : s + self.batch_size]).to(self.device)
            outs.append(self.model(x).float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, len(self.labels)), dtype=np.float32)

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """``{label: values}``; a classifier gives ``{"class": index, "probabilities": (N, C)}``."""
        out = self.raw(images)
        if self.task == "classify":
            p = torch.softmax(torch.from_numpy(out), 1).numpy()
            return {"class": p.argmax(1), "probabilities": p}
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


def export_model(folder: str | Path, out: str | Path | None = None, fmt: str = "export") -> Path:
    """Export the network for deployment.

    ``export`` (default): ``torch.export`` program ``model.pt2`` (``torch.export.load(path).module()``);
    ``torchscript``: ``model.ts`` (``torch.jit``, deprecated by PyTorch but still loadable from C++);
    ``onnx``: ``model.onnx`` (needs the onnx package).  The exported graph maps network-ready
    images (any batch size) to the raw (scaled) outputs; label scaling and preprocessing stay
    in ``model.json`` next to it.
    """
    folder = Path(folder)
    model, desc = load_model(folder)
    shape = desc["input"]["shape"]
    example = torch.zeros((2, *shape), dtype=torch.float32)
    if fmt == "export":
        out = Path(out or folder / "model.pt2")
        batch = torch.export.Dim("batch", min=1, max=1 << 16)
        prog = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(prog, str(out))
    elif fmt == "torchscript":
        import warnings

        out = Path(out or folder / "model.ts")
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.trace(model, example, check_trace=False).save(str(out))
    elif fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise ModelError("ONNX export needs the onnx package: python3 -m pip install onnx onnxscript") from None
        out = Path(out or folder / "model.onnx")
        torch.onnx.export(model, (example,), str(out), input_names=["images"], output_names=["outputs"],
                          dynamic_axes={"images": {0: "batch"}, "outputs": {0: "batch"}})
    else:
        raise ModelError(f"export format {fmt!r}: choose export, torchscript or onnx")
    return out


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def _jsonable(obj: Any):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
