"""``blobs``: an analytic demo/test simulator (a 2D image of Gaussian blobs).

Its labels are the blob parameters themselves, so a network can learn them and the engine
can be exercised end to end at no physics cost.  Three knobs exist for tests and
benchmarks: ``work_repeats`` (repeat the image computation to emulate an expensive
simulator with real CPU work), ``delay_s`` (sleep, to emulate a slow one without using CPU)
and ``nan_at`` (failure injection: these sample indices return NaN images).
"""

from __future__ import annotations

import time

import numpy as np
from pydantic import Field, model_validator

from ..simulation import Coord, SimResult, Simulator, SimulatorConfig, rng_for


class BlobsConfig(SimulatorConfig):
    height: int = Field(64, ge=4, le=8192, description="image rows (y)")
    width: int = Field(64, ge=4, le=8192, description="image columns (x)")
    n_blobs: int = Field(2, ge=1, le=16)
    amplitude: tuple[float, float] = (0.5, 1.0)
    sigma: tuple[float, float] = (0.05, 0.2)
    center: tuple[float, float] = (-0.6, 0.6)
    noise: float = Field(0.0, ge=0.0, le=1.0, description="std of additive Gaussian noise")
    work_repeats: int = Field(1, ge=1, le=10_000)
    delay_s: float = Field(0.0, ge=0.0, le=60.0)
    nan_at: list[int] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ranges(self):
        for name in ("amplitude", "sigma", "center"):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"{name} = {[lo, hi]}: expected [low, high] with low <= high")
        if self.sigma[0] <= 0:
            raise ValueError(f"sigma = {list(self.sigma)}: widths must be > 0")
        return self


class BlobsSimulator(Simulator):
    kind = "blobs"
    config_model = BlobsConfig

    def coords(self) -> tuple[Coord, Coord]:
        c = self.config
        return (
            Coord("y", np.linspace(-1.0, 1.0, c.height), "arb.", "y position"),
            Coord("x", np.linspace(-1.0, 1.0, c.width), "arb.", "x position"),
        )

    @property
    def param_names(self) -> list[str]:
        names = []
        for k in range(self.config.n_blobs):
            names += [f"amp{k}", f"x{k}", f"y{k}", f"sigma{k}"]
        return names

    @property
    def diagnostic_names(self) -> list[str]:
        return ["total", "peak"]

    def sample_params(self, seed: int, index: int) -> dict[str, float]:
        c = self.config
        rng = rng_for(seed, index, 0)
        out = {}
        for k in range(c.n_blobs):
            out[f"amp{k}"] = float(rng.uniform(*c.amplitude))
            out[f"x{k}"] = float(rng.uniform(*c.center))
            out[f"y{k}"] = float(rng.uniform(*c.center))
            out[f"sigma{k}"] = float(rng.uniform(*c.sigma))
        out["_index"] = index  # not a label: lets nan_at find the sample
        return out

    def image(self, params: dict[str, float]) -> np.ndarray:
        y, x = (c.values for c in self.coords())
        img = np.zeros((len(y), len(x)))
        for k in range(self.config.n_blobs):
            gx = np.exp(-((x - params[f"x{k}"]) ** 2) / (2 * params[f"sigma{k}"] ** 2))
            gy = np.exp(-((y - params[f"y{k}"]) ** 2) / (2 * params[f"sigma{k}"] ** 2))
            img += params[f"amp{k}"] * np.outer(gy, gx)
        return img

    def simulate(self, params: dict[str, float], rng: np.random.Generator) -> SimResult:
        c = self.config
        if c.delay_s:
            time.sleep(c.delay_s)
        for _ in range(c.work_repeats):
            img = self.image(params)
        if c.noise:
            img = img + rng.normal(0.0, c.noise, img.shape)
        if params.get("_index") in c.nan_at:
            img = np.full_like(img, np.nan)
        return SimResult(img.astype(np.float32), {"total": float(img.sum()), "peak": float(img.max())})
