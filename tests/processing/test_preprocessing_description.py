"""The typed preprocessing description: frozen, validated, and its JSON form exactly the dict
processed stores hold (so old stores and model cards stay readable, and new stores the same bytes)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from factory.processing import preprocess
from factory.processing.description import (DescriptionError, Pmd1d, Pmd2d, Scatter, build, parse, plain,
                                            recorded)

KEYS = "bicubic convolution (Keys, a = -0.5), separable"
AXES = {"ky": [-3.0, 3.0, 33], "kx": [-4.0, 4.0, 41]}
#: descriptions exactly as `factory process preprocess` wrote them before they were typed (key order included)
STORED = {
    "pmd2d-global": {"name": "pmd2d", "log_floor": -5.0, "window": "global", "out_shape": [128, 256], "resample": KEYS,
                     "scale": [0.0, 255.0], "dims": ["ky", "kx"], "ky_range": [-2.25, 2.25], "kx_range": [-3.4, 3.4],
                     "input_axes": AXES},
    "pmd2d-per-image": {"name": "pmd2d", "log_floor": -4.0, "window": "per-image", "out_shape": [128, 256],
                        "resample": KEYS, "scale": [0.0, 255.0], "dims": ["ky", "kx"], "input_axes": AXES},
    "pmd1d": {"name": "pmd1d", "kx_range": [-3.4, 3.4], "n": 256, "normalize": "max", "window_log_floor": -5.0,
              "dims": ["kx"], "input_axes": AXES},
    "scatter": {"name": "scatter", "input": "log10", "log_floor": -6.0, "out_shape": [128, 128], "scale": [0.0, 1.0],
                "dims": ["row", "col"], "input_axes": {"row": [0.0, 95.0, 96], "col": [0.0, 79.0, 80]}},
}
KIND = {"pmd2d-global": Pmd2d, "pmd2d-per-image": Pmd2d, "pmd1d": Pmd1d, "scatter": Scatter}


@pytest.mark.parametrize("key", list(STORED))
def test_the_stored_dict_round_trips_exactly(key):
    d = parse(STORED[key])
    assert type(d) is KIND[key] and KIND[key].from_dict(STORED[key]) == d
    assert d.to_dict() == STORED[key]
    assert json.dumps(d.to_dict()) == json.dumps(STORED[key])  # the same bytes: key order, floats, ints
    assert parse(json.loads(json.dumps(d.to_dict()))) == d and parse(d) is d
    assert d.function() == {k: v for k, v in STORED[key].items() if k != "input_axes"}


def test_the_builders_give_what_the_store_step_records():
    raw = {"ky": np.linspace(-3, 3, 33), "kx": np.linspace(-4, 4, 41)}
    assert build("pmd2d", raw_coords=raw, kmax=lambda floor: (2.25, 3.4)).to_dict() == STORED["pmd2d-global"]
    assert build("pmd2d", raw_coords=raw, window="per-image", log_floor=-4.0).to_dict() == STORED["pmd2d-per-image"]
    assert build("pmd1d", raw_coords=raw, kmax=lambda floor: (2.25, 3.4)).to_dict() == STORED["pmd1d"]
    rows = {"row": np.arange(96.0), "col": np.arange(80.0)}
    assert build("scatter", raw_coords=rows, image_scale="log10").to_dict() == STORED["scatter"]
    assert preprocess.pmd2d_description("global", (2.25, 3.4)) == {k: v for k, v in STORED["pmd2d-global"].items()
                                                                    if k != "input_axes"}
    asked = []
    build("pmd2d", raw_coords=raw, window="per-image", kmax=lambda floor: asked.append(floor))
    assert asked == []  # a per-image window needs no window reduction


def test_descriptions_are_frozen_and_give_their_axes():
    d = parse(STORED["pmd2d-global"])
    with pytest.raises(ValidationError):
        d.window = "per-image"
    assert d.frame_shape == (33, 41) and np.allclose(d.frame_coords()["kx"], np.linspace(-4, 4, 41))
    assert np.allclose(d.output_coords()["kx"], np.linspace(-3.4, 3.4, 256))
    assert parse(STORED["pmd2d-per-image"]).output_coords() is None
    names = [a[0] for a in parse(STORED["scatter"]).output_axes()]
    assert names == ["row", "col"] and Scatter().frame_shape is None and Scatter().frame_coords() == {}


@pytest.mark.parametrize("change, message", [
    ({"out_shape": [-128, 256]}, "out_shape.0: Input should be greater than 0"),
    ({"out_shape": [128]}, "out_shape"),
    ({"kx_range": [math.nan, 3.4]}, "kx_range.0: Input should be a finite number"),
    ({"ky_range": [-2.0, math.inf]}, "ky_range.1: Input should be a finite number"),
    ({"kx_range": [3.4, -3.4]}, "reversed"),
    ({"log_floor": 2.0}, "log_floor: Input should be less than 0"),
    ({"window": "sliding"}, "window: Input should be 'global' or 'per-image'"),
    ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
    ({"ky_range": None}, "a global window needs ky_range and kx_range"),
    ({"scale": [255.0, 0.0]}, "scale"),
    ({"input_axes": {"ky": [-3.0, 3.0, 0]}}, "input_axes.ky.2: Input should be greater than 0"),
])
def test_an_invalid_description_is_one_clear_error(change, message):
    bad = {k: v for k, v in {**STORED["pmd2d-global"], **change}.items() if v is not None}
    with pytest.raises(DescriptionError, match=message) as info:
        parse(bad)
    assert "\n" not in str(info.value) and str(info.value).startswith("preprocessing pmd2d: ")


@pytest.mark.parametrize("bad, message", [
    ({"name": "pmd3d"}, "unknown preprocessing 'pmd3d'; known: pmd2d, pmd1d, scatter"),
    ({"mode": "synthetic-disks", "shape": [32, 32]}, "unknown preprocessing None"),
    ([1, 2], "a preprocessing description is a mapping"),
    ({**STORED["scatter"], "scale": [0.0, 255.0]}, "scaled to \\[0.0, 1.0\\]"),
    ({**STORED["pmd1d"], "n": 0}, "n: Input should be greater than 0"),
    ({**STORED["pmd2d-per-image"], "kx_range": [-1.0, 1.0]}, "a per-image window has no ky_range/kx_range"),
    ({k: v for k, v in STORED["pmd1d"].items() if k != "kx_range"}, "kx_range: Field required"),
])
def test_unknown_or_invalid_kinds_are_refused(bad, message):
    with pytest.raises(DescriptionError, match=message):
        parse(bad)
    assert issubclass(DescriptionError, ValueError)  # what the streaming predictor reports per frame
    with pytest.raises(ValueError, match=message):
        preprocess.apply(bad, np.ones((33, 41)))


def test_a_kind_class_refuses_another_kind():
    with pytest.raises(DescriptionError, match="'scatter' is not Pmd2d"):
        Pmd2d.from_dict(STORED["scatter"])


def test_records_of_stores_and_cards():
    """Known kinds parse strictly; a synthetic set's own record is kept as it is."""
    own = {"mode": "synthetic-disks", "shape": [32, 32]}
    assert recorded(own) == own and recorded(None) is None and plain(recorded(own)) == own
    assert isinstance(recorded(STORED["pmd1d"]), Pmd1d) and plain(recorded(STORED["pmd1d"])) == STORED["pmd1d"]
    with pytest.raises(DescriptionError):
        recorded({**STORED["pmd1d"], "n": -1})
    # a shifted-synthetic PMD store's record as written before the description was typed (fewer keys)
    old = {"name": "pmd2d", "synthetic": "pmd-like", "log_floor": -5.0, "window": "global", "out_shape": [64, 128],
           "ky_range": [-1.5, 1.5], "kx_range": [-2.5, 2.5], "scale": [0.0, 255.0]}
    d = recorded(old)
    assert isinstance(d, Pmd2d) and d.synthetic == "pmd-like" and d.resample == KEYS
    assert {k: d.to_dict()[k] for k in old} == old


