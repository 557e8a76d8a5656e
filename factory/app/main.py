"""The ``factory`` command line: a thin Typer layer over library functions.

Every command calls one function a notebook could call too; user errors become one line on
stderr and exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

try:  # typer >= 0.22 ships its own copy of click; its parser raises these
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click import exceptions as click_exc

from factory.app.common import emit_json, fail, user_errors

app = typer.Typer(
    help="Data factory for ML on ultrafast imaging data: simulate, store, process, train, predict.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
DISTRIBUTION = "ultrafast-data-factory"  # the package name pip knows (pyproject.toml)


def package_version() -> str:
    """The installed version of the package (its metadata), else the source tree's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        from factory import __version__

        return __version__


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"factory {package_version()}")
        raise typer.Exit()


@app.callback()
@user_errors
def root(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="only warnings, errors and results (no progress lines or bars)")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug lines too, and the logs of Ray's own processes")] = False,
    dashboard: Annotated[bool, typer.Option("--dashboard", help="start the embedded Ray's dashboard on 127.0.0.1 and print its URL")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True, help="print the version and exit")] = False,
):
    """Options for every command: factory [--quiet | --verbose] [--dashboard] COMMAND ..."""
    from factory import logs

    if quiet and verbose:
        fail("--quiet and --verbose exclude each other")
    logs.configure(logs.QUIET if quiet else logs.VERBOSE if verbose else logs.NORMAL)
    from factory.compute.ray_executor import start_dashboard

    start_dashboard(dashboard)


