"""Transfer learning (Shvetsov-Shilovski & Lein, Phys. Rev. A 107, 033106 (2023), Sec. IV):
retrain a trained model on a small shifted set.

:func:`transfer` loads a trained model, freezes its first ``freeze`` feature blocks
(convolutional layers; the paper freezes 3 or 4 of 5), retrains the rest on the training
split of a shifted store (focal-averaged PMDs, R in [8, 12], alpha != 0, CEP != 0, HeH+), and
compares on the same held-out shifted samples: the original model, the transfer-learned
model and a model trained from scratch with the original recipe on the same small set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from factory.outputs import check_disjoint, staged_output, user_path
from factory.store import DatasetStore

from .artifact import check_compatible, load_network, store_preprocessing
from .card import ModelCard, ModelError, as_card
from .evaluate import evaluate
from .train import train
from .train_config import TrainConfig, config_from_dict
from .train_job import training_split
from .train_runs import MANIFEST_VERSION, owned_output, write_manifest

SCHEMA = "factory.transfer"
#: a transfer folder: its manifest, the two runs, the evaluations, the table and the figure
is_transfer_folder = owned_output(SCHEMA, frozenset({"transfer", "scratch", "eval", "transfer.json", "transfer.png"}))


def transfer_configs(base_card: ModelCard | dict[str, Any], model: str | Path, *, freeze: int = 3, lr: float = 1e-2,
                     epochs: int | None = None, max_train: int | None = None,
                     overrides: dict[str, Any] | None = None) -> tuple[TrainConfig, TrainConfig]:
    """(transfer config, from-scratch config) derived from the base model's own training config."""
    training = as_card(base_card, model).training
    if training is None:
        raise ModelError(f"{model}: its card records no training config (not made by factory train); "
                         "nothing to derive the transfer from")
    base = json.loads(json.dumps(training.config))
    base["data"]["store"] = None
    base["run"]["stop_after_epoch"] = None
    if max_train is not None:
        base["data"]["max_train"] = max_train
    for k, v in (overrides or {}).items():
        node = base
        *path, last = k.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = v
    scratch = json.loads(json.dumps(base))
    scratch["transfer"] = {"from_model": None, "freeze": 0}
    scratch["name"] = f"{base.get('name') or 'model'}-scratch"
    tl = json.loads(json.dumps(base))
    tl["transfer"] = {"from_model": str(user_path(model)), "freeze": freeze}
    tl["optim"]["lr"] = lr
    tl["name"] = f"{base.get('name') or 'model'}-transfer"
    if epochs is not None:
        tl["optim"]["epochs"] = epochs
        tl["optim"]["lr_drop_epochs"] = [d for d in tl["optim"]["lr_drop_epochs"] if d < epochs]
    return config_from_dict(tl, "transfer config"), config_from_dict(scratch, "scratch config")


