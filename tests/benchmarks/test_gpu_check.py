"""benchmarks/gpu_check.py runs on the CPU at tiny sizes, so the script a lent GPU runs cannot rot."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402


def _fast_preset_exists() -> bool:
    from factory.tdse import make_config

    try:
        make_config("fast")
    except Exception:  # noqa: BLE001
        return False
    return True


@pytest.mark.slow
def test_gpu_check_cpu_tiny(tmp_path):
    out = tmp_path / "x.json"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--scale", "tiny",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    data = json.loads(out.read_text())
    assert data["schema"] == gpu_check.SCHEMA and data["finished"] is True
    info = data["info"]
    for key in ("date", "cpu_model", "torch", "load_avg_start", "load_avg_end", "device", "scale"):
        assert info.get(key) is not None, key
    assert info["device"] == "cpu" and info["scale"] == "tiny"

    assert list(data["sections"]) == list(gpu_check.SECTIONS)
    for name, sec in data["sections"].items():
        assert not sec["errors"], f"{name}: {sec['errors']}"
        if name == "tdse_fast_batch" and not _fast_preset_exists():
            assert sec["status"] == "skipped" and "fast" in sec["reason"]
            continue
        assert sec["status"] == "ok", f"{name}: {sec}"
        assert sec["figures"], name
        for fname, f in sec["figures"].items():
            assert isinstance(f["value"], (int, float)) and math.isfinite(f["value"]), (name, fname, f)
            assert isinstance(f["unit"], str) and f["unit"], (name, fname, f)
    # the measurements asked for, by name
    figs = {n: s["figures"] for n, s in data["sections"].items()}
    assert "steps_per_s_batch1_double" in figs["tdse_paper_grid"]
    assert figs["tdse_paper_grid"]["full_pmd_s_batch1_double"].get("extrapolated") is True
    assert {"pmds_per_s_batch10", "pmds_per_s_one_at_a_time"} <= set(figs["tdse_intensity_batch"])
    assert "frames_per_s" in figs["stream_resnet"] and "epoch_s" in figs["resnet_train_epoch"]

    # the table was printed: a header and a row for every section
    assert "| section" in proc.stdout and "| figure" in proc.stdout
    for name in gpu_check.SECTIONS:
        assert f"| {name}" in proc.stdout, name


def test_gpu_check_refuses_unknown_section(tmp_path, capsys):
    assert gpu_check.main(["--device", "cpu", "--only", "no_such_section", "--out", str(tmp_path / "x.json")]) == 2
    assert "unknown section" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
