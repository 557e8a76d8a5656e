"""Standard data interop (issue 18): CF attributes, consolidated metadata, xarray in one call,
NetCDF and CXI export, the predictions store's frame_id coordinate."""

import json
import warnings

import h5py
import numpy as np
import pytest
import xarray as xr

from factory.config import load_config
from factory.engine import prepare_store, run_block
from factory.errors import OutputError, StoreError
from factory.store import DatasetStore, open_dataset
from factory.store import cf
from factory.store.export import export_store
from factory.testing import error_line, run_cli


def written(path, spec="blobs/tiny", samples=10, chunk=4, overrides=(), blocks=None):
    """A store written block by block through the engine's own block function (no Ray)."""
    cfg = load_config(spec, [f"chunk={chunk}", *overrides], samples=samples)
    st = prepare_store(cfg, path)
    for s, e in st.blocks()[:blocks]:
        run_block(cfg.resolved(), str(st.path), s, e)
    return path


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return written(tmp_path_factory.mktemp("interop") / "blobs.zarr")


def strict_open_zarr(path, **kw):
    """xr.open_zarr with every warning an error (the missing-consolidated-metadata one included)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_zarr(str(path), **kw)


def assert_cf(ds):
    for name, var in ds.variables.items():
        assert isinstance(var.attrs.get("units"), str) and var.attrs["units"], f"{name} has no units"
        assert isinstance(var.attrs.get("long_name"), str) and var.attrs["long_name"], f"{name} has no long_name"


def test_xarray_opens_images_coordinates_and_labels_in_one_call(blobs):
    st = DatasetStore.open(blobs)
    for ds in (strict_open_zarr(blobs), xr.open_dataset(str(blobs), engine="zarr")):
        assert ds["images"].dims == ("sample", "y", "x")
        assert {"sample", "y", "x"} <= set(ds.coords)
        for name in st.param_names:
            np.testing.assert_array_equal(ds[name].values, st.params([name])[name])
        for name, values in st.diagnostics().items():
            np.testing.assert_array_equal(ds[name].values, values)
        np.testing.assert_array_equal(ds["images"].values, st.images[:])
        assert ds["done"].values.all()
        assert_cf(ds)
        assert ds.attrs["Conventions"] == "CF-1.10" and json.loads(ds.attrs["factory_config_json"])["kind"] == "blobs"
    assert ds["x"].attrs["units"] == "arb." and ds["sample"].attrs["long_name"] == "sample index"


def test_cf_units_come_from_what_the_simulator_recorded():
    from factory.tdse.simulator import UNITS

    tdse = {"simulator": {"units": UNITS, "molecule_codes": {"H2+": 0, "HeH+": 1},
                          "image": "photoelectron momentum distribution |b(k)|^2 (probability per a.u.^2), mask method"}}
    assert cf.label_attrs(tdse, "params", "R")["units"] == "a.u."
    assert cf.label_attrs(tdse, "params", "intensity")["units"] == "W/cm^2"
    assert cf.label_attrs(tdse, "diagnostics", "yield")["units"] == "1"
    mol = cf.label_attrs(tdse, "params", "molecule")
    assert (mol["units"], mol["flag_values"], mol["flag_meanings"]) == ("1", [0, 1], "H2+ HeH+")
    assert cf.image_attrs(tdse)["units"] == "probability per a.u.^2"
    msft = {"simulator": {"labels": {"radius": "circumradius (nm)", "q0..q3": "orientation quaternion, scalar first"},
                          "image": "log10(I / max I + 1e-06)", "image_scale": "log10"}}
    assert cf.label_attrs(msft, "params", "radius") == {"units": "nm", "long_name": "circumradius"}
    assert cf.label_attrs(msft, "params", "q2")["units"] == "1"
    assert cf.label_attrs(msft, "diagnostics", "time_s")["units"] == "s"
    assert cf.label_attrs(msft, "diagnostics", "total")["units"] == "arb."  # not declared: said so
    assert cf.image_attrs(msft) == {"units": "1", "long_name": "log10(I / max I + 1e-06)"}
    assert cf.image_attrs({"preprocessing": {"mode": "pmd2d"}})["units"] == "1"


def test_consolidated_metadata_follows_attribute_and_array_changes(tmp_path):
    path = written(tmp_path / "s.zarr", samples=8)
    st = DatasetStore.open(path, mode="r+")
    st.update_meta(note="changed")
    st.set_sample_array("split", np.array([0, 0, 0, 0, 1, 1, 2, 2], dtype=np.int8),
                        {"codes": {0: "train", 1: "validation", 2: "test"}})
    ds = strict_open_zarr(path)  # consolidated again, and describing the new array
    assert ds["split"].attrs["flag_meanings"] == "train validation test"
    assert ds["split"].attrs["flag_values"] == [0, 1, 2]
    assert ds.attrs["factory"]["note"] == "changed"
    np.testing.assert_array_equal(ds["split"].values, [0, 0, 0, 0, 1, 1, 2, 2])
    assert DatasetStore.open(path).verify() == []


def test_readers_ignore_consolidated_metadata_and_resume_works(tmp_path):
    path = written(tmp_path / "s.zarr", samples=10, blocks=1)  # 4 of 10 samples
    with pytest.raises(StoreError, match="6 of 10 samples not done"):
        DatasetStore.open(path)
    root = json.loads((path / "zarr.json").read_text())
    root["consolidated_metadata"]["metadata"]["done"]["shape"] = [4]  # a stale, lying copy
    root["consolidated_metadata"]["metadata"]["params/x0"]["shape"] = [4]
    (path / "zarr.json").write_text(json.dumps(root))
    st = DatasetStore.open(path, mode="r+")
    assert st.missing_blocks() == [(4, 8), (8, 10)] and st.done_mask().sum() == 4
    cfg = load_config("blobs/tiny", ["chunk=4"], samples=10)
    for s, e in st.missing_blocks():  # the resume
        run_block(cfg.resolved(), str(path), s, e)
    st = DatasetStore.open(path)
    assert st.verify() == [] and len(st.params(["x0"])["x0"]) == 10


def test_copy_for_xarray_is_checked_by_verify(tmp_path):
    path = written(tmp_path / "s.zarr", samples=8)
    st = DatasetStore.open(path, mode="r+")
    st.array("x0")[0:4] = np.zeros(4)  # the root copy altered, the label itself intact
    damage = DatasetStore.open(path, partial=True).verify()
    assert [(d.array, d.samples) for d in damage] == [("x0", (0, 4))] and "differs from params/x0" in damage[0].reason
    with pytest.raises(StoreError, match="'x0'"):
        DatasetStore.open(path)


def test_netcdf_round_trip_equals_the_store(blobs, tmp_path):
    st = DatasetStore.open(blobs)
    plain = open_dataset(blobs)  # flat attributes: NetCDF accepts them
    plain.to_netcdf(tmp_path / "direct.nc", engine="h5netcdf")
    res = export_store(blobs, tmp_path / "export.nc", format="netcdf")
    assert res["samples"] == 10 and res["bytes"] == (tmp_path / "export.nc").stat().st_size
    for name in ("direct.nc", "export.nc"):
        back = xr.open_dataset(tmp_path / name, engine="h5netcdf")
        np.testing.assert_array_equal(back["images"].values, st.images[:])
        assert back["images"].dtype == np.float32
        for label, values in {**st.params(), **st.diagnostics()}.items():
            np.testing.assert_array_equal(back[label].values, values)
        for dim, values in st.coords().items():
            np.testing.assert_array_equal(back[dim].values, values)
        assert back["done"].dtype == bool and back["done"].values.all()
        assert_cf(back)
        assert json.loads(back.attrs["factory_json"])["config_hash"] == st.config_hash
        back.close()


def test_old_store_without_the_new_layout_still_reads_and_exports(tmp_path):
    """A schema-2 store (no root copies, no CF attributes, no consolidated metadata)."""
    path = written(tmp_path / "old.zarr", samples=6)
    root = json.loads((path / "zarr.json").read_text())
    for name in root["attributes"]["factory"].pop("root_copies").values():
        for f in sorted((path / name).rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
        (path / name).rmdir()
    root["attributes"] = {"factory": {**root["attributes"]["factory"], "schema_version": 2}}
    root.pop("consolidated_metadata")
    (path / "zarr.json").write_text(json.dumps(root))
    for meta in (path / "params").glob("*/zarr.json"):
        m = json.loads(meta.read_text())
        m["attributes"] = {}
        meta.write_text(json.dumps(m))
    st = DatasetStore.open(path)
    assert st.verify() == [] and st.label_units("x0") == "arb."
    ds = open_dataset(path)
    assert_cf(ds)
    np.testing.assert_array_equal(ds["x0"].values, st.params(["x0"])["x0"])
    export_store(path, tmp_path / "old.nc", format="netcdf")
    back = xr.open_dataset(tmp_path / "old.nc", engine="h5netcdf")
    np.testing.assert_array_equal(back["total"].values, st.diagnostics()["total"])
    back.close()


def test_cxi_export_layout_and_data(tmp_path):
    path = written(tmp_path / "m.zarr", "msft/tiny", samples=2, chunk=2,
                   overrides=("simulator.detector.kind=flat", "simulator.detector.distance_mm=80",
                              "simulator.detector.pixels=32"))
    st = DatasetStore.open(path)
    export_store(path, tmp_path / "m.cxi", format="cxi")
    with h5py.File(tmp_path / "m.cxi", "r") as f:
        assert f["cxi_version"][()] == 160
        images = st.images[:]
        np.testing.assert_array_equal(f["entry_1/image_1/data"][:], images)
        np.testing.assert_array_equal(f["entry_1/data_1/data"][:], images)  # the CXI link
        assert isinstance(f["entry_1/data_1"].get("data", getlink=True), h5py.SoftLink)
        det = f["entry_1/image_1/detector_1"]  # a link to the instrument's detector
        assert det.name == "/entry_1/instrument_1/detector_1" or "distance" in det
        assert det["distance"][()] == pytest.approx(0.080) and det["x_pixel_size"][()] == pytest.approx(5e-4)
        assert det["distance"].attrs["units"] == "m"
        assert f["entry_1/instrument_1/source_1/wavelength"][()] == pytest.approx(13.5e-9)
        labels = st.params()
        np.testing.assert_array_equal(f["entry_1/sample_1/labels/radius"][:], labels["radius"])
        assert f["entry_1/sample_1/labels/radius"].attrs["units"] == "nm"
        quat = f["entry_1/sample_1/orientation_quaternion"][:]
        np.testing.assert_array_equal(quat, np.stack([labels[q] for q in ("q0", "q1", "q2", "q3")], axis=1))
        np.testing.assert_array_equal(f["entry_1/image_1/x"][:], st.coords()["x"])
        assert f["entry_1/image_1/data"].attrs["axes"] == "experiment_identifier:y:x"
        assert [s.decode() for s in f["entry_1/experiment_identifier"][:]] == ["0", "1"]
        assert json.loads(f["entry_1/process_1/factory_json"][()])["kind"] == "msft"


def test_export_refuses_incomplete_stores_and_existing_files(tmp_path, blobs):
    part = written(tmp_path / "part.zarr", samples=10, blocks=2)
    with pytest.raises(StoreError, match="2 of 10 samples not done"):
        export_store(part, tmp_path / "part.nc", format="netcdf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.zarr"]  # nothing written, no temporary file
    mine = tmp_path / "notes.nc"
    mine.write_text("precious")
    with pytest.raises(OutputError, match="already exists"):
        export_store(blobs, mine, format="cxi")
    with pytest.raises(OutputError, match="not an HDF5 file"):
        export_store(blobs, mine, format="cxi", overwrite=True)
    assert mine.read_text() == "precious"
    proc = run_cli("export", str(part), "--out", str(tmp_path / "p.cxi"), "--format", "cxi")
    assert proc.returncode != 0 and "samples not done" in error_line(proc)
    ok = run_cli("export", str(blobs), "--out", str(tmp_path / "b.cxi"), "--format", "cxi", "--json", check=True)
    assert json.loads(ok.stdout)["samples"] == 10
    again = run_cli("export", str(blobs), "--out", str(tmp_path / "b.cxi"), "--format", "cxi", "--overwrite", check=True)
    assert "10 samples" in again.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_predictions_store_has_frame_id_as_a_coordinate(tmp_path):
    from models.stream.sinks import ZarrSink

    sink = ZarrSink(tmp_path / "p.zarr", ["R", "intensity"], {}, units={"R": "a.u.", "intensity": "W/cm^2"}, every=4)
    for k in range(3):
        ids = np.arange(3 * k, 3 * k + 3) + 100
        sink.write(ids, np.full(3, 1.5), {"R": ids * 0.1, "intensity": ids * 1e12})
    ds = strict_open_zarr(tmp_path / "p.zarr")  # consolidated at the last flush: shapes up to date
    assert ds.sizes["frame"] == 6  # two writes flushed, the third still buffered
    sink.flush({"frames": 9})
    ds = strict_open_zarr(tmp_path / "p.zarr")
    assert "frame_id" in ds.coords and "frame_id" not in ds.data_vars
    np.testing.assert_array_equal(ds["frame_id"].values, np.arange(100, 109))
    assert ds["R"].coords["frame_id"].shape == (9,)
    assert ds["frame_id"].attrs["units"] == "1" and ds["latency_ms"].attrs["units"] == "ms"
    assert ds["R"].attrs["units"] == "a.u." and ds["intensity"].attrs["units"] == "W/cm^2"
    assert ds.attrs["stream"]["summary"] == {"frames": 9}