def transfer(model: str | Path, store: str | Path, out: str | Path, *, freeze: int = 3, lr: float = 1e-2,
             epochs: int | None = None, max_train: int | None = None, scratch: bool = True,
             overrides: dict[str, Any] | None = None, overwrite: bool = False, progress: bool = True,
             address: str | None = None) -> dict[str, Any]:
    """Transfer-learn ``model`` on ``store`` into ``out``; returns the comparison table.

    The whole folder is built in a hidden sibling and renamed into place when complete;
    ``overwrite`` replaces only a transfer folder the project made.

    Parameters
    ----------
    model : str or pathlib.Path
        The trained model folder to start from (made by ``models.train.train``: its card
        holds the training config both new runs derive from).
    store : str or pathlib.Path
        The shifted processed store (a local path), preprocessed as the model's training set;
        its training split trains, its held-out samples score all models.
    out : str or pathlib.Path
        The transfer folder: ``transfer/`` and ``scratch/`` runs, ``eval/``,
        ``transfer.json`` and ``transfer.png``.
    freeze : int, optional
        Feature blocks (convolutional layers) kept frozen; the paper freezes 3 or 4 of 5.
    lr : float, optional
        Learning rate of the transfer run.
    epochs : int, optional
        Epochs of the transfer run; default the model's own.
    max_train : int, optional
        At most this many training samples (a seeded subset), for both runs.
    scratch : bool, optional
        Also train a model from scratch with the original recipe on the same samples.
    overrides : dict, optional
        ``{"key.path": value}`` changes to the derived training configs of both runs.
    overwrite : bool, optional
        Replace an existing transfer folder made by factory.
    progress : bool, optional
        Show progress bars.
    address : str, optional
        The Ray cluster of the training runs; default ``RAY_ADDRESS``, else an embedded
        local Ray.

    Returns
    -------
    dict
        The comparison: ``models`` (``original``, ``transfer``, ``scratch``: the MAE per
        label on the held-out samples), ``mean_predictor``, ``held_out``, ``n_train``,
        ``freeze``, ``lr``, ``store`` and the runs' wall times (``transfer_wall_s``,
        ``scratch_wall_s``); also written as ``transfer.json``.

    Raises
    ------
    ModelError
        The model is missing or damaged, its card has no training config, or it was trained
        on differently preprocessed images.
    StoreError
        The store is missing, incomplete or damaged.
    ConfigError
        The derived training configs are invalid (e.g. a bad override).
    OutputError
        ``out`` overlaps an input or exists and is not a transfer folder to replace.
    """
    model, store, out = user_path(model), user_path(store), user_path(out)
    check_disjoint(out, [model, store])
    base_card = load_network(model)[1]  # its weights load (a damaged file is refused before anything is written)
    ds = DatasetStore.open(store)
    check_compatible(base_card, preprocessing=store_preprocessing(ds), what="model to transfer from", where=model)
    tl_cfg, sc_cfg = transfer_configs(base_card, model, freeze=freeze, lr=lr, epochs=epochs, max_train=max_train,
                                      overrides=overrides)
    split = training_split(ds, tl_cfg.data.val_fraction, tl_cfg.data.split_seed)
    held = split.held_out()
    table = {"store": str(ds.path), "held_out": int(len(held)), "n_train": min(len(split.train), max_train or len(split.train)),
             "freeze": freeze, "lr": lr, "models": {}}
    with staged_output(out, overwrite=overwrite, what="transfer folder", recognise=is_transfer_folder) as tmp:
        tmp.mkdir()
        write_manifest(tmp, {"schema": SCHEMA, "version": MANIFEST_VERSION, "model": str(model), "store": str(store)})
        res_tl = train(tl_cfg, store, tmp / "transfer", progress=progress, address=address)
        ev = {"original": evaluate(model, store, tmp / "eval", indices=held, tag="-original")}
        ev["transfer"] = evaluate(res_tl.model, store, tmp / "eval", indices=held, tag="-transfer")
        table["transfer_wall_s"] = res_tl.wall_s
        if scratch:
            res_sc = train(sc_cfg, store, tmp / "scratch", progress=progress, address=address)
            ev["scratch"] = evaluate(res_sc.model, store, tmp / "eval", indices=held, tag="-scratch")
            table["scratch_wall_s"] = res_sc.wall_s
        for k, r in ev.items():
            table["models"][k] = {n: v["mae"] for n, v in r.get("per_label", {}).items()}
        first = base_card.labels[0]
        table["mean_predictor"] = {first: ev["transfer"]["per_label"][first]["mae_mean_predictor"]}
        from factory.plots import label_units

        _figure(tmp, ev, first, label_units(ds, [first])[first])
        (tmp / "transfer.json").write_text(json.dumps(table, indent=1))
    return table


def transfer_figure(curves: dict[str, tuple[Any, Any]], ev: dict[str, Any], label: str, unit: str | None = None):
    """Predicted vs true ``label`` (in ``unit``) for each model of the comparison (``curves``:
    name -> (true, predicted)); a model no better than the mean predictor is flagged in red."""
    import numpy as np

    from factory.plots.style import unit_text

    from .figures import _plt, pred_true_panel

    plt = _plt()
    fig, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves), 3.7), squeeze=False, layout="constrained")
    for ax, (name, (t, p)) in zip(axes[0], curves.items()):
        per = ev[name]["per_label"][label]
        pred_true_panel(ax, np.asarray(t), np.asarray(p), label,
                        f"{name}: MAE {per['mae']:.3g} {unit_text(unit) if unit not in (None, 'code') else ''}".strip(),
                        unit=unit, mean_predictor_mae=per.get("mae_mean_predictor"), fontsize=9)
    return fig


def _figure(out: Path, ev: dict[str, Any], label: str, unit: str | None = None) -> Path:
    import numpy as np

    from factory.plots import save

    curves = {}
    for name in ev:
        z = np.load(out / "eval" / f"predictions-{name}.npz")
        curves[name] = (z[f"true_{label}"], z[f"pred_{label}"])
    return save(transfer_figure(curves, ev, label, unit), out / "transfer.png")


__all__ = ["transfer", "transfer_configs"]
