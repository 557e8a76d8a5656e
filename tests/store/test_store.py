"""The Zarr v3 dataset store: layout, validation of writes, checksums, xarray view."""

import numpy as np
import pytest
import xarray as xr

from factory.errors import OutputError, StoreError
from factory.simulators import Coord
from factory.store import DatasetStore, open_dataset
from factory.testing import run_cli


def make_store(path, n=10, chunk=4, **kw):
    coords = (Coord("ky", np.linspace(-1, 1, 6), "a.u."), Coord("kx", np.linspace(-2, 2, 5), "a.u."))
    return DatasetStore.create(
        path, kind="demo", n_samples=n, chunk=chunk, coords=coords, param_names=["R", "I"],
        diagnostic_names=["E0"], config={"a": 1}, config_hash="abc", seed=3, **kw,
    )


def fill(store):
    rng = np.random.default_rng(0)
    for s, e in store.blocks():
        imgs = rng.random((e - s, 6, 5)).astype(np.float32)
        store.write_block(s, imgs, {"R": np.arange(s, e) * 1.0, "I": np.ones(e - s)}, {"E0": -np.ones(e - s)})


def test_layout_attrs_and_blocks(tmp_path):
    st = make_store(tmp_path / "s.zarr")
    assert st.blocks() == [(0, 4), (4, 8), (8, 10)]
    assert st.missing_blocks() == st.blocks()
    fill(st)
    again = DatasetStore.open(tmp_path / "s.zarr")
    assert again.done_mask().all() and again.missing_blocks() == []
    info = again.info()
    assert info["kind"] == "demo" and info["samples"] == 10 and info["done"] == 10
    assert info["config_hash"] == "abc" and info["seed"] == 3 and info["lineage"] == []
    assert again.meta["code_version"] and again.meta["created"]
    np.testing.assert_array_equal(again.params()["R"], np.arange(10.0))


def test_xarray_opens_with_named_dims_and_coords(tmp_path):
    st = make_store(tmp_path / "s.zarr")
    fill(st)
    ds = xr.open_zarr(tmp_path / "s.zarr", consolidated=False)
    assert ds["images"].dims == ("sample", "ky", "kx")
    assert ds["kx"].attrs["units"] == "a.u."
    np.testing.assert_allclose(ds["kx"].values, np.linspace(-2, 2, 5))
    full = open_dataset(tmp_path / "s.zarr")
    assert full["R"].dims == ("sample",) and full["E0"].dims == ("sample",)
    np.testing.assert_array_equal(full["images"].values, st.images[:])


def test_write_block_refuses_bad_blocks(tmp_path):
    st = make_store(tmp_path / "s.zarr")
    ok = {"R": np.ones(4), "I": np.ones(4)}
    with pytest.raises(StoreError, match="not one whole chunk"):
        st.write_block(2, np.zeros((4, 6, 5)), ok, {"E0": np.ones(4)})
    nan = np.zeros((4, 6, 5))
    nan[1, 2, 3] = np.nan
    with pytest.raises(StoreError, match=r"NaN/Inf in images of samples \[1\]"):
        st.write_block(0, nan, ok, {"E0": np.ones(4)})
    with pytest.raises(StoreError, match="lacks params"):
        st.write_block(0, np.zeros((4, 6, 5)), {"R": np.ones(4)}, {"E0": np.ones(4)})
    with pytest.raises(StoreError, match="image shape"):
        st.write_block(0, np.zeros((4, 5, 5)), ok, {"E0": np.ones(4)})
    assert not st.done_mask().any()


def test_never_overwrites_without_permission(tmp_path):
    make_store(tmp_path / "s.zarr")
    with pytest.raises(OutputError, match="already exists"):
        make_store(tmp_path / "s.zarr")
    other = tmp_path / "mydata"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(OutputError, match="not a dataset store made by factory"):
        make_store(other, overwrite=True)
    assert (other / "thesis.tex").read_text() == "precious"


