"""Decide where to run: an embedded local Ray instance, or an existing Ray cluster.

Order of precedence: an explicit ``address`` argument (``--address`` on the CLI), then the
``RAY_ADDRESS`` environment variable, then an embedded local Ray started in this process.
A Ray instance that is already initialised in this process (a notebook, a test fixture) is
reused as it is.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import ray

from factory.errors import ClusterError

PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RayTarget:
    address: str | None  # None = embedded local Ray
    cpus: int
    nodes: int

    def describe(self) -> str:
        where = f"Ray cluster at {self.address}" if self.address else "embedded local Ray"
        return f"{where}: {self.nodes} node(s), {self.cpus} CPU(s)"


def connect(address: str | None = None, num_cpus: int | None = None) -> RayTarget:
    """Initialise Ray once (or reuse it) and describe what is there."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not ray.is_initialized():
        if address:
            probe(address)
            ray.init(address=address, log_to_driver=True)
        else:
            ray.init(
                num_cpus=num_cpus,
                include_dashboard=False,
                log_to_driver=True,
                configure_logging=False,
            )
    res = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return RayTarget(address=address, cpus=int(res.get("CPU", 0)), nodes=nodes)


def probe(address: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Fail fast (one line) when a ``host:port`` or ``ray://host:port`` address does not answer,
    instead of Ray's minutes of retries; ``auto`` and other forms are left to Ray."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or type(exc).__name__}); "
            "check --address / RAY_ADDRESS, or leave both unset for an embedded local Ray"
        ) from None


def shutdown() -> None:
    if ray.is_initialized():
        ray.shutdown()
