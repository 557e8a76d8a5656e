"""``factory quickstart``: the whole chain that exists, small, on local Ray, with a report.

Each stage is a function ``stage(ctx) -> str`` returning a Markdown section (figures are
written next to the report).  A new capability adds its stage to ``STAGES``.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Callable

from factory.config import SIZES
from factory.errors import ConfigError, OutputError
from factory.outputs import ResultFolder
from factory.plots import plot_param_hist, plot_samples
from factory.store import DatasetStore

from factory.app.quickstart_baselines import stage_baselines
from factory.app.quickstart_context import Context, generate_stage
from factory.app.quickstart_tdse import stage_tdse, stage_tdse_shifted
from factory.app.quickstart_train import stage_train_pmd, stage_train_scatter


def stage_blobs(ctx: Context) -> str:
    cfg, rep, store = generate_stage(ctx, "blobs", f"blobs/{ctx.size}")
    fig = plot_samples(store, ctx.out / "blobs-samples.png", n=8, labels=["amp0", "x0", "y0"])
    hist = plot_param_hist(store, ctx.out / "blobs-params.png")
    return (
        "## Generation engine (analytic Gaussian blobs)\n\n"
        f"`factory generate blobs/{ctx.size} --out {store.path.name}`: {rep.done}/{rep.samples} samples in "
        f"{rep.blocks_total} blocks, {rep.wall_s:.1f} s ({rep.samples_per_s:.0f} samples/s) on {rep.where}; "
        f"config hash `{cfg.hash[:12]}`.\n\n"
        f"![samples]({fig.name})\n\n![labels]({hist.name})\n"
    )


def stage_augment(ctx: Context) -> str:
    from factory.processing.steps import augment_store, preprocess_store

    src = ctx.stores["blobs"]
    net = ctx.out / "blobs-net.zarr"
    rep1 = preprocess_store([src], net, mode="scatter", overwrite=True, workers=ctx.workers, progress=ctx.progress)
    rep2 = augment_store(net, ctx.out / "blobs-aug.zarr", factor=11, overwrite=True, workers=ctx.workers,
                         progress=ctx.progress)
    ctx.stores["blobs-aug"] = Path(rep2.path)
    fig = plot_samples(DatasetStore.open(rep2.path), ctx.out / "augmentation.png", n=12, labels=["augmentation"])
    return (
        "## Post-processing with Dask: log normalisation and the 11 augmentation filters "
        "(Stielow et al., MLST 2020, App. D)\n\n"
        f"`factory process preprocess --mode scatter`: {rep1.samples} images in {rep1.wall_s:.1f} s; "
        f"`factory process augment --factor 11` (train split only): {rep2.samples} images in {rep2.wall_s:.1f} s "
        f"({rep2.images_per_s:.0f} images/s) on {rep2.where}. Filter 0 is the identity, 9 a random "
        "combination, 10 the ordered 'experimental' sequence.\n\n"
        f"![augmentation]({fig.name})\n"
    )


def stage_msft(ctx: Context) -> str:
    from factory.app.quickstart_msft import stage_msft as run

    text = run(ctx)
    from factory.processing.steps import preprocess_store

    rep = preprocess_store([ctx.stores["msft"]], ctx.out / "msft-net.zarr", mode="scatter", split=(0.8, 0.1, 0.1),
                           overwrite=True, workers=ctx.workers, progress=ctx.progress)
    ctx.stores["msft-net"] = Path(rep.path)
    return text + (f"\n`factory process preprocess msft.zarr --mode scatter`: {rep.samples} network-ready images "
                   f"(log10(I / max I) over 6 decades, 128 x 128, seeded 80/10/10 split) in {rep.wall_s:.1f} s.\n")


def stage_stream(ctx: Context) -> str:
    from models.stream.pipeline import StreamOptions, StreamPredictor
    from models.stream.sinks import ZarrSink
    from models.stream.sources import ReplaySource

    model = ctx.out / "train-resnet" / "model"
    if not (model / "model.json").is_file() or "msft" not in ctx.stores:
        return "## Streaming prediction\n\nNo trained scattering model in this run; skipped.\n"
    labels = ["radius", "q0", "q1", "q2", "q3"]
    sink = ZarrSink(ctx.out / "stream-predictions.zarr", labels, {"model": str(model)}, overwrite=True)
    src = ReplaySource(ctx.stores["msft"], rate=200.0)
    s = StreamPredictor(str(model), src, [sink], StreamOptions(batch_size=16, max_latency_ms=20)).run()
    return (
        "## Streaming prediction on replayed detector frames\n\n"
        f"`factory predict stream train-resnet/model --source msft.zarr --rate 200`: the raw detector frames "
        f"were preprocessed with the model's recorded preprocessing and predicted: received {s['received']} = "
        f"predicted {s['predicted']} + rejected {s['rejected']} + dropped {s['dropped']}; "
        f"{s['rate']:.0f} frames/s, latency p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms.\n"
    )


STAGES: list[tuple[str, Callable[[Context], str]]] = [
    ("engine", stage_blobs),
    ("augment", stage_augment),
    ("msft", stage_msft),
    ("tdse", stage_tdse),
    ("train-pmd", stage_train_pmd),
    ("tdse-shifted", stage_tdse_shifted),
    ("train-scatter", stage_train_scatter),
    ("stream", stage_stream),
    ("baselines", stage_baselines),
]


def run_quickstart(
    out: str | Path, *, size: str = "small", workers: int | None = None, progress: bool = True
) -> Path:
    """Run every stage on the ``size`` presets and write ``out/report.md``; returns its path."""
    if size not in SIZES:
        raise ConfigError(f"quickstart size {size!r}: choose one of {', '.join(SIZES)}")
    folder = ResultFolder(out, ("report.md",))  # before any work
    out = folder.path
    if out.is_dir() and any(out.iterdir()) and not folder.wrote("report.md"):
        raise OutputError(f"{out} holds files and is not a quickstart folder; choose a new or empty --out")
    folder.file("report.md")  # marks the folder as a quickstart's from the start (a rerun continues it)
    ctx = Context(out=out, size=size, workers=workers, progress=progress)
    sections = []
    t_all = time.perf_counter()
    for name, stage in STAGES:
        t0 = time.perf_counter()
        sections.append(stage(ctx))
        ctx.timings[name] = time.perf_counter() - t0
    total = time.perf_counter() - t_all
    timing = "\n".join(f"| {k} | {v:.1f} |" for k, v in ctx.timings.items())
    return folder.write_text(
        "report.md",
        "# Data factory quickstart report\n\n"
        f"Host: {platform.node()} ({platform.machine()}, {platform.python_version()}); "
        f"finished {time.strftime('%Y-%m-%d %H:%M:%S')}; total {total:.1f} s.\n\n"
        + "\n".join(sections)
        + "\n## Stage timings\n\n| stage | seconds |\n| --- | --- |\n" + timing + "\n"
    )
