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

The code lives in :mod:`models.model_folder` (saving and loading), :mod:`models.compatibility`
(the checks), :mod:`models.predictor` (:class:`Predictor`) and :mod:`models.export`
(:func:`export_model`); this module re-exports it.
"""

from __future__ import annotations

from .card import FILENAME as DESCRIPTION
from .card import FORMAT, VERSION, ModelCard, ModelError
from .compatibility import check_compatible, describe_arch, first_difference, store_preprocessing
from .export import EXPORT_FILES, export_model
from .model_folder import (OPTIMIZER, WEIGHTS, load_model, load_network, load_state, load_torch, now, read_card,
                           read_description, save_model)
from .predictor import QUAT, Predictor, project_quaternions

__all__ = ["DESCRIPTION", "EXPORT_FILES", "FORMAT", "OPTIMIZER", "QUAT", "VERSION", "WEIGHTS", "ModelCard", "ModelError",
           "Predictor", "check_compatible", "describe_arch", "export_model", "first_difference", "load_model",
           "load_network", "load_state", "load_torch", "now", "project_quaternions", "read_card", "read_description",
           "save_model", "store_preprocessing"]
