"""Where Ray runs, for deployment scripts and older imports: an embedded local Ray or a cluster.

The logic lives in the compute layer (:mod:`factory.compute.ray_executor`); this module
re-exports it.  Order of precedence: an explicit ``address`` argument (``--address`` on the
CLI), then the ``RAY_ADDRESS`` environment variable, then an embedded local Ray started in
this process.  A Ray instance that is already initialised in this process is reused as it is.
"""

from __future__ import annotations

import ray  # noqa: F401 - re-exported: tests and scripts reach Ray's functions through this module

from factory.compute.ray_executor import PROBE_TIMEOUT_S, RayTarget, probe, shutdown
from factory.compute.ray_executor import connect as _connect


def connect(address: str | None = None, num_cpus: int | None = None, *, dashboard: bool | None = None) -> RayTarget:
    """Initialise Ray once (or reuse it) and describe what is there (probing an address first);
    quiet unless ``factory --verbose``, the dashboard on 127.0.0.1 with ``dashboard`` (default:
    ``factory --dashboard``)."""
    return _connect(address, num_cpus, probe=probe, dashboard=dashboard)


__all__ = ["PROBE_TIMEOUT_S", "RayTarget", "connect", "probe", "shutdown"]
