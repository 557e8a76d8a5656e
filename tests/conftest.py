import os
import subprocess
import sys

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("FACTORY_FFTW_PLANNER", "FFTW_ESTIMATE")


@pytest.fixture(scope="module")
def ray_local():
    """An embedded local Ray with 2 CPUs for one test module."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)  # never a cluster of another process
    yield ray
    ray.shutdown()


def run_cli(*args: str, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess:
    """Run the installed `factory` command line as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "factory.cli", *args],
        capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"factory {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line a failed command printed; a traceback anywhere on stderr fails the test."""
    assert "Traceback (most recent call last)" not in proc.stderr, f"a traceback, not a one-line error:\n{proc.stderr}"
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("error: ")]
    assert len(errors) == 1, f"expected exactly one 'error:' line, got:\n{proc.stderr}"
    return errors[0]


@pytest.fixture
def torch_one_thread():
    """torch's CPU thread pool spins badly on a shared 2-core machine: use one thread here."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
