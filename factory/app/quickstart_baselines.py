"""Quickstart stage: the comparison table (Shvetsov-Shilovski & Lein, PRA 2023, Table I) at small scale.

``stage_baselines(ctx) -> str`` (a :class:`factory.app.quickstart.Context`) reads, when present:

- the network-ready unshifted PMD store: the first of ``ctx.stores["pmd-net"]``,
  ``["tdse-net"]``, ``["pmd2d"]``, ``["pmd"]`` (the keys the PMD CNN stage looks for), and
  ``ctx.stores["pmd-net-test"]``, an unshifted test store;
- ``ctx.stores["pmd-shift-<name>"]`` for ``name`` in focal, large-R, alpha, cep, heh: shifted
  test stores, preprocessed like the PMD store;
- the CNN: ``ctx.stores["pmd-cnn-model"]`` (a model folder), else ``OUT/train-pmd-cnn/model``
  (the PMD CNN stage's) when it was trained on that PMD store; ``ctx.stores["pmd-transfer-<name>"]``:
  transfer-learned models per shifted set.

Samples: without a test store or test split, the alternatives train on the CNN's training
split and everything is scored on the CNN's held-out samples (its split settings; 80/20 without
a CNN).  Without a PMD store it builds PMD-like synthetic stores (:mod:`models.shifted_synthetic`;
no CNN).  The quick methods run (direct comparison by MSE, SVM/DT/XGBoost on HOG); SIFT, the
slowest, is left to ``factory table``.  About half a minute at ``small`` on 2 cores.
"""

from __future__ import annotations

import time
from pathlib import Path

QUICK_METHODS = ["mse", "svr-hog", "dt-hog", "xgb-hog"]
SHIFT_KEYS = ["focal", "large-R", "alpha", "cep", "heh"]
PMD_KEYS = ["pmd-net", "tdse-net", "pmd2d", "pmd"]
SYNTHETIC = {"tiny": dict(n_train=80, n_test=24, n_shift=30, shape=(32, 64)),
             "small": dict(n_train=240, n_test=60, n_shift=60, shape=(64, 128)),
             "paper": dict(n_train=2250, n_test=750, n_shift=750, shape=(128, 256))}


def _cnn_for(ctx, stores: dict[str, Path], train: Path) -> Path | None:
    """The PMD CNN of this run, if it was trained on ``train``."""
    from factory.store import DatasetStore

    from models.artifact import ModelError, read_card

    cand = stores.get("pmd-cnn-model") or Path(ctx.out) / "train-pmd-cnn" / "model"
    try:
        card = read_card(cand)
    except ModelError:
        return None
    same = card.training_set is not None and card.training_set.config_hash == DatasetStore.open(train).config_hash
    return Path(cand) if same and card.task == "regress" and "R" in card.labels else None


def stage_baselines(ctx) -> str:
    from models.baselines import BaselineOptions
    from models.table import markdown_table, transferability_table

    t0 = time.perf_counter()
    out = Path(ctx.out) / "table"
    stores = {k: Path(v) for k, v in ctx.stores.items()}
    opts = BaselineOptions(parallel="auto")
    train_key = next((k for k in PMD_KEYS if k in stores), None)
    if train_key is not None:
        from factory.processing.steps import read_split
        from factory.store import DatasetStore

        from models.artifact import read_card
        from models.data import make_split

        train = stores[train_key]
        source = f"`{train.name}`"
        shifted = {k: stores[f"pmd-shift-{k}"] for k in SHIFT_KEYS if f"pmd-shift-{k}" in stores}
        transfer = {k: stores[f"pmd-transfer-{k}"] for k in SHIFT_KEYS if f"pmd-transfer-{k}" in stores and k in shifted}
        cnn = _cnn_for(ctx, stores, train)
        kw = dict(train_store=train, test_store=stores.get("pmd-net-test"), shifted=shifted, cnn_model=cnn,
                  transfer_models=transfer)
        ds = DatasetStore.open(train)
        split = read_split(ds)
        if "pmd-net-test" not in stores and (split is None or not (split == 2).any()):
            ts = read_card(cnn).training_set if cnn else None
            sp = ts.split if ts is not None else None
            s = make_split(ds, (sp.val_fraction if sp else None) or 0.2, (sp.seed if sp else None) or 0)
            kw.update(train_indices=s.train, test_indices=s.held_out())
            source += f" ({len(s.train)} training samples, {len(s.held_out())} held out" + \
                      (", as the CNN's split)" if cnn else ")")
    else:
        from models.shifted_synthetic import make_table_stores

        size = SYNTHETIC.get(ctx.size, SYNTHETIC["small"])
        made = make_table_stores(Path(ctx.out) / "pmd-like", **size)
        ctx.stores["pmd-like-train"] = Path(made["train"])
        source = (f"PMD-like synthetic stores ({size['n_train']} training, {size['n_test']} test, {size['n_shift']} per "
                  f"shifted set, {size['shape'][0]} x {size['shape'][1]}; no processed PMD store in this run)")
        kw = dict(train_store=made["train"], test_store=made["test"], shifted=made["shifted"])
    res = transferability_table(**kw, methods=QUICK_METHODS, options=opts, out=out, progress=False)
    dt = time.perf_counter() - t0
    return ("## Classical baselines and the transferability table "
            "(Shvetsov-Shilovski & Lein, PRA 2023, Sec. V, Table I)\n\n"
            f"On {source}; {dt:.0f} s. Regenerate with `factory table CONFIG --out DIR` (all methods, SIFT "
            "included) or `factory baselines TRAIN TEST`.\n\n" + markdown_table(res) + "\n")


__all__ = ["QUICK_METHODS", "stage_baselines"]
