"""The dataset store: one Zarr v3 group per dataset (DESIGN.md section 3).

Layout::

    images            (sample, H, W) float32, chunk = (chunk, H, W), zstd + crc32c
    params/<name>     (sample,) float64      one array per label
    diagnostics/<n>   (sample,) float64      per-sample simulator diagnostics
    done              (sample,) bool         set only after the sample's data is written
    sample, <H>, <W>  coordinate arrays      so that xarray.open_zarr gives a labelled Dataset
    split, ...        (sample,) arrays       written once at creation (e.g. the data split)
    integrity/chunk_crc32c  (chunk, array)   crc32c of (chunk index, decoded chunk) of every
                                             sample-chunked array, written with the chunk
    attrs["factory"]  schema version, kind, resolved config + hash, seed, code version,
                      creation time, lineage

Writers own whole chunks: :meth:`DatasetStore.write_block` writes the samples of exactly
one chunk and sets their ``done`` flags last.  Zarr's local store writes each chunk file
atomically (temporary file + rename), so a killed writer leaves either the old chunk or the
new one, never a torn file, and ``done`` is never set for data that is not on disk.

A store is created whole in a hidden sibling folder and renamed into place
(:func:`factory.outputs.staged_output`), so it exists complete with its metadata,
coordinates and per-sample arrays, or not at all.  Readers (``open`` in mode ``"r"``) refuse a
store whose samples are not all done, whose chunk files are missing or whose metadata does
not match its arrays; :meth:`DatasetStore.verify` reads every array back and detects flipped
bytes (crc32c codec), altered coordinates, and swapped or copied chunks (the digest table).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import os
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crc32c
import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec
from zarr.core.sync import sync as zarr_sync

from . import __version__
from .errors import StoreError
from .outputs import is_factory_zarr, staged_output, user_path
from .simulators import Coord

SCHEMA_VERSION = 2  # 2: digest table, per-sample arrays and coordinate digests recorded
ATTR = "factory"
DIGESTS = "integrity/chunk_crc32c"
MAX_DIGEST_ARRAYS = 4096


def code_version() -> str:
    """Package version plus the git commit of the source tree when there is one."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return f"{__version__}+g{rev}" if rev else __version__


def _compressors():
    return (ZstdCodec(level=3), Crc32cCodec())


# every chunk gets a file, even one equal to the fill value, so `verify` can tell a lost
# chunk from an all-zero one (a runtime setting, not stored in the metadata: set it for every
# process that imports the store)
_ARRAY_CONFIG = {"write_empty_chunks": True}
zarr.config.set({"array.write_empty_chunks": True})


@dataclass(frozen=True)
class Damage:
    """One unreadable or missing chunk found by :meth:`DatasetStore.verify`."""

    array: str
    chunk: int
    samples: tuple[int, int]  # [start, stop)
    reason: str


def _write_all(writes: list[tuple[zarr.Array, slice, np.ndarray]]) -> None:
    """Write several arrays concurrently on zarr's own event-loop thread (one round trip instead
    of one per array; safe inside notebooks, unlike asyncio.run); returns when all are stored."""
    async def all_writes() -> None:
        await asyncio.gather(*(arr._async_array.setitem(sel, value) for arr, sel, value in writes))

    if all(hasattr(arr, "_async_array") for arr, _, _ in writes):
        zarr_sync(all_writes())
    else:  # another zarr layout: one synchronous write after the other
        for arr, sel, value in writes:
            arr[sel] = value


_HANDLES: dict[tuple[str, str], tuple[int, "DatasetStore"]] = {}
_HANDLES_LOCK = threading.Lock()


def _digest(index: int, values: np.ndarray) -> int:
    """crc32c of a chunk's position and its decoded values (a swapped or copied chunk differs)."""
    return crc32c.crc32c(np.ascontiguousarray(values).tobytes(), crc32c.crc32c(np.int64(index).tobytes()))


