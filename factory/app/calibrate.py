"""Command line of the uncertainty calibration: ``factory calibrate MODEL STORE``.

``COMMANDS`` are added at the top level of another Typer app (as learning/export are);
the work is :func:`models.calibration.calibrate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from factory.app.common import AsJson, emit_json, register_commands

app = typer.Typer(help="Calibrate a model's per-frame uncertainty.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)


def calibrate_cmd(
    model: Annotated[Path, typer.Argument(help="a trained regression model folder (a network with dropout)")],
    store: Annotated[Path, typer.Argument(help="a simulated store with true labels (the model's training store: its own split is used)")],
    mc_samples: Annotated[int, typer.Option(min=2, help="MC-dropout passes per frame")] = 30,
    percentile: Annotated[float, typer.Option(min=50.0, max=99.99, help="OOD and spread thresholds: this percentile of the validation split")] = 99.0,
    max_samples: Annotated[int, typer.Option(min=4, help="at most this many images per split")] = 4000,
    seed: Annotated[int, typer.Option(help="seed of the MC draws' subsampling, noise and augmented frames")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when present)")] = None,
    as_json: AsJson = False,
):
    """Fit the MC-dropout spread's scale (68 % intervals on the validation split) and the OOD statistics
    (training features); write calibration.json + ood.safetensors beside the model; report the coverage
    of the 68 % / 95 % intervals on the test split and the OOD ROC AUCs."""
    from models.calibration import calibrate

    rep = calibrate(model, store, mc_samples=mc_samples, percentile=percentile, max_samples=max_samples, seed=seed,
                    device=device)
    if as_json:
        emit_json(rep)
        return
    typer.echo(f"{rep['path']}: MC-dropout T={rep['mc_samples']}; scale fitted on {rep['n_calibration']} validation "
               f"frames, coverage on {rep['n_test']} test frames (68 % / 95 % intervals):")
    for n, c in rep["per_label"].items():
        b, a = c["coverage_before"], c["coverage_after"]
        typer.echo(f"  {n}: scale {c['scale']:.3g}; before {b['c68']:.0%} / {b['c95']:.0%}, "
                   f"after {a['c68']:.0%} / {a['c95']:.0%}; median std {c['median_std']:.3g}")
    auc = rep["ood"]["roc_auc"]
    typer.echo(f"  OOD (Mahalanobis, {rep['ood']['features']} features, {rep['n_fit']} training frames): threshold "
               f"{rep['ood']['threshold']:.3g}; ROC AUC test vs blank/noise {auc['test_vs_blank_noise']:.3f}, "
               f"augmented vs blank/noise {auc['augmented_vs_blank_noise']:.3f}, test vs augmented "
               f"{auc['test_vs_augmented']:.3f}")


COMMANDS = [("calibrate", calibrate_cmd)]

register_commands(app, COMMANDS)

if __name__ == "__main__":  # pragma: no cover
    app()
