"""TDSE configs, presets, refusals of bad input, the Simulator protocol and the CLI probe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from factory.config import configs_dir, load_config
from factory.errors import ConfigError
from factory.simulators import rng_for, simulator_class
from factory.tdse import PRESETS, TDSEConfig, ground_state, make_config, momentum_distribution
from factory.tdse.config import preset_values
from factory.app.tdse import app



# -- presets ---------------------------------------------------------------------------------
def test_paper_preset_has_the_papers_numbers():
    c = make_config("paper")
    g = c.build_grid()
    assert (g.nx, g.ny, g.x_max, g.y_max) == (4096, 2048, 400.0, 200.0)
    assert g.dx == pytest.approx(0.1953, abs=1e-4) and g.dy == g.dx
    assert c.dt == 0.0184 and c.t_end == 4.0
    assert (c.mask.radius, c.mask.beta, c.mask.every) == (150.0, 1e-4, 1)
    assert (c.pulse.wavelength_nm, c.pulse.cycles) == (800.0, 2)
    assert c.sampling.bounds("R") == (1.0, 8.0) and c.sampling.bounds("intensity") == (1e14, 4e14)


@pytest.mark.parametrize("name", ["paper", "small", "tiny", "focal", "large-R", "alpha", "cep", "heh"])
def test_yaml_presets_validate_and_match_python_presets(name):
    cfg = load_config(f"tdse/{name}")
    assert cfg.kind == "tdse"
    sim = cfg.simulator
    raw = yaml.safe_load((configs_dir() / "tdse" / f"{name}.yaml").read_text())["simulator"]
    for key, value in preset_values(sim.preset).items():
        if key in raw and name in PRESETS:  # the size presets spell out the preset they name
            got = getattr(sim, key)
            assert (got.model_dump() if hasattr(got, "model_dump") else got) == value, key
    assert TDSEConfig.model_validate(sim.model_dump(mode="json")) == sim  # round trip (store attrs)


def test_transfer_sets_sample_the_papers_ranges():
    assert load_config("tdse/large-R").simulator.sampling.bounds("R") == (8.0, 12.0)
    assert load_config("tdse/alpha").simulator.sampling.bounds("alpha") == (0.0, 180.0)
    assert load_config("tdse/cep").simulator.sampling.bounds("cep")[1] == pytest.approx(2 * np.pi)
    assert load_config("tdse/heh").simulator.sampling.molecule == ["HeH+"]
    assert load_config("tdse/focal").simulator.sampling.ladder == 10


# -- refusals ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides,words",
    [
        ({"sampling": {"intensity": -1e14}}, ["intensity", ">= 0"]),
        ({"sampling": {"R": 0.0}}, ["R", "> 0"]),
        ({"sampling": {"R": [3.0, 2.0]}}, ["R", "lo > hi"]),
        ({"grid": {"nx": 400, "ny": 200}}, ["grid spacing", "pi/dx", "dx, dy <="]),
        ({"mask": {"radius": 150.0}}, ["mask.radius", "box"]),
        ({"mask": {"radius": 30.0}}, ["mask.radius", "quiver"]),
        ({"mask": {"beta": 1e-7}}, ["mask too weak", "mask.beta"]),
        ({"dt": 0.3}, ["dt = 0.3", "too large for the grid", "dt <="]),
        ({"k_out": 7.0}, ["k_out", "pi/dx"]),
        ({"grid": {"nx": 801}}, ["grid.nx", "even"]),
        ({"sampling": {"molecule": ["Xe2+"]}}, ["unknown molecule", "Xe2+"]),
        ({"nonsense": 1}, ["unknown key", "nonsense"]),
    ],
)
def test_invalid_parameters_are_refused_with_a_clear_message(overrides, words):
    with pytest.raises(ConfigError) as exc:
        make_config("small", **overrides)
    msg = str(exc.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_api_refuses_before_any_compute(monkeypatch):
    import factory.tdse.api as api

    def boom(*a, **k):  # would be the first compute
        raise AssertionError("computed although the input is invalid")

    monkeypatch.setattr(api, "molecule_ground_state", boom)
    with pytest.raises(ConfigError, match="intensity"):
        momentum_distribution("H2+", 2.0, -3e14, preset="tiny")
    with pytest.raises(ConfigError, match="R must be > 0"):
        ground_state("H2+", -1.0, preset="tiny")
    with pytest.raises(ConfigError, match="too large for the grid"):
        momentum_distribution("H2+", 2.0, 1e14, preset="tiny", dt=0.5)


def test_custom_molecule_from_config():
    cfg = make_config("tiny", molecules={"H2+a1": {"centres": [{"position": 0.5, "soft_core": 1.0},
                                                                 {"position": -0.5, "soft_core": 1.0}]}},
                      sampling={"molecule": ["H2+a1"], "R": 2.0})
    assert cfg.molecule_code("H2+a1") == 2
    from factory.tdse.api import ground_state_for

    e_soft = ground_state_for(cfg, "H2+a1", 2.0, 0.0).energy
    e_h2 = ground_state_for(cfg, "H2+", 2.0, 0.0).energy
    assert e_h2 < e_soft < 0  # a larger soft-core parameter binds less


# -- simulator protocol -----------------------------------------------------------------------------
def test_simulator_protocol_and_ladder():
    cls = simulator_class("tdse")
    cfg = TDSEConfig.model_validate({"preset": "tiny", "t_end": 0.3, "sampling": {"ladder": 3, "cep": [0.0, 6.283185307179586],
                                                                              "alpha": [0.0, 180.0]}})
    sim = cls(cfg)
    ky, kx = sim.coords()
    assert (ky.name, kx.name, ky.units, kx.units) == ("ky", "kx", "a.u.", "a.u.")
    assert np.all(np.diff(kx.values) > 0) and abs(kx.values).max() <= cfg.k_out + 1e-12
    assert {"R", "intensity", "cep", "alpha", "molecule", "I0", "ladder_index"} <= set(sim.param_names)
    assert {"E0", "norm_left", "absorbed", "yield"} <= set(sim.diagnostic_names)
    json.dumps(sim.store_attrs())
    params = [sim.sample_params(7, i) for i in range(6)]
    assert params == [sim.sample_params(7, i) for i in range(6)]  # (seed, index) only
    assert params[0] != sim.sample_params(8, 0)
    for g in (0, 3):  # ladders share geometry, CEP and I0; intensities I0 (k+1)/3
        lad = params[g : g + 3]
        assert len({(p["R"], p["cep"], p["alpha"], p["I0"]) for p in lad}) == 1
        assert [p["intensity"] / p["I0"] for p in lad] == pytest.approx([1 / 3, 2 / 3, 1])
    for p in params:
        assert 1.0 <= p["R"] <= 8.0 and 0.0 <= p["alpha"] <= 180.0 and p["molecule"] == 0.0
    res = sim.simulate_batch(params[:3], [rng_for(7, i, 1) for i in range(3)])
    for r in res:
        assert r.image.dtype == np.float32 and r.image.shape == sim.image_shape
        assert np.isfinite(r.image).all() and r.image.min() >= 0
        d = r.diagnostics
        assert d["E0"] < 0 and abs(d["norm_left"] + d["absorbed"] - 1) < 1e-12 and d["yield"] > 0
    # (yield rising with intensity is asserted in test_tdse_physics on converged-enough runs)


def test_engine_block_with_tdse(tmp_path):
    from factory.engine import compute_block

    cfg = load_config("tdse/tiny", ["simulator.t_end=0.2", "simulator.sampling.molecule=[H2+, HeH+]"], samples=2)
    images, labels, diags = compute_block(cfg, 0, 2)
    assert images.shape[0] == 2 and images.dtype == np.float32 and np.isfinite(images).all()
    assert set(labels) >= {"R", "intensity", "cep", "alpha", "molecule"}
    assert np.isfinite(diags["E0"]).all()


# -- CLI -------------------------------------------------------------------------------------------------
def test_cli_ground_state_json():
    r = CliRunner().invoke(app, ["ground-state", "--molecule", "HeH+", "--R", "1.4", "--preset", "small", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["converged"] and abs(data["energy"] + 1.657) < 2e-3


def test_cli_pmd_png(tmp_path):
    out = tmp_path / "pmd.png"
    r = CliRunner().invoke(app, ["pmd", "--R", "2", "--intensity", "2e14", "--preset", "tiny", "--set", "t_end=0.25",
                                 "--out", str(out), "--npz", str(tmp_path / "pmd.npz"), "--json"])
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"
    data = np.load(tmp_path / "pmd.npz")
    assert data["pmd"].shape == (len(data["ky"]), len(data["kx"])) and data["dp_dkx"].shape == data["kx"].shape


@pytest.mark.parametrize("args,words", [
    (["ground-state", "--R", "-1", "--preset", "tiny"], "R must be > 0"),
    (["pmd", "--intensity", "-1e14", "--preset", "tiny"], "intensity"),
    (["pmd", "--preset", "huge"], "preset"),
    (["pmd", "--preset", "tiny", "--set", "dt=0.5"], "too large for the grid"),
])
def test_cli_errors_are_one_line_and_nonzero(args, words):
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], r.output
