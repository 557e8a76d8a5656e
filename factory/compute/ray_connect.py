"""Where Ray runs: connecting to a cluster (probed first, one line when it refuses) or starting an
embedded local Ray in this process, and what is there (:class:`RayTarget`).  See
:mod:`factory.compute.ray_executor` for the rules of where."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass

from .. import logs
from ..errors import ClusterError

log = logs.get_logger(__name__)
PROBE_TIMEOUT_S = 10.0
#: Ray starts its worker processes at nice 15, below every other process of the machine: on a
#: shared machine they then get a small share of a core that any other process wants (measured:
#: one worker 1.4x slower than the same loop in the driver at load 1-3).  An embedded Ray runs
#: its workers at the driver's priority; a cluster started with `ray start` keeps its own setting.
WORKER_NICENESS = 0


@dataclass(frozen=True)
class RayTarget:
    address: str | None  # None = embedded local Ray
    cpus: int
    nodes: int
    gpus: int = 0

    def describe(self) -> str:
        where = f"Ray cluster at {self.address}" if self.address else "embedded local Ray"
        gpus = f", {self.gpus} GPU(s)" if self.gpus else ""
        return f"{where}: {self.nodes} node(s), {self.cpus} CPU(s){gpus}"


def probe(address: str, timeout: float = PROBE_TIMEOUT_S, *, service: str = "Ray cluster",
          hint: str = "check --address / RAY_ADDRESS, or leave both unset for an embedded local Ray") -> None:
    """Fail fast (one line) when a ``host:port`` or ``scheme://host:port`` address does not answer;
    ``auto`` and other forms are left to the library that uses them."""
    hostport = address.split("://", 1)[-1].split("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ClusterError(
            f"cannot reach the {service} at {address} ({exc.strerror or type(exc).__name__}); {hint}"
        ) from None


_options = {"dashboard": False}  # set by the CLI's --dashboard (start_dashboard)


def start_dashboard(on: bool = True) -> None:
    """Start Ray's dashboard (bound to 127.0.0.1) with the next embedded Ray of this process,
    and log its URL; refused at once when Ray's dashboard packages are missing."""
    if on:
        dashboard_missing()
    _options["dashboard"] = bool(on)


def dashboard_missing() -> None:
    """Raise :class:`ClusterError` (one line: what to install) unless Ray can start its dashboard."""
    try:
        import ray.dashboard.optional_deps  # noqa: F401 - what Ray itself imports to decide
    except ImportError as exc:
        raise ClusterError(f"--dashboard needs Ray's dashboard packages ({exc.name or exc} is missing): "
                           "pip install 'ray[default]'") from None


def quiet_ray(verbose: bool) -> None:
    """Ray's driver-side loggers: only errors, unless ``verbose`` (Ray's own default then).

    This is where Ray's "Token authentication is enabled for this Ray cluster" notice of every
    new local cluster goes (a WARNING of ``ray._private.authentication``): authentication stays
    as Ray sets it, the notice is not shown."""
    import logging

    logging.getLogger("ray").setLevel(logging.INFO if verbose else logging.ERROR)


def connect(address: str | None = None, num_cpus: int | None = None, *, probe=probe,
            dashboard: bool | None = None) -> RayTarget:
    """Initialise Ray once (or reuse it) and describe what is there.

    Quiet unless ``factory --verbose`` (:func:`factory.logs.verbose`): Ray does not forward its
    workers' output to this process (``log_to_driver``; the project's own lines come through
    :mod:`.ray_logs`) and its driver-side loggers show errors only.  ``dashboard`` (default: the
    CLI's ``--dashboard``) starts the embedded Ray's dashboard on 127.0.0.1 and logs its URL
    (a cluster's dashboard URL is logged as it is).
    """
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    dashboard = _options["dashboard"] if dashboard is None else dashboard
    if not ray.is_initialized():
        verbose = logs.verbose()
        quiet_ray(verbose)
        if address:
            probe(address)
            ctx = _join(ray, address, verbose)
        else:
            if dashboard:
                dashboard_missing()
            ctx = ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard,
                           dashboard_host="127.0.0.1", log_to_driver=verbose, configure_logging=False,
                           _system_config={"worker_niceness": WORKER_NICENESS})
        if dashboard:
            url = ctx.dashboard_url
            log.info("Ray dashboard: %s", f"http://{url}" if url else "not available (see Ray's logs with --verbose)")
    res = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return RayTarget(address=address, cpus=int(res.get("CPU", 0)), nodes=nodes, gpus=int(res.get("GPU", 0)))


def _join(ray, address: str, verbose: bool):
    """``ray.init(address)``, with what Ray's C++ client prints meanwhile (one warning a second
    while it retries) held back: a refused connection is one ClusterError line, naming a missing or
    wrong authentication token when that is why; on success the held text is shown as it was."""
    import tempfile

    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            return ray.init(address=address, log_to_driver=verbose, configure_logging=False)
        except (ConnectionError, RuntimeError) as exc:
            held.seek(0)
            text = held.read().decode(errors="replace")
            if "Unauthenticated" in text or "InvalidAuthToken" in text:
                raise ClusterError(f"the Ray cluster at {address} refused this client: its authentication token is "
                                   "missing or wrong (give the cluster's token: RAY_AUTH_TOKEN, or the file "
                                   "RAY_AUTH_TOKEN_PATH / ~/.ray/auth_token)") from None
            lines = [line for line in text.splitlines() if line.strip()]
            why = (lines[-1] if lines else str(exc)).strip()[:200]
            raise ClusterError(f"cannot connect to the Ray cluster at {address} ({why})") from None
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            if not sys.exc_info()[0]:
                sys.stderr.flush()
                os.write(2, held.read())


def ray_running() -> tuple[bool, int]:
    """(whether Ray is initialised in this process, its CPUs), without starting it."""
    import ray

    if not ray.is_initialized():
        return False, 0
    return True, int(ray.cluster_resources().get("CPU", 0))


def shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
