"""Run folders and checkpoints on disk: what ``factory train`` writes, and how it finds it again.

A run folder is the project's own: its manifest ``factory-run.json`` (schema
``factory.train-run``) marks it, and it holds only the names in :data:`RUN_NAMES`::

    factory-run.json      schema, version, the resolved config, one entry per attempt
    targets.npy           the training targets (scaled labels or class indices) of every sample
    checkpoints/attempt-K/epoch-NNNN/   weights, model card (with the history), optimizer state
    model/                the selected checkpoint's weights and card (the whole history)
    history.json, loss.png

Nothing is written before every check has passed; a new run folder is built in a hidden
sibling and renamed into place (:func:`factory.outputs.staged_output`), and an overwrite
replaces only a folder :func:`is_run_folder` recognises.  Every checkpoint is complete in
itself, so a resume continues from whichever one is the latest that loads.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from factory.errors import OutputError
from factory.logs import get_logger
from factory.outputs import check_replaceable, staged_output

from .artifact import DESCRIPTION, OPTIMIZER, WEIGHTS, ModelError, load_state, load_torch, read_card
from .card import EpochRecord, ModelCard
from factory.jsonfile import read_json

log = get_logger(__name__)

MANIFEST = "factory-run.json"
MANIFEST_VERSION = 1
RUN_SCHEMA = "factory.train-run"
#: every name the trainer (and ``factory evaluate RUN/model``) writes into a run folder
RUN_NAMES = frozenset({MANIFEST, "targets.npy", "checkpoints", "model", "history.json", "loss.png", "eval"})
#: every name a model folder holds (the artefact and its exports)
MODEL_NAMES = frozenset({WEIGHTS, DESCRIPTION, "model.pt2", "model.ts", "model.onnx"})


# -- manifests and the folders they mark ---------------------------------------------------------
def read_manifest(folder: str | Path, schema: str) -> dict[str, Any] | None:
    """The manifest of an output folder the project made with ``schema``; None if there is none."""
    try:
        data = read_json(Path(folder) / MANIFEST)
    except (OSError, ValueError):
        return None
    ok = isinstance(data, dict) and data.get("schema") == schema and data.get("version") == MANIFEST_VERSION
    return data if ok else None


def write_manifest(folder: Path, data: dict[str, Any]) -> None:
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, folder / MANIFEST)


def empty_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def _only(path: Path, names: frozenset[str], pattern: str | None = None) -> bool:
    """Every entry of ``path`` is one of ``names`` (or matches ``pattern``), or a hidden
    temporary of one of them (``.NAME.tmp``, ``.NAME.factory-tmp-...``)."""
    def ours(name: str) -> bool:
        if name.startswith("."):
            return any(name[1:].startswith(n + ".") for n in names)
        return name in names or (pattern is not None and re.fullmatch(pattern, name) is not None)

    return all(ours(e.name) for e in os.scandir(path))


def owned_output(schema: str, names: frozenset[str], pattern: str | None = None):
    """A recogniser for :func:`staged_output`: an empty folder, or one holding the project's
    manifest with ``schema`` and nothing but ``names``."""
    def recognise(path: Path) -> bool:
        return empty_dir(path) or (read_manifest(path, schema) is not None and _only(path, names | {MANIFEST}, pattern))

    return recognise


is_run_folder = owned_output(RUN_SCHEMA, RUN_NAMES)


def is_model_folder(path: Path) -> bool:
    try:
        read_card(path)
    except ModelError:
        return False
    return _only(path, MODEL_NAMES)


def check_run_output(out: Path, *, resume: bool, overwrite: bool) -> tuple[bool, bool]:
    """(continue the run in place, replace the folder): refuse a folder that is not ours."""
    in_place = resume and not out.is_symlink() and read_manifest(out, RUN_SCHEMA) is not None
    if resume and not in_place and (out.is_symlink() or out.exists() and not empty_dir(out)):
        raise OutputError(f"{out} is not a training run folder made by factory (no valid {MANIFEST}); "
                          "nothing to resume there")
    replace = overwrite or empty_dir(out)
    if not in_place:
        check_replaceable(out, overwrite=replace, what="training run folder", recognise=is_run_folder,
                          resumable=True)
    return in_place, replace


def start_attempt(out: Path, *, in_place: bool, replace: bool, config: dict[str, Any], store: Path,
                  resumed_from: Path | None, targets: np.ndarray) -> int:
    """Record a new attempt in the manifest (a new run folder staged and renamed into place)
    and write the targets; the attempt's number."""
    storage = out / "checkpoints"
    attempts = sorted(int(p.name.split("-")[1]) for p in storage.glob("attempt-*")) if in_place else []
    attempt = (attempts[-1] + 1) if attempts else 0
    entry = {"attempt": attempt, "store": str(store), "resumed_from": str(resumed_from) if resumed_from else None,
             "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if in_place:
        run_info = read_manifest(out, RUN_SCHEMA)
        run_info["attempts"].append(entry)
        write_manifest(out, run_info)
        save_npy(out / "targets.npy", targets)
    else:
        with staged_output(out, overwrite=replace, what="training run folder", recognise=is_run_folder,
                           resumable=True) as tmp:
            tmp.mkdir()
            write_manifest(tmp, {"schema": RUN_SCHEMA, "version": MANIFEST_VERSION, "config": config,
                                 "attempts": [entry]})
            save_npy(tmp / "targets.npy", targets)
    return attempt


def save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


# -- checkpoints ------------------------------------------------------------------------------
def checkpoint_dirs(out: Path) -> list[tuple[int, int, Path]]:
    """(epoch, attempt, folder) of every complete checkpoint of a run folder, oldest first."""
    found = []
    for d in (Path(out) / "checkpoints").glob("attempt-*/epoch-*"):
        try:
            attempt = int(d.parent.name.split("-")[1])
            if not (d / WEIGHTS).is_file() or not (d / OPTIMIZER).is_file():
                continue
            found.append((read_card(d).epoch, attempt, d))
        except (ValueError, IndexError, ModelError):
            continue  # a checkpoint cut short by a kill: skip it
    return sorted(found)


def weights_load(folder: Path) -> bool:
    try:
        load_state(folder)
    except ModelError:
        return False
    return True


def latest_checkpoint(out: Path) -> Path | None:
    """The latest checkpoint whose weights and optimizer state load (a damaged one, cut short
    by a kill, is passed over for the one before)."""
    found = checkpoint_dirs(out)
    skipped: list[str] = []
    for _, _, d in reversed(found):
        try:
            load_state(d)
            load_torch(d / OPTIMIZER, "optimizer state")
        except ModelError as exc:
            skipped.append(f"{d.name}: {str(exc).splitlines()[0]}")
            continue
        if skipped:  # said, never silent: the epochs after this checkpoint are trained again
            log.warning("resuming from %s; passed over %d checkpoint(s) that do not load (%s)", d.name,
                        len(skipped), "; ".join(skipped))
        return d
    if found:  # checkpoints, none usable: a resume would silently start again at epoch 1
        raise ModelError(f"{out}: none of its {len(found)} checkpoint(s) loads ({skipped[0]}); nothing to resume "
                         "from: restore them, or start again with --overwrite")
    return None


def store_checkpoint(folder: str | Path, dest: Path, keep: int | None) -> None:
    """Copy a checkpoint into place (atomically) and keep, as Ray Train does, the ``keep``
    best by validation loss and the latest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copytree(folder, tmp, dirs_exist_ok=True)
    os.replace(tmp, dest)
    if not keep:
        return
    mine = sorted(dest.parent.glob("epoch-*"))
    keepers = set(sorted(mine, key=_val_loss)[:keep]) | {dest}
    for d in mine:
        if d not in keepers:
            shutil.rmtree(d, ignore_errors=True)


def _val_loss(folder: Path) -> float:
    try:
        history = read_card(folder).history
    except ModelError:
        return math.inf  # damaged: the first to go
    return history[-1].val_loss if history else math.inf


def select_checkpoint(out: Path, ckpts: list[tuple[int, int, Path]], history: tuple[EpochRecord, ...],
                      select: str) -> Path:
    """The checkpoint to make the model of: the lowest validation loss (of equals the latest)
    or the latest; never one whose weights were cut short (a run killed while it was written)."""
    if select == "best":
        def key(c):
            return (history[c[0] - 1].val_loss if c[0] - 1 < len(history) else math.inf, -c[0], -c[1])
    else:
        def key(c):
            return (-c[0], -c[1])
    chosen = next((d for _, _, d in sorted(ckpts, key=key) if weights_load(d)), None)
    if chosen is None:
        raise ModelError(f"{out}: no checkpoint with readable weights")
    return chosen


def publish_model(model_dir: Path, checkpoint: Path, card: ModelCard) -> None:
    """The model folder: the checkpoint's weights and ``card``, staged and renamed into place."""
    with staged_output(model_dir, overwrite=True, what="model folder", recognise=is_model_folder) as tmp:
        tmp.mkdir()
        shutil.copy2(checkpoint / WEIGHTS, tmp / WEIGHTS)
        card.write(tmp)


__all__ = ["MANIFEST", "MANIFEST_VERSION", "MODEL_NAMES", "RUN_NAMES", "RUN_SCHEMA", "check_run_output",
           "checkpoint_dirs", "empty_dir", "is_model_folder", "is_run_folder", "latest_checkpoint", "owned_output",
           "publish_model", "read_manifest", "save_npy", "select_checkpoint", "start_attempt", "store_checkpoint",
           "weights_load", "write_manifest"]
