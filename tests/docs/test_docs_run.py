"""README.md is executable: every ```bash block runs, in order, in one folder, at tiny scale.

Each block is run as written except for the scale-down rules in :data:`TINY` (presets ``small``,
``fast`` and ``paper`` become ``tiny``, sample counts at most 8, intensity ladders of 2, epochs
at most 2, TDSE propagation to the end of the pulse; every command joins one Ray instance the
test starts, through ``RAY_ADDRESS``, instead of starting its own), so every input a command uses must be made by an earlier
block.  A block directly after the comment ``<!-- readme: not run (REASON) -->`` is illustrative
only (it needs a cluster, a facility stream or the network, or it installs the package): the test
checks that it names its reason and does not run it.  README.md ("How this README is tested")
documents the same rules.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
NOT_RUN = re.compile(r"<!--\s*readme:\s*not run\s*\((?P<why>[^)]+)\)\s*-->")

#: (pattern, replacement) applied to every command line of a block that runs
TINY: list[tuple[str, str]] = [
    (r"\b(blobs|msft|tdse)/(small|paper|fast)\b", r"\1/tiny"),
    (r"\b(pmd-cnn|pmd-classifier|resnet-scatter|1d-cnn|1d-mlp)/(small|paper)\b", r"\1/tiny"),
    (r"simulator\.preset=(small|paper|fast)\b", "simulator.preset=tiny"),
    (r"--preset (small|paper|fast)\b", "--preset tiny"),
    (r"simulator\.sampling\.ladder=\d+", "simulator.sampling.ladder=2"),
]


def _cap(name: str, most: int):
    def sub(m: re.Match) -> str:
        return f"{m.group(1)}{min(int(m.group(2)), most)}"
    return re.compile(rf"({re.escape(name)}[ =])(\d+)"), sub


CAPS = [_cap("--samples", 8), _cap("--epochs", 2), _cap("optim.epochs", 2), _cap("--max-frames", 8)]


def blocks(text: str) -> list[tuple[int, str, str | None]]:
    """(line number, code, reason not run or None) of every ```bash block, in order."""
    out = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            start = i
            j = i + 1
            while lines[j].strip() != "```":
                j += 1
            prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
            m = NOT_RUN.search(prev)
            out.append((start + 1, "\n".join(lines[start + 1:j]), m.group("why") if m else None))
            i = j
        i += 1
    return out


def tiny(code: str) -> str:
    """The block at tiny scale: the rules of :data:`TINY` and the caps, line by line."""
    code = code.replace("\\\n", " ")  # one line per command
    out = []
    for line in code.splitlines():
        for pat, rep in TINY:
            line = re.sub(pat, rep, line)
        for pat, sub in CAPS:
            line = pat.sub(sub, line)
        if re.match(r"\s*factory generate tdse/", line):  # to the end of the pulse: seconds per PMD
            cmd, _, comment = line.partition("#")
            line = f"{cmd.rstrip()} --set simulator.preset=tiny --set simulator.t_end=1.0"
        out.append(line)
    return "\n".join(out)


def test_rules_scale_commands_down():
    code = ("factory generate tdse/small --samples 200 --set simulator.sampling.ladder=10 --out raw.zarr\n"
            "factory train pmd-cnn/small --store s.zarr --out r \\\n    --set optim.epochs=30")
    got = tiny(code).splitlines()
    assert got[0] == ("factory generate tdse/tiny --samples 8 --set simulator.sampling.ladder=2 --out raw.zarr"
                      " --set simulator.preset=tiny --set simulator.t_end=1.0")
    assert got[1].split() == "factory train pmd-cnn/tiny --store s.zarr --out r --set optim.epochs=2".split()


def test_every_block_runs_or_says_why_not():
    found = blocks(README.read_text())
    assert len(found) >= 10
    for line, code, why in found:
        assert why is None or len(why.split()) >= 2, f"README.md:{line}: say why the block is not run"


@pytest.mark.slow
def test_readme_runs_in_order(tmp_path, ray_local):
    address = ray_local.get_runtime_context().gcs_address  # the commands join it: one Ray start, not 25
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "RAY_ADDRESS": address,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for line, code, why in blocks(README.read_text()):
        if why is not None:
            continue
        script = tiny(code)
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (
            f"README.md block at line {line} failed ({proc.returncode}):\n{script}\n--- stdout\n"
            f"{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-6000:]}")