@app.command()
@user_errors
def generate(
    config: Annotated[str, typer.Argument(help="YAML file or preset name such as 'blobs/tiny' (see `factory presets`)")],
    out: Annotated[str, typer.Option("--out", "-o", help="the dataset store to write: a Zarr v3 folder, or a URL such as s3://bucket/x.zarr")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a config key: --set simulator.noise=0.1 (repeatable)")] = None,
    samples: Annotated[Optional[int], typer.Option(help="number of samples (overrides the config)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="random seed (overrides the config)")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address (default: RAY_ADDRESS, else embedded local Ray)")] = None,
    workers: Annotated[Optional[int], typer.Option(min=1, help="blocks computed at once (default: all CPUs)")] = None,
    cpus_per_task: Annotated[int, typer.Option(min=1, help="CPUs (FFT threads) per block task")] = 1,
    overwrite: Annotated[bool, typer.Option(help="replace an existing store")] = False,
    resume: Annotated[bool, typer.Option(help="continue an existing store made with the same config")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the run report as JSON")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
):
    """Simulate a dataset into a Zarr store on Ray (resumable, reproducible from the seed)."""
    from factory.config import load_config
    from factory.engine import generate as run

    if overwrite and resume:
        fail("--overwrite and --resume exclude each other")
    cfg = load_config(config, set_ or [], samples=samples, seed=seed)
    report = run(
        cfg, out, overwrite=overwrite, resume=resume, address=address, workers=workers,
        cpus_per_task=cpus_per_task, progress=progress and not as_json,
    )
    if as_json:
        emit_json({**report.as_dict(), "samples_per_s": report.samples_per_s})
    elif report.blocks_computed == 0 and not report.failures and report.done == report.samples:
        typer.echo(f"{report.path}: already complete ({report.done}/{report.samples} samples); nothing to do")
    else:
        typer.echo(
            f"{report.path}: {report.done}/{report.samples} samples done "
            f"({report.blocks_computed} blocks computed, {report.blocks_skipped} already done) "
            f"in {report.wall_s:.1f} s, {report.samples_per_s:.2f} samples/s on {report.where}"
        )


@app.command()
@user_errors
def info(
    store: Annotated[str, typer.Argument(help="a dataset store (a folder, or a URL such as s3://bucket/x.zarr)")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    verify: Annotated[bool, typer.Option(help="read every chunk back and check its checksum")] = False,
):
    """Describe a dataset store; --verify finds damaged chunks and names their samples."""
    from factory.store import DatasetStore

    ds = DatasetStore.open(store, partial=True)  # describe incomplete stores too
    data = ds.info()
    damage = ds.verify() if verify else None
    if damage is not None:
        data["damaged"] = [
            {"array": d.array, "chunk": d.chunk, "samples": list(d.samples), "reason": d.reason} for d in damage
        ]
    if as_json:
        emit_json(data)
    else:
        for key in ("path", "kind", "samples", "done", "chunk", "image_shape", "dims", "params",
                    "diagnostics", "config_hash", "seed", "code_version", "created"):
            typer.echo(f"{key:>13}: {data[key]}")
        for src in data["lineage"]:
            typer.echo(f"{'source':>13}: {src.get('path')} ({src.get('kind')}, {str(src.get('config_hash'))[:12]})")
        if damage is not None:
            if not damage:
                typer.echo(f"{'verify':>13}: all chunks readable, checksums match")
            for d in damage:
                typer.echo(f"{'DAMAGED':>13}: {d.array} chunk {d.chunk}, samples {d.samples[0]}..{d.samples[1] - 1}: {d.reason}")
    if damage:
        raise typer.Exit(1)


@app.command()
@user_errors
def presets():
    """List the config presets (kind/size) shipped in configs/."""
    from factory.config import list_presets

    for name in list_presets():
        typer.echo(name)


@app.command()
@user_errors
def plot(
    store: Annotated[Path, typer.Argument(help="a dataset store")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write")],
    n: Annotated[int, typer.Option(min=1, max=64, help="number of samples")] = 8,
    log: Annotated[bool, typer.Option(help="log10 colour scale (PMDs)")] = False,
):
    """Write a PNG montage of the first samples of a store, labels in the titles."""
    from factory.plots import plot_samples
    from factory.store import DatasetStore

    typer.echo(plot_samples(DatasetStore.open(store), out, n=n, log=log))


@app.command()
@user_errors
def quickstart(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for stores, figures and report.md")] = Path("quickstart-out"),
    size: Annotated[str, typer.Option(help="preset size: small (default), tiny (seconds) or paper")] = "small",
    workers: Annotated[Optional[int], typer.Option(min=1, help="parallel blocks (default: all CPUs)")] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
):
    """Run the whole chain small on local Ray and write a report with figures."""
    from factory.app.quickstart import run_quickstart

    report = run_quickstart(out, size=size, workers=workers, progress=progress)
    typer.echo(f"report: {report}")


_mounted = False


def _mount_subcommands() -> None:
    global _mounted
    if _mounted:  # main() may run more than once in a process (tests)
        return
    from factory.app.process import app as process_app

    app.add_typer(process_app, name="process")
    from factory.app.msft import app as msft_app

    app.add_typer(msft_app, name="msft")
    from factory.app.tdse import app as tdse_app

    app.add_typer(tdse_app, name="tdse")
    from factory.app import baselines, learning
    from factory.app.common import register_commands

    register_commands(app, learning.COMMANDS)
    register_commands(app, baselines.COMMANDS)
    register_commands(app, __import__("factory.app.export", fromlist=["COMMANDS"]).COMMANDS)
    register_commands(app, __import__("factory.app.inventory", fromlist=["COMMANDS"]).COMMANDS)
    register_commands(app, __import__("factory.app.calibrate", fromlist=["COMMANDS"]).COMMANDS)
    register_commands(app, __import__("factory.app.classify", fromlist=["COMMANDS"]).COMMANDS)
    from factory.app.predict import app as predict_app

    app.add_typer(predict_app, name="predict")
    _mounted = True


def main(args: list[str] | None = None) -> int:
    """Run ``factory``; usage errors (a bad or missing option) become one ``error:`` line, exit 2."""
    _mount_subcommands()
    try:
        code = app(args=args, standalone_mode=False, prog_name="factory")
    except getattr(click_exc, "NoArgsIsHelpError", ()) as exc:  # `factory` or `factory process` alone
        if exc.format_message().strip():  # rich typer printed the help already
            exc.show()
        return 2
    except click_exc.UsageError as exc:  # BadParameter, NoSuchOption, MissingParameter, no such command
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        typer.echo(f"error: {' '.join(exc.format_message().split())}{hint}", err=True)
        return 2
    except click_exc.ClickException as exc:  # e.g. FileError
        typer.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
        return exc.exit_code or 1
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 1
    # a command's normal return is exit 0; typer.Exit(code) arrives here as that int
    return code if type(code) is int else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
