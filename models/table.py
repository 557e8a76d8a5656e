"""The transferability table (Shvetsov-Shilovski & Lein, PRA 2023, Table I) regenerated, the paper's values beside ours.

:func:`transferability_table` fits every classical method once on the unshifted training
store (:mod:`models.baselines`), scores them, the trained CNN and the CNN after transfer
learning on the unshifted test set and on each shifted test set (focal-averaged, R in
[8, 12], alpha, CEP, HeH+), and writes ``table.md``, ``table.csv`` and ``table.json``.

Which samples: on a shifted store with a transfer-learned model, the samples that model
held out (its test split, else its validation split), so that no method is scored on an
image the transfer learning saw; otherwise the store's test split, else all its samples.
Every method is scored on the same samples of a set.  On the unshifted test store: its test
split (or all of it when it is a separate store without one); interpolated samples never.

A YAML config holds the same arguments (``factory table CONFIG --out DIR``)::

    train: net.zarr                  # unshifted training store (its non-test samples)
    test: test-net.zarr              # unshifted test store (default: train's test split)
    references: []                   # more direct-comparison references (mse+refs, sift+refs)
    shifted: {focal: focal-net.zarr, large-R: large-R-net.zarr, alpha: ..., cep: ..., heh: ...}
    cnn: run/model                   # the CNN trained on the unshifted set
    transfer: {focal: transfer-focal/transfer/model, ...}
    methods: [mse, sift, svr-hog, dt-hog, xgb-hog, svr-sift]
    label: R
    options: {interpolate: 0}        # BaselineOptions
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from factory.errors import ConfigError, StoreError
from factory.logs import get_logger
from factory.outputs import ResultFolder
from factory.store import DatasetStore

from .baselines import (DEFAULT_METHODS, METHODS, BaselineOptions, Baselines, ImageSet, check_shapes, score,
                        evaluation_set, training_set)

# Shvetsov-Shilovski & Lein, PRA 2023, Table I (MAE of R, a.u.) and the in-distribution values of Secs. III and V
SETS = ["focal-averaged", "R in [8, 12]", "alpha", "CEP", "HeH+"]
ALIASES = {"focal": "focal-averaged", "focal-averaged": "focal-averaged", "averaged": "focal-averaged",
           "large-r": "R in [8, 12]", "r in [8, 12]": "R in [8, 12]", "large_r": "R in [8, 12]", "r8-12": "R in [8, 12]",
           "alpha": "alpha", "cep": "CEP", "heh": "HeH+", "heh+": "HeH+"}
ROWS = ["cnn", "cnn+transfer", "mse", "mse+refs", "sift", "sift+refs", "svr-hog", "dt-hog", "xgb-hog", "svr-sift"]
ROW_NAMES = {"cnn": "CNN", "cnn+transfer": "CNN + transfer learning", **METHODS}
PAPER_TABLE: dict[str, dict[str, float]] = {
    "cnn": {"focal-averaged": 0.83, "R in [8, 12]": 3.05, "alpha": 0.90, "CEP": 0.89, "HeH+": 1.69},
    "cnn+transfer": {"focal-averaged": 0.15, "R in [8, 12]": 0.06, "alpha": 0.17, "CEP": 0.23, "HeH+": 0.08},
    "mse": {"focal-averaged": 1.44, "R in [8, 12]": 5.10, "alpha": 1.37, "CEP": 1.38, "HeH+": 1.57},
    "sift": {"focal-averaged": 1.19, "R in [8, 12]": 3.57, "alpha": 1.14, "CEP": 0.71, "HeH+": 1.76},
    "svr-hog": {"focal-averaged": 1.03, "R in [8, 12]": 2.15, "alpha": 0.99, "CEP": 1.18, "HeH+": 1.54},
    "dt-hog": {"focal-averaged": 2.09, "R in [8, 12]": 2.07, "alpha": 1.54, "CEP": 1.52, "HeH+": 2.31},
}
PAPER_UNSHIFTED = {"cnn": 0.07, "mse": 0.06, "mse+refs": 0.055, "sift": 0.054, "svr-hog": 0.13, "dt-hog": 0.10,
                   "svr-sift": 0.32}

log = get_logger(__name__)


def canonical_set(name: str) -> str:
    return ALIASES.get(str(name).strip().lower(), str(name))


def _shifted_samples(path: str, label: str, transfer_model: str | None) -> tuple[np.ndarray | None, str]:
    """The samples of a shifted store to score: those the transfer model held out, else the test split."""
    if transfer_model is None:
        return None, ""
    from .artifact import read_card
    from .evaluate import select_samples

    ds = DatasetStore.open(path)
    card = read_card(transfer_model)
    if card.training_set is None or card.training_set.config_hash != ds.config_hash:
        return None, f"the transfer model {transfer_model} was not trained on {path}"
    idx, which = select_samples(ds, card, "auto")
    return idx, which


def _cnn_train_s(folder: str | Path) -> float | None:
    from .artifact import read_card

    hist = read_card(folder).history
    return float(sum(h.epoch_s for h in hist)) if hist else None


class _CNN:
    def __init__(self, folder: str | Path, label: str, shape: tuple[int, ...]):
        from .artifact import ModelError, Predictor

        self.folder = str(folder)
        self.pred = Predictor(folder, device="cpu")
        if self.pred.task != "regress" or label not in self.pred.labels:
            raise ModelError(f"{folder}: predicts {self.pred.labels} ({self.pred.task}); the table needs a regression "
                             f"model of {label!r}")
        shp = tuple(self.pred.card.input.shape)
        if shp != tuple(shape):
            raise StoreError(f"{folder}: the model takes {' x '.join(map(str, shp))} images but the stores hold "
                             f"{' x '.join(map(str, shape))}; use a model trained on these stores")
        self.label = label
        self.preprocessing = self.pred.card.preprocessing

    def predict(self, s: ImageSet) -> tuple[np.ndarray, float]:
        x = s.images()
        t0 = time.perf_counter()
        y = self.pred.predict(x)[self.label]
        return np.asarray(y, dtype=np.float64), time.perf_counter() - t0


#: what :func:`transferability_table` writes into ``out``
RESULT_FILES = ("table.md", "table.csv", "table.json")


def transferability_table(train_store: str | Path, test_store: str | Path | None = None,
                          shifted: dict[str, str | Path] | None = None, *, cnn_model: str | Path | None = None,
                          transfer_models: dict[str, str | Path] | None = None, references: list[str | Path] = (),
                          methods: list[str] | None = None, label: str = "R", options: BaselineOptions | None = None,
                          out: str | Path | None = None, progress: bool = False,
                          train_indices: np.ndarray | None = None,
                          test_indices: np.ndarray | None = None) -> dict[str, Any]:
    """Score every method on the unshifted and the shifted test sets; write table.md/.csv/.json into ``out``.

    ``train_indices`` / ``test_indices`` select the unshifted training and test samples explicitly
    (e.g. a CNN's own training and held-out samples of a store without a test split)."""
    folder = ResultFolder(out, RESULT_FILES) if out is not None else None  # before any work
    t_all = time.perf_counter()
    methods = list(methods or DEFAULT_METHODS)
    opts = options or BaselineOptions()
    shifted = {canonical_set(k): str(v) for k, v in (shifted or {}).items()}
    transfer_models = {canonical_set(k): str(v) for k, v in (transfer_models or {}).items()}
    orphan = sorted(set(transfer_models) - set(shifted))
    if orphan:
        raise ConfigError(f"transfer-learned models for {orphan} but no shifted store of that name; "
                          f"shifted sets: {sorted(shifted)}")
    # -- refuse bad input before any work
    train = training_set(train_store, [label], indices=train_indices)
    same = test_store is None or Path(test_store).resolve() == Path(train_store).resolve()
    sets: dict[str, ImageSet] = {"unshifted": evaluation_set(test_store or train_store, [label], same_as_train=same,
                                                             indices=test_indices)}
    if same and train_indices is not None and test_indices is not None and np.intersect1d(train_indices, test_indices).size:
        raise ConfigError("the training and test samples overlap; pass disjoint train_indices and test_indices")
    notes = _add_shifted_sets(sets, shifted, transfer_models, label)
    refs = [training_set(r, [label]) for r in references]
    check_shapes(train, *sets.values(), *refs)
    cnn = _CNN(cnn_model, label, train.shape) if cnn_model else None
    tl = {k: _CNN(v, label, train.shape) for k, v in transfer_models.items()}
    notes += _preprocessing_notes(train, sets)
    # -- the classical methods: fit once, predict every set
    b = Baselines(methods, [label], opts).fit(train, refs, progress=progress)
    cells = _score_sets(b, methods, sets, cnn, tl, label, progress)
    timing = {m: {"train_s": b.timing[m].train_s, "n_train": b.timing[m].n_train} for m in methods}
    if cnn is not None:
        timing["cnn"] = {"train_s": _cnn_train_s(cnn.folder), "n_train": None}
    if tl:
        timing["cnn+transfer"] = {"train_s_per_set": {k: _cnn_train_s(v.folder) for k, v in tl.items()}}
    order = [r for r in ROWS if r in cells]
    result = {
        "label": label, "train_store": train.path, "n_train": len(train),
        "sets": {k: {"store": s.path, "samples": len(s), "which": s.which} for k, s in sets.items()},
        "rows": order, "cells": cells, "timing": timing, "paper": PAPER_TABLE, "paper_unshifted": PAPER_UNSHIFTED,
        "notes": notes, "models": {"cnn": str(cnn_model) if cnn_model else None, "transfer": transfer_models},
        "options": {k: v for k, v in vars(opts).items() if k != "address"},
    }
    result["checks"] = qualitative_checks(result)
    result["wall_s"] = time.perf_counter() - t_all
    if folder is not None:
        folder.write_text("table.md", markdown_table(result))
        folder.write("table.csv", lambda tmp: write_csv(result, tmp))
        folder.write_text("table.json", json.dumps(result, indent=1, default=str))
        result["files"] = [str(folder.path / f) for f in RESULT_FILES]
    return result


def _add_shifted_sets(sets: dict[str, ImageSet], shifted: dict[str, str], transfer_models: dict[str, str],
                      label: str) -> list[str]:
    """Each shifted store's samples to score into ``sets``; notes on those scored otherwise."""
    notes = []
    for name, path in shifted.items():
        idx, why = _shifted_samples(path, label, transfer_models.get(name))
        if why and idx is None:
            notes.append(f"{name}: {why}; scored on its test split (or all of it)")
        sets[name] = evaluation_set(path, [label], indices=idx)
        if why and idx is not None:
            sets[name].which = f"held out by its transfer-learned model: {why.replace(' of the training store', '')}"
    return notes


def _preprocessing_notes(train: ImageSet, sets: dict[str, ImageSet]) -> list[str]:
    from .artifact import first_difference

    notes, train_pre = [], DatasetStore.open(train.path).meta.get("preprocessing")
    for name, s in sets.items():
        pre = DatasetStore.open(s.path).meta.get("preprocessing")
        if pre != train_pre:
            diff = first_difference(train_pre, pre, root="preprocessing", sep="vs")
            notes.append(f"{name}: preprocessed differently from the training store ({diff})")
    return notes


def _score_sets(b: Baselines, methods: list[str], sets: dict[str, ImageSet], cnn: _CNN | None, tl: dict[str, _CNN],
                label: str, progress: bool) -> dict[str, dict[str, dict[str, Any]]]:
    """{row: {set: {mae, predict_s, n}}} of every method and network on every set."""
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for name, s in sets.items():
        preds = b.predict(s, progress=progress)
        true = s.labels
        for m in methods:
            cells.setdefault(m, {})[name] = {"mae": score(preds[m]["pred"], true)[label]["mae"],
                                             "predict_s": preds[m]["predict_s"], "n": len(s)}
        if cnn is not None:
            y, dt = cnn.predict(s)
            cells.setdefault("cnn", {})[name] = {"mae": float(np.mean(np.abs(y - true[label]))), "predict_s": dt, "n": len(s)}
        if name in tl:
            y, dt = tl[name].predict(s)
            cells.setdefault("cnn+transfer", {})[name] = {"mae": float(np.mean(np.abs(y - true[label]))),
                                                          "predict_s": dt, "n": len(s), "model": tl[name].folder}
        if progress:
            log.info("[table] %s: %d images scored", name, len(s))
    return cells


def qualitative_checks(result: dict[str, Any]) -> dict[str, Any]:
    """The qualitative claims of Shvetsov-Shilovski & Lein, PRA 2023, measured: the alternatives do not
    transfer, the transfer-learned CNN does."""
    cells = result["cells"]
    shifted = [k for k in result["sets"] if k != "unshifted"]
    alternatives = [m for m in cells if m not in ("cnn", "cnn+transfer")]
    out: dict[str, Any] = {}
    if "unshifted" in result["sets"]:
        out["degradation"] = {m: {k: cells[m][k]["mae"] / max(cells[m]["unshifted"]["mae"], 1e-12) for k in shifted}
                              for m in cells if "unshifted" in cells[m]}
    wins = {}
    for k in shifted:
        if k in cells.get("cnn+transfer", {}):
            best_alt = min((cells[m][k]["mae"] for m in alternatives), default=np.inf)
            wins[k] = bool(cells["cnn+transfer"][k]["mae"] < best_alt)
    if wins:
        out["transfer_beats_every_alternative"] = wins
    return out


def _fmt(v: float | None) -> str:
    return "–" if v is None else (f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}")


def markdown_table(result: dict[str, Any]) -> str:
    sets = list(result["sets"])
    cells, paper = result["cells"], result["paper"]
    label = result["label"]
    head = "| method | " + " | ".join(("unshifted test" if s == "unshifted" else s) for s in sets) + " |"
    lines = [f"MAE of {label}: ours (paper: Shvetsov-Shilovski & Lein, PRA 2023, Table I; unshifted: Secs. III/V). "
             "Alternatives trained only on "
             f"the unshifted training set ({result['n_train']} images of `{result['train_store']}`).", "",
             head, "|" + " --- |" * (len(sets) + 1)]
    for r in result["rows"]:
        row = [ROW_NAMES.get(r, r)]
        for s in sets:
            ours = cells[r].get(s, {}).get("mae")
            p = result["paper_unshifted"].get(r) if s == "unshifted" else paper.get(r, {}).get(s)
            row.append(f"{_fmt(ours)} ({_fmt(p)})" if ours is not None else f"– ({_fmt(p)})")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Samples scored per set: " + "; ".join(f"{k}: {v['samples']} ({v['which']})" for k, v in result["sets"].items()) + ".", ""]
    lines += ["Cost on the unshifted test set (wall-clock; training includes feature extraction):", "",
              "| method | training s | prediction ms / image | training images / references |", "| --- | --- | --- | --- |"]
    for r in result["rows"]:
        t = result["timing"].get(r, {})
        c = cells[r].get("unshifted")
        if r == "cnn+transfer":
            ts = t.get("train_s_per_set", {})
            tr = ", ".join(f"{k} {_fmt(v)}" for k, v in ts.items())
            per = [v["predict_s"] * 1000 / v["n"] for v in cells[r].values()]
            lines.append(f"| {ROW_NAMES[r]} | {tr} | {_fmt(float(np.mean(per)))} | |")
            continue
        ms = c["predict_s"] * 1000 / c["n"] if c else None
        lines.append(f"| {ROW_NAMES.get(r, r)} | {_fmt(t.get('train_s'))} | {_fmt(ms)} | {t.get('n_train') or ''} |")
    chk = result.get("checks", {})
    if chk.get("transfer_beats_every_alternative"):
        lines += ["", "Transfer-learned CNN better than every alternative: " +
                  ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in chk["transfer_beats_every_alternative"].items()) + "."]
    if result["notes"]:
        lines += ["", "Notes:", *[f"- {n}" for n in result["notes"]]]
    return "\n".join(lines) + "\n"


