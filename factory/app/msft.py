"""``factory msft ...``: probe the MSFT simulator from the shell (a thin layer over the library)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from factory.errors import FactoryError
from factory.outputs import check_file_output

# what bad input raises (a config, a quaternion, a shape, an unwritable --out); anything else is
# a bug in the project and keeps its traceback
USER_ERRORS = (FactoryError, ValueError, OSError)

app = typer.Typer(
    help="MSFT wide-angle scattering: single patterns, shapes, orientation domains.",
    no_args_is_help=True,
    add_completion=False,
)


def _fail(exc: Exception) -> None:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def _load(preset: str, config: Optional[Path], overrides: list[str]):
    from factory.config import load_config

    spec = str(config) if config is not None else f"msft/{preset}"
    cfg = load_config(spec, [o if o.startswith("simulator.") else f"simulator.{o}" for o in overrides])
    if cfg.kind != "msft":
        raise ValueError(f"config {spec!r} is of kind {cfg.kind!r}, not 'msft'")
    return cfg.simulator


@app.command("pattern")
def pattern_cmd(
    shape: str = typer.Option("icosahedron", help="sphere, icosahedron, cube, octahedron, truncated_octahedron, "
                              "cuboctahedron, decahedron, ino_decahedron, marks_decahedron"),
    radius: float = typer.Option(80.0, help="circumradius in nm"),
    quat: Optional[str] = typer.Option(None, help="orientation 'w,x,y,z' (scalar first)"),
    random_seed: Optional[int] = typer.Option(None, help="draw the orientation uniformly in the fundamental domain"),
    preset: str = typer.Option("small", help="tiny | small | paper (configs/msft/<preset>.yaml)"),
    config: Optional[Path] = typer.Option(None, help="an msft config file instead of a preset"),
    set_: list[str] = typer.Option([], "--set", help="override a simulator key, e.g. --set absorption_length_nm=null"),
    out: Optional[Path] = typer.Option(None, help="write the image as PNG (with q axes)"),
    npy: Optional[Path] = typer.Option(None, help="write the image array as .npy"),
    as_json: bool = typer.Option(False, "--json", help="print a JSON summary"),
) -> None:
    """Simulate one detector image of a particle and save / describe it."""
    try:
        from factory.geometry.quaternions import parse_quat
        from factory.geometry.symmetry import project_to_fundamental, sample_fundamental
        from factory.msft.shapes import SHAPES, SYMMETRY
        from factory.msft.simulator import pattern

        if shape not in SHAPES:
            raise ValueError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPES)}")
        if quat is not None and random_seed is not None:
            raise ValueError("give either --quat or --random-seed, not both")
        group = SYMMETRY[shape]
        if quat is not None:
            q = parse_quat(quat)
        elif random_seed is not None:
            q = sample_fundamental(np.random.default_rng(random_seed), group=group) if group else np.array([1.0, 0, 0, 0])
        else:
            q = np.array([1.0, 0.0, 0.0, 0.0])
        cfg = _load(preset, config, set_)
        out = check_file_output(out, "png") if out is not None else None  # before any work
        npy = check_file_output(npy, "npy") if npy is not None else None
        res = pattern(shape, radius, q, cfg)
        if out is not None:
            _save_png(out, res, shape, radius, q, cfg)
        if npy is not None:
            np.save(npy, res.image)
        summary = {
            "shape": shape,
            "radius_nm": radius,
            "quat_wxyz": [float(c) for c in q],
            "quat_in_fundamental_domain": [float(c) for c in project_to_fundamental(q, group)] if group else None,
            "image_shape": list(res.image.shape),
            "axes": {res.y.name: [float(res.y.values[0]), float(res.y.values[-1]), res.y.units],
                     res.x.name: [float(res.x.values[0]), float(res.x.values[-1]), res.x.units]},
            "image_min": float(res.image.min()),
            "image_max": float(res.image.max()),
            **{k: float(v) for k, v in res.diagnostics.items()},
            "out": str(out) if out else None,
        }
        if as_json:
            typer.echo(json.dumps(summary, indent=2))
        else:
            typer.echo(
                f"{shape} R={radius:g} nm q=({', '.join(f'{c:.4f}' for c in q)}): image {res.image.shape[0]}x"
                f"{res.image.shape[1]} in {res.diagnostics['time_s']:.3f} s"
                + (f" -> {out}" if out else "")
            )
    except USER_ERRORS as exc:  # one line, non-zero exit
        _fail(exc)


def _save_png(path: Path, res, shape, radius, q, cfg) -> None:
    from factory.plots import save

    save(pattern_figure(res, shape, radius, q, cfg), path, dpi=100)


def pattern_figure(res, shape, radius, q, cfg):
    """The figure of ``factory msft pattern --out``: the detector image on its q (or mm) axes,
    a colour bar naming the scale."""
    from factory.plots.style import axis_label, colorbar, plt

    ext = [res.x.values[0], res.x.values[-1], res.y.values[0], res.y.values[-1]]
    fig, ax = plt.subplots(figsize=(5.2, 4.4), layout="constrained")
    im = ax.imshow(res.image, origin="lower", extent=ext, cmap="inferno")
    ax.set_xlabel(axis_label(res.x.name, res.x.units or None))
    ax.set_ylabel(axis_label(res.y.name, res.y.units or None))
    ax.set_title(f"{shape}, R = {radius:g} nm, q = ({', '.join(f'{c:.3f}' for c in q)})", fontsize=9)
    scale = ("log$_{10}$(I / I$_{max}$)" if cfg.output == "log"
             else f"I ({'photons' if cfg.fluence is not None else 'nm$^2$'} per pixel)")
    colorbar(fig, ax, im, scale, fontsize=9)
    return fig


@app.command("shapes")
def shapes_cmd() -> None:
    """List the particle shapes and their rotation groups."""
    from factory.msft.shapes import SHAPES, SYMMETRY

    for s in SHAPES:
        g = SYMMETRY[s]
        typer.echo(f"{s:22s} {'all rotations' if g is None else 'group ' + g}")


@app.command("domain")
def domain_cmd(group: str = typer.Option("I", help="rotation group (scipy name: I, O, T, D5, ...)")) -> None:
    """Fundamental domain of a rotation group: order, largest angle, per-component spans (App. C)."""
    try:
        from factory.geometry.symmetry import component_range, domain_max_angle, symmetry_group

        order = len(symmetry_group(group))
        rng_ = component_range(group)
        typer.echo(
            json.dumps(
                {
                    "group": group,
                    "order": order,
                    "max_rotation_angle_deg": float(np.degrees(domain_max_angle(group))),
                    "component_range_wxyz": rng_.tolist(),
                    "component_span_wxyz": (rng_[:, 1] - rng_[:, 0]).tolist(),
                },
                indent=2,
            )
        )
    except USER_ERRORS as exc:
        _fail(exc)


if __name__ == "__main__":  # pragma: no cover
    app()
