"""``factory tdse ...``: quick probes of the TDSE simulator (mounted by factory/cli.py).

    factory tdse ground-state --molecule H2+ --R 2.0 --preset small --json
    factory tdse pmd --molecule H2+ --R 2.0 --intensity 3e14 --preset tiny --out pmd.png

Bad input becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from factory.errors import FactoryError
from factory.outputs import check_file_output

app = typer.Typer(help="2D TDSE (H2+, HeH+): ground states and momentum distributions.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

Molecule = Annotated[str, typer.Option("--molecule", "-m", help="H2+ or HeH+ (or one defined via --set molecules...)")]
RDist = Annotated[float, typer.Option("--R", "-R", help="internuclear distance, a.u.")]
Alpha = Annotated[float, typer.Option("--alpha", help="molecular axis vs polarisation, degrees")]
Preset = Annotated[str, typer.Option("--preset", "-p", help="paper, small, fast or tiny (configs/tdse/NAME.yaml)")]
Backend = Annotated[Optional[str], typer.Option("--backend", help="auto, fftw, torch or numpy")]
Sets = Annotated[Optional[list[str]], typer.Option("--set", help="override a simulator key: --set dt=0.05 (repeatable)")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _overrides(sets: list[str] | None, backend: str | None) -> dict:
    from factory.config import apply_overrides  # key.path=value parsing shared with `factory generate`

    data = apply_overrides({}, sets or [])
    if backend:
        data["backend"] = backend
    return data


def _run(fn):
    try:
        return fn()
    except (FactoryError, ValueError) as exc:
        _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


@app.command("ground-state")
def ground_state_cmd(
    molecule: Molecule = "H2+",
    R: RDist = 2.0,
    alpha: Alpha = 0.0,
    preset: Preset = "small",
    backend: Backend = None,
    set_: Sets = None,
    as_json: AsJson = False,
):
    """Imaginary-time ground state: energy (a.u.), steps, grid."""
    from factory.tdse.api import ground_state

    t0 = time.perf_counter()
    gs = _run(lambda: ground_state(molecule, R, alpha, preset, **_overrides(set_, backend)))
    data = {"molecule": molecule, "R": R, "alpha_deg": alpha, "preset": preset, "energy": gs.energy,
            "converged": gs.converged, "steps": gs.steps, "energy_change": gs.energy_change,
            "grid": {"nx": gs.grid.nx, "ny": gs.grid.ny, "dx": gs.grid.dx, "dy": gs.grid.dy},
            "seconds": round(time.perf_counter() - t0, 3)}
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(f"{molecule} R = {R:g} a.u., alpha = {alpha:g} deg ({preset}): E0 = {gs.energy:.8f} a.u. "
                   f"after {gs.steps} imaginary-time steps ({'converged' if gs.converged else 'NOT converged'}), "
                   f"{data['seconds']:.1f} s")


@app.command("pmd")
def pmd_cmd(
    molecule: Molecule = "H2+",
    R: RDist = 2.0,
    intensity: Annotated[float, typer.Option("--intensity", "-I", help="peak intensity, W/cm^2")] = 3e14,
    cep: Annotated[float, typer.Option("--cep", help="carrier-envelope phase, rad")] = 0.0,
    alpha: Alpha = 0.0,
    preset: Preset = "tiny",
    backend: Backend = None,
    set_: Sets = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="PNG picture (log-scale PMD + dP/dkx)")] = None,
    npz: Annotated[Optional[Path], typer.Option("--npz", help="save pmd, kx, ky, dp_dkx to an .npz file")] = None,
    as_json: AsJson = False,
):
    """One photoelectron momentum distribution by the mask method, with diagnostics; warns when
    the grid does not resolve it (mask-method yield far below the absorbed norm, or dP/dkx on a
    flat floor at the window's edge)."""
    import numpy as np

    from factory.tdse.api import momentum_distribution, resolution_warnings

    out = _run(lambda: check_file_output(out, "png")) if out is not None else None  # before any work
    npz = _run(lambda: check_file_output(npz, "npz")) if npz is not None else None
    res = _run(lambda: momentum_distribution(molecule, R, intensity, cep, alpha, preset, **_overrides(set_, backend)))
    files = {}
    if out is not None:
        from factory.plots import save
        from factory.tdse.figures import pmd_figure

        files["png"] = str(_run(lambda: save(pmd_figure(res), out)))
    if npz is not None:
        np.savez_compressed(npz, pmd=res.pmd, kx=res.kx, ky=res.ky, dp_dkx=res.dp_dkx)
        files["npz"] = str(npz)
    data = {"molecule": molecule, **res.params, "preset": preset, **res.diagnostics(),
            "shape": list(res.pmd.shape), "k_range": [float(res.kx[0]), float(res.kx[-1])],
            "seconds": round(res.seconds, 3), **files,
            "warnings": resolution_warnings(res)}  # also logged (factory.tdse.api) as they happen
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        typer.echo(f"{molecule} R = {R:g}, I = {intensity:.3g} W/cm^2, CEP = {cep:g}, alpha = {alpha:g} deg ({preset}): "
                   f"E0 = {res.energy:.6f}, absorbed = {res.absorbed:.3e}, mask-method yield = {res.total_yield:.3e}, "
                   f"norm left = {res.norm_left:.6f}; PMD {res.pmd.shape[0]} x {res.pmd.shape[1]} in {res.seconds:.1f} s"
                   + "".join(f"; {k}: {v}" for k, v in files.items()))
