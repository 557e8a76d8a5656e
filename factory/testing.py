"""Test helpers: the ``factory`` command line in this process or in a real one, and its error contract.

:func:`run_cli` runs ``factory ARGS`` through :func:`factory.app.main.main` in the calling process
(the code path ``python -m factory.cli`` takes, without the 3-5 s of a new interpreter and its
imports) and hands back what a subprocess would: exit status, stdout and stderr.  An exception
that escapes the command (a bug) becomes its traceback on stderr and exit status 1, as Python
itself would print it.  Commands that must run in their own process (a kill, a signal, a hang,
the installed entry point) use :func:`run_cli_process`.

>>> from factory.testing import run_cli
>>> run_cli("presets").returncode
0
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import traceback
from collections.abc import Mapping

__all__ = ["run_cli", "run_cli_process", "error_line", "file_tree", "free_port", "ladder_pmd", "make_ladder_store"]


@contextlib.contextmanager
def _environment(env: Mapping[str, str] | None):
    if env is None:
        yield
        return
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_cli(*args: str, timeout: float = 300, check: bool = False, env: Mapping[str, str] | None = None,
            cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """``factory ARGS`` in this process, returned as :class:`subprocess.CompletedProcess`.

    Parameters
    ----------
    *args
        The command line after ``factory``.
    timeout
        Accepted for the signature of :func:`run_cli_process`; an in-process command is bounded
        by the test runner's own timeout instead.
    check
        Raise ``AssertionError`` with stderr when the exit status is not 0.
    env
        The whole environment for the command (restored afterwards); ``None`` keeps this one.
    cwd
        The working directory for the command (restored afterwards).

    Returns
    -------
    subprocess.CompletedProcess
        ``returncode``, ``stdout`` and ``stderr`` (text) of the command.
    """
    from factory.app.main import main

    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    with _environment(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            if cwd is not None:
                os.chdir(cwd)
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if exc.code is not None and not isinstance(exc.code, int):
                err.write(f"{exc.code}\n")
        except BaseException as exc:  # noqa: BLE001 - a bug: its traceback, as the interpreter prints it
            if isinstance(exc, KeyboardInterrupt):
                raise
            err.write("".join(traceback.format_exception(exc)))
            code = 1
        finally:
            os.chdir(here)
    proc = subprocess.CompletedProcess(["factory", *argv], code, out.getvalue(), err.getvalue())
    if check and proc.returncode != 0:
        raise AssertionError(f"factory {' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def run_cli_process(*args: str, timeout: float = 300, check: bool = False,
                    env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None
                    ) -> subprocess.CompletedProcess:
    """``python -m factory.cli ARGS`` in a new process, as a user would run it (same parameters
    as :func:`run_cli`; ``timeout`` in seconds kills it)."""
    proc = subprocess.run([sys.executable, "-m", "factory.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=None if env is None else dict(env), cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"factory {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line a failed command printed; a traceback anywhere on stderr fails.

    Parameters
    ----------
    proc
        What :func:`run_cli` or :func:`run_cli_process` returned.

    Returns
    -------
    str
        The line, starting ``error: ``.
    """
    assert "Traceback (most recent call last)" not in proc.stderr, f"a traceback, not a one-line error:\n{proc.stderr}"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, f"expected exactly one 'error:' line, got:\n{proc.stderr}"
    return errors[0]


def file_tree(path) -> dict[str, bytes]:
    """Every file under ``path`` (relative name -> bytes): two equal trees are byte-identical outputs."""
    from pathlib import Path

    path = Path(path)
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a test's own server)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- small synthetic stores ------------------------------------------------------------------------
def ladder_pmd(R, intensity, ky, kx):
    """A smooth synthetic PMD whose width grows with intensity and fringes with R (no physics)."""
    import numpy as np

    yy, xx = np.meshgrid(ky, kx, indexing="ij")
    s = 0.4 + intensity / 4e14
    return (intensity / 1e14) ** 3 * np.exp(-(xx**2 + 2 * yy**2) / (2 * s**2)) * (1.2 + np.cos(R * xx))


def make_ladder_store(path, groups=6, ladder=5, chunk=5, fn=ladder_pmd, ky=None, kx=None, kind="tdse"):
    """A TDSE-like store of ``groups`` intensity ladders of ``ladder`` samples each (one R per
    ladder, as the TDSE simulator writes them), images from ``fn(R, intensity, ky, kx)``.

    Returns
    -------
    factory.store.DatasetStore
        The complete store at ``path``.
    """
    import numpy as np

    from factory.simulators import Coord
    from factory.store import DatasetStore

    ky = np.linspace(-3, 3, 33) if ky is None else ky
    kx = np.linspace(-4, 4, 41) if kx is None else kx
    rng = np.random.default_rng(1)
    st = DatasetStore.create(
        path, kind=kind, n_samples=groups * ladder, chunk=chunk,
        coords=(Coord("ky", ky, "a.u."), Coord("kx", kx, "a.u.")),
        param_names=["R", "intensity", "cep", "alpha", "molecule", "I0", "ladder_index"],
        config={"synthetic": True}, config_hash=f"synthetic-{groups}-{ladder}-{kind}-{len(kx)}",
        extra_attrs={"simulator": {"ladder": ladder}},
    )
    R = np.repeat(rng.uniform(1, 8, groups), ladder)
    I0 = np.repeat(rng.uniform(1e14, 4e14, groups), ladder)
    k = np.tile(np.arange(ladder), groups).astype(float)
    inten = I0 * (k + 1) / ladder
    imgs = np.stack([fn(r, i, ky, kx) for r, i in zip(R, inten)]).astype(np.float32)
    zeros = np.zeros(groups * ladder)
    for s, e in st.blocks():
        st.write_block(s, imgs[s:e], {"R": R[s:e], "intensity": inten[s:e], "cep": zeros[s:e], "alpha": zeros[s:e],
                                      "molecule": zeros[s:e], "I0": I0[s:e], "ladder_index": k[s:e]})
    return st