def write_csv(result: dict[str, Any], path: str | Path) -> Path:
    sets = list(result["sets"])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "key", *[c for s in sets for c in (f"{s} ours", f"{s} paper", f"{s} n")],
                    "train_s", "predict_ms_per_image_unshifted"])
        for r in result["rows"]:
            row = [ROW_NAMES.get(r, r), r]
            for s in sets:
                c = result["cells"][r].get(s)
                p = result["paper_unshifted"].get(r) if s == "unshifted" else result["paper"].get(r, {}).get(s)
                row += [f"{c['mae']:.6g}" if c else "", "" if p is None else p, c["n"] if c else ""]
            t = result["timing"].get(r, {})
            u = result["cells"][r].get("unshifted")
            row += ["" if t.get("train_s") is None else f"{t['train_s']:.4g}",
                    f"{u['predict_s'] * 1000 / u['n']:.4g}" if u else ""]
            w.writerow(row)
    return Path(path)


# -- the config file --------------------------------------------------------------------------------
def load_table_config(path: str | Path) -> dict[str, Any]:
    """A table config (YAML) as keyword arguments of :func:`transferability_table`; paths relative to the file."""
    from factory.config import read_yaml  # size-bounded, no aliases, UTF-8 checked

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"table config {path} not found")
    data = read_yaml(path)
    known = {"train", "test", "references", "shifted", "cnn", "transfer", "methods", "label", "options"}
    bad = sorted(set(data) - known)
    if bad:
        raise ConfigError(f"{path}: unknown key(s) {bad}; known: {', '.join(sorted(known))}")
    if "train" not in data:
        raise ConfigError(f"{path}: 'train' (the unshifted training store) is required")
    base = path.parent

    def p(v):
        return str(v if Path(v).is_absolute() else (base / v))

    return {"train_store": p(data["train"]), "test_store": p(data["test"]) if data.get("test") else None,
            "references": [p(v) for v in data.get("references") or []],
            "shifted": {k: p(v) for k, v in (data.get("shifted") or {}).items()},
            "cnn_model": p(data["cnn"]) if data.get("cnn") else None,
            "transfer_models": {k: p(v) for k, v in (data.get("transfer") or {}).items()},
            "methods": data.get("methods"), "label": data.get("label", "R"),
            "options": BaselineOptions.from_dict(data.get("options"))}


