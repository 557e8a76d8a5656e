"""Export a complete store to the files this field exchanges: NetCDF-4 (CF) or CXI (HDF5).

Only complete, sound stores are exported (:meth:`DatasetStore.open` as a reader: every sample
done, labels checked against their digests); the images are read chunk by chunk through the
digest-checked reader and written as they come, so memory stays at one chunk.  The file is
written beside the target under a hidden temporary name and renamed into place when
complete; an existing file is replaced only with ``overwrite`` and only when it is an HDF5
file (NetCDF-4 and CXI both are), never a folder, a symlink or another kind of file.

NetCDF (``format="netcdf"``, engine h5netcdf): the Dataset of :func:`open_dataset` (images,
coordinates, labels and diagnostics with CF units/long_name, flat CF global attributes, the
store's own attributes as ``factory_json``); ``xarray.open_dataset(file)`` reads it back.

CXI 1.6 (``format="cxi"``, h5py)::

    /cxi_version                           160
    /entry_1/title, start_time, experiment_identifier (N,)   sample index as text
    /entry_1/image_1/data                  (N, H, W) the images (CF units, long_name, axes)
    /entry_1/image_1/<dim>                 the image axes (e.g. qy, qx in 1/nm; y, x in mm)
    /entry_1/image_1/image_center          (3,) pixel where both axes are 0 (x, y, z), when inside
    /entry_1/image_1/data_type, data_space "intensities" or "log10 intensities", "diffraction"
    /entry_1/image_1/detector_1, source_1  links to /entry_1/instrument_1/detector_1, source_1
    /entry_1/data_1/data                   link to /entry_1/image_1/data
    /entry_1/instrument_1/source_1         wavelength (m), energy (J), when the config has them
    /entry_1/instrument_1/detector_1       distance, x_pixel_size, y_pixel_size (m), flat detector only
    /entry_1/sample_1/name, description
    /entry_1/sample_1/labels/<name>        (N,) every label, with units and long_name
    /entry_1/sample_1/diagnostics/<name>   (N,) every diagnostic
    /entry_1/sample_1/orientation_quaternion  (N, 4) (q0, q1, q2, q3) when the labels hold them
    /entry_1/process_1/program, version, date, factory_json   what made the data
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, OutputError
from ..outputs import ensure_writable_parent, replacement_path, user_path
from . import cf
from .dataset import DatasetStore
from .location import StoreLike, check_disjoint_stores
from .xarray_view import open_dataset

FORMATS = ("netcdf", "cxi")
CXI_VERSION = 160
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
H_PLANCK_C = 6.62607015e-34 * 299792458.0  # J m


def is_hdf5(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(HDF5_MAGIC)) == HDF5_MAGIC
    except OSError:
        return False


@contextlib.contextmanager
def staged_file(out: Path, *, overwrite: bool) -> Iterator[Path]:
    """A temporary file beside ``out``, renamed onto it once the caller is done (removed on
    any failure).  Refused first: a symlink, a folder, or an existing file without
    ``overwrite`` or that is not HDF5."""
    if out.is_symlink():
        raise OutputError(f"{out} is a symbolic link; refusing to write through it (give the real path)")
    if out.exists():
        if not out.is_file():
            raise OutputError(f"{out} exists and is not a file; choose another --out")
        if not overwrite:
            raise OutputError(f"{out} already exists; pass --overwrite to replace it")
        if not is_hdf5(out):
            raise OutputError(f"{out} exists and is not an HDF5 file; refusing to replace it")
    ensure_writable_parent(out)
    tmp = replacement_path(out)  # and the temporaries of killed exports removed
    try:
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def export_store(store: StoreLike, out: str | Path, *, format: str, overwrite: bool = False) -> dict[str, Any]:
    """Write the complete store ``store`` to the file ``out`` as ``format`` ("netcdf" or "cxi");
    returns what was written (path, format, samples, bytes, seconds)."""
    if format not in FORMATS:
        raise ConfigError(f"format {format!r}: choose one of {', '.join(FORMATS)}")
    out = user_path(out)
    check_disjoint_stores(out, [store])
    st = DatasetStore.open(store)  # a reader: refuses incomplete or damaged stores
    t0 = time.perf_counter()
    with staged_file(out, overwrite=overwrite) as tmp:
        (_write_netcdf if format == "netcdf" else _write_cxi)(st, tmp)
    return {"store": str(st.path), "out": str(out), "format": format, "samples": st.n_samples,
            "bytes": out.stat().st_size, "seconds": round(time.perf_counter() - t0, 3)}


def _images_by_chunk(st: DatasetStore) -> Iterator[tuple[int, int, np.ndarray]]:
    images = st.images  # digest-checked, one chunk at a time
    for s, e in st.blocks():
        yield s, e, images[s:e]


# -- NetCDF --------------------------------------------------------------------------------
def _write_netcdf(st: DatasetStore, tmp: Path) -> None:
    import h5netcdf

    ds = open_dataset(st.path)
    images = ds["images"]
    small = ds.drop_vars("images")
    for var in small.variables.values():
        var.encoding = {}  # the Zarr codecs and chunks do not apply to NetCDF
    small.to_netcdf(tmp, engine="h5netcdf")
    shape = images.shape[1:]
    with h5netcdf.File(tmp, "a") as f:
        var = f.create_variable("images", images.dims, images.dtype, chunks=(min(st.chunk, st.n_samples), *shape),
                                compression="gzip", compression_opts=4, shuffle=True)
        var.attrs.update(images.attrs)
        for s, e, block in _images_by_chunk(st):
            var[s:e] = block


# -- CXI -----------------------------------------------------------------------------------
def _text(group, name: str, value: str) -> None:
    import h5py

    group.create_dataset(name, data=value, dtype=h5py.string_dtype())


def _scalar(group, name: str, value: float, units: str) -> None:
    group.create_dataset(name, data=float(value)).attrs["units"] = units


def _centre(values: np.ndarray) -> float | None:
    """The fractional pixel index where a monotonic axis is 0 (None when 0 is outside it)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2 or not (v.min() <= 0.0 <= v.max()):
        return None
    idx = np.arange(len(v), dtype=np.float64)
    return float(np.interp(0.0, v, idx) if v[-1] > v[0] else np.interp(0.0, v[::-1], idx[::-1]))


