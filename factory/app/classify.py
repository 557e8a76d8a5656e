"""Command line of the shape classifier (issue 15, item 5): ``factory classify-shapes`` trains it on
simulated, augmented patterns through the measured detector model and tests it on held-out
simulations and the eight measured patterns; ``factory classify-measured MODEL`` classifies the
measured patterns with a saved classifier.

``COMMANDS`` are added at the top level of another Typer app (as learning/calibrate are); the work
is :mod:`models.shape_classifier`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from factory.app.common import AsJson, emit_json, register_commands

app = typer.Typer(help="Shape classifier for measured scattering patterns.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)


def classify_shapes_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for model/ and result.json")],
    per_class: Annotated[int, typer.Option(min=2, help="simulated training patterns per shape")] = 300,
    test_per_class: Annotated[int, typer.Option(min=1, help="held-out simulated patterns per shape")] = 60,
    epochs: Annotated[int, typer.Option(min=1)] = 12,
    preset: Annotated[str, typer.Option(help="MSFT preset of the simulations (128 x 128 detector)")] = "small",
    seed: Annotated[int, typer.Option()] = 0,
    as_json: AsJson = False,
):
    """Simulate, train and test the shape classifier (sphere, icosahedron, cuboctahedron, octahedron,
    decahedron, truncated octahedron, truncated twinned tetrahedron); never trains on measured data."""
    import torch

    from models.shape_classifier import Recipe, format_result, run

    torch.set_num_threads(1)
    res = run(Recipe(per_class=per_class, test_per_class=test_per_class, epochs=epochs, preset=preset, seed=seed),
              out=out, progress=not as_json)
    if as_json:
        emit_json(res)
    else:
        typer.echo(format_result(res))


def classify_measured_cmd(
    model: Annotated[Path, typer.Argument(help="a classifier folder written by classify-shapes (its model/)")],
    as_json: AsJson = False,
):
    """Classify the eight packaged measured Ag cluster patterns (Barke et al., Nat. Commun. 2015)."""
    from factory.msft.measured import ATTRIBUTION
    from models.shape_classifier import classify_measured, load_classifier

    net, shapes = load_classifier(model)
    res = classify_measured(net, shapes)
    if as_json:
        emit_json({"measured": res, "attribution": ATTRIBUTION})
        return
    for m in res:
        typer.echo(f"{m['pattern']}: true {m['true']:30s} predicted {m['predicted']:30s} p {m['p'][m['predicted']]:.2f}")
    typer.echo(f"{sum(m['true'] == m['predicted'] for m in res)} of {len(res)} correct. {ATTRIBUTION}")


COMMANDS = [("classify-shapes", classify_shapes_cmd), ("classify-measured", classify_measured_cmd)]

register_commands(app, COMMANDS)

if __name__ == "__main__":  # pragma: no cover
    app()