def _ranges(idx: Iterable[int]) -> str:
    """Sample indices as short ranges: '3..7, 12' (at most 6 ranges shown)."""
    idx = sorted(set(int(i) for i in idx))
    out: list[str] = []
    for i in idx:
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    text = ", ".join(f"{a}..{b}" if b > a else f"{a}" for a, b in out[:6])
    return text + (f" (+{len(out) - 6} more ranges)" if len(out) > 6 else "")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_attrs(path: Path, meta: Any) -> None:
    """The factory attributes have the types the code relies on (one-line StoreError if not)."""
    if not isinstance(meta, dict) or "schema_version" not in meta:
        raise StoreError(f"{path}: not a factory dataset store (no '{ATTR}' attributes)")
    ver = meta["schema_version"]
    if not _is_int(ver) or ver < 1:
        raise StoreError(f"{path}: zarr.json has schema_version {ver!r}; expected a positive integer")
    if ver > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: store schema {ver} is newer than this code's {SCHEMA_VERSION}; upgrade the factory package"
        )
    for key in ("n_samples", "chunk"):
        if not _is_int(meta.get(key)) or meta[key] < 1:
            raise StoreError(f"{path}: zarr.json has {key} = {meta.get(key)!r}; expected an integer >= 1")
    for key in ("param_names", "diagnostic_names", "image_dims"):
        v = meta.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v) or len(set(v)) != len(v):
            raise StoreError(f"{path}: zarr.json has {key} = {v!r}; expected a list of distinct names")
    if not isinstance(meta.get("kind"), str):
        raise StoreError(f"{path}: zarr.json has kind = {meta.get('kind')!r}; expected a string")
    if len(meta["image_dims"]) < 2 or meta["image_dims"][0] != "sample":
        raise StoreError(f"{path}: zarr.json has image_dims = {meta['image_dims']!r}; expected ['sample', ...]")


class CheckedArray:
    """Read-only view of one array of a store opened for reading.

    A read decodes every chunk it touches whole; for the sample-chunked data arrays each chunk
    is compared with the digest written with it, so a swapped, copied or altered chunk can
    never be read as data.  Any failure (checksum, missing file, digest) is a StoreError naming
    the store, the array and the samples.  Everything else is the wrapped zarr array's.
    """

    def __init__(self, store: "DatasetStore", name: str, arr: zarr.Array, column: int | None):
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
            if int(self._store._digest_table()[ci, self._column]) != _digest(ci, values):
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


