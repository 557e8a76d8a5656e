"""The store as one xarray Dataset (images, coordinates, labels, diagnostics, CF attributes).

A schema-3 store is one call for plain xarray users: ``xr.open_zarr(path)`` (consolidated
metadata, labels copied at the root, CF attributes on every variable).  :func:`open_dataset`
gives the same Dataset for older stores too (labels merged from ``params/`` and
``diagnostics/``, CF attributes derived from the store's attributes) and, with ``flat``,
only attributes NetCDF accepts (``ds.to_netcdf(...)`` works).
"""

from __future__ import annotations

import json
from typing import Any

from . import cf
from .dataset import DatasetStore
from .location import StoreLike, read_json, store_location, zarr_store


def has_consolidated(path: StoreLike) -> bool:
    """The group at ``path`` (a local path or a store URL) carries consolidated metadata (what
    xarray looks for first)."""
    meta = read_json(store_location(path), "zarr.json")
    return meta is not None and meta.get("consolidated_metadata") is not None


def open_dataset(path: StoreLike, *, flat: bool = True):
    """The store as one xarray Dataset: images, done, coordinates, labels and diagnostics (a
    name taken twice gets ``<group>_<name>``), every variable with CF ``units``/``long_name``.

    ``flat``: the nested ``factory`` attribute becomes the JSON string ``factory_json`` and the
    CF global attributes are added where missing, so that ``to_netcdf`` accepts the Dataset.
    Opens incomplete stores too (``done`` says which samples are written).

    Parameters
    ----------
    path : str or os.PathLike
        The store: a local path or a store URL.
    flat : bool, optional
        Make the attributes NetCDF-compatible (see above); False keeps them as stored.

    Returns
    -------
    xarray.Dataset
        Lazy (dask-backed) variables ``images``, ``done``, the coordinates, every label and
        diagnostic and the per-sample arrays, each with CF ``units`` and ``long_name``.

    Raises
    ------
    StoreError
        No store at ``path``, or its metadata does not match its arrays.
    """
    import xarray as xr

    store = DatasetStore.open(path, partial=True)
    meta = store.meta
    source = zarr_store(store.path, read_only=True)  # the folder's path, or the URL's FsspecStore
    ds = xr.open_zarr(source, consolidated=has_consolidated(store.path))
    if not store.root_copies:  # before schema 3: the labels live only in their groups
        for sub, names in (("params", store.param_names), ("diagnostics", store.diagnostic_names)):
            if not names:
                continue
            extra = xr.open_zarr(source, group=sub, consolidated=False)
            ds = ds.assign({f"{sub}_{k}" if k in ds else k: v.assign_attrs(cf.label_attrs(meta, sub, k))
                            for k, v in extra.data_vars.items()})
    defaults: dict[str, dict[str, Any]] = {"images": cf.image_attrs(meta), "done": cf.DONE_ATTRS,
                                           "sample": cf.SAMPLE_ATTRS}
    for name, var in ds.variables.items():
        if name in store.sample_array_names:
            attrs = cf.sample_array_attrs(str(name), var.attrs)  # units, long_name; codes as CF flags
        else:  # what the store holds wins; the derived CF attributes fill what it lacks
            attrs = {**defaults.get(name, {"units": "1", "long_name": str(name)}), **var.attrs}
        var.attrs = cf.flat_attrs(attrs) if flat else attrs
    if flat:
        attrs = {**cf.global_attrs(meta), **{k: v for k, v in ds.attrs.items() if k != "factory"}}
        attrs["factory_json"] = json.dumps(meta, sort_keys=True, default=str)
        ds.attrs = cf.flat_attrs(attrs)
    return ds
