"""A Ray cluster that wants an authentication token the client lacks: one error line naming the
token, not 24 warning lines and a ConnectionError traceback (issue 24, item 10)."""

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from factory.testing import error_line, free_port, run_cli_process


@pytest.mark.slow  # a Ray head of its own (token auth) and Ray's ~20 s of connection retries
def test_cluster_with_token_auth_refuses_a_client_without_the_token_in_one_line(tmp_path):
    port = free_port()
    temp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    home = tmp_path / "home"  # the client's: no ~/.ray/auth_token there
    home.mkdir()
    env = {**os.environ, "HOME": str(tmp_path), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    ray_cli = Path(sys.executable).with_name("ray")
    try:
        subprocess.run([str(ray_cli), "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                        "--disable-usage-stats", f"--temp-dir={temp}"], env=env, check=True, capture_output=True,
                       timeout=120)
        client = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
        client["HOME"] = str(home)
        proc = run_cli_process("generate", "blobs/tiny", "--out", tmp_path / "s.zarr", "--address",
                               f"127.0.0.1:{port}", env=client, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "refused this client: its authentication token is missing or wrong" in error_line(proc)
        assert "gcs_client" not in proc.stderr and not (tmp_path / "s.zarr").exists()
    finally:  # the head's processes only: those that name this test's Ray temp folder
        for p in psutil.process_iter(["cmdline"]):
            if any(str(temp) in a for a in (p.info["cmdline"] or [])):
                try:
                    p.kill()
                except psutil.Error:
                    pass
        shutil.rmtree(temp, ignore_errors=True)
