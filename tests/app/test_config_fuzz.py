"""Property-based fuzzing of config loading: every input is a GenerateConfig or a one-line ConfigError.

Hostile configs go through ``load_config`` / ``config_from_dict``: presets of every kind with
keys replaced by odd values (NaN, Inf, huge numbers, wrong types, nested junk), preset YAML
text with fragments spliced in (anchors, aliases, tags, broken flow syntax, control
characters), bytes that are not UTF-8, and ``key=value`` overrides.  No other exception may
escape, and a refusal always gives its reason on one line.  Bounded: a few hundred examples
per test, a deadline per example.
"""

import math
import os
from datetime import timedelta

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from factory.config import GenerateConfig, config_from_dict, configs_dir, load_config
from factory.errors import ConfigError
from factory.simulators import KINDS

PRESETS = {kind: load_config(f"{kind}/tiny").resolved() for kind in sorted(KINDS)}  # imports every simulator once
TEXTS = {kind: (configs_dir() / kind / "tiny.yaml").read_text() for kind in PRESETS}

FUZZ = settings(max_examples=int(os.environ.get('FUZZ_EXAMPLES', 200)), deadline=timedelta(seconds=5), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _paths(node, prefix=()):
    """Every key path of a resolved config (sections and leaves, list items included)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield (*prefix, k)
        yield from _paths(v, (*prefix, k))


PATHS = {kind: list(_paths(cfg)) for kind, cfg in PRESETS.items()}
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=10),
    st.sampled_from([0, -1, 1, 2**63, 10**12, 1e-300, 1e300, float("nan"), float("inf"), -float("inf"),
                     "nan", "inf", "-inf", "1e400", "H2+", "tiny", "auto", "", "\n", "a\nb"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
FRAGMENTS = st.sampled_from([
    "&a ", "*a", "<<: *a\n", "x: &a [1, 2]\ny: *a\n", "!!binary aGk=", "!!python/object/apply:os.system ['true']",
    "!!set {a}", "? [1, 2]\n: 3\n", "- ", "[", "]", "{", "}", ": ", "\n", "  ", "\t", "'", '"', "%YAML 1.1\n",
    "---\n", "...\n", "2020-01-01", "~", ".nan", "-.inf", "1e999", "#", "\x00", "\x85", "\ufeff", "\u2028",
    "[" * 100, "samples: 4\n", "simulator: 3\n", "kind: [blobs]\n", "noise: .nan\n", "center: [-.inf, .inf]\n",
])


def _outcome(fn) -> None:
    """The only allowed outcomes: a validated config, or a ConfigError with a one-line reason."""
    try:
        cfg = fn()
    except ConfigError as exc:
        msg = str(exc)
        assert msg.strip() and "\n" not in msg and "\r" not in msg, repr(msg)
        event("refused")
        return
    assert isinstance(cfg, GenerateConfig)
    assert len(cfg.hash) == 64  # the resolved config serialises (no NaN, no odd types)
    event("accepted")


def _get(data, path):
    for k in path:
        data = data[k]
    return data


def _near(value):
    """Values close to a valid one: the same number scaled, negated, at the edges of float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return st.nothing()
    factors = st.sampled_from([0, -1, 0.5, 2, 10, 1e-300, 1e300, float("nan"), float("inf")])
    return factors.map(lambda f: type(value)(value * f) if isinstance(value, float) or math.isfinite(f)
                       and abs(value * f) < 2**80 else value * f)


def _set(data, path, value):
    node = data
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


@st.composite
def mutated(draw):
    """(kind, resolved preset with 1-3 keys replaced, the same changes as override strings)."""
    kind = draw(st.sampled_from(sorted(PRESETS)))
    data = yaml.safe_load(yaml.safe_dump(PRESETS[kind]))  # a deep copy
    overrides = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS[kind]))
        value = draw(_near(_get(PRESETS[kind], path)) | VALUES)
        try:
            _set(data, path, value)
        except (KeyError, IndexError, TypeError):  # an earlier change replaced the section
            continue
        if all(isinstance(k, str) for k in path):
            overrides.append(".".join(path) + "=" + yaml.safe_dump(value, default_flow_style=True).strip()
                             .removesuffix("\n...").strip())
    return kind, data, overrides


@FUZZ
@given(case=mutated())
def test_mutated_presets_and_overrides(case):
    kind, data, overrides = case
    _outcome(lambda: config_from_dict(data))
    _outcome(lambda: load_config(f"{kind}/tiny", overrides))


@FUZZ
@given(kind=st.sampled_from(sorted(TEXTS)), cuts=st.lists(st.tuples(st.floats(0, 1), FRAGMENTS | st.text(max_size=6)),
                                                          min_size=1, max_size=4),
       overrides=st.lists(st.text(max_size=24) | st.builds("{}={}".format, st.sampled_from(["samples", "seed",
                          "simulator.noise", "simulator", "a.b"]), st.text(max_size=12) | FRAGMENTS), max_size=2))
def test_spliced_yaml_text(tmp_path_factory, kind, cuts, overrides):
    text = TEXTS[kind]
    for where, fragment in cuts:
        i = int(where * len(text))
        text = text[:i] + fragment + text[i:]
    path = tmp_path_factory.getbasetemp() / "fuzz.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _outcome(lambda: load_config(path, overrides))


@FUZZ
@given(data=st.binary(max_size=48), where=st.floats(0, 1))
def test_bytes_that_may_not_be_utf8(tmp_path_factory, data, where):
    raw = TEXTS["blobs"].encode()
    i = int(where * len(raw))
    path = tmp_path_factory.getbasetemp() / "fuzz-bytes.yaml"
    path.write_bytes(raw[:i] + data + raw[i:])
    _outcome(lambda: load_config(path))


@FUZZ
@given(spec=st.text(max_size=40) | st.builds("{}/{}".format, st.sampled_from(sorted(KINDS)), st.text(max_size=8))
       | st.text(min_size=256, max_size=400))
def test_config_names(spec):
    _outcome(lambda: load_config(spec))
