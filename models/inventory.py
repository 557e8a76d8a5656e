"""What exists under a folder: dataset stores, training runs and models, as a lineage tree.

Each thing is recognised by its own marker, never by its name:

- a **dataset store**: a Zarr group whose ``zarr.json`` carries the ``factory`` attributes
  (opened with :meth:`DatasetStore.open`, ``partial=True``; one that does not open is listed
  as damaged, with the reason);
- a **predictions store** (``factory predict stream --out``): the ``stream`` attributes;
- a **training run**: its manifest ``factory-run.json`` with the schema ``factory.train-run``
  (:func:`models.train_runs.read_manifest`); its ``model/`` is listed under it;
- a **model**: a folder whose ``model.json`` is a valid model card (:class:`ModelCard`).

Other manifests of the project (a transfer or learning-curve folder) are looked into for the
runs they hold.  The tree follows lineage: a processed store under its (first) source store, a
run under the store it trained on, a model under its run (or, outside a run, under the store
it was trained on), a predictions store under its model.  A source that is not under the
folder is named in the entry (``from ...``), and one whose config hash changed since is flagged.
Hidden entries (staging temporaries of unfinished writes) are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.errors import StoreError
from factory.outputs import is_factory_zarr, user_path

from .card import FILENAME as CARD, ModelCard, ModelError
from factory.jsonfile import read_json

RUN_MANIFEST = "factory-run.json"  # the file name only; what it holds is checked by train_runs
MAX_DEPTH = 6


@dataclass
class Entry:
    """One store, run or model found under the folder."""

    kind: str                    # store | predictions | run | model
    path: str                    # absolute
    size: int                    # bytes on disk, everything under the folder
    what: str                    # simulator kind / step / architecture, in words
    progress: str                # samples done, epochs, frames
    config_hash: str | None
    parent: str | None = None    # the path of the entry it was made from, when listed too
    sources: list[str] = field(default_factory=list)   # what it was made from (paths)
    source_hashes: dict[str, str] = field(default_factory=dict, repr=False)  # their hashes then
    notes: list[str] = field(default_factory=list)
    children: list["Entry"] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "size": self.size, "what": self.what,
                "progress": self.progress, "config_hash": self.config_hash, "parent": self.parent,
                "sources": self.sources, "notes": self.notes,
                "children": [c.as_dict() for c in self.children]}


def config_hash(config: Any) -> str:
    """sha256 of a resolved config (canonical JSON; as the stores' config hash is made)."""
    data = dict(config) if isinstance(config, dict) else config
    if isinstance(data, dict):
        data.pop("name", None)
        data.pop("description", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def folder_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def _abs(p: Any) -> str | None:
    if not isinstance(p, str) or not p:
        return None
    return os.path.realpath(p)


def _zarr_attrs(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path / "zarr.json")
    except (OSError, ValueError):
        return {}
    return (data.get("attributes") or {}) if isinstance(data, dict) else {}


# -- recognising one folder ----------------------------------------------------------------
def _store(path: Path) -> Entry | None:
    from factory.store import DatasetStore

    attrs = _zarr_attrs(path)
    if isinstance(attrs.get("stream"), dict) and is_factory_zarr(path):
        return _predictions(path, attrs["stream"])
    if not isinstance(attrs.get("factory"), dict):
        return None  # a Zarr group the project did not write
    try:
        ds = DatasetStore.open(path, partial=True)
        info, meta = ds.info(), ds.meta
    except StoreError as exc:
        return Entry("store", str(path), folder_size(path), "damaged", "?", None,
                     notes=[f"damaged: {str(exc).splitlines()[0].removeprefix(f'{path}: ')}"])
    step = meta.get("step")
    what = f"{info['kind']} ({step})" if step else info["kind"]
    lineage = [s for s in info.get("lineage", []) if isinstance(s, dict)]
    sources = {_abs(s.get("path")): s.get("config_hash") for s in lineage}
    sources.pop(None, None)
    return Entry("store", str(path), folder_size(path), what, f"{info['done']}/{info['samples']} samples",
                 info.get("config_hash") or None, sources=list(sources), source_hashes=sources)


def _predictions(path: Path, stream: dict[str, Any]) -> Entry:
    summary = stream.get("summary") or {}
    done = summary.get("predicted")
    return Entry("predictions", str(path), folder_size(path), "stream predictions",
                 f"{done} frames predicted" if done is not None else "no summary (running or stopped early)", None,
                 sources=[p for p in [_abs(stream.get("model"))] if p])


def _run(path: Path) -> Entry | None:
    from .train_runs import RUN_SCHEMA, read_manifest

    manifest = read_manifest(path, RUN_SCHEMA)
    if manifest is None:
        return None
    cfg = manifest.get("config") or {}
    attempts = [a for a in manifest.get("attempts", []) if isinstance(a, dict)]
    store = _abs(attempts[-1].get("store")) if attempts else None
    name = cfg.get("name") or (cfg.get("model") or {}).get("name") or "training run"
    try:
        card = ModelCard.read(path / "model")
        progress = f"epoch {card.epoch}" + (f", model from epoch {card.training.selected_epoch}"
                                            if card.training and card.training.selected_epoch else "")
    except ModelError:
        checkpoints = len(list((path / "checkpoints").glob("attempt-*/epoch-*")))
        progress = f"no model yet, {checkpoints} checkpoint(s)"
    e = Entry("run", str(path), folder_size(path), str(name), progress, config_hash(cfg),
              sources=[store] if store else [])
    e.notes.append(f"{len(attempts)} attempt(s)")
    return e


def _model(path: Path) -> Entry | None:
    try:
        card = ModelCard.read(path)
    except ModelError:
        return None
    params = f"{card.parameters:,} parameters, " if card.parameters else ""
    what = f"{card.architecture.name} -> {', '.join(card.labels)}"
    ts = card.training_set
    store = _abs(ts.path) if ts else None
    e = Entry("model", str(path), folder_size(path), what, f"{params}epoch {card.epoch}",
              config_hash(card.training.config) if card.training else None,
              sources=[store] if store else [], source_hashes={store: ts.config_hash} if store and ts.config_hash else {})
    if card.transfer is not None:
        e.notes.append(f"transfer-learned from {card.transfer.from_model} ({card.transfer.freeze} blocks frozen)")
    return e


def _manifest_schema(path: Path) -> str | None:
    try:
        data = read_json(path / RUN_MANIFEST)
    except (OSError, ValueError):
        return None
    return data.get("schema") if isinstance(data, dict) else None


# -- scanning ---------------------------------------------------------------------------------
def scan(root: str | os.PathLike, max_depth: int = MAX_DEPTH) -> list[Entry]:
    """Every store, run and model under ``root`` (a flat list, depth-first, sorted by name)."""
    root = user_path(root)
    if not root.is_dir():
        raise StoreError(f"{root}: not a folder")
    found: list[Entry] = []

    def visit(path: Path, depth: int) -> None:
        if (path / "zarr.json").is_file():
            e = _store(path)
            if e is not None:
                found.append(e)
            return  # a Zarr group: nothing of ours inside
        if (path / RUN_MANIFEST).is_file():
            e = _run(path)
            if e is not None:
                found.append(e)
                model = _model(path / "model")
                if model is not None:
                    model.parent = e.path
                    found.append(model)
                return  # checkpoints hold model cards too: not listed one by one
            # another manifest of the project (transfer, learning curve): look inside
        elif (path / CARD).is_file():
            e = _model(path)
            if e is not None:
                found.append(e)
                return
        if depth >= max_depth:
            return
        try:
            entries = sorted(os.scandir(path), key=lambda d: d.name)
        except OSError:
            return
        for d in entries:
            if d.name.startswith(".") or not d.is_dir(follow_symlinks=False):
                continue
            visit(Path(d.path), depth + 1)

    visit(root, 0)
    return found


def tree(entries: list[Entry]) -> list[Entry]:
    """Link each entry under the entry it was made from (when listed); the roots, in order."""
    by_path = {e.path: e for e in entries}
    real = {os.path.realpath(e.path): e for e in entries}
    roots = []
    for e in entries:
        if e.parent is None:  # else placed by the scan (a run's model under its run)
            for src in e.sources:
                parent = real.get(src)
                if parent is not None and parent is not e:
                    e.parent = parent.path
                    break
            for src in e.sources:
                listed = real.get(src)
                if listed is not None and listed.path == e.parent:
                    pass
                elif listed is not None:
                    e.notes.append(f"also from {listed.path}")
                else:
                    e.notes.append(f"from {src}" + (" (not under this folder)" if os.path.exists(src) else " (missing)"))
                recorded = e.source_hashes.get(src)
                if listed is not None and recorded and listed.config_hash and recorded != listed.config_hash:
                    e.notes.append(f"{listed.path} changed since (config hash {listed.config_hash[:12]}, "
                                   f"{recorded[:12]} when this was made)")
        if e.parent is None:
            roots.append(e)
        else:
            by_path[e.parent].children.append(e)
    return roots


def inventory(root: str | os.PathLike, max_depth: int = MAX_DEPTH) -> list[Entry]:
    """The lineage tree of what is under ``root``: its root entries (children inside)."""
    return tree(scan(root, max_depth))


def human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def render(roots: list[Entry], base: str | os.PathLike) -> list[str]:
    """The tree as text lines: path (relative to ``base``), kind, what, progress, size, hash."""
    base = os.path.realpath(base)
    lines: list[str] = []

    def rel(p: str) -> str:
        r = os.path.relpath(p, base)
        return p if r.startswith("..") else r

    def line(e: Entry, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└── " if last else "├── ")
        h = e.config_hash[:12] if e.config_hash else "-"
        notes = f"  [{'; '.join(e.notes)}]" if e.notes else ""
        lines.append(f"{prefix}{branch}{rel(e.path)}  {e.kind}: {e.what}, {e.progress}, "
                     f"{human_size(e.size)}, config {h}{notes}")
        child_prefix = prefix + ("" if top else ("    " if last else "│   "))
        for i, c in enumerate(e.children):
            line(c, child_prefix, i == len(e.children) - 1, False)

    for e in roots:
        line(e, "", True, True)
    return lines


__all__ = ["Entry", "config_hash", "human_size", "inventory", "render", "scan", "tree"]
