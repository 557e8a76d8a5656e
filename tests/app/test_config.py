"""Configs: presets of every kind validate; bad input gives one-line errors naming the key."""

import pytest

from factory.config import SIZES, list_presets, load_config
from factory.errors import ConfigError
from factory.simulators import KINDS
from factory.testing import error_line, run_cli


@pytest.mark.parametrize("preset", list_presets())
def test_every_preset_validates(preset):
    cfg = load_config(preset)
    assert cfg.kind in KINDS
    assert len(cfg.hash) == 64


def test_every_registered_kind_has_three_sizes():
    presets = set(list_presets())
    for kind in KINDS:
        try:
            __import__(KINDS[kind].split(":")[0])
        except ImportError:  # kind still being written: no presets expected yet
            continue
        for size in SIZES:
            assert f"{kind}/{size}" in presets


def test_overrides_are_typed_and_change_the_hash():
    base = load_config("blobs/tiny")
    cfg = load_config("blobs/tiny", ["simulator.noise=0.25", "simulator.amplitude=[0.1, 0.2]"], seed=7)
    assert cfg.simulator.noise == 0.25 and cfg.simulator.amplitude == (0.1, 0.2) and cfg.seed == 7
    assert cfg.hash != base.hash
    # name/description do not change the hash: they do not change the data
    assert load_config("blobs/tiny", ["name=other"]).hash == base.hash


@pytest.mark.parametrize(
    "override, words",
    [
        ("simulator.bogus=1", ["unknown key", "simulator.bogus"]),
        ("bogus=1", ["unknown key", "bogus"]),
        ("simulator.noise=-1", ["simulator.noise", "-1", "greater than or equal to 0"]),
        ("simulator.height=abc", ["simulator.height", "abc", "integer"]),
        ("samples=0", ["samples", "0", "greater than or equal to 1"]),
        ("simulator.sigma=[0.3, 0.1]", ["sigma", "low <= high"]),
    ],
)
def test_bad_values_are_named(override, words):
    with pytest.raises(ConfigError) as err:
        load_config("blobs/tiny", [override])
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_malformed_yaml_and_unknown_kind(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: blobs\nsamples: [1, 2\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_config(bad)
    other = tmp_path / "other.yaml"
    other.write_text("kind: nosuch\nsamples: 4\n")
    with pytest.raises(ConfigError, match="unknown simulator kind 'nosuch'"):
        load_config(other)
    with pytest.raises(ConfigError, match="neither a file nor a preset"):
        load_config("blobs/huge")
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config("blobs/tiny", ["noequals"])


def test_cli_errors_are_one_line_and_nonzero(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: blobs\n  samples: 3\n :\n")
    out = tmp_path / "s.zarr"
    cases = [
        (["generate", str(bad), "--out", str(out)], "malformed YAML"),
        (["generate", "blobs/tiny", "--out", str(out), "--set", "simulator.colour=3"], "unknown key"),
        (["generate", "blobs/tiny", "--out", str(out), "--set", "simulator.n_blobs=99"], "less than or equal to 16"),
        (["info", str(tmp_path / "nothing.zarr")], "no dataset store"),
    ]
    for args, words in cases:
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert words in error_line(proc)
    assert not out.exists()


# -- hostile config files (issue 13, items 15 and 16) ------------------------------------------------
def test_yaml_aliases_are_refused_naming_the_line(tmp_path):
    laughs = tmp_path / "laughs.yaml"
    laughs.write_text("kind: blobs\nsamples: 4\na: &a [lol, lol, lol]\nb: [*a, *a, *a]\n")
    with pytest.raises(ConfigError, match=r"laughs.yaml: line 3 .*aliases \(\*name\) are not allowed"):
        load_config(laughs)
    merge = tmp_path / "merge.yaml"
    merge.write_text("base: &b {kind: blobs, samples: 4}\n<<: *b\n")
    with pytest.raises(ConfigError, match="line 1 .*anchors"):
        load_config(merge)
    with pytest.raises(ConfigError, match="anchors"):
        load_config("blobs/tiny", ["simulator.center=&c [0, 1]"])


def test_files_are_bounded_and_must_be_utf8_mappings(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("kind: blobs\nsamples: 4\n" + "#" * (1 << 20) + "\n")
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        load_config(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"kind: blobs\nsamples: 4\nname: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin.yaml: line 3: not UTF-8 text \(byte 0xe9"):
        load_config(latin)
    deep = tmp_path / "deep.yaml"
    deep.write_text("kind: blobs\nsamples: 4\nname: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested more than"):
        load_config(deep)


@pytest.mark.parametrize("override, key", [
    ("simulator.center=[-.inf, .inf]", "simulator.center[0] = -inf"),
    ("simulator.amplitude=[0.1, .inf]", "simulator.amplitude[1] = inf"),
])
def test_non_finite_numbers_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match="finite") as err:
        load_config("blobs/tiny", [override])
    assert key in str(err.value)


@pytest.mark.parametrize("spec, overrides, words", [
    ("tdse/tiny", ["simulator.preset=[]"], "simulator.preset"),  # was a TypeError (unhashable list)
    ("blobs/tiny", ["samples=\x08"], "not valid YAML"),  # a control character: was an AttributeError
])
def test_odd_values_are_config_errors(spec, overrides, words):
    with pytest.raises(ConfigError, match=words):
        load_config(spec, overrides)


def test_yaml_dates_and_bytes_in_a_file_are_config_errors(tmp_path):
    odd = tmp_path / "odd.yaml"
    odd.write_text("kind: blobs\nsamples: 4\nseed: 2020-01-01\nname: !!binary aGk=\n")
    with pytest.raises(ConfigError, match="seed = datetime.date"):  # was a TypeError (json.dumps of a date)
        load_config(odd, ["chunk=2"])
