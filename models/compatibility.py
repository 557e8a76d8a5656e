"""Whether a checkpoint or model fits a run or a store: architecture, preprocessing, labels.

:func:`check_compatible` refuses a checkpoint/model whose architecture, preprocessing (compared
as the function of the raw frames, :func:`_function_of`) or labels differ, naming the first
difference (:func:`first_difference`); :func:`store_preprocessing` reads a store's typed
preprocessing description.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factory.errors import StoreError
from factory.processing.description import Description, DescriptionError, recorded

from .card import Architecture, ModelCard, ModelError, as_card


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
