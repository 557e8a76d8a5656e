"""Quickstart stage: the comparison table (seed 000 Table I) at small scale.

``stage_baselines(ctx) -> str`` (a :class:`factory.quickstart.Context`) reads, when present:

- ``ctx.stores["pmd-net"]``: the network-ready unshifted PMD store (its non-test samples train
  the classical methods) and ``ctx.stores["pmd-net-test"]``: the unshifted test store (else
  the test split of ``pmd-net``);
- ``ctx.stores["pmd-shift-<name>"]`` for ``name`` in focal, large-R, alpha, cep, heh: shifted
  test stores, preprocessed like ``pmd-net``;
- ``ctx.stores["pmd-cnn-model"]``: the CNN trained on ``pmd-net`` (a model folder), and
  ``ctx.stores["pmd-transfer-<name>"]``: transfer-learned models per shifted set.

Without ``pmd-net`` it builds PMD-like synthetic stores (:mod:`models.shifted_synthetic`; no
CNN).  The quick methods run (direct comparison by MSE, SVM/DT/XGBoost on HOG); SIFT, the
slowest, is left to ``factory table``.  About a minute at ``small`` on 2 cores.
"""

from __future__ import annotations

import time
from pathlib import Path

QUICK_METHODS = ["mse", "svr-hog", "dt-hog", "xgb-hog"]
SHIFT_KEYS = ["focal", "large-R", "alpha", "cep", "heh"]
SYNTHETIC = {"tiny": dict(n_train=80, n_test=24, n_shift=30, shape=(32, 64)),
             "small": dict(n_train=240, n_test=60, n_shift=60, shape=(64, 128)),
             "paper": dict(n_train=2250, n_test=750, n_shift=750, shape=(128, 256))}


def stage_baselines(ctx) -> str:
    from .baselines import BaselineOptions
    from .table import transferability_table

    t0 = time.perf_counter()
    out = Path(ctx.out) / "table"
    stores = {k: Path(v) for k, v in ctx.stores.items()}
    opts = BaselineOptions(parallel="auto")
    if "pmd-net" in stores:
        source = "the quickstart's TDSE stores"
        shifted = {k: stores[f"pmd-shift-{k}"] for k in SHIFT_KEYS if f"pmd-shift-{k}" in stores}
        transfer = {k: stores[f"pmd-transfer-{k}"] for k in SHIFT_KEYS if f"pmd-transfer-{k}" in stores and k in shifted}
        kw = dict(train_store=stores["pmd-net"], test_store=stores.get("pmd-net-test"), shifted=shifted,
                  cnn_model=stores.get("pmd-cnn-model"), transfer_models=transfer)
    else:
        from .shifted_synthetic import make_table_stores

        size = SYNTHETIC.get(ctx.size, SYNTHETIC["small"])
        made = make_table_stores(Path(ctx.out) / "pmd-like", **size)
        ctx.stores["pmd-like-train"] = Path(made["train"])
        source = (f"PMD-like synthetic stores ({size['n_train']} training, {size['n_test']} test, {size['n_shift']} per "
                  f"shifted set, {size['shape'][0]} x {size['shape'][1]}; no TDSE store in this run)")
        kw = dict(train_store=made["train"], test_store=made["test"], shifted=made["shifted"])
    res = transferability_table(**kw, methods=QUICK_METHODS, options=opts, out=out, progress=False)
    from .table import markdown_table

    dt = time.perf_counter() - t0
    return ("## Classical baselines and the transferability table (seed 000 Sec. V, Table I)\n\n"
            f"On {source}; {dt:.0f} s. Regenerate with `factory table CONFIG --out DIR` (all methods, SIFT "
            "included) or `factory baselines TRAIN TEST`.\n\n" + markdown_table(res) + "\n")


__all__ = ["QUICK_METHODS", "stage_baselines"]
