"""Command line of the learning half: train, evaluate, transfer, learning-curve, export, fig5.

Each command calls one library function.  ``COMMANDS`` are added at the top
level of another Typer app (``factory train ...``); ``app`` holds them too (``python -m
factory.app.learning ...``).  Heavy imports (torch, Ray) happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from factory.app.common import Address, AsJson, emit_json, fail, register_commands

app = typer.Typer(help="Networks: train, evaluate, transfer-learn, learning curves, export.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

Sets = Annotated[Optional[list[str]], typer.Option("--set", help="override a config key: --set optim.epochs=5 (repeatable)")]


def train_cmd(
    config: Annotated[str, typer.Argument(help="training config: YAML file or preset such as 'pmd-cnn/small' (see train-presets)")],
    store: Annotated[Optional[str], typer.Option(help="the (processed) training store, a folder or a URL such as s3://bucket/x.zarr (default: data.store of the config)")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="run folder: checkpoints, model/, loss.png")] = Path("run"),
    set_: Sets = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="Ray Train workers (overrides run.workers)")] = None,
    gpu: Annotated[Optional[bool], typer.Option("--gpu/--no-gpu", help="force GPU use on or off (default: when present)")] = None,
    resume: Annotated[bool, typer.Option(help="continue the run in --out from its latest checkpoint")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace a run folder factory made (never anything else), once the new one is ready")] = False,
    address: Address = None,
    as_json: AsJson = False,
    progress: Annotated[bool, typer.Option(help="print one line per epoch")] = True,
):
    """Train a network with Ray Train (checkpoint every epoch; --resume continues a killed run)."""

    from models.train import load_train_config, train

    if overwrite and resume:
        fail("--overwrite and --resume exclude each other")
    sets = list(set_ or [])
    if workers is not None:
        sets.append(f"run.workers={workers}")
    if gpu is not None:
        sets.append(f"run.use_gpu={str(gpu).lower()}")
    cfg = load_train_config(config, sets)
    res = train(cfg, store, out, resume=resume, overwrite=overwrite, address=address, progress=progress and not as_json)
    if as_json:
        d = res.as_dict()
        d.pop("history")
        emit_json(d)
    else:
        mae = ", ".join(f"{k[8:]} {v:.4g}" for k, v in res.final.items() if k.startswith("val_mae_"))
        acc = f", accuracy {res.final['val_accuracy']:.3f}" if "val_accuracy" in res.final else ""
        how = (f"{res.wall_s:.1f} s, {res.train_images_per_s:.1f} images/s; {res.where}" if res.train_images_per_s is not None
               else "already complete, nothing trained")
        typer.echo(f"{res.model}: epoch {res.best_epoch} of {res.epochs_done} selected (val loss {res.best_val_loss:.4g}"
                   f"{'; ' + mae if mae else ''}{acc}); {how}")


def evaluate_cmd(
    model: Annotated[Path, typer.Argument(help="a model folder (RUN/model) or checkpoint")],
    store: Annotated[Path, typer.Argument(help="a (processed) store to score it on")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="folder for metrics.json and figures")] = None,
    subset: Annotated[str, typer.Option(help="auto (held-out split), all, train, val, test")] = "auto",
    as_json: AsJson = False,
):
    """Score a model: MAE per output, predicted-vs-true, error histograms (App. C errors for scattering)."""

    from models.evaluate import evaluate

    if subset not in ("auto", "all", "train", "val", "test"):
        fail(f"--subset {subset!r}: choose auto, all, train, val or test")
    res = evaluate(model, store, out or Path(model).parent / "eval", subset=subset)
    if as_json:
        emit_json(res)
        return
    typer.echo(f"{res['samples']} samples ({res['subset']}), {res['inference_images_per_s']:.0f} images/s on {res['device']}")
    for n, m in res.get("per_label", {}).items():
        typer.echo(f"  {n}: MAE {m['mae']:.4g} (mean predictor {m['mae_mean_predictor']:.4g}), RMSE {m['rmse']:.4g}")
    if "accuracy" in res:
        typer.echo(f"  accuracy {res['accuracy']:.3f} (largest class {res['chance']:.3f})")
    if "relative_error" in res:
        r = res["relative_error"]
        typer.echo(f"  App. C relative error: median mean {100 * r['median_mean']:.2f} %, median max {100 * r['median_max']:.2f} %")
    for f in res.get("figures", {}).values():
        typer.echo(f"  figure: {f}")


def transfer_cmd(
    model: Annotated[Path, typer.Argument(help="the trained model to start from")],
    store: Annotated[Path, typer.Argument(help="the small shifted store (focal-averaged, R in [8, 12], alpha, CEP, HeH+)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the transfer and scratch runs and the comparison")] = Path("transfer"),
    freeze: Annotated[int, typer.Option(min=0, help="feature blocks (conv layers) to freeze; the paper: 3 or 4")] = 3,
    lr: Annotated[float, typer.Option(help="learning rate of the retraining (the paper: 1e-2 or 1e-3)")] = 1e-2,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="epochs of the retraining (default: the model's)")] = None,
    max_train: Annotated[Optional[int], typer.Option(min=1, help="use only this many training images")] = None,
    scratch: Annotated[bool, typer.Option(help="also train a model from scratch on the same set")] = True,
    set_: Sets = None,
    overwrite: Annotated[bool, typer.Option(help="replace a transfer folder factory made (never anything else), once the new one is complete")] = False,
    address: Address = None,
    as_json: AsJson = False,
):
    """Transfer-learn a model on a shifted set and compare with the original and a from-scratch model."""
    from factory.config import parse_override

    from models.transfer import transfer

    overrides = {".".join(k): v for k, v in (parse_override(s) for s in set_ or [])}
    table = transfer(model, store, out, freeze=freeze, lr=lr, epochs=epochs, max_train=max_train, scratch=scratch,
                     overrides=overrides, overwrite=overwrite, address=address, progress=not as_json)
    if as_json:
        emit_json(table)
        return
    for name, maes in table["models"].items():
        typer.echo(f"{name:>9}: " + ", ".join(f"MAE {k} {v:.4g}" for k, v in maes.items()))
    typer.echo(f"mean predictor: {table['mean_predictor']}; figure: {Path(out) / 'transfer.png'}")


def learning_curve_cmd(
    config: Annotated[str, typer.Argument(help="training config (file or preset)")],
    store: Annotated[Path, typer.Option(help="the training store")],
    sizes: Annotated[str, typer.Option(help="comma-separated training-set sizes, e.g. 500,1000,1500,2000,2500")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the runs, the fit and the figure")] = Path("learning-curve"),
    target: Annotated[Optional[float], typer.Option(help="report the N needed for this MAE")] = None,
    label: Annotated[Optional[str], typer.Option(help="label to score (default: the first)")] = None,
    set_: Sets = None,
    overwrite: Annotated[bool, typer.Option(help="replace a learning-curve folder factory made (never anything else), once the new one is complete")] = False,
    address: Address = None,
    as_json: AsJson = False,
):
    """Train at several N and fit MAE = a N^b + c (Shvetsov-Shilovski & Lein, PRA 2023, Fig. 2b)."""

    from models.learning_curve import learning_curve
    from models.train import load_train_config

    try:
        ns = [int(s) for s in sizes.split(",") if s.strip()]
    except ValueError:
        fail(f"--sizes {sizes!r}: expected comma-separated integers such as 500,1000,2000")
    cfg = load_train_config(config, list(set_ or []))
    res = learning_curve(cfg, store, out, ns, target=target, label=label, overwrite=overwrite,
                         progress=not as_json, address=address)
    if as_json:
        emit_json(res)
        return
    for p in res["points"]:
        typer.echo(f"N = {p['N']:>6}: MAE {p['mae']:.4g}")
    if "fit" in res:
        f = res["fit"]
        typer.echo(f"fit: MAE = {f['a']:.4g} N^{f['b']:.4g} + {f['c']:.4g}")
    if "target" in res:
        typer.echo(f"MAE {res['target']['mae']} needs N = {res['target']['N']:.4g}")
    typer.echo(f"figure: {res['figure']}")


def export_cmd(
    model: Annotated[Path, typer.Argument(help="a model folder")],
    fmt: Annotated[str, typer.Option("--format", help="export (torch.export .pt2), torchscript or onnx")] = "export",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="output file (default: inside the model folder)")] = None,
):
    """Export a model for deployment (torch.export, TorchScript or ONNX); model.json stays the description."""
    from models.artifact import export_model

    typer.echo(export_model(model, out, fmt))


def presets_cmd():
    """List the training presets in configs/train/."""
    from models.train import train_presets

    for name in train_presets():
        typer.echo(name)


def fig5_cmd(
    model: Annotated[Path, typer.Argument(help="a trained scattering model (radius + quaternion)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the figure and the predictions")] = Path("fig5"),
    images: Annotated[str, typer.Option(help="comma-separated measured patterns (names or PNG paths)")] = "barke5,barke6",
    data: Annotated[Optional[Path], typer.Option(help="folder of the measured patterns")] = None,
    refine_steps: Annotated[int, typer.Option(min=0, max=10000, help="gradient-descent passes through the MSFT "
                                                                     "after the network (0: the network alone)")] = 40,
    as_json: AsJson = False,
):
    """Fig. 5 of Stielow et al., MLST 2020: the measured icosahedra through the detector model, the network's
    prediction re-simulated and refined by gradient descent, side by side."""
    from models.experimental import DATA_DIR, reconstruct_experimental

    def show(r):
        if as_json:
            return
        ref = r.get("refined")
        typer.echo(f"{r['name']}: network R = {r['radius_nm']:.1f} nm"
                   f"{'' if r['inside_training_range'] else ' (outside the training range)'}, r = {r['correlation']:.3f}"
                   + (f"; refined R = {ref['radius_nm']:.1f} nm, r = {ref['correlation']:.3f} "
                      f"({ref['passes']} passes, {ref['seconds']:.1f} s)" if ref else ""))

    res = reconstruct_experimental(model, out, names=[s.strip() for s in images.split(",") if s.strip()],
                                   data_dir=data or DATA_DIR, refine_steps=refine_steps, progress=show)
    if as_json:
        emit_json(res)
        return
    typer.echo(f"figure: {res['figure']}")


COMMANDS = [
    ("train", train_cmd),
    ("evaluate", evaluate_cmd),
    ("transfer", transfer_cmd),
    ("learning-curve", learning_curve_cmd),
    ("export-model", export_cmd),
    ("train-presets", presets_cmd),
    ("fig5", fig5_cmd),
]


register_commands(app, COMMANDS)  # main.py adds the same COMMANDS at the top level of `factory`

if __name__ == "__main__":  # pragma: no cover
    app()
