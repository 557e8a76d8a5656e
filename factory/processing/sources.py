"""The source stores of a processing step: one or more stores read as one stack.

:class:`Sources` checks that the stores agree (kind, image axes, labels); :func:`read_images`
reads images at global sample indices (what a block function needs); ``_create`` makes a
step's output store with the split array when there is one.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from ..errors import StoreError
from ..simulators import Coord
from ..store import DatasetStore, StoreLike, lineage_entry
from .splits import SPLIT_NAMES


# -- sources ---------------------------------------------------------------------------
class Sources:
    """One or more stores that must agree (kind, image axes, labels), read as one stack."""

    def __init__(self, paths: list[StoreLike]):
        if not paths:
            raise StoreError("no source store given")
        self.stores = [DatasetStore.open(p) for p in paths]  # refuses incomplete or damaged stores
        first = self.stores[0]
        for st in self.stores[1:]:
            problems = []
            if st.kind != first.kind:
                problems.append(f"kind {st.kind!r} != {first.kind!r}")
            if st.meta["image_dims"] != first.meta["image_dims"] or st.images.shape[1:] != first.images.shape[1:]:
                problems.append(f"image axes {st.meta['image_dims']}{st.images.shape[1:]} != "
                                f"{first.meta['image_dims']}{first.images.shape[1:]}")
            else:
                for name, v in st.coords().items():
                    if not np.allclose(v, first.coords()[name], rtol=1e-9, atol=0):
                        problems.append(f"different {name} grid")
            if set(st.param_names) != set(first.param_names):
                problems.append(f"labels {st.param_names} != {first.param_names}")
            if problems:
                raise StoreError(f"{st.path} does not match {first.path}: {'; '.join(problems)}")
        self.offsets = np.cumsum([0] + [st.n_samples for st in self.stores])
        self.paths = [str(st.path) for st in self.stores]

    @property
    def first(self) -> DatasetStore:
        return self.stores[0]

    @property
    def n(self) -> int:
        return int(self.offsets[-1])

    def params(self) -> dict[str, np.ndarray]:
        names = self.first.param_names
        return {k: np.concatenate([st.params([k])[k] for st in self.stores]) for k in names}

    def coords(self) -> tuple[Coord, ...]:
        g = self.first.group
        return tuple(
            Coord(d, g[d][:], g[d].attrs.get("units", ""), g[d].attrs.get("long_name", ""))
            for d in self.first.meta["image_dims"][1:]
        )

    def lineage(self) -> list[dict[str, Any]]:
        return [{**lineage_entry(st), "lineage": st.meta.get("lineage", [])} for st in self.stores]

    def hashes(self) -> list[str]:
        return [st.config_hash for st in self.stores]

    def dask_images(self) -> da.Array:
        """The images as one Dask array; every chunk is checked against its digest when read."""
        return da.concatenate([
            da.from_array(st.images, chunks=(st.chunk, *st.images.shape[1:]), asarray=True, fancy=False)
            for st in self.stores
        ])


def read_images(paths: list[str], offsets: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Images at global sample indices (sorted reads, one orthogonal selection per source)."""
    index = np.asarray(index)
    out = None
    for k, path in enumerate(paths):
        sel = (index >= offsets[k]) & (index < offsets[k + 1])
        if not sel.any():
            continue
        arr = DatasetStore.cached(path).images
        local = index[sel] - offsets[k]
        order = np.argsort(local)
        block = arr.get_orthogonal_selection((local[order],))
        if out is None:
            out = np.empty((len(index), *arr.shape[1:]), dtype=arr.dtype)
        tmp = np.empty_like(block)
        tmp[order] = block
        out[np.flatnonzero(sel)] = tmp
    return out


def _create(out, h, *, kind, n, chunk, coords, params, diags, config, lineage, extra, overwrite, split=None):
    arrays = {"split": (np.asarray(split, dtype=np.int8), {"codes": SPLIT_NAMES})} if split is not None else None
    return DatasetStore.create(
        out, kind=kind, n_samples=n, chunk=chunk, coords=coords, param_names=params,
        diagnostic_names=diags, config=config, config_hash=h, lineage=lineage,
        extra_attrs=extra, sample_arrays=arrays, overwrite=overwrite, staged=True,
    )