def test_an_old_partial_dict_still_applies():
    """Hand-written dicts (tests, notebooks) leave out keys with defaults; apply takes them as before."""
    img = np.outer(np.logspace(0, 8, 128), np.ones(128))
    partial = {"name": "scatter", "input": "intensity", "log_floor": -6.0, "out_shape": [128, 128]}
    out = preprocess.apply(partial, img, {})
    np.testing.assert_array_equal(out, preprocess.apply(Scatter(), img, {}))
    assert parse(partial).to_dict() == {**partial, "scale": [0.0, 1.0], "dims": ["row", "col"]}


def test_apply_takes_the_description_or_its_json_form_alike():
    ky, kx = np.linspace(-3, 3, 33), np.linspace(-4, 4, 41)
    yy, xx = np.meshgrid(ky, kx, indexing="ij")
    frame = np.exp(-(xx**2 + 2 * yy**2)) * (1.5 + np.cos(3 * xx))
    for key in ("pmd2d-global", "pmd2d-per-image", "pmd1d"):
        typed = parse(STORED[key])
        np.testing.assert_array_equal(preprocess.apply(typed, frame), preprocess.apply(STORED[key], frame))
        np.testing.assert_array_equal(preprocess.apply_batch(typed, frame[None], {"ky": ky, "kx": kx})[0],
                                      preprocess.apply(STORED[key], frame))
    with pytest.raises(ValueError, match="raw input shape"):
        preprocess.apply(STORED["pmd1d"], frame[:, :40])


def test_the_model_card_types_the_description_and_writes_it_as_stored():
    from models.card import ModelCard

    base = {"architecture": {"name": "pmd-cnn"}, "labels": ["R"], "input": {"shape": [128, 256]}}
    card = ModelCard.model_validate({**base, "preprocessing": STORED["pmd2d-global"]})
    assert isinstance(card.preprocessing, Pmd2d) and card.to_dict()["preprocessing"] == STORED["pmd2d-global"]
    assert ModelCard.from_dict(json.loads(json.dumps(card.to_dict()))) == card
    own = {"mode": "synthetic-disks", "shape": [32, 32], "log_floor": -4}
    assert ModelCard.model_validate({**base, "preprocessing": own}).to_dict()["preprocessing"] == own
    with pytest.raises(ValidationError, match="out_shape"):
        ModelCard.model_validate({**base, "preprocessing": {**STORED["pmd2d-global"], "out_shape": [0, 256]}})


def test_a_card_with_a_damaged_description_is_one_model_error(tmp_path):
    from models.card import ModelCard, ModelError

    v1 = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "model_card_v1.json").read_text())
    assert isinstance(ModelCard.from_dict({**v1, "preprocessing": STORED["scatter"]}).preprocessing, Scatter)
    with pytest.raises(ModelError, match="damaged model card .*preprocessing scatter: surprise: Extra inputs") as info:
        ModelCard.from_dict({**v1, "preprocessing": {**STORED["scatter"], "surprise": 1}}, tmp_path / "model.json")
    assert "\n" not in str(info.value)
