"""Registry of simulator kinds.  Imports are lazy so that listing kinds stays cheap."""

from __future__ import annotations

import importlib

from ..simulation import Coord, SimResult, Simulator, SimulatorConfig, rng_for

# kind -> "module:Class".  A new kind is one line here.
KINDS: dict[str, str] = {
    "blobs": "factory.simulators.blobs:BlobsSimulator",
    "tdse": "factory.tdse.simulator:TDSESimulator",
    "msft": "factory.msft.simulator:MSFTSimulator",
}


def simulator_class(kind: str) -> type[Simulator]:
    """The Simulator subclass of ``kind``; a ValueError names the known kinds."""
    if kind not in KINDS:
        raise ValueError(f"unknown simulator kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}")
    module, cls = KINDS[kind].split(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["KINDS", "Coord", "SimResult", "Simulator", "SimulatorConfig", "rng_for", "simulator_class"]
