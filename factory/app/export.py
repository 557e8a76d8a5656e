"""Command line of the data export: ``factory export STORE --out FILE --format netcdf|cxi``.

``COMMANDS`` are added at the top level of another Typer app (as learning/baselines are);
the work is :func:`factory.store.export.export_store`.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from factory.app.common import AsJson, emit_json, register_commands

app = typer.Typer(help="Export a dataset store to NetCDF or CXI.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)


class Format(str, Enum):
    netcdf = "netcdf"
    cxi = "cxi"


def export_store_cmd(
    store: Annotated[Path, typer.Argument(help="a complete dataset store")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the file to write (.nc or .cxi)")],
    fmt: Annotated[Format, typer.Option("--format", help="netcdf (NetCDF-4, CF attributes) or cxi (CXI 1.6, HDF5)")],
    overwrite: Annotated[bool, typer.Option(help="replace an existing HDF5 file (never anything else)")] = False,
    as_json: AsJson = False,
):
    """Write a complete, verified store to one NetCDF-4 or CXI file (chunk by chunk; renamed into place when done)."""
    from factory.store.export import export_store

    res = export_store(store, out, format=fmt.value, overwrite=overwrite)
    if as_json:
        emit_json(res)
    else:
        typer.echo(f"{res['out']}: {res['format']}, {res['samples']} samples, {res['bytes'] / 2**20:.1f} MiB "
                   f"in {res['seconds']:.1f} s")


COMMANDS = [("export", export_store_cmd)]

register_commands(app, COMMANDS)

if __name__ == "__main__":  # pragma: no cover
    app()
