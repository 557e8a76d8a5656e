"""A full disk is one error line naming the store and the space left, and the progress bar counts
only what was written (issue 24, item 4).  Runs on a small tmpfs the test mounts (root only)."""

import subprocess

import pytest

from factory.testing import error_line, run_cli


@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "small"
    where.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(where)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_generate_into_a_full_disk_is_one_line_and_counts_only_what_was_written(small_disk):
    out = small_disk / "s.zarr"
    proc = run_cli("generate", "blobs/small", "--out", out, "--samples", "400", "--set", "chunk=10")
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc)  # was an 86-118-line OSError traceback with exit 1
    assert "blocks failed" in line and f"{out}: no space left on the device" in line and "MiB free there" in line
    done = int(line.split(" samples done")[0].rsplit(", ", 1)[1].split("/")[0])
    assert done < 400
    bar = [l for l in proc.stderr.splitlines() if "generate blobs" in l][-1]
    assert f" {done}/400 " in bar  # not 400/400