def _write_cxi(st: DatasetStore, tmp: Path) -> None:
    import h5py

    meta = st.meta
    dims = meta["image_dims"]
    n, shape = st.n_samples, tuple(st.images.shape[1:])
    sim_cfg = meta.get("config", {}).get("simulator", {}) if isinstance(meta.get("config"), dict) else {}
    sim_cfg = sim_cfg if isinstance(sim_cfg, dict) else {}
    img_attrs = cf.image_attrs(meta)
    log = img_attrs["units"] == "1" and "log10" in img_attrs["long_name"]
    glob = cf.global_attrs(meta)
    with h5py.File(tmp, "w") as f:
        f.attrs["creator"] = glob["source"]
        f.attrs["default"] = "entry_1"
        f.create_dataset("cxi_version", data=CXI_VERSION)
        entry = f.create_group("entry_1")
        entry.attrs["NX_class"] = "NXentry"
        _text(entry, "title", glob["title"])
        _text(entry, "start_time", str(meta.get("created", "")))
        width = len(str(max(n - 1, 0)))
        ident = entry.create_dataset("experiment_identifier", shape=(n,), dtype=f"S{width}")
        ident.attrs["long_name"] = "sample index"

        instrument = entry.create_group("instrument_1")
        instrument.attrs["NX_class"] = "NXinstrument"
        _text(instrument, "name", f"simulation ({meta['kind']}, {glob['source']})")
        source = instrument.create_group("source_1")
        source.attrs["NX_class"] = "NXsource"
        wavelength_nm = sim_cfg.get("wavelength_nm")
        if isinstance(wavelength_nm, (int, float)) and wavelength_nm > 0:
            _scalar(source, "wavelength", wavelength_nm * 1e-9, "m")
            _scalar(source, "energy", H_PLANCK_C / (wavelength_nm * 1e-9), "J")
        detector = instrument.create_group("detector_1")
        detector.attrs["NX_class"] = "NXdetector"
        det_cfg = sim_cfg.get("detector") if isinstance(sim_cfg.get("detector"), dict) else {}
        if det_cfg.get("kind") == "flat":
            _scalar(detector, "distance", det_cfg["distance_mm"] * 1e-3, "m")
            _scalar(detector, "x_pixel_size", det_cfg["pixel_mm"] * 1e-3, "m")
            _scalar(detector, "y_pixel_size", det_cfg["pixel_mm"] * 1e-3, "m")
            _text(detector, "description", "flat detector perpendicular to the beam (simulated)")
        else:
            _text(detector, "description", f"simulated image on the axes {', '.join(dims[1:])} (no physical detector)")

        image = entry.create_group("image_1")
        image.attrs["NX_class"] = "NXdata"
        image.attrs["signal"] = "data"
        data = image.create_dataset("data", shape=(n, *shape), dtype=st.images.dtype,
                                    chunks=(min(st.chunk, n), *shape), compression="gzip", compression_opts=4,
                                    shuffle=True)
        data.attrs.update({**img_attrs, "axes": "experiment_identifier:" + ":".join(dims[1:])})
        _text(image, "data_type", "log10 intensities" if log else "intensities")
        _text(image, "data_space", "diffraction")
        coords = st.coords()
        centre = [_centre(coords[d]) for d in reversed(dims[1:])] if len(dims) == 3 else [None]
        if all(c is not None for c in centre):
            image.create_dataset("image_center", data=np.array([*centre, 0.0])).attrs["units"] = "pixel"
        for d, values in coords.items():
            axis = image.create_dataset(d, data=values)
            axis.attrs.update(cf.flat_attrs({k: v for k, v in st.group[d].attrs.items()}))
        image["detector_1"] = h5py.SoftLink("/entry_1/instrument_1/detector_1")
        image["source_1"] = h5py.SoftLink("/entry_1/instrument_1/source_1")
        data_1 = entry.create_group("data_1")
        data_1.attrs["NX_class"] = "NXdata"
        data_1["data"] = h5py.SoftLink("/entry_1/image_1/data")

        sample = entry.create_group("sample_1")
        sample.attrs["NX_class"] = "NXsample"
        _text(sample, "name", str(meta.get("config", {}).get("name") or meta["kind"]))
        _text(sample, "description", glob["title"])
        for sub, names, read in (("labels", st.param_names, st.params),
                                 ("diagnostics", st.diagnostic_names, st.diagnostics)):
            group = sample.create_group(sub)
            values = read()
            for name in names:
                ds = group.create_dataset(name, data=np.asarray(values[name], dtype=np.float64))
                ds.attrs.update(cf.flat_attrs(cf.label_attrs(meta, "params" if sub == "labels" else "diagnostics", name)))
                ds.attrs["axes"] = "experiment_identifier"
            if sub == "labels" and all(q in names for q in ("q0", "q1", "q2", "q3")):
                quat = np.stack([values[q] for q in ("q0", "q1", "q2", "q3")], axis=1)
                qd = sample.create_dataset("orientation_quaternion", data=quat)
                qd.attrs.update({"units": "1", "axes": "experiment_identifier:component",
                                 "long_name": "orientation quaternion (q0, q1, q2, q3), scalar first",
                                 "convention": str(meta.get("simulator", {}).get("labels", {}).get("q0..q3", ""))})

        process = entry.create_group("process_1")
        process.attrs["NX_class"] = "NXprocess"
        _text(process, "program", "ultrafast-data-factory")
        _text(process, "version", str(meta.get("code_version", "")))
        _text(process, "date", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        _text(process, "factory_json", json.dumps(meta, sort_keys=True, default=str))

        for s, e, block in _images_by_chunk(st):
            data[s:e] = block
            ident[s:e] = np.array([str(i).encode() for i in range(s, e)], dtype=f"S{width}")
