"""A model folder (or training checkpoint) on disk: write it, read its card, load its network.

:func:`save_model` writes ``weights.safetensors`` (tensors only; no pickle) and the model card
``model.json``; :func:`read_card` / :func:`load_network` give the typed
:class:`~models.card.ModelCard`, :func:`read_description` / :func:`load_model` the same card
as a plain dict; :func:`load_state` and :func:`load_torch` read weights and optimizer state
safely.  :mod:`models.artifact` describes the folder and re-exports these.
"""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any

import torch

from .card import ModelCard, ModelError, as_card
from .networks import count_parameters, from_description

WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.pt"


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
    check_finite(state, folder)  # never a model of NaN/Inf weights on disk
    save_file(state, str(folder / WEIGHTS))
    card.write(folder)
    return folder


def check_finite(state: dict[str, torch.Tensor], where: str | Path) -> dict[str, torch.Tensor]:
    """``state`` if every floating-point tensor is finite, else one ModelError naming how many are not."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelError(f"{where}: {len(bad)} of {len(state)} weight tensors hold NaN/Inf (first: {bad[0]}); "
                         "a diverged training; retrain with a smaller optim.lr")
    return state


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
            state = load_file(str(path))
        except SafetensorError as exc:
            raise ModelError(f"{path}: damaged weights ({exc}); restore the file or retrain") from None
        return check_finite(state, path)
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


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
