"""The store as one xarray Dataset."""

from __future__ import annotations

from pathlib import Path

import zarr


def open_dataset(path: str | Path):
    """The store as one xarray Dataset: images, done, coordinates, params and diagnostics."""
    import xarray as xr

    ds = xr.open_zarr(str(path), consolidated=False)
    for sub in ("params", "diagnostics"):
        try:
            extra = xr.open_zarr(str(path), group=sub, consolidated=False)
        except (KeyError, FileNotFoundError, zarr.errors.GroupNotFoundError):
            continue
        ds = ds.assign({f"{sub}_{k}" if k in ds else k: v for k, v in extra.data_vars.items()})
    return ds


