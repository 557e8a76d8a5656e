"""The simulator protocol: parameters in, image + coordinates + diagnostics out.

Every simulator kind (the analytic ``blobs`` demo, ``tdse``, ``msft``) implements
:class:`Simulator`.  The generation engine (:mod:`factory.engine`) knows nothing else
about a simulator: it asks for the image shape, coordinates and label names once, then for
each sample ``i`` gets its labels from ``sample_params(seed, i)`` and its noise generator
from ``rng_for(seed, i, 1)``, and ``simulate_batch`` computes a block of samples.  One
simulator instance is built per worker process, as ``simulator_class(kind)(config, threads=N)``, and
reused for many blocks.  Physics code never imports Ray or Dask.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict


class SimulatorConfig(BaseModel):
    """Base class of every simulator's config: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Coord:
    """One image axis: its name (the Zarr dimension name), values and units."""

    name: str
    values: np.ndarray
    units: str = ""
    long_name: str = ""


@dataclass
class SimResult:
    """What one simulation returns: the (H, W) image and scalar diagnostics."""

    image: np.ndarray
    diagnostics: dict[str, float] = field(default_factory=dict)


class Simulator(ABC):
    """A simulator kind.  Subclasses set ``kind`` and ``config_model``."""

    kind: ClassVar[str]
    config_model: ClassVar[type[SimulatorConfig]]

    def __init__(self, config: SimulatorConfig, threads: int = 1):
        """``threads``: threads this instance may use (FFTs, BLAS, torch kernels); the engine
        passes its per-worker count, default one (parallelism comes from processes and batches)."""
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads = {threads!r}: must be an integer >= 1")
        self.config = config
        self.threads = threads

    # -- static description -------------------------------------------------
    @abstractmethod
    def coords(self) -> tuple[Coord, Coord]:
        """The (H, W) axes of every image, in image order."""

    @property
    def image_shape(self) -> tuple[int, int]:
        h, w = self.coords()
        return (len(h.values), len(w.values))

    @property
    @abstractmethod
    def param_names(self) -> list[str]:
        """Labels stored under ``params/<name>`` (float64)."""

    @property
    def diagnostic_names(self) -> list[str]:
        """Scalar diagnostics stored under ``diagnostics/<name>`` (float64)."""
        return []

    def store_attrs(self) -> dict[str, Any]:
        """Extra JSON-able attributes for the store (units of labels, ...)."""
        return {}

    # -- per sample -----------------------------------------------------------
    @abstractmethod
    def sample_params(self, seed: int, index: int) -> dict[str, float]:
        """The labels of sample ``index``: a function of (seed, index) only.

        Usually ``rng = rng_for(seed, index, 0)`` and draws from it; a kind may share
        draws between samples (e.g. an intensity ladder for focal averaging uses
        ``rng_for(seed, index // n_ladder, 0)``), as long as only (seed, index) decide.
        """

    @abstractmethod
    def simulate(self, params: dict[str, float], rng: np.random.Generator) -> SimResult:
        """Compute one image. ``rng`` (from (seed, index)) is for noise only."""

    def simulate_batch(
        self, params: list[dict[str, float]], rngs: list[np.random.Generator]
    ) -> list[SimResult]:
        """Compute a block of images; override to batch on one device."""
        return [self.simulate(p, r) for p, r in zip(params, rngs)]


def rng_for(seed: int, index: int, stream: int) -> np.random.Generator:
    """The random generator of sample ``index``: a function of (seed, index, stream) only.

    ``stream`` 0 draws the parameters, stream 1 the noise inside the simulation.
    """
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(index, stream)))
