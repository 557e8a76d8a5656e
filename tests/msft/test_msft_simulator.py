"""The ``msft`` simulator kind: config validation, the Simulator protocol, reproducibility, CLI."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from factory.config import load_config
from factory.errors import ConfigError
from factory.geometry import in_fundamental_domain
from factory.app.msft import app
from factory.msft.simulator import MSFTConfig, MSFTSimulator, pattern
from factory.simulators import rng_for, simulator_class

TINY = dict(n_voxels=24, voxel_nm=4.0, radius_nm=(20.0, 44.0), pad=64, crop=32)


def test_presets_validate_and_registry_finds_the_kind():
    assert simulator_class("msft") is MSFTSimulator
    for size, shape in (("tiny", (64, 64)), ("small", (128, 128)), ("paper", (128, 128))):
        cfg = load_config(f"msft/{size}")
        sim = MSFTSimulator(cfg.simulator)
        assert sim.image_shape == shape
        assert cfg.simulator.radius_nm == (30.0, 160.0)
    paper = load_config("msft/paper").simulator
    assert (paper.n_voxels, paper.pad, paper.crop, paper.wavelength_nm, paper.absorption_length_nm) == (192, 512, 128, 13.5, 12.5)
    # small and paper share the detector q axes
    assert np.allclose(MSFTSimulator(load_config("msft/small").simulator).coords()[1].values,
                       MSFTSimulator(paper).coords()[1].values)


@pytest.mark.parametrize(
    "override, message",
    [
        ("simulator.crop=1024", r"simulator.crop = 1024: .*crop is larger than the padded grid pad = 512"),
        ("simulator.pad=100", r"simulator.pad = 100: .*at least n_voxels = 192"),
        ("simulator.radius_nm=[30, 200]", r"simulator.radius_nm = .*larger than the box"),
        ("simulator.radius_nm=[50, 40]", r"0 < min <= max"),
        ("simulator.wavelength_nm=-1", r"simulator.wavelength_nm = -1: .*greater than 0"),
        ("simulator.shapes=[blob]", r"simulator.shapes.0 = 'blob'"),
        ("simulator.colour=red", r"unknown key 'simulator.colour'"),
        ("simulator.delta=0.1", r"give both delta and beta"),
    ],
)
def test_bad_configs_are_refused_naming_key_and_value(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("msft/paper", [override])


def test_flat_detector_must_lie_inside_the_computed_q_grid():
    flat = "simulator.detector={kind: flat, distance_mm: 10, pixel_mm: 1, pixels: 64}"
    with pytest.raises(ConfigError, match=r"flat detector reaches q = 0.4436 1/nm but crop = 64 of pad = 128 covers only 0.2292"):
        load_config("msft/tiny", [flat])
    assert load_config("msft/paper", [flat]).simulator.detector.kind == "flat"  # the paper crop reaches k


def test_simulator_protocol_and_reproducibility():
    sim = MSFTSimulator(MSFTConfig(**TINY))
    qy, qx = sim.coords()
    assert (qy.name, qx.name, qy.units) == ("qy", "qx", "1/nm")
    assert np.allclose(np.diff(qx.values), 2 * np.pi / (64 * 4.0))
    assert sim.param_names == ["radius", "q0", "q1", "q2", "q3"]
    params = [sim.sample_params(7, i) for i in range(6)]
    assert params[3] == sim.sample_params(7, 3)  # labels from (seed, index) only
    assert params[3] != sim.sample_params(8, 3)
    q = np.array([[p[f"q{c}"] for c in range(4)] for p in params])
    assert np.all(in_fundamental_domain(q)) and np.all(q[:, 0] > 0)
    assert all(20.0 <= p["radius"] <= 44.0 for p in params)
    res = sim.simulate_batch(params[:3], [rng_for(7, i, 1) for i in range(3)])
    again = sim.simulate(params[1], rng_for(7, 1, 1))
    for r in res:
        assert r.image.dtype == np.float32 and r.image.shape == sim.image_shape and np.isfinite(r.image).all()
        assert {"total", "peak", "time_s"} <= set(r.diagnostics)
    assert np.array_equal(res[1].image, again.image)  # same bytes from (seed, index)
    assert res[0].image.max() <= 1e-5 and res[0].image.min() >= np.log10(1e-6) - 1e-6  # log10(I/max + floor)


def test_engine_block_runs_the_msft_kind():
    from factory.engine import compute_block

    cfg = load_config("msft/tiny", ["simulator.n_voxels=24", "simulator.voxel_nm=13.28125",
                                    "simulator.pad=48", "simulator.crop=32"])
    images, labels, diags = compute_block(cfg, 0, 3)
    assert images.shape == (3, 32, 32) and images.dtype == np.float32
    assert set(labels) == {"radius", "q0", "q1", "q2", "q3"} and np.isfinite(diags["peak"]).all()


def test_several_shapes_flat_detector_and_photon_noise():
    cfg = MSFTConfig(**{**TINY, "crop": 64}, shapes=["icosahedron", "cube", "sphere", "marks_decahedron"],
                     detector={"kind": "flat", "distance_mm": 40.0, "pixel_mm": 0.6, "pixels": 48},
                     fluence=5.0, background=1e-3)
    sim = MSFTSimulator(cfg)
    assert sim.param_names[-1] == "shape" and "photons" in sim.diagnostic_names
    y, x = sim.coords()
    assert (y.name, y.units, len(x.values)) == ("y", "mm", 48)
    seen = set()
    for i in range(8):
        p = sim.sample_params(1, i)
        seen.add(int(p["shape"]))
        if cfg.shapes[int(p["shape"])] == "sphere":
            assert [p["q0"], p["q1"], p["q2"], p["q3"]] == [1.0, 0.0, 0.0, 0.0]
        r = sim.simulate(p, rng_for(1, i, 1))
        assert np.isfinite(r.image).all() and r.diagnostics["photons"] >= 0
    assert len(seen) >= 2


def test_photon_counts_follow_the_fluence():
    base = MSFTConfig(**TINY, output="linear")
    noisy = MSFTConfig(**TINY, output="linear", fluence=2.0)
    clean = pattern("icosahedron", 40.0, (1, 0, 0, 0), base)
    counts = pattern("icosahedron", 40.0, (1, 0, 0, 0), noisy, rng=np.random.default_rng(0))
    assert np.all(counts.image == np.round(counts.image))  # integers
    expected = 2.0 * clean.image.sum()
    assert abs(counts.image.sum() - expected) < 5 * np.sqrt(expected)


def test_torch_batch_path_matches_the_numpy_loop():
    cfg_np = MSFTConfig(**TINY, output="linear")
    cfg_t = MSFTConfig(**TINY, output="linear", backend="torch")
    sim_np, sim_t = MSFTSimulator(cfg_np), MSFTSimulator(cfg_t)
    params = [sim_np.sample_params(0, i) for i in range(3)]
    rngs = [rng_for(0, i, 1) for i in range(3)]
    a = sim_np.simulate_batch(params, rngs)
    b = sim_t.simulate_batch(params, [rng_for(0, i, 1) for i in range(3)])
    for ra, rb in zip(a, b):
        assert np.abs(ra.image - rb.image).max() <= 1e-4 * ra.image.max()


def test_cli_pattern_png_json_and_errors(tmp_path):
    runner = CliRunner()
    out = tmp_path / "p.png"
    res = runner.invoke(app, ["pattern", "--shape", "icosahedron", "--radius", "80", "--quat", "0.95,0.1,0.2,0.2",
                              "--preset", "tiny", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["image_shape"] == [64, 64] and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = runner.invoke(app, ["pattern", "--preset", "tiny", "--random-seed", "3", "--shape", "cube", "--radius", "60"])
    assert res.exit_code == 0, res.output
    for args, msg in [
        (["pattern", "--preset", "tiny", "--radius", "500"], "larger than the box"),
        (["pattern", "--preset", "tiny", "--quat", "1,2"], "four numbers"),
        (["pattern", "--preset", "tiny", "--set", "crop=4096"], "crop = 4096"),
    ]:
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and msg in res.output, res.output
    res = runner.invoke(app, ["domain", "--group", "I"])
    assert res.exit_code == 0 and json.loads(res.output)["order"] == 60


def test_later_shape_options_are_settable_and_leave_old_config_hashes_alone():
    """decahedron_aspect and ttt_half_thickness are config keys; at their defaults they are not
    dumped, so the presets' hashes (and the stores made before the keys existed) stay the same."""
    from factory.config import load_config
    from factory.msft.shapes import DECAHEDRON_EQUILATERAL_ASPECT
    from factory.msft.simulator import MSFTConfig, pattern

    assert load_config("msft/tiny").hash == "c979bdf1a6dd66f842ad04a931e8fecc94728ab59521ee4dbd208ac5ece17b28"
    assert load_config("msft/small").hash == "271d92e918d2c0ba08ec3615a25f28ef11080cc11b91b254bf83c60feb8b8386"
    tall = load_config("msft/tiny", overrides=[f"simulator.shape_options.decahedron_aspect={DECAHEDRON_EQUILATERAL_ASPECT}"])
    assert tall.hash != load_config("msft/tiny").hash
    dumped = tall.simulator.model_dump(mode="json")
    assert dumped["shape_options"]["decahedron_aspect"] == DECAHEDRON_EQUILATERAL_ASPECT
    assert MSFTConfig.model_validate(dumped) == tall.simulator  # the stored config reads back the same
    flat = pattern("decahedron", 80.0, (1, 0, 0, 0), load_config("msft/tiny").simulator).image
    assert not np.allclose(pattern("decahedron", 80.0, (1, 0, 0, 0), tall.simulator).image, flat)
    with pytest.raises(Exception, match="ttt_half_thickness"):
        MSFTConfig.model_validate({**dumped, "shape_options": {"ttt_half_thickness": 0.8}})