class DatasetStore:
    """A Zarr v3 dataset group.  Create with :meth:`create`, open with :meth:`open`."""

    def __init__(self, path: Path, group: zarr.Group):
        self.path = Path(path)
        self.group = group
        self._arrays: dict[str, Any] = {}  # opened handles (each open reads zarr.json)
        self._table: np.ndarray | None = None
        self._files: dict[str, set[int]] = {}
        meta = group.attrs.get(ATTR)
        _check_attrs(self.path, meta)
        self.meta: dict[str, Any] = meta

    # -- creation / opening ---------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        kind: str,
        n_samples: int,
        chunk: int,
        coords: tuple[Coord, ...],
        param_names: list[str],
        diagnostic_names: list[str] = (),
        config: dict[str, Any] | None = None,
        config_hash: str = "",
        seed: int | None = None,
        lineage: list[dict[str, Any]] = (),
        extra_attrs: dict[str, Any] | None = None,
        sample_arrays: dict[str, tuple[np.ndarray, dict[str, Any]]] | None = None,
        overwrite: bool = False,
        dtype: str = "float32",
    ) -> "DatasetStore":
        """Create the group, every array's metadata, the coordinates and the per-sample
        ``sample_arrays`` (name -> (values, attributes), e.g. the split) once, on the driver.

        Everything is checked first; the store is built in a hidden sibling folder and renamed
        into place, replacing an existing store only with ``overwrite`` and only once the new
        one is complete (never anything that is not a factory store).
        """
        path = user_path(path)
        chunk = cls.validate_new(path, n_samples=n_samples, chunk=chunk, coords=coords, param_names=param_names,
                                 diagnostic_names=diagnostic_names, sample_arrays=sample_arrays, dtype=dtype)
        dims = ["sample", *[c.name for c in coords]]
        sample_arrays = dict(sample_arrays or {})
        with staged_output(path, overwrite=overwrite, what="dataset store", recognise=is_factory_zarr) as tmp:
            group = zarr.open_group(store=str(tmp), mode="w-", zarr_format=3)
            _create_arrays(group, n_samples=n_samples, chunk=chunk, coords=coords, dims=dims, dtype=dtype,
                           param_names=param_names, diagnostic_names=diagnostic_names)
            index = group.create_array(
                "sample", shape=(n_samples,), chunks=(min(n_samples, 2**20),), dtype="int64",
                compressors=_compressors(), dimension_names=["sample"],
            )
            for s in range(0, n_samples, 2**20):  # O(chunks) memory, whatever the number of samples
                index[s:min(s + 2**20, n_samples)] = np.arange(s, min(s + 2**20, n_samples))
            digests = {}
            for c in coords:
                values = np.asarray(c.values, dtype=np.float64)
                arr = group.create_array(
                    c.name, shape=(len(values),), chunks=(len(values),), dtype="float64",
                    compressors=_compressors(), dimension_names=[c.name],
                    attributes={"units": c.units, "long_name": c.long_name or c.name},
                )
                arr[:] = values
                digests[c.name] = _digest(0, values)
            for name, (values, attrs) in sample_arrays.items():
                values = np.asarray(values)
                arr = group.create_array(
                    name, shape=(n_samples,), chunks=(n_samples,), dtype=values.dtype,
                    compressors=_compressors(), dimension_names=["sample"], attributes=dict(attrs),
                )
                arr[:] = values
                digests[name] = _digest(0, values)
            group.attrs[ATTR] = {
                "schema_version": SCHEMA_VERSION,
                "kind": kind,
                "n_samples": n_samples,
                "chunk": chunk,
                "image_dims": dims,
                "param_names": list(param_names),
                "diagnostic_names": list(diagnostic_names),
                "sample_arrays": list(sample_arrays),
                "digests": digests,
                "config": config or {},
                "config_hash": config_hash,
                "seed": seed,
                "code_version": code_version(),
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "lineage": list(lineage),
                **(extra_attrs or {}),
            }
        return cls.open(path, mode="r+")

    @staticmethod
    def validate_new(
        path: Path,
        *,
        n_samples: int,
        chunk: int,
        coords: tuple[Coord, ...],
        param_names: list[str],
        diagnostic_names: list[str] = (),
        sample_arrays: dict[str, tuple[np.ndarray, dict[str, Any]]] | None = None,
        dtype: str = "float32",
        **_: Any,
    ) -> int:
        """Every check :meth:`create` makes before writing anything; returns the chunk size."""
        if not _is_int(n_samples) or not _is_int(chunk) or n_samples < 1 or chunk < 1:
            raise StoreError(f"{path}: need n_samples >= 1 and chunk >= 1 (got {n_samples}, {chunk})")
        chunk = min(chunk, n_samples)
        shape = tuple(len(c.values) for c in coords)
        nbytes_chunk = chunk * int(np.prod(shape)) * np.dtype(dtype).itemsize
        if nbytes_chunk > 2**31:
            raise StoreError(f"{path}: one chunk would be {nbytes_chunk / 2**30:.1f} GiB; lower 'chunk'")
        dims = ["sample", *[c.name for c in coords]]
        sample_arrays = dict(sample_arrays or {})
        names = [*dims, *sample_arrays, "images", "done", "params", "diagnostics", "integrity"]
        if len(set(names)) != len(names) or len(set(param_names)) != len(param_names) \
                or len(set(diagnostic_names)) != len(diagnostic_names):
            raise StoreError(f"{path}: array names collide ({names}, {list(param_names)}, {list(diagnostic_names)})")
        for name, (values, _) in sample_arrays.items():
            if np.shape(values) != (n_samples,):
                raise StoreError(f"{path}: per-sample array {name!r} has shape {np.shape(values)}, not ({n_samples},)")
        for c in coords:
            if not np.isfinite(np.asarray(c.values, dtype=np.float64)).all():
                raise StoreError(f"{path}: coordinate {c.name!r} holds NaN/Inf")
        n_chunked = 2 + len(param_names) + len(diagnostic_names)
        if n_chunked > MAX_DIGEST_ARRAYS:
            raise StoreError(f"{path}: {n_chunked} label arrays; at most {MAX_DIGEST_ARRAYS}")
        return chunk

    @classmethod
    def open(cls, path: str | Path, mode: str = "r", *, partial: bool = False) -> "DatasetStore":
        """Open a store.  Readers (mode ``"r"``) get only complete, consistent stores: every
        sample done, every chunk file present, metadata matching the arrays; ``partial=True``
        (an explicit choice) skips the completeness check, e.g. to read only the done samples.
        Writers (``"r+"``) get any consistent store (a resume fills the missing chunks)."""
        path = user_path(path)
        if not (path / "zarr.json").is_file():
            raise StoreError(f"{path}: no dataset store there (missing zarr.json)")
        try:
            group = zarr.open_group(store=str(path), mode=mode, zarr_format=3)
        except Exception as exc:  # zarr raises several types for bad metadata
            raise StoreError(f"{path}: cannot open as a Zarr v3 group ({type(exc).__name__}: {exc})") from None
        store = cls(path, group)
        store.check_layout()
        if mode == "r" and not partial:
            store.check_complete()
            damage = store.verify(images=False)
            if damage:
                d = damage[0]
                more = f" (and {len(damage) - 1} more)" if len(damage) > 1 else ""
                raise StoreError(
                    f"{path}: array {d.array!r}, samples {d.samples[0]}..{d.samples[1] - 1}: {d.reason}{more}; "
                    "the store is damaged (`factory info --verify` lists it)"
                )
        return store

    @classmethod
    def cached(cls, path: str | Path, mode: str = "r") -> "DatasetStore":
        """A handle reused by the tasks of one process (opening a store and its arrays reads
        their metadata files: tens of ms per chunk otherwise).  Re-opened when the store's
        zarr.json changes (recreated, attributes updated).  For tasks of a step whose driver
        already checked the store: no completeness check here."""
        path = Path(path).resolve()
        try:
            stamp = (path / "zarr.json").stat().st_mtime_ns
        except OSError:
            raise StoreError(f"{path}: no dataset store there (missing zarr.json)") from None
        key = (str(path), mode)
        with _HANDLES_LOCK:  # tasks of one process run on several threads
            hit = _HANDLES.get(key)
            if hit is None or hit[0] != stamp:
                hit = _HANDLES[key] = (stamp, cls.open(path, mode, partial=True))
                while len(_HANDLES) > 64:
                    _HANDLES.pop(next(iter(_HANDLES)))
        return hit[1]

    # -- description -------------------------------------------------------------
    @property
    def n_samples(self) -> int:
        return int(self.meta["n_samples"])

    @property
    def chunk(self) -> int:
        return int(self.meta["chunk"])

    @property
    def kind(self) -> str:
        return str(self.meta["kind"])

    @property
    def config_hash(self) -> str:
        return str(self.meta.get("config_hash", ""))

    @property
    def param_names(self) -> list[str]:
        return list(self.meta["param_names"])

    @property
    def diagnostic_names(self) -> list[str]:
        return list(self.meta.get("diagnostic_names", []))

    @property
    def sample_array_names(self) -> list[str]:
        return list(self.meta.get("sample_arrays", []))

    @property
    def has_digests(self) -> bool:
        return self.meta["schema_version"] >= 2

    def array(self, name: str) -> zarr.Array:
        """The array at ``name`` ('images', 'params/R', ...), opened once per handle."""
        arr = self._arrays.get(name)
        if arr is None:
            try:
                arr = self.group[name]
            except KeyError:
                raise StoreError(f"{self.path}: array {name!r} is missing") from None
            except Exception as exc:
                raise StoreError(f"{self.path}: array {name!r} has unreadable metadata ({type(exc).__name__})") from None
            if not isinstance(arr, zarr.Array):
                raise StoreError(f"{self.path}: {name!r} is not an array")
            if self.read_only and name != DIGESTS:
                data = self.digest_arrays() if self.has_digests else []
                arr = CheckedArray(self, name, arr, data.index(name) if name in data else None)
            self._arrays[name] = arr
        return arr

    @property
    def read_only(self) -> bool:
        return self.group.read_only

    def _digest_table(self) -> np.ndarray:
        """The digest table (read once per read-only handle: a complete store does not change)."""
        if self._table is None:
            try:
                self._table = np.asarray(self.group[DIGESTS][:])
            except Exception as exc:
                raise StoreError(f"{self.path}: digest table unreadable ({type(exc).__name__}); "
                                 "the store is damaged") from None
        return self._table

    def _present(self, name: str) -> set[int]:
        if name not in self._files:
            self._files[name] = self._chunk_files(name)
        return self._files[name]

    @property
    def images(self) -> zarr.Array:
        return self.array("images")

    def _whole(self, name: str) -> np.ndarray:
        """A coordinate or per-sample array, checked against the digest recorded at creation."""
        values = self.array(name)[:]
        want = self.meta.get("digests", {}).get(name)
        if want is not None and want != _digest(0, values):
            raise StoreError(f"{self.path}: array {name!r} differs from the digest recorded at creation; "
                             "the store is damaged (`factory info --verify` lists what)")
        return values

    def coords(self) -> dict[str, np.ndarray]:
        return {d: self._whole(d) for d in self.meta["image_dims"][1:]}

    def sample_array(self, name: str) -> np.ndarray:
        """A per-sample array written at creation (e.g. ``split``)."""
        if name not in self.sample_array_names:
            raise StoreError(f"{self.path}: no per-sample array {name!r} (has {self.sample_array_names})")
        return self._whole(name)

    @property
    def n_blocks(self) -> int:
        return -(-self.n_samples // self.chunk)

    def blocks(self) -> list[tuple[int, int]]:
        """The chunk-aligned [start, stop) blocks covering all samples."""
        n, c = self.n_samples, self.chunk
        return [(s, min(s + c, n)) for s in range(0, n, c)]

    def done_mask(self) -> np.ndarray:
        """Which samples are done.  Only chunk files that exist are read (a fresh store of
        millions of samples has none: O(1), not one zarr read per chunk)."""
        have = self._chunk_files("done")
        if not have:
            return np.zeros(self.n_samples, dtype=bool)
        try:
            arr = self.array("done")
            if len(have) * 4 >= self.n_blocks:
                return np.asarray(arr[:], dtype=bool)
            done = np.zeros(self.n_samples, dtype=bool)
            for k in sorted(have):
                s, e = k * self.chunk, min((k + 1) * self.chunk, self.n_samples)
                done[s:e] = arr[s:e]
            return done
        except StoreError:
            raise
        except Exception as exc:  # the codec's checksum error, a truncated file
            raise StoreError(f"{self.path}: array 'done' unreadable ({type(exc).__name__}); "
                             "the store is damaged (`factory info --verify` lists what)") from None

    def _per_block(self, flags: np.ndarray, how: str) -> np.ndarray:
        """all/any of ``flags`` (sample,) within each block."""
        nb, c = self.n_blocks, self.chunk
        pad = np.full(nb * c, how == "all")
        pad[: self.n_samples] = flags
        return getattr(pad.reshape(nb, c), how)(axis=1)

    def missing_blocks(self) -> list[tuple[int, int]]:
        """Blocks to (re)compute: not all done, or a chunk file of theirs is gone."""
        done = self.done_mask()
        complete = self._per_block(done, "all")
        complete[sorted(self._lost_chunks(done))] = False
        n, c = self.n_samples, self.chunk
        return [(int(k) * c, min(int(k) * c + c, n)) for k in np.flatnonzero(~complete)]

    def params(self, names: list[str] | None = None, rows: slice = slice(None)) -> dict[str, np.ndarray]:
        return {n: self.array(f"params/{n}")[rows] for n in (names or self.param_names)}

    def diagnostics(self) -> dict[str, np.ndarray]:
        return {n: self.array(f"diagnostics/{n}")[:] for n in self.diagnostic_names}

    # -- writing -----------------------------------------------------------------
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
        if self.has_digests:
            ci = start // self.chunk
            row = np.array([[_digest(ci, data[n]) for n in self.digest_arrays()]], dtype=np.uint32)
            writes.append((self.array(DIGESTS), slice(ci, ci + 1), row))
        _write_all(writes)
        _write_all([(self.array("done"), sel, np.ones(stop - start, dtype=bool))])  # only after the rest

    def update_meta(self, **items: Any) -> None:
        """Driver only: merge items into the store's attributes."""
        self.meta = {**self.meta, **items}
        self.group.attrs[ATTR] = self.meta

    def set_sample_array(self, name: str, values: np.ndarray, attrs: dict[str, Any] | None = None,
                         **meta: Any) -> None:
        """Driver only: write (or rewrite) a per-sample array such as a new split, then record
        it, its digest and ``meta`` in the store's attributes in one update (a kill in between
        leaves the old record, which refuses the half-written array on read)."""
        values = np.asarray(values)
        if values.shape != (self.n_samples,):
            raise StoreError(f"{self.path}: per-sample array {name!r} needs shape ({self.n_samples},), got {values.shape}")
        if name in ("images", "done", "sample", "params", "diagnostics", "integrity", *self.meta["image_dims"]):
            raise StoreError(f"{self.path}: {name!r} is not a per-sample array name")
        arr = self.group.create_array(
            name, shape=values.shape, chunks=values.shape, dtype=values.dtype, compressors=_compressors(),
            dimension_names=["sample"], attributes=dict(attrs or {}), overwrite=True,
        )
        arr[:] = values
        self._arrays.pop(name, None)
        self.update_meta(
            sample_arrays=sorted({*self.sample_array_names, name}),
            digests={**self.meta.get("digests", {}), name: _digest(0, values)}, **meta,
        )

    def split_codes(self) -> np.ndarray | None:
        """The data split (0 train, 1 validation, 2 test) when the store has one."""
        if "split" in self.sample_array_names:
            return self.sample_array("split")
        if "split" in self.meta:  # schema 1 stores: an undeclared array the attributes promise
            try:
                return np.asarray(self.array("split")[:])
            except StoreError:
                raise StoreError(f"{self.path}: its attributes record a split but the 'split' array is missing; "
                                 "rerun the step with --overwrite") from None
        return None

    # -- checking ----------------------------------------------------------------
    def digest_arrays(self) -> list[str]:
        """The sample-chunked data arrays, in the column order of the digest table."""
        names = ["images"]
        names += [f"params/{n}" for n in self.param_names]
        names += [f"diagnostics/{n}" for n in self.diagnostic_names]
        return names

    def _chunked_arrays(self) -> list[str]:
        return [*self.digest_arrays(), "done"] + ([DIGESTS] if self.has_digests else [])

    def check_layout(self) -> None:
        """The metadata agrees with the arrays (names, shapes, chunks); StoreError if not."""
        n, c, dims = self.n_samples, self.chunk, self.meta["image_dims"]
        img = self.images
        if img.ndim != len(dims):
            raise StoreError(f"{self.path}: images have {img.ndim} axes but zarr.json names {dims}")
        for name in [*self._chunked_arrays(), "sample", *self.sample_array_names]:
            arr = self.array(name)
            want_chunk = c if name in self._chunked_arrays() else None
            if name == DIGESTS:
                want = (self.n_blocks, len(self.digest_arrays()))
                ok = arr.shape == want and arr.chunks[0] == 1
            else:
                ok = arr.shape[0] == n and (want_chunk is None or arr.chunks[0] == want_chunk)
            if not ok:
                raise StoreError(
                    f"{self.path}: array {name!r} has shape {arr.shape} (chunks {arr.chunks}) but zarr.json "
                    f"says {n} samples in chunks of {c}; the metadata was edited or the store is damaged"
                )
        for d, length in zip(dims[1:], img.shape[1:]):
            if self.array(d).shape != (length,):
                raise StoreError(f"{self.path}: coordinate {d!r} has shape {self.array(d).shape}, images {length}")
        for sub, names in (("params", self.param_names), ("diagnostics", self.diagnostic_names)):
            try:
                stored = sorted(k for k, _ in self.group[sub].arrays())
            except KeyError:
                stored = []
            if stored != sorted(names):
                raise StoreError(f"{self.path}: {sub}/ holds {stored} but zarr.json names {sorted(names)}")

    def _chunk_dir(self, name: str) -> Path:
        return self.path / name / "c"

    def _chunk_files(self, name: str) -> set[int]:
        """Indices (along the sample axis) of the chunk files present for array ``name``
        (the default Zarr v3 key encoding: ``name/c/<i>/0/...``, one chunk across other axes)."""
        root = self.path / name / "c"
        tail = ["0"] * (self.array(name).ndim - 1)
        try:
            names = [e.name for e in os.scandir(root) if e.name.isdigit()]
        except (FileNotFoundError, NotADirectoryError):
            return set()
        return {int(k) for k in names if root.joinpath(k, *tail).is_file()}

    def _lost_chunks(self, done: np.ndarray | None = None) -> set[int]:
        """Chunks whose data is marked done but one of whose files is gone."""
        done = self.done_mask() if done is None else done
        marked = set(np.flatnonzero(self._per_block(done, "any")).tolist())
        if not marked:
            return set()
        lost: set[int] = set()
        for name in self._chunked_arrays():
            if name != "done":
                lost |= marked - self._chunk_files(name)
        return lost

    def check_complete(self) -> None:
        """Every sample done and every chunk file present; StoreError naming the samples if not."""
        done = self.done_mask()
        if not done.all():
            missing = np.flatnonzero(~done)
            raise StoreError(
                f"{self.path}: {len(missing)} of {self.n_samples} samples not done (samples "
                f"{_ranges(missing)}); finish it with --resume, or open it with partial=True to use only done samples"
            )
        for name in self._chunked_arrays():
            have = self._chunk_files(name)
            lost = [k for k in range(len(self.blocks())) if k not in have]
            if lost:
                samples = [i for k in lost for i in range(*self.blocks()[k])]
                raise StoreError(
                    f"{self.path}: array {name!r} lacks chunk files {lost[:6]} (samples {_ranges(samples)}); "
                    "the store is damaged: `factory info --verify` lists it, `factory generate --resume` recomputes it"
                )

    def verify(self, images: bool = True) -> list[Damage]:
        """Read every array back: crc32c of every chunk (codec), metadata against the arrays,
        the digest of every chunk against the table written with it (swapped/copied chunks),
        coordinates and per-sample arrays against their recorded digests, ``sample`` = 0..n-1.

        Returns what is wrong with the samples it concerns (empty: the store is complete and
        sound); samples not done are listed too (an incomplete store).  ``images=False`` skips
        reading the image chunks (what every reader checks when it opens a store: the images
        are checked chunk by chunk as they are read).
        """
        n = self.n_samples
        try:
            self.check_layout()
        except StoreError as exc:
            return [Damage("zarr.json", -1, (0, n), str(exc).split(": ", 1)[-1])]
        damage: list[Damage] = []
        done = self._read_or_damage("done", slice(None), (0, n), damage)
        done = np.ones(n, dtype=bool) if done is None else np.asarray(done, dtype=bool)
        if not done.all():
            missing = np.flatnonzero(~done)
            damage.append(Damage("done", -1, (int(missing[0]), int(missing[-1]) + 1),
                                 f"{len(missing)} samples not done ({_ranges(missing)}): incomplete store"))
        table = None
        if self.has_digests:
            table = self._read_or_damage(DIGESTS, slice(None), (0, n), damage)
        for col, name in enumerate(self.digest_arrays()):
            files = self._chunk_files(name)
            arr = self.group[name]
            for ci, (s, e) in enumerate(self.blocks()):
                if ci not in files:
                    if done[s:e].any():
                        damage.append(Damage(name, ci, (s, e), "chunk file missing for samples marked done"))
                    continue
                if name == "images" and not images:
                    continue
                values = self._read_or_damage(arr, slice(s, e), (s, e), damage, chunk=ci)
                if values is None or table is None or not done[s:e].all():
                    continue
                if int(table[ci, col]) != _digest(ci, values):
                    damage.append(Damage(name, ci, (s, e), "content does not match its digest "
                                         "(a swapped, copied or altered chunk)"))
        if table is not None and (table[[k for k, (s, e) in enumerate(self.blocks()) if done[s:e].all()]] == 0).any():
            damage.append(Damage(DIGESTS, -1, (0, n), "digest table has empty rows for done chunks"))
        index = self._read_or_damage("sample", slice(None), (0, n), damage)
        if index is not None and not np.array_equal(index, np.arange(n)):
            damage.append(Damage("sample", 0, (0, n), "sample index is not 0..n-1"))
        recorded = self.meta.get("digests", {})
        for name in [*self.meta["image_dims"][1:], *self.sample_array_names]:
            values = self._read_or_damage(name, slice(None), (0, n), damage)
            if values is None:
                continue
            if not np.isfinite(values.astype(np.float64)).all():
                damage.append(Damage(name, 0, (0, n), "holds NaN/Inf"))
            elif name in recorded and recorded[name] != _digest(0, values):
                damage.append(Damage(name, 0, (0, n), "values differ from the digest recorded at creation"))
        return damage

    def _read_or_damage(self, arr, sel, samples, damage, chunk=0):
        arr = self.group[arr] if isinstance(arr, str) else arr  # raw: collect damage, don't raise
        try:
            return arr[sel]
        except Exception as exc:
            name = arr.path if hasattr(arr, "path") else str(arr)
            damage.append(Damage(name, chunk, samples, f"unreadable ({type(exc).__name__}: {str(exc)[:120]})"))
            return None

    def info(self) -> dict[str, Any]:
        try:
            done = int(self.done_mask().sum())
        except StoreError:
            done = "unreadable"
        m = self.meta
        return {
            "path": str(self.path),
            "kind": m["kind"],
            "samples": self.n_samples,
            "done": done,
            "chunk": self.chunk,
            "image_shape": list(self.images.shape[1:]),
            "dims": m["image_dims"],
            "params": self.param_names,
            "diagnostics": self.diagnostic_names,
            "config_hash": m.get("config_hash", ""),
            "seed": m.get("seed"),
            "code_version": m.get("code_version"),
            "created": m.get("created"),
            "lineage": m.get("lineage", []),
        }


def _create_arrays(group, *, n_samples, chunk, coords, dims, dtype, param_names, diagnostic_names) -> None:
    """The sample-chunked arrays of a new store (metadata only: no chunk is written)."""
    shape = tuple(len(c.values) for c in coords)
    group.create_array(
        "images", shape=(n_samples, *shape), chunks=(chunk, *shape), dtype=dtype,
        compressors=_compressors(), dimension_names=dims, fill_value=0.0, config=_ARRAY_CONFIG,
    )
    group.create_array(
        "done", shape=(n_samples,), chunks=(chunk,), dtype="bool",
        compressors=_compressors(), dimension_names=["sample"], fill_value=False, config=_ARRAY_CONFIG,
    )
    for sub, names in (("params", param_names), ("diagnostics", diagnostic_names)):
        g = group.create_group(sub)
        for name in names:
            g.create_array(
                name, shape=(n_samples,), chunks=(chunk,), dtype="float64",
                compressors=_compressors(), dimension_names=["sample"], fill_value=np.nan,
                config=_ARRAY_CONFIG,
            )
    n_digest = 1 + len(param_names) + len(diagnostic_names)
    group.create_group("integrity").create_array(
        "chunk_crc32c", shape=(-(-n_samples // chunk), n_digest), chunks=(1, n_digest), dtype="uint32",
        compressors=_compressors(), dimension_names=["chunk", "array"], fill_value=0, config=_ARRAY_CONFIG,
        attributes={"arrays": ["images", *[f"params/{n}" for n in param_names],
                               *[f"diagnostics/{n}" for n in diagnostic_names]],
                    "algorithm": "crc32c(int64 chunk index, then the chunk's decoded C-order bytes)"},
    )


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


def lineage_entry(store: DatasetStore) -> dict[str, Any]:
    """How a derived store records one of its sources."""
    return {"path": os.fspath(store.path.resolve()), "kind": store.kind, "config_hash": store.config_hash}
