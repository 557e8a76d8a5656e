"""Quickstart stages of the learning half: train and evaluate a small model of each kind.

Each ``stage_*(ctx) -> str`` returns a Markdown section (figures next to the report) for
``factory.app.quickstart``.  They look for the processed stores in ``ctx.stores`` under the keys
of :data:`STORE_KEYS`; when none is there (a chain run without that simulator) they train on
a synthetic store of the same shape and say so in the report.  Training runs through Ray
Train on the quickstart's embedded local Ray (at size ``tiny`` in-process, to stay within seconds).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

STORE_KEYS: dict[str, tuple[str, ...]] = {
    "pmd": ("pmd-net", "tdse-net", "pmd2d", "pmd"),
    "pmd1d": ("pmd1d-net", "tdse-1d", "pmd1d"),
    "scatter": ("msft-net", "scatter-net", "msft-aug", "scatter"),
}
# epochs per quickstart size (the presets' own 'small' schedules are longer). Measured on the
# shared 2-core box: 8 epochs took 172 s (PMD CNN, 146 images of 128 x 256) and 186 s (ResNet
# small, 410 images of 128 x 128, with Fig. 5), about 40 s of that Ray Train start-up.
EPOCHS = {"tiny": 2, "small": 5, "paper": 30}
#: the PMD CNN at `small` learns from ~100 TDSE PMDs: more epochs (an epoch is a few seconds), in-process
#: (Ray Train's start-up would cost more than the training; the ResNet stage shows the Ray Train path)
PMD_EPOCHS = {"small": 15}


def _find(ctx, kind: str) -> Path | None:
    for key in STORE_KEYS[kind]:
        if key in ctx.stores:
            return Path(ctx.stores[key])
    return None


def _synthetic(ctx, kind: str) -> Path:
    from models.synthetic import make_store

    n = 64 if ctx.size == "tiny" else 384
    path = ctx.out / f"synthetic-{kind}.zarr"
    if kind == "pmd1d":
        make_store(path, kind="profiles", n=n, chunk=32, shape=(256,))
    else:
        make_store(path, kind="disks", n=n, chunk=32, shape=(64, 128) if ctx.size != "paper" else (128, 256))
    ctx.stores[f"synthetic-{kind}"] = path
    return path


def _run(ctx, preset: str, store: Path, name: str, extra: list[str] | None = None,
         epochs: int | None = None, local: bool = False) -> tuple[Any, dict, Path]:
    from models.evaluate import evaluate
    from models.train import load_train_config, train

    size = "tiny" if ctx.size == "tiny" else "small"
    epochs = epochs or EPOCHS.get(ctx.size, 8)
    sets = [f"optim.epochs={epochs}", f"optim.lr_drop_epochs=[{max(1, int(epochs * 0.75))}]"] + list(extra or [])
    if ctx.size == "paper":
        size, sets = "paper", []
    if ctx.size == "tiny" or local:  # seconds: in-process (the Ray Train path is the same function; tests cover it)
        sets.append("run.backend=local")
    cfg = load_train_config(f"{preset}/{size}", sets)
    run = ctx.out / f"train-{name}"
    res = train(cfg, store, run, overwrite=True, progress=ctx.progress)
    ev = evaluate(res.model, store, run / "eval")
    return res, ev, run


def _rel(ctx, path: Path) -> str:
    return str(Path(path).resolve().relative_to(ctx.out.resolve()))


def _table(ev: dict) -> str:
    rows = ["| output | MAE | MAE of the mean predictor | RMSE |", "| --- | --- | --- | --- |"]
    for n, m in ev.get("per_label", {}).items():
        mp = m["mae_mean_predictor"]
        rows.append(f"| {n} | {m['mae']:.4g} | {mp:.4g} | {m['rmse']:.4g} |" if mp is not None else
                    f"| {n} | {m['mae']:.4g} | - | {m['rmse']:.4g} |")
    return "\n".join(rows)


def _section(ctx, title: str, preset: str, store: Path, synthetic: bool, res, ev, run: Path, note: str = "") -> str:
    figs = [run / "loss.png", *(Path(f) for f in ev.get("figures", {}).values())]
    src = (f"a synthetic store (`{store.name}`: no processed store of this kind in this run)" if synthetic
           else f"`{store.name}`")
    return (
        f"## {title}\n\n"
        f"`factory train {preset}/{'tiny' if ctx.size == 'tiny' else 'small'} --store {store.name} --out {run.name}` on {src}: "
        f"{res.epochs_done} epochs in {res.wall_s:.1f} s ({res.train_images_per_s:.0f} training images/s) on "
        f"{res.where}; epoch {res.best_epoch} selected. Scored on {ev['samples']} samples ({ev['subset']}), "
        f"{ev['inference_images_per_s']:.0f} images/s.\n\n{_table(ev)}\n\n{note}"
        + "".join(f"![{f.stem}]({_rel(ctx, f)})\n\n" for f in figs if f.is_file())
    )


def stage_train_pmd(ctx) -> str:
    """PMD CNN (Shvetsov-Shilovski & Lein, PRA 2023) on the processed 2D PMD store."""
    store = _find(ctx, "pmd")
    synthetic = store is None
    store = store or _synthetic(ctx, "pmd")
    epochs = None if synthetic else PMD_EPOCHS.get(ctx.size)
    res, ev, run = _run(ctx, "pmd-cnn", store, "pmd-cnn", epochs=epochs, local=epochs is not None)
    return _section(ctx, "PMD CNN (Shvetsov-Shilovski & Lein, PRA 2023): R from 2D momentum distributions", "pmd-cnn",
                    store, synthetic, res, ev, run)


def stage_train_pmd1d(ctx) -> str:
    """1D CNN and MLP (Shvetsov-Shilovski & Lein, PRA 2023, Sec. III) on dP/dkx."""
    store = _find(ctx, "pmd1d")
    synthetic = store is None
    store = store or _synthetic(ctx, "pmd1d")
    out = []
    for preset, title in (("1d-cnn", "1D CNN on dP/dkx (Shvetsov-Shilovski & Lein, PRA 2023, Sec. III)"),
                          ("1d-mlp", "MLP on dP/dkx (Shvetsov-Shilovski & Lein, PRA 2023, Sec. III)")):
        res, ev, run = _run(ctx, preset, store, preset)
        out.append(_section(ctx, title, preset, store, synthetic, res, ev, run))
    return "\n".join(out)


def stage_train_scatter(ctx) -> str:
    """ResNet with tanh (Stielow et al., MLST 2020) on the processed scattering store, App. C errors, Fig. 5."""
    store = _find(ctx, "scatter")
    if store is None:
        return ("## ResNet (Stielow et al., MLST 2020)\n\nNo processed scattering store in this run (keys "
                f"{', '.join(STORE_KEYS['scatter'])}); skipped.\n")
    res, ev, run = _run(ctx, "resnet-scatter", store, "resnet")
    note = ""
    if "relative_error" in ev:
        r = ev["relative_error"]
        note = (f"App. C relative errors (quaternions normalised and projected into the fundamental domain): "
                f"median of the per-image mean {100 * r['median_mean']:.2f} %, median of the max "
                f"{100 * r['median_max']:.2f} %; {100 * r['fraction_mean_below_5pct']:.0f} % of the images below 5 %.\n\n")
        try:
            note += _measured_stage(ctx, res.model, run, store)
        except Exception as exc:  # noqa: BLE001 - the figure is a bonus; report why it is missing
            note += f"(Fig. 5 skipped: {type(exc).__name__}: {exc})\n\n"
    return _section(ctx, "ResNet with tanh (Stielow et al., MLST 2020): radius and orientation from scattering images",
                    "resnet-scatter", store, False, res, ev, run, note)


FIG5_REFINE_STEPS = {"tiny": 3, "small": 8, "paper": 40}


def _measured_stage(ctx, model, run, store) -> str:
    """Fig. 5 on the measured icosahedra with this run's small ResNet, honestly labelled."""
    from factory.store import DatasetStore
    from models.experimental import reconstruct_experimental

    n_images = DatasetStore.open(store).n_samples
    t0 = time.perf_counter()
    steps = FIG5_REFINE_STEPS.get(ctx.size, 12)
    f5 = reconstruct_experimental(model, run / "fig5", refine_steps=steps)
    rows = []
    for r in f5["images"]:
        ref = r.get("refined", {})
        rows.append(f"| {r['name']} | {r['radius_nm']:.0f}{'' if r['inside_training_range'] else ' (outside)'} | "
                    f"{r['correlation']:.2f} | {ref.get('radius_nm', float('nan')):.0f} | "
                    f"{ref.get('correlation', float('nan')):.2f} |")
    return (f"### The measured patterns (Stielow et al., MLST 2020, Fig. 5)\n\n"
            f"`factory fig5 train-resnet/model --refine-steps {steps}`: the two measured icosahedra through the "
            "measured detector model (valid pixels, central hole, saturation, log display), the network's radius "
            f"and orientation re-simulated, then {steps} gradient-descent passes through the differentiable MSFT, "
            f"in {time.perf_counter() - t0:.0f} s. r is the Pearson correlation between measured and re-simulated "
            "pattern over the valid detector pixels.\n\n"
            "| pattern | network R (nm) | r, network | refined R (nm) | r, refined |\n| --- | --- | --- | --- | --- |\n"
            + "\n".join(rows) + "\n\n"
            f"What this small model can and cannot do: it saw {n_images} simulated images, none through the "
            "measured detector, so on the measured patterns it reads images unlike its training set; its guess "
            "is only a starting point, and a few refinement passes from a poor start stay in a local minimum. "
            "The 'Training for the measured patterns' recipe of docs/measured.md (4096 images x 11 filters through the "
            f"detector model) is what reaches r >= 0.8. {f5['attribution']}\n\n"
            f"![fig5]({_rel(ctx, Path(f5['figure']))})\n\n")


STAGES = [
    ("train-pmd", stage_train_pmd),
    ("train-pmd1d", stage_train_pmd1d),
    ("train-scatter", stage_train_scatter),
]
