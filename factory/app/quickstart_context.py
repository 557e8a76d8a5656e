"""What the stages of ``factory quickstart`` share: the run context and one store generation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from factory.config import load_config
from factory.engine import generate
from factory.store import DatasetStore


@dataclass
class Context:
    out: Path
    size: str
    workers: int | None
    progress: bool
    stores: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def generate_stage(ctx: Context, name: str, preset: str, overrides: list[str] | None = None):
    """Generate the preset into ``out/NAME.zarr`` (replacing a previous run's) and open it."""
    cfg = load_config(preset, overrides or [])
    path = ctx.out / f"{name}.zarr"
    rep = generate(cfg, path, overwrite=True, workers=ctx.workers, progress=ctx.progress)
    ctx.stores[name] = path
    return cfg, rep, DatasetStore.open(path)
