"""A processing chain declared in a YAML file and run step by step.

```yaml
steps:
  - focal-average: {source: raw.zarr, out: focal.zarr}
  - interpolate:   {sources: [focal.zarr], out: interp.zarr, axes: [R, I0], samples: 1000}
  - preprocess:    {sources: [interp.zarr], out: net.zarr, mode: pmd2d, split: [0.8, 0.2, 0.0]}
  - augment:       {source: net.zarr, out: aug.zarr, factor: 11}
```

Relative paths are taken relative to the chain file's folder.  Each step is resumable, so a
re-run of a killed chain continues where it stopped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import format_validation_error, read_yaml
from ..errors import ConfigError
from ..store import is_url
from . import steps


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    out: str
    chunk: int | None = Field(None, ge=1)


class FocalStep(_Step):
    source: str
    method: Literal["product", "trapezoid"] = "product"


class InterpolateStep(_Step):
    sources: list[str] = Field(min_length=1)
    axes: list[str] = Field(min_length=1)
    samples: int = Field(ge=1)
    method: Literal["linear", "rbf"] = "linear"
    outside: Literal["refuse", "flag"] = "refuse"
    seed: int = Field(0, ge=0)


class PreprocessStep(_Step):
    sources: list[str] = Field(min_length=1)
    mode: Literal["pmd2d", "pmd1d", "scatter"]
    window: Literal["global", "per-image"] = "global"
    log_floor: float | None = Field(None, lt=0)
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = Field(0, ge=0)


class AugmentStep(_Step):
    source: str
    factor: int = Field(11, ge=1, le=1000)
    seed: int = Field(0, ge=0)
    only_split: Literal["train", "validation", "test", "all"] = "train"
    detector: str | None = None


STEP_MODELS = {"focal-average": FocalStep, "interpolate": InterpolateStep, "preprocess": PreprocessStep,
               "augment": AugmentStep}


def load_chain(path: str | Path) -> list[tuple[str, BaseModel]]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"chain file {path} not found")
    data = read_yaml(path)
    if set(data) != {"steps"} or not isinstance(data["steps"], list) or not data["steps"]:
        raise ConfigError(f"{path}: a chain is a mapping with one key 'steps' holding a non-empty list")
    out = []
    for i, item in enumerate(data["steps"]):
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(f"{path}: steps[{i}] must be a mapping of one step name to its options")
        (name, opts), = item.items()
        if name not in STEP_MODELS:
            raise ConfigError(f"{path}: steps[{i}]: unknown step {name!r}; known: {', '.join(STEP_MODELS)}")
        try:
            out.append((name, STEP_MODELS[name].model_validate(opts or {})))
        except ValidationError as exc:
            raise ConfigError(f"{path}: {format_validation_error(exc, f'steps[{i}].{name}')}") from None
    return out


def run_chain(path: str | Path, *, overwrite: bool = False, executor=None, address: str | None = None,
              workers: int | None = None, **run) -> list[steps.StepReport]:
    """Run every step in order on one executor (given, else Dask: local threads or ``address``).

    Parameters
    ----------
    path : str or pathlib.Path
        The chain file: YAML with one key ``steps``, a list of ``{step-name: options}``
        (``focal-average``, ``interpolate``, ``preprocess``, ``augment``; see the module
        docstring).  Relative store paths are taken relative to its folder.
    overwrite : bool, optional
        Passed to every step: replace existing outputs instead of resuming them.
    executor : Executor, optional
        Where every step's chunks run (local, Ray, Dask); not closed.  Default: one Dask
        executor for the whole chain, closed at the end.
    address : str, optional
        A dask.distributed scheduler for the default executor.
    workers : int, optional
        Local Dask threads of the default executor.
    **run
        More options of every step's run, i.e. ``progress=`` (show progress bars).

    Returns
    -------
    list of BlockReport
        One report per step, in order.

    Raises
    ------
    ConfigError
        The chain file is missing or malformed (an unknown step, an invalid option); raised
        before any step runs.
    StoreError
        A step failed (see the steps' functions); the steps before it are complete and a
        re-run resumes.
    OutputError
        A step's output overlaps its input or is not a dataset store.
    """
    root = Path(path).resolve().parent
    rel = lambda p: p if is_url(p) else str(root / p)  # noqa: E731 - absolute paths and store URLs stay as they are
    chain = load_chain(path)
    own = executor is None
    if own:
        from ..compute.dask_executor import DaskExecutor

        executor = DaskExecutor(address, workers=workers)
    reports = []
    try:
        for name, s in chain:
            common = {"overwrite": overwrite, "executor": executor, **run}
            if s.chunk:
                common["chunk"] = s.chunk
            reports.append(_run_step(name, s, rel, common))
    finally:
        if own:
            executor.close()
    return reports


def _run_step(name: str, s: BaseModel, rel, common: dict) -> steps.StepReport:
    if name == "focal-average":
        return steps.focal_average_store(rel(s.source), rel(s.out), method=s.method, **common)
    if name == "interpolate":
        return steps.interpolate_store([rel(p) for p in s.sources], rel(s.out), axes=s.axes, samples=s.samples,
                                       method=s.method, outside=s.outside, seed=s.seed, **common)
    if name == "preprocess":
        return steps.preprocess_store([rel(p) for p in s.sources], rel(s.out), mode=s.mode, window=s.window,
                                      log_floor=s.log_floor, split=s.split, seed=s.seed, **common)
    return steps.augment_store(rel(s.source), rel(s.out), factor=s.factor, seed=s.seed, only_split=s.only_split,
                               detector=s.detector, **common)
