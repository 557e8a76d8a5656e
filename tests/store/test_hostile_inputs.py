"""Hostile metadata and arguments get one error line, never a hang, a traceback or an allocation
the machine cannot make (issue 24, items 5, 6, 7 (cards), 8, 11 and 12)."""

import json
import os

import pytest

from factory.testing import error_line, make_ladder_store, run_cli
from models.testing import make_raw_store, make_stream_model


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return make_raw_store(tmp_path_factory.mktemp("frames") / "frames.zarr", 8).path


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    path = tmp_path_factory.mktemp("blobs") / "b.zarr"
    run_cli("--quiet", "generate", "blobs/tiny", "--out", path, "--samples", "8", "--no-progress", check=True)
    return path


def edit_card(model, edit):
    card = json.loads((model / "model.json").read_text())
    edit(card)
    (model / "model.json").write_text(json.dumps(card))


@pytest.mark.parametrize("edit, words", [
    (lambda c: c["input"].update(shape=[1e6, 1e6]), "input.shape [1000000, 1000000]"),  # was a 250 GB allocation
    (lambda c: c["label_scaling"].update(scale=[float("nan"), float("inf")]), "must be finite"),
    (lambda c: c.update(deep=json.loads("[" * 100 + "]" * 100)), "nested more than 64 levels deep"),
])
def test_hostile_model_card_is_one_line(tmp_path, frames, edit, words):
    model = make_stream_model(tmp_path / "m")
    if "nested" in words:  # a card nested 100,000 deep: RecursionError before
        (model / "model.json").write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    else:
        edit_card(model, edit)
    proc = run_cli("predict", "stream", model, "--source", frames, "--out", tmp_path / "p.zarr")
    assert proc.returncode == 2 and words in error_line(proc), proc.stderr
    assert not (tmp_path / "p.zarr").exists()


def test_fifo_and_deep_nesting_in_a_store_are_refused_not_waited_on(tmp_path, blobs):
    import shutil

    fifo = tmp_path / "fifo.zarr"
    shutil.copytree(blobs, fifo)
    (fifo / "images" / "zarr.json").unlink()
    os.mkfifo(fifo / "images" / "zarr.json")  # would block open() for ever
    for args in (["info", fifo], ["process", "preprocess", fifo, "--out", tmp_path / "p.zarr", "--mode", "scatter"]):
        proc = run_cli(*args)
        assert proc.returncode == 2 and "a FIFO, not a regular file" in error_line(proc)
    deep = tmp_path / "deep.zarr"
    shutil.copytree(blobs, deep)
    meta = (deep / "zarr.json").read_text()
    (deep / "zarr.json").write_text(meta.replace('"attributes"', '"x": ' + "[" * 100_000 + "]" * 100_000
                                                 + ', "attributes"', 1))
    proc = run_cli("info", deep)
    assert proc.returncode == 2 and "nested more than 64 levels deep" in error_line(proc)
    listing = run_cli("ls", tmp_path)  # was a RecursionError traceback
    assert listing.returncode == 0 and "Traceback" not in listing.stderr
    assert "fifo.zarr" in listing.stdout and "a FIFO" in listing.stdout


def test_a_billion_chunks_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "big.zarr"
    proc = run_cli("generate", "blobs/tiny", "--out", out, "--samples", "1000000000", "--set", "chunk=1")
    assert proc.returncode == 2 and "1,000,000,000 chunks; a store has at most" in error_line(proc)
    assert not out.exists()


def test_duplicate_yaml_keys_are_refused(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kind: blobs\nsamples: 8\nchunk: 4\nsamples: 16\n")
    proc = run_cli("generate", cfg, "--out", tmp_path / "s.zarr")
    assert proc.returncode == 2
    assert "line 4 malformed YAML: key 'samples' appears twice in one mapping (first on line 2)" in error_line(proc)


@pytest.mark.parametrize("axes, words", [("R", "give at least two labels"), ("R,R", "R given more than once"),
                                         ("R,nope", "are not labels of")])
def test_interpolation_axes_are_validated(tmp_path, axes, words):
    src = make_ladder_store(tmp_path / "lad.zarr")
    proc = run_cli("process", "interpolate", src.path, "--out", tmp_path / "i.zarr", "--axes", axes, "--samples", "4")
    assert proc.returncode == 2 and words in error_line(proc)  # were ValueError / QhullError tracebacks
    assert not (tmp_path / "i.zarr").exists()


def test_unreachable_object_storage_is_named_as_such_within_seconds(tmp_path, monkeypatch):
    """Issue 24, item 9: was "no dataset store there (missing zarr.json)" (info, train), and 63 s."""
    import time

    pytest.importorskip("s3fs")
    monkeypatch.setenv("FACTORY_STORAGE_OPTIONS", json.dumps(
        {"endpoint_url": "http://127.0.0.1:1", "key": "k", "secret": "s"}))  # nothing listens on port 1
    for args in (["info", "s3://bucket/x.zarr"], ["generate", "blobs/tiny", "--out", "s3://bucket/y.zarr"],
                 ["train", "pmd-cnn/tiny", "--store", "s3://bucket/x.zarr", "--out", tmp_path / "run"]):
        t0 = time.monotonic()
        proc = run_cli(*args)
        line = error_line(proc)
        assert proc.returncode == 2 and "on object storage (EndpointConnectionError" in line, line
        assert "127.0.0.1:1" in line and time.monotonic() - t0 < 15
