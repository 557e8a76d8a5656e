"""What the tests share: the session's one Ray, the in-process CLI (:mod:`factory.testing`), threads.

Tiers: ``python3 -m pytest -q`` runs the fast tier (``-m "not slow"`` in pyproject.toml's addopts);
``python3 -m pytest -q -m slow`` the slow one (the executed docs, the quickstart's tiny plan,
multi-node clusters, kills of real processes, the monitor in Chromium, long fuzzing).  `.ci/run`
runs both.
"""

import os
import sys

import pytest


os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("FACTORY_FFTW_PLANNER", "FFTW_ESTIMATE")

_RAY: dict[str, str] = {}


def shared_ray():
    """The test session's one embedded Ray (2 CPUs), started on first use and kept to the end.

    :func:`ray_local` exports its address through ``RAY_ADDRESS``, so `factory` commands run in a
    subprocess join it instead of starting their own (a Ray start costs 10-40 s on the shared
    2-core machine).  A test that shut Ray down (to test a Ray of its own) leaves the next one a
    new Ray.
    """
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False,
                 log_to_driver=False)  # never a cluster of another process
        _RAY.pop("address", None)
    if "address" not in _RAY:
        _RAY["address"] = ray.get_runtime_context().gcs_address
    return ray


@pytest.fixture
def ray_local(monkeypatch):
    """The session's shared embedded Ray, with ``RAY_ADDRESS`` set to it for this test."""
    ray = shared_ray()
    monkeypatch.setenv("RAY_ADDRESS", _RAY["address"])
    return ray


@pytest.fixture
def torch_one_thread():
    """torch's CPU thread pool spins badly on a shared 2-core machine: use one thread here."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# -- the end of the test process ---------------------------------------------------------------
# Once (1 of 3 clean-clone runs, 2026-11-30) the pytest process died with SIGSEGV *after*
# printing "584 passed", while the interpreter finalized: it holds daemon threads of zarr's
# event loop, Dask and asyncio beside torch, Ray and zmq state from hundreds of in-process tests.
# No command of the project has shown this (every CLI test checks the exit status).  So the test
# process ends with pytest's own exit status once pytest has reported everything and run its own
# teardown, after shutting down what it still holds, instead of finalizing those libraries.
_SESSION: dict[str, int] = {}


def pytest_sessionfinish(session, exitstatus):
    _SESSION["exitstatus"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if "exitstatus" not in _SESSION or os.environ.get("FACTORY_TESTS_FINALIZE") == "1" \
            or os.environ.get("PYTEST_XDIST_WORKER"):
        return  # FACTORY_TESTS_FINALIZE=1: finalize normally (to look for such crashes); an xdist worker
        # ends as xdist expects (its controller reports the status)
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()
    if "zarr.core.sync" in sys.modules:
        sys.modules["zarr.core.sync"].cleanup_resources()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_SESSION["exitstatus"])