# -- a complete small run on synthetic data (demo, quickstart fallback, measurements) ------------------
def synthetic_table(folder: str | Path, *, n_train: int = 400, n_test: int = 100, n_shift: int = 160,
                    shape=(64, 128), epochs: int = 20, transfer_epochs: int = 12, freeze: int = 3,
                    methods: list[str] | None = None, options: BaselineOptions | None = None, train_cnn: bool = True,
                    progress: bool = False, seed: int = 0) -> dict[str, Any]:
    """Build the PMD-like synthetic stores (:mod:`models.shifted_synthetic`), train the CNN on the
    unshifted set and transfer-learn it on each shifted set (in-process training), then the table."""
    from .shifted_synthetic import SLUG, make_table_stores

    folder = Path(folder)
    stores = make_table_stores(folder / "stores", n_train=n_train, n_test=n_test, n_shift=n_shift, shape=shape,
                               seed=seed)
    cnn, tl, cost = None, {}, {}
    if train_cnn:
        from .train import load_train_config, train
        from .transfer import transfer

        sets = [f"optim.epochs={epochs}", f"optim.lr_drop_epochs=[{max(1, int(epochs * 0.7))}]", "run.backend=local",
                "optim.optimizer=adam", "optim.lr=0.001", "optim.batch_size=16", "data.val_fraction=0.2",
                "run.cpus_per_worker=1"]
        t0 = time.perf_counter()
        res = train(load_train_config("pmd-cnn/small", sets), stores["train"], folder / "cnn", overwrite=True,
                    progress=progress)
        cost["cnn_train_s"] = time.perf_counter() - t0
        cnn = res.model
        for name, path in stores["shifted"].items():
            t0 = time.perf_counter()
            transfer(cnn, path, folder / f"transfer-{SLUG[name]}", freeze=freeze, lr=1e-3, epochs=transfer_epochs,
                     scratch=False, overwrite=True, progress=progress,
                     overrides={"run.backend": "local", "optim.optimizer": "adam", "run.cpus_per_worker": 1})
            tl[name] = str(folder / f"transfer-{SLUG[name]}" / "transfer" / "model")
            cost[f"transfer_{SLUG[name]}_s"] = time.perf_counter() - t0
    result = transferability_table(stores["train"], stores["test"], stores["shifted"], cnn_model=cnn, transfer_models=tl,
                                   methods=methods, options=options, out=folder / "table", progress=progress)
    result["synthetic"] = {"n_train": n_train, "n_test": n_test, "n_shift": n_shift, "shape": list(shape),
                           "epochs": epochs, "transfer_epochs": transfer_epochs, "freeze": freeze, **cost}
    ResultFolder(folder / "table").write_text("table.json", json.dumps(result, indent=1, default=str))
    return result


__all__ = ["PAPER_TABLE", "PAPER_UNSHIFTED", "SETS", "canonical_set", "load_table_config", "markdown_table",
           "qualitative_checks", "synthetic_table", "transferability_table", "write_csv"]
