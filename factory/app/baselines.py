"""Command line of the classical baselines, the comparison table, forward fitting and explanations.

``COMMANDS`` are added at the top level of another Typer app::

    factory baselines TRAIN_STORE [TEST_STORE] --methods mse,sift,svr-hog,dt-hog,xgb-hog,svr-sift --label R --out DIR
    factory table CONFIG.yaml --out DIR              (or --train/--test/--shifted/--cnn/--transfer, or --synthetic)
    factory forward-fit [STORE] --out DIR            (or --simulate N --config tiny)
    factory explain MODEL STORE --method occlusion|gradcam|lime --out DIR
    factory occlusion-dictionary MODEL STORE --out DIR

Each command calls one library function; heavy imports happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from factory.app.common import Address, AsJson, emit_json, fail, register_commands

app = typer.Typer(help="Classical baselines, the transferability table, forward fitting, explanations.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

Options = Annotated[Optional[list[str]], typer.Option("--option", help="a baseline option key=value, e.g. svr_C=30 or "
                                                      "hog_cell=[16,32] (repeatable; see models.baselines.BaselineOptions)")]
Parallel = Annotated[str, typer.Option(help="auto (Ray when it pays), ray or local")]


def _split_list(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def _options(items: list[str] | None, base=None, **extra):
    from dataclasses import asdict

    from factory.config import parse_override

    from models.baselines import BaselineOptions

    data = asdict(base) if base is not None else {}
    for text in items or []:
        path, value = parse_override(text)
        data[".".join(path)] = value
    data.update({k: v for k, v in extra.items() if v is not None})
    return BaselineOptions.from_dict(data)


def _indices(text: str | None) -> list[int] | None:
    """``--indices 0,5,9`` as sample numbers (None when not given)."""
    from factory.errors import ConfigError

    if not text:
        return None
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise ConfigError(f"--indices {text!r}: give comma-separated sample numbers such as 0,5,9") from None


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    from factory.errors import ConfigError

    out = {}
    for text in items or []:
        if "=" not in text:
            raise ConfigError(f"{what} {text!r}: expected NAME=PATH, e.g. focal=focal-net.zarr")
        k, v = text.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def baselines_cmd(
    train_store: Annotated[Path, typer.Argument(help="the (processed) training store; its test split is held out")],
    test_store: Annotated[Optional[Path], typer.Argument(help="the test store (default: the training store's test split)")] = None,
    methods: Annotated[str, typer.Option(help="comma-separated: mse, mse+refs, sift, sift+refs, svr-hog, dt-hog, xgb-hog, svr-sift")] = "mse,sift,svr-hog,dt-hog,xgb-hog,svr-sift",
    label: Annotated[str, typer.Option(help="label(s) to retrieve, comma-separated (R; R,intensity)")] = "R",
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for baselines.md/.json, predictions.npz, pred-vs-true.png")] = Path("baselines"),
    reference: Annotated[Optional[list[str]], typer.Option(help="more direct-comparison references (a store; repeatable)")] = None,
    interpolate: Annotated[int, typer.Option(min=0, help="references interpolated from the training samples (mse+refs, sift+refs)")] = 0,
    option: Options = None,
    parallel: Parallel = "auto",
    address: Address = None,
    as_json: AsJson = False,
):
    """Direct comparison (MSE, SIFT) and regression on HOG / SIFT features: MAE, training and prediction times."""
    from models.baselines import run_baselines

    opts = _options(option, parallel=parallel, address=address, interpolate=interpolate or None)
    rep = run_baselines(train_store, test_store, methods=_split_list(methods), labels=_split_list(label), out=out,
                        references=list(reference or []), options=opts, progress=not as_json)
    if as_json:
        emit_json(rep)
        return
    typer.echo((out / "baselines.md").read_text())
    typer.echo(f"figure: {rep['figure']}")


def table_cmd(
    config: Annotated[Optional[Path], typer.Argument(help="a table config (YAML; see models/table.py); or use the options")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for table.md, table.csv, table.json")] = Path("table"),
    train: Annotated[Optional[Path], typer.Option(help="the unshifted training store")] = None,
    test: Annotated[Optional[Path], typer.Option(help="the unshifted test store (default: the training store's test split)")] = None,
    shifted: Annotated[Optional[list[str]], typer.Option(help="a shifted test store NAME=STORE; names focal, large-R, alpha, cep, heh (repeatable)")] = None,
    cnn: Annotated[Optional[Path], typer.Option(help="the CNN trained on the unshifted set (a model folder)")] = None,
    transfer: Annotated[Optional[list[str]], typer.Option(help="a transfer-learned model NAME=MODEL per shifted set (repeatable)")] = None,
    reference: Annotated[Optional[list[str]], typer.Option(help="more direct-comparison references (repeatable)")] = None,
    methods: Annotated[Optional[str], typer.Option(help="comma-separated baseline methods (default: mse,sift,svr-hog,dt-hog,xgb-hog,svr-sift)")] = None,
    label: Annotated[str, typer.Option(help="the label of the table")] = "R",
    option: Options = None,
    synthetic: Annotated[Optional[str], typer.Option(help="run the whole table on PMD-like synthetic stores instead: tiny or small")] = None,
    parallel: Parallel = "auto",
    address: Address = None,
    as_json: AsJson = False,
):
    """Table I of Shvetsov-Shilovski & Lein, PRA 2023: every method trained on the unshifted set,
    scored on the five shifted sets."""

    from models.table import load_table_config, synthetic_table, transferability_table

    if synthetic:
        sizes = {"tiny": dict(n_train=120, n_test=30, n_shift=40, epochs=3, transfer_epochs=3),
                 "small": dict(n_train=400, n_test=100, n_shift=160, epochs=15, transfer_epochs=12)}
        if synthetic not in sizes:
            fail(f"--synthetic {synthetic!r}: choose tiny or small")
        res = synthetic_table(out, methods=_split_list(methods), options=_options(option, parallel=parallel, address=address),
                              progress=not as_json, **sizes[synthetic])
        md = Path(out) / "table" / "table.md"
    else:
        if config is not None:
            kw = load_table_config(config)
            kw["options"] = _options(option, base=kw["options"], parallel=parallel if parallel != "auto" else None,
                                     address=address)
        elif train is not None:
            kw = {"train_store": train, "test_store": test, "shifted": _pairs(shifted, "--shifted"), "cnn_model": cnn,
                  "transfer_models": _pairs(transfer, "--transfer"), "references": list(reference or []),
                  "methods": _split_list(methods), "label": label,
                  "options": _options(option, parallel=parallel, address=address)}
        else:
            fail("give a table config, or --train STORE (with --shifted/--cnn/--transfer), or --synthetic tiny|small")
        res = transferability_table(**kw, out=out, progress=not as_json)
        md = Path(out) / "table.md"
    if as_json:
        emit_json(res)
        return
    typer.echo(md.read_text())


def forward_fit_cmd(
    store: Annotated[Optional[Path], typer.Argument(help="an MSFT store (raw, or processed with --mode scatter)")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for forward_fit.json and fig4b.png")] = Path("forward-fit"),
    n: Annotated[int, typer.Option(min=1, help="images to fit (the store's test split first)")] = 5,
    indices: Annotated[Optional[str], typer.Option(help="comma-separated sample indices instead of --n")] = None,
    simulate: Annotated[Optional[int], typer.Option(min=1, help="fit this many noiseless simulated images instead of a store")] = None,
    config: Annotated[Optional[str], typer.Option(help="MSFT simulator: preset (tiny, small, paper) or msft YAML (default: the store's)")] = None,
    starts: Annotated[int, typer.Option(min=1, help="random starts per image (the paper: 50)")] = 50,
    iterations: Annotated[int, typer.Option(min=1, help="Nelder-Mead iterations per start (the paper: 50)")] = 50,
    polish: Annotated[int, typer.Option(min=0, help="more iterations from the best start")] = 0,
    seed: Annotated[int, typer.Option(help="seed of the random starts (and of --simulate)")] = 0,
    model: Annotated[Optional[Path], typer.Option(help="a trained scattering network to put beside the fit (error and cost)")] = None,
    parallel: Parallel = "auto",
    address: Address = None,
    as_json: AsJson = False,
):
    """Monte Carlo simplex forward fitting of scattering images (Stielow et al., MLST 2020, Fig. 4b),
    random starts on Ray."""

    from models.forward_fit import (FitSettings, ForwardModel, forward_fit, forward_fit_store, network_input,
                              simulate_targets)

    settings = FitSettings(starts=starts, iterations=iterations, polish=polish, seed=seed, parallel=parallel,
                           address=address)
    if simulate:
        fm = ForwardModel(config or "tiny")
        images, truths = simulate_targets(fm, simulate, seed)
        rep = forward_fit(images, fm, settings, truths=truths, out=out, network=model,
                          network_images=network_input(model, images) if model else None, progress=not as_json)
    elif store is not None:
        rep = forward_fit_store(store, out, n=n, indices=_indices(indices), settings=settings, config=config,
                                network=model, progress=not as_json)
    else:
        fail("give an MSFT store or --simulate N")
    if as_json:
        emit_json(rep)
        return
    typer.echo(f"{rep['images']} images, {rep['simulations_per_image']:.0f} simulations and {rep['seconds_per_image']:.1f} s "
               f"per image ({rep['forward_model']['seconds_per_simulation'] * 1000:.1f} ms per simulation)")
    if "final" in rep:
        f = rep["final"]
        typer.echo(f"App. C error: median mean {100 * f['median_mean_error']:.3f} %, median max {100 * f['median_max_error']:.3f} %, "
                   f"worst {100 * f['worst_max_error']:.3f} %; all five within 1 % of their ranges: "
                   f"{100 * f['fraction_max_below_1pct']:.0f} % of the images")
    if "network" in rep:
        nw = rep["network"]
        err = f", median mean error {100 * nw['median_mean_error']:.2f} %" if "median_mean_error" in nw else ""
        typer.echo(f"network: {nw['total_simulations']:.0f} simulations' worth ({nw['training_images']} training images + "
                   f"{nw['training_in_simulations']:.0f} for training){err}; {1000 * nw['seconds_per_image']:.1f} ms per image")
    if rep.get("figure"):
        typer.echo(f"figure: {rep['figure']}")


def explain_cmd(
    model: Annotated[Path, typer.Argument(help="a trained model folder (the R classifier or a regression network)")],
    store: Annotated[Path, typer.Argument(help="a store preprocessed like the model's training store")],
    method: Annotated[str, typer.Option(help="occlusion, gradcam or lime")] = "occlusion",
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the PNG overlays and maps.npz")] = Path("explain"),
    n: Annotated[int, typer.Option(min=1, help="held-out images to explain")] = 8,
    indices: Annotated[Optional[str], typer.Option(help="comma-separated sample indices instead of --n")] = None,
    label: Annotated[Optional[str], typer.Option(help="regression output to explain (default: the first)")] = None,
    as_json: AsJson = False,
):
    """Occlusion sensitivity, Grad-CAM or LIME maps (captum) as PNG overlays."""
    from models.explain import explain_store

    res = explain_store(model, store, out, method=method, n=n, indices=_indices(indices), label=label)
    if as_json:
        emit_json(res)
        return
    typer.echo(f"{len(res['samples'])} maps ({res['seconds_per_image']:.2f} s per image): {res['figures'][-1]}")


def dictionary_cmd(
    model: Annotated[Path, typer.Argument(help="the R classifier (factory train pmd-classifier/...)")],
    store: Annotated[Path, typer.Argument(help="its store (the held-out images are used)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for the dictionary figure and json")] = Path("dictionary"),
    method: Annotated[str, typer.Option(help="maps from occlusion (the paper), gradcam or lime")] = "occlusion",
    per_cell: Annotated[int, typer.Option(min=1, help="images per (R class x intensity third); the paper: 3")] = 3,
    threshold: Annotated[float, typer.Option(help="keep map values above this (fraction of the map's max; the paper: 0.2)")] = 0.2,
    absolute: Annotated[bool, typer.Option(help="the threshold is an absolute probability drop, not a fraction")] = False,
    random: Annotated[int, typer.Option(min=1, help="random-area control draws")] = 10,
    max_test: Annotated[Optional[int], typer.Option(min=1, help="classify at most this many held-out images")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    as_json: AsJson = False,
):
    """Sec. VI of Shvetsov-Shilovski & Lein, PRA 2023: the occlusion 'dictionary' classifier against
    random areas of the same size."""
    from models.explain import occlusion_dictionary

    res = occlusion_dictionary(model, store, out, method=method, per_cell=per_cell, threshold=threshold,
                               relative=not absolute, n_random=random, max_test=max_test, seed=seed, progress=False)
    if as_json:
        emit_json(res)
        return
    r = res["random_area"]
    typer.echo(f"{method} dictionary ({res['dictionary_entries']} entries, {100 * res['mean_area_fraction']:.0f} % of the "
               f"image each): accuracy {100 * res['accuracy']:.1f} % on {res['test_images']} held-out images; random "
               f"areas {100 * r['mean']:.1f} % ({100 * r['min']:.0f}-{100 * r['max']:.0f} %); the network "
               f"{100 * res['network_accuracy']:.1f} %; largest class {100 * res['chance']:.1f} %")
    typer.echo(f"figure: {res['figure']}")


COMMANDS = [
    ("baselines", baselines_cmd),
    ("table", table_cmd),
    ("forward-fit", forward_fit_cmd),
    ("explain", explain_cmd),
    ("occlusion-dictionary", dictionary_cmd),
]


register_commands(app, COMMANDS)  # main.py adds the same COMMANDS at the top level of `factory`

if __name__ == "__main__":  # pragma: no cover
    app()
