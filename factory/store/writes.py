"""What a driver or worker writes into an open dataset store: a block of samples (images,
labels, diagnostics, then ``done``), the store's attributes, a per-sample array such as the
split.  A mixin of :class:`factory.store.DatasetStore` (which holds the arrays and metadata)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import zarr

from ..errors import StoreError
from . import cf
from .location import disk_full, zarr_store
from .schema import ATTR, DIGESTS, RESERVED, compressors, consolidate, digest

_WRITERS = ThreadPoolExecutor(8, thread_name_prefix="store-write")


def _write_all(writes: list[tuple[zarr.Array, slice, np.ndarray]]) -> None:
    """Write several arrays concurrently (zarr's public API from a few threads: one round trip
    of file writes instead of one per array); returns when all are stored, raising the first error."""
    futures = [_WRITERS.submit(arr.__setitem__, sel, value) for arr, sel, value in writes]
    for f in futures:
        f.result()


class StoreWrites:
    """Writing methods of :class:`factory.store.DatasetStore`."""

    def write_block(
        self,
        start: int,
        images: np.ndarray,
        params: dict[str, np.ndarray],
        diagnostics: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Write one whole chunk of samples and its digests; ``done`` is set last.

        Refuses blocks that are not chunk-aligned, have the wrong shape, miss a label, or
        hold NaN/Inf, so that nothing wrong is ever marked done.

        Parameters
        ----------
        start : int
            The first sample of the block; a multiple of ``chunk``.
        images : numpy.ndarray
            ``(n, *image_shape)`` images of samples ``[start, start + n)``, where ``n`` is the
            chunk (less for the last chunk); cast to the store's dtype.
        params : dict of str to numpy.ndarray
            Every label of the store, ``(n,)`` values each.
        diagnostics : dict of str to numpy.ndarray, optional
            Every diagnostic of the store, ``(n,)`` values each.

        Raises
        ------
        StoreError
            The block is not one whole chunk, has the wrong image shape, lacks a label or
            diagnostic, or holds NaN/Inf; nothing is written then.
        """
        stop = start + len(images)
        if start % self.chunk or start >= self.n_samples or (stop != min(start + self.chunk, self.n_samples)):
            raise StoreError(f"{self.path}: block [{start}, {stop}) is not one whole chunk of {self.chunk}")
        expected = self.images.shape[1:]
        if images.shape[1:] != expected:
            raise StoreError(f"{self.path}: image shape {images.shape[1:]} != store's {expected}")
        if not np.isfinite(images).all():
            bad = sorted({start + int(i) for i in np.argwhere(~np.isfinite(images))[:, 0]})
            raise StoreError(f"{self.path}: NaN/Inf in images of samples {bad}; not stored")
        diagnostics = diagnostics or {}
        for sub, names, values in (
            ("params", self.param_names, params),
            ("diagnostics", self.diagnostic_names, diagnostics),
        ):
            missing = [n for n in names if n not in values]
            if missing:
                raise StoreError(f"{self.path}: block [{start}, {stop}) lacks {sub} {missing}")
            for n in names:
                v = np.asarray(values[n], dtype=np.float64)
                if v.shape != (stop - start,) or not np.isfinite(v).all():
                    raise StoreError(f"{self.path}: {sub}/{n} of block [{start}, {stop}) is not finite/shaped")
        data = {"images": np.ascontiguousarray(images, dtype=self.images.dtype)}
        for sub, names, values in (
            ("params", self.param_names, params),
            ("diagnostics", self.diagnostic_names, diagnostics),
        ):
            data.update({f"{sub}/{n}": np.asarray(values[n], dtype=np.float64) for n in names})
        sel = slice(start, stop)
        writes = [(self.array(n), sel, v) for n, v in data.items()]
        writes += [(self.array(copy), sel, data[n]) for n, copy in self.root_copies.items()]
        if self.has_digests:
            ci = start // self.chunk
            row = np.array([[digest(ci, data[n]) for n in self.digest_arrays()]], dtype=np.uint32)
            writes.append((self.array(DIGESTS), slice(ci, ci + 1), row))
        _write_all(writes)
        _write_all([(self.array("done"), sel, np.ones(stop - start, dtype=bool))])  # only after the rest

    def update_meta(self, **items: Any) -> None:
        """Driver only: merge items into the store's attributes (and consolidate the metadata again)."""
        self.meta = {**self.meta, **items}
        try:
            self.group.attrs[ATTR] = self.meta
            if self.meta["schema_version"] >= 3:
                consolidate(zarr_store(self.path))
        except OSError as exc:
            raise disk_full(self.path, exc) or exc from None

    def set_sample_array(self, name: str, values: np.ndarray, attrs: dict[str, Any] | None = None,
                         **meta: Any) -> None:
        """Driver only: write (or rewrite) a per-sample array such as a new split, then record
        it, its digest and ``meta`` in the store's attributes in one update (a kill in between
        leaves the old record, which refuses the half-written array on read)."""
        values = np.asarray(values)
        if values.shape != (self.n_samples,):
            raise StoreError(f"{self.path}: per-sample array {name!r} needs shape ({self.n_samples},), got {values.shape}")
        if name in (*RESERVED, *self.meta["image_dims"], *self.root_copies.values()) and name != "split":
            raise StoreError(f"{self.path}: {name!r} is not a per-sample array name")
        arr = self.group.create_array(
            name, shape=values.shape, chunks=values.shape, dtype=values.dtype, compressors=compressors(),
            dimension_names=["sample"], attributes=cf.sample_array_attrs(name, attrs or {}), overwrite=True,
        )
        arr[:] = values
        self._arrays.pop(name, None)
        self.update_meta(
            sample_arrays=sorted({*self.sample_array_names, name}),
            digests={**self.meta.get("digests", {}), name: digest(0, values)}, **meta,
        )
