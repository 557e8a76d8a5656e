"""Read-only array views that check every chunk they read against the store's digests."""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

from ..errors import StoreError
from .schema import digest

class CheckedArray:
    """Read-only view of one array of a store opened for reading.

    A read decodes every chunk it touches whole; for the sample-chunked data arrays each chunk
    is compared with the digest written with it, so a swapped, copied or altered chunk can
    never be read as data.  Any failure (checksum, missing file, digest) is a StoreError naming
    the store, the array and the samples.  Everything else is the wrapped zarr array's.
    """

    def __init__(self, store: Any, name: str, arr: zarr.Array, column: int | None):
        self._store, self._name, self._arr, self._column = store, name, arr, column

    def __getattr__(self, key: str) -> Any:
        return getattr(self._arr, key)

    def __len__(self) -> int:
        return self._arr.shape[0]

    def __array__(self, dtype=None, copy=None):
        values = self[:]
        return values if dtype is None else values.astype(dtype)

    def _fail(self, what: str, s: int, e: int) -> StoreError:
        return StoreError(
            f"{self._store.path}: array {self._name!r}, samples {s}..{e - 1}: {what}; "
            "the store is damaged (`factory info --verify` lists what)"
        )

    def _chunk(self, ci: int) -> np.ndarray:
        n = self._arr.shape[0]
        c = self._arr.chunks[0]
        s, e = ci * c, min((ci + 1) * c, n)
        try:
            values = self._arr[s:e]
        except Exception as exc:  # the codec's checksum error, a truncated or missing file
            raise self._fail(f"unreadable chunk {ci} ({type(exc).__name__}: {str(exc)[:80]})", s, e) from None
        if self._column is not None:
            if ci not in self._store._present(self._name):
                raise self._fail(f"chunk file {ci} is missing", s, e)
            if int(self._store._digest_table()[ci, self._column]) != digest(ci, values):
                raise self._fail(f"chunk {ci} does not match its digest (swapped, copied or altered)", s, e)
        return values

    def _rows(self, lo: int, hi: int) -> np.ndarray:
        c = self._arr.chunks[0]
        parts = [self._chunk(ci) for ci in range(lo // c, (hi - 1) // c + 1)]
        block = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return block[lo - (lo // c) * c: hi - (lo // c) * c]

    def _take(self, idx: np.ndarray) -> np.ndarray:
        n, c = self._arr.shape[0], self._arr.chunks[0]
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = np.where(idx < 0, idx + n, idx).astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"index out of range for {self._name!r} of {n} samples")
        out = np.empty((len(idx), *self._arr.shape[1:]), dtype=self._arr.dtype)
        chunk_of = idx // c
        order = np.argsort(chunk_of, kind="stable")
        for pos in np.split(order, np.flatnonzero(np.diff(chunk_of[order])) + 1) if len(idx) else ():
            ci = int(chunk_of[pos[0]])
            out[pos] = self._chunk(ci)[idx[pos] - ci * c]
        return out

    def __getitem__(self, sel):
        sel = sel if isinstance(sel, tuple) else (sel,)
        first, rest = (sel[0], sel[1:]) if sel else (slice(None), ())
        n = self._arr.shape[0]
        if first is Ellipsis:
            return self._rows(0, n)[sel] if n else self._arr[sel]
        if isinstance(first, (int, np.integer)):
            i = int(first) + (n if int(first) < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"index {int(first)} out of range for {self._name!r} of {n} samples")
            return self._rows(i, i + 1)[(0, *rest)]
        if isinstance(first, slice):
            lo, hi, step = first.indices(n)
            if step == 1:
                return self._rows(lo, hi)[(slice(None), *rest)] if hi > lo else self._arr[sel]
            return self._take(np.arange(lo, hi, step))[(slice(None), *rest)]
        return self._take(first)[(slice(None), *rest)]

    def get_orthogonal_selection(self, sel):
        sel = sel if isinstance(sel, tuple) else (sel,)
        first = sel[0]
        if isinstance(first, slice):
            return self[sel]
        return self._take(first)[(slice(None), *sel[1:])]


