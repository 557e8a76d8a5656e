"""Command line of campaign planning and the inventory: ``factory plan`` and ``factory ls``.

``COMMANDS`` are added at the top level of the ``factory`` app; each calls one library
function (:func:`factory.planning.plan`, :func:`models.inventory.inventory`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from factory.app.common import AsJson, emit_json


def plan_cmd(
    config: Annotated[str, typer.Argument(help="YAML file or preset name such as 'tdse/paper' (see `factory presets`)")],
    samples: Annotated[int, typer.Option(min=1, help="samples of the campaign")],
    nodes: Annotated[int, typer.Option(min=1, help="nodes of the target cluster")] = 1,
    cpus_per_node: Annotated[Optional[int], typer.Option(min=1, help="CPUs per node (default: this machine's)")] = None,
    gpus_per_node: Annotated[int, typer.Option(min=0, help="GPUs per node (counted as allocated; generation uses CPUs)")] = 0,
    cpus_per_task: Annotated[int, typer.Option(min=1, help="CPUs (FFT threads) per block, as `factory generate --cpus-per-task`")] = 1,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override a config key: --set chunk=16 (repeatable)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="random seed (overrides the config)")] = None,
    calibration_s: Annotated[float, typer.Option(min=0.5, help="how long the warm calibration run lasts (seconds)")] = 5.0,
    workers: Annotated[Optional[int], typer.Option(min=1, help="blocks at once during the calibration here (default: all CPUs)")] = None,
    workdir: Annotated[Optional[Path], typer.Option(help="folder for the temporary calibration stores (default: the system's temp)")] = None,
    as_json: AsJson = False,
):
    """Project a generation campaign's wall time, core-hours and store size on a cluster, from a
    short calibration of the config here (a few waves of blocks through the real engine)."""
    import os

    from factory.config import load_config
    from factory.planning import Cluster, duration, plan

    cfg = load_config(config, set_ or [], seed=seed)
    cluster = Cluster(nodes=nodes, cpus_per_node=cpus_per_node or os.cpu_count() or 1,
                      gpus_per_node=gpus_per_node, cpus_per_task=cpus_per_task)
    p = plan(cfg, samples, cluster, workers=workers, target_s=calibration_s, workdir=workdir)
    if as_json:
        emit_json(p.as_dict())
        return
    cal = p.calibration
    typer.echo(f"{cfg.kind} ({config}), {samples:,} samples in {p.blocks:,} blocks of {cal.chunk} on "
               f"{nodes} node(s) x {cluster.cpus_per_node} CPUs"
               + (f" x {gpus_per_node} GPUs" if gpus_per_node else "") + f" ({p.slots:,} blocks at once):")
    typer.echo(f"  wall time   {duration(p.wall_s)} (startup {duration(p.startup_s)}, blocks {duration(p.fill_s)}, "
               f"{p.waves:,} wave(s))")
    typer.echo(f"  core-hours  {p.core_hours:,.1f} allocated, {p.busy_core_hours:,.1f} busy"
               + (f"; GPU-hours {p.gpu_hours:,.1f} allocated" if gpus_per_node else ""))
    typer.echo(f"  store       {p.store_bytes / 1e9:,.3f} GB on disk")
    typer.echo(f"calibrated here in {cal.wall_s:.1f} s ({cal.samples} samples, {cal.where}); assuming:")
    for a in p.assumptions:
        typer.echo(f"  - {a}")
    for w in p.warnings:
        typer.echo(f"warning: {w}")


def ls_cmd(
    folder: Annotated[Path, typer.Argument(help="the folder to look in")] = Path("."),
    depth: Annotated[int, typer.Option(min=0, max=32, help="how many folder levels to look down")] = 6,
    as_json: AsJson = False,
):
    """List the dataset stores, training runs and models under a folder as a lineage tree
    (kind, size, samples done or epochs, config hash; a processed store under its source, a run
    and its model under the store they trained on)."""
    from models.inventory import inventory, render

    roots = inventory(folder, max_depth=depth)
    if as_json:
        emit_json([e.as_dict() for e in roots])
        return
    if not roots:
        typer.echo(f"{folder}: no dataset stores, training runs or models")
        return
    for line in render(roots, folder):
        typer.echo(line)


COMMANDS = [("plan", plan_cmd), ("ls", ls_cmd)]