def test_verify_finds_corrupted_chunk_and_names_samples(tmp_path):
    path = tmp_path / "s.zarr"
    st = make_store(path)
    fill(st)
    assert st.verify() == []
    chunk = path / "images" / "c" / "1" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # flip one byte in the middle of chunk 1 (samples 4..7)
    chunk.write_bytes(bytes(raw))
    (path / "params" / "R" / "c" / "2").unlink()  # a lost chunk of samples 8..9
    damage = DatasetStore.open(path, partial=True).verify()
    found = {(d.array, d.samples) for d in damage}
    assert found == {("images", (4, 8)), ("params/R", (8, 10))}
    proc = run_cli("info", str(path), "--verify")
    assert proc.returncode == 1
    assert "DAMAGED: images chunk 1, samples 4..7" in proc.stdout
    assert "params/R chunk 2, samples 8..9" in proc.stdout


def test_info_json(tmp_path):
    import json

    st = make_store(tmp_path / "s.zarr", lineage=[{"path": "/src.zarr", "kind": "tdse", "config_hash": "f00"}])
    fill(st)
    proc = run_cli("info", str(tmp_path / "s.zarr"), "--json", check=True)
    data = json.loads(proc.stdout)
    assert data["samples"] == 10 and data["done"] == 10 and data["kind"] == "demo"
    assert data["config_hash"] == "abc" and data["lineage"][0]["config_hash"] == "f00"


def test_all_zero_chunks_are_written_so_verify_does_not_cry_wolf(tmp_path):
    st = make_store(tmp_path / "s.zarr")
    DatasetStore.open(tmp_path / "s.zarr", mode="r+").write_block(
        0, np.zeros((4, 6, 5), np.float32), {"R": np.zeros(4), "I": np.zeros(4)}, {"E0": np.zeros(4)})
    assert (tmp_path / "s.zarr" / "images" / "c" / "0" / "0" / "0").is_file()
    st = DatasetStore.open(tmp_path / "s.zarr", partial=True)
    assert [d.reason for d in st.verify()] == ["6 samples not done (4..9): incomplete store"]


def test_failed_write_never_marks_done(tmp_path, monkeypatch):
    """Failure injection: a label array that fails to write leaves the block not done, whatever
    else of the chunk reached the disk; a rewrite then completes it."""
    import zarr

    st = make_store(tmp_path / "s.zarr")
    setitem = zarr.Array.__setitem__

    def broken(self, *args, **kwargs):
        if self.path == "params/I":
            raise OSError("disk full (injected)")
        return setitem(self, *args, **kwargs)

    monkeypatch.setattr(zarr.Array, "__setitem__", broken)
    imgs = np.ones((4, 6, 5), np.float32)
    labels = {"R": np.ones(4), "I": np.ones(4)}
    with pytest.raises(OSError, match="injected"):
        st.write_block(0, imgs, labels, {"E0": np.ones(4)})
    assert not DatasetStore.open(st.path, partial=True).done_mask().any()
    monkeypatch.undo()
    st.write_block(0, imgs, labels, {"E0": np.ones(4)})
    assert DatasetStore.open(st.path, partial=True).done_mask()[:4].all()


def test_cached_handle_follows_a_recreated_store(tmp_path):
    st = make_store(tmp_path / "s.zarr", n=10)
    fill(st)
    a = DatasetStore.cached(tmp_path / "s.zarr")
    assert a is DatasetStore.cached(tmp_path / "s.zarr") and a.n_samples == 10
    make_store(tmp_path / "s.zarr", n=6, overwrite=True)  # recreated: zarr.json rewritten
    b = DatasetStore.cached(tmp_path / "s.zarr")
    assert b is not a and b.n_samples == 6 and not b.done_mask().any()
    with pytest.raises(StoreError, match="missing zarr.json"):
        DatasetStore.cached(tmp_path / "nothing.zarr")
