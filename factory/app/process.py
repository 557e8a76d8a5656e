"""``factory process ...``: one sub-command per processing step, and ``run`` for a chain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from factory.app.common import emit_json, fail, user_errors

app = typer.Typer(help="Post-process dataset stores with Dask (resumable; each step writes a new store).",
                  no_args_is_help=True)

Out = Annotated[str, typer.Option("--out", "-o", help="the new store to write (a folder, or a URL such as s3://bucket/x.zarr)")]
Address = Annotated[Optional[str], typer.Option(help="dask.distributed scheduler address (default: local threads)")]
Workers = Annotated[Optional[int], typer.Option(min=1, help="local Dask threads (default: all cores)")]
Overwrite = Annotated[bool, typer.Option(help="replace an existing output store")]
Json = Annotated[bool, typer.Option("--json", help="print the step report as JSON")]


def _report(rep, as_json: bool) -> None:
    if as_json:
        emit_json(rep.as_dict())
    else:
        typer.echo(f"{rep.step}: {rep.path}: {rep.samples} samples, {rep.blocks_computed} chunks computed, "
                   f"{rep.blocks_skipped} already done, {rep.wall_s:.1f} s ({rep.images_per_s:.1f} images/s) on {rep.where}")


def _run_kw(address, workers, as_json):
    return {"address": address, "workers": workers, "progress": not as_json}


def _fractions(text: str) -> tuple[float, float, float]:
    from factory.processing.splits import check_fractions

    try:
        return check_fractions(text.split(","))
    except ValueError:
        fail(f"--split {text!r}: give three finite fractions >= 0 summing to 1 (train,validation,test), "
             "such as 0.8,0.1,0.1")


@app.command("focal-average")
@user_errors
def focal_average(source: Annotated[str, typer.Argument(help="TDSE store with intensity ladders")], out: Out,
                  method: Annotated[str, typer.Option(help="product (exact for piecewise-linear P) or trapezoid")] = "product",
                  address: Address = None, workers: Workers = None, overwrite: Overwrite = False, as_json: Json = False):
    """Focal-volume average each intensity ladder (Shvetsov-Shilovski & Lein, PRA 2023, eqs. 5-6)."""
    from factory.processing.steps import focal_average_store

    if method not in ("product", "trapezoid"):
        fail(f"--method {method!r}: choose product or trapezoid")
    _report(focal_average_store(source, out, method=method, overwrite=overwrite, **_run_kw(address, workers, as_json)), as_json)


@app.command()
@user_errors
def interpolate(sources: Annotated[list[str], typer.Argument(help="stores of computed samples")], out: Out,
                axes: Annotated[str, typer.Option(help="comma-separated labels spanning the space, e.g. R,I0")] = "R,I0",
                samples: Annotated[int, typer.Option(min=1, help="new samples, uniform inside the hull")] = 1000,
                method: Annotated[str, typer.Option(help="linear (Delaunay) or rbf")] = "linear",
                seed: int = 0, address: Address = None, workers: Workers = None, overwrite: Overwrite = False,
                as_json: Json = False):
    """New samples by irregular-grid interpolation in parameter space (never extrapolated)."""
    from factory.processing.steps import interpolate_store

    if method not in ("linear", "rbf"):
        fail(f"--method {method!r}: choose linear or rbf")
    _report(interpolate_store([str(s) for s in sources], out, axes=axes.split(","), samples=samples, method=method,
                              seed=seed, overwrite=overwrite, **_run_kw(address, workers, as_json)), as_json)


@app.command()
@user_errors
def preprocess(sources: Annotated[list[str], typer.Argument(help="raw, focal-averaged or interpolated stores")], out: Out,
               mode: Annotated[str, typer.Option(help="pmd2d (256x128, 0..255), pmd1d (dP/dkx, 256) or scatter (128x128)")] = "pmd2d",
               window: Annotated[str, typer.Option(help="PMD crop: global (one window for the set) or per-image")] = "global",
               split: Annotated[str, typer.Option(help="train,validation,test fractions")] = "0.8,0.1,0.1",
               log_floor: Annotated[Optional[float], typer.Option(
                   max=-1e-9, help="clip log10(I / max I) at this many decades (default: pmd -5, scatter -6)")] = None,
               seed: int = 0, address: Address = None, workers: Workers = None, overwrite: Overwrite = False,
               as_json: Json = False):
    """Network-ready images with the exact preprocessing recorded, and seeded splits."""
    from factory.processing.description import WINDOWS
    from factory.processing.steps import preprocess_store

    if window not in WINDOWS:
        fail(f"--window {window!r}: choose {' or '.join(WINDOWS)}")
    _report(preprocess_store([str(s) for s in sources], out, mode=mode, window=window, split=_fractions(split), seed=seed,
                             log_floor=log_floor,
                             overwrite=overwrite, **_run_kw(address, workers, as_json)), as_json)


@app.command()
@user_errors
def augment(source: Annotated[str, typer.Argument(help="a preprocessed scattering store")], out: Out,
            factor: Annotated[int, typer.Option(min=1, help="copies per training image (paper: 11)")] = 11,
            only_split: Annotated[str, typer.Option(help="which split grows: train, validation, test or all")] = "train",
            detector: Annotated[Optional[str], typer.Option(
                help="show every image through this measured detector (valid pixels, hole, saturation): ag-clusters")] = None,
            seed: int = 0, address: Address = None, workers: Workers = None, overwrite: Overwrite = False,
            as_json: Json = False):
    """Grow a set with the 11 augmentation filters of Stielow et al., MLST 2020, App. D."""
    from factory.processing.steps import augment_store

    _report(augment_store(source, out, factor=factor, seed=seed, only_split=only_split, detector=detector,
                          overwrite=overwrite,
                          **_run_kw(address, workers, as_json)), as_json)


@app.command("split")
@user_errors
def split_cmd(store: Annotated[str, typer.Argument(help="a store to (re)split in place")],
              fractions: Annotated[str, typer.Option("--split", help="train,validation,test")] = "0.8,0.1,0.1",
              seed: int = 0, as_json: Json = False):
    """Assign seeded train/validation/test splits (interpolated samples never go to test)."""
    from factory.processing.steps import split_store

    counts = split_store(store, fractions=_fractions(fractions), seed=seed)
    emit_json(counts) if as_json else typer.echo(", ".join(f"{k}: {v}" for k, v in counts.items()))


@app.command()
@user_errors
def run(chain: Annotated[Path, typer.Argument(help="YAML chain file (see factory/processing/chain.py)")],
        address: Address = None, workers: Workers = None, overwrite: Overwrite = False, as_json: Json = False):
    """Run the steps of a chain file in order (each resumable)."""
    from factory.processing.chain import run_chain

    reports = run_chain(chain, overwrite=overwrite, **_run_kw(address, workers, as_json))
    if as_json:
        emit_json([r.as_dict() for r in reports])
    else:
        for r in reports:
            _report(r, False)
