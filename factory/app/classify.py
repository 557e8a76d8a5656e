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


def fit_shapes_cmd(
    images: Annotated[str, typer.Option(help="comma-separated packaged patterns")] = ",".join(f"barke{i}" for i in range(1, 9)),
    search: Annotated[int, typer.Option(min=1, max=100000, help="random patterns per shape (shared by all images)")] = 1000,
    steps: Annotated[int, typer.Option(min=0, max=10000, help="gradient-descent passes per image and shape")] = 25,
    preset: Annotated[str, typer.Option(help="MSFT preset (its image must be the detector's 128 x 128)")] = "small",
    seed: Annotated[int, typer.Option()] = 0,
    as_json: AsJson = False,
):
    """Shape, size and orientation of the measured patterns by fitting the MSFT through the detector model
    to each (random search shared by all patterns, then gradient refinement per shape); the labels of
    labels.csv (Barke et al., Nat. Commun. 2015) are only compared with, never used."""
    import torch

    from factory.msft.measured import ATTRIBUTION, ag_cluster_labels, load_ag_clusters
    from models.forward_fit.shape_search import fit_shapes
    from models.shape_classifier import MEASURED_NAMES

    torch.set_num_threads(1)
    names = [n.strip() for n in images.split(",") if n.strip()]
    res = fit_shapes(load_ag_clusters(names), search=search, steps=steps, config=preset, seed=seed,
                     progress=None if as_json else typer.echo)
    truth = {n: MEASURED_NAMES.get(v, v) for n, v in ag_cluster_labels().items()}
    rows = [{"pattern": n, "true": truth.get(n), "predicted": r["ranked"][0], "fits": r["fits"]} for n, r in res.items()]
    if as_json:
        emit_json({"measured": rows, "search": search, "steps": steps, "preset": preset, "attribution": ATTRIBUTION})
        return
    for m in rows:
        f = m["fits"][m["predicted"]]
        typer.echo(f"{m['pattern']}: true {m['true']:30s} fitted {m['predicted']:30s} r {f['r']:.3f}, "
                   f"R {f['radius_nm']:.0f} nm")
    typer.echo(f"{sum(m['true'] == m['predicted'] for m in rows)} of {len(rows)} correct. {ATTRIBUTION}")


COMMANDS = [("classify-shapes", classify_shapes_cmd), ("classify-measured", classify_measured_cmd),
            ("fit-shapes", fit_shapes_cmd)]

register_commands(app, COMMANDS)

if __name__ == "__main__":  # pragma: no cover
    app()
