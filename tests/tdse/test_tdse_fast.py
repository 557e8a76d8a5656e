"""The `fast` TDSE preset (issue 17, item 3): listed, validated, cheaper than `small` by
construction, and its fidelity benchmark runs (at the test scale: tiny against a cheaper tiny)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from factory.config import load_config
from factory.tdse import PRESETS, make_config
from factory.tdse.config import check_physics, preset_values

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "tdse_fast_fidelity.py"


def _work(cfg) -> float:
    """FFT work of one PMD: steps x grid points x log2(points) x (2 + 1 / mask period)."""
    n = cfg.grid.nx * cfg.grid.ny
    return cfg.n_steps() * n * math.log2(n) * (2 + 1 / cfg.mask.every)


def test_fast_preset_is_listed_and_builds():
    assert "fast" in PRESETS
    cfg = make_config("fast")
    assert cfg.preset == "fast" and preset_values("fast")["grid"]["nx"] == cfg.grid.nx
    check_physics(cfg)  # grid holds the pulse's momenta, mask inside the box, dt vs grid
    small = make_config("small")
    assert (cfg.grid.x_max, cfg.grid.y_max, cfg.mask.radius, cfg.k_out) == (
        small.grid.x_max, small.grid.y_max, small.mask.radius, small.k_out)
    assert cfg.sampling == small.sampling  # the whole (R, I) range: double precision, background >= 100x below
    assert cfg.precision == "double"
    assert _work(small) / _work(cfg) > 4


def test_fast_generation_config_validates():
    cfg = load_config("tdse/fast")
    assert cfg.kind == "tdse" and cfg.simulator.preset == "fast"
    assert cfg.simulator == make_config("fast")


def test_fidelity_benchmark_runs_at_test_scale(tmp_path):
    spec = importlib.util.spec_from_file_location("tdse_fast_fidelity", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ref, cand, ro, co, points = mod.SCALES["test"]
    out = mod.measure(ref, cand, ro, co, points, log=lambda *a: None)
    (row,) = out["points"]
    for window in ("per-image", "global"):
        assert row[window]["threshold_rms"] > 0 and row[window]["fidelity_rms"] >= 0
    assert out["cost"]["ratio"] > 1  # twice the time step and the mask every 4: cheaper
    assert out["corner"]["background"] > 0 and out["corner"]["yield"] > 0
    assert row["pmd_rel_l2"] == pytest.approx(row["pmd_rel_l2"])  # finite
