"""The dataset store: one Zarr v3 group per dataset (the on-disk contract laid out below).

Layout::

    images            (sample, H, W) float32, chunk = (chunk, H, W), zstd + crc32c
    params/<name>     (sample,) float64      one array per label
    diagnostics/<n>   (sample,) float64      per-sample simulator diagnostics
    <name>            (sample,) float64      (schema 3) a copy of each label and diagnostic at the
                                             root, so that xarray.open_zarr(store) holds them;
                                             attrs["factory"]["root_copies"] names them
    done              (sample,) bool         set only after the sample's data is written
    sample, <H>, <W>  coordinate arrays      so that xarray.open_zarr gives a labelled Dataset
    split, ...        (sample,) arrays       written once at creation (e.g. the data split)
    integrity/chunk_crc32c  (chunk, array)   crc32c of (chunk index, decoded chunk) of every
                                             sample-chunked array, written with the chunk
    attrs["factory"]  schema version, kind, resolved config + hash, seed, code version,
                      creation time, lineage
    attrs (flat)      (schema 3) CF global attributes: Conventions, title, source, history,
                      factory_config_json, ...; every array has CF units / long_name

The root's consolidated metadata (schema 3) is rewritten whenever the structure or the
attributes change (creation, :meth:`DatasetStore.update_meta`); writing attributes drops it
first, so it never describes what is not there.  The project's readers ignore it: they read
each array's own metadata.

Writers own whole chunks: :meth:`DatasetStore.write_block` writes the samples of exactly
one chunk and sets their ``done`` flags last.  Zarr's local store writes each chunk file
atomically (temporary file + rename), so a killed writer leaves either the old chunk or the
new one, never a torn file, and ``done`` is never set for data that is not on disk.

A store is created whole in a hidden sibling folder and renamed into place
(:func:`factory.outputs.staged_output`), so it exists complete with its metadata,
coordinates and per-sample arrays, or not at all.  A store on object storage (a URL such as
``s3://bucket/x.zarr``, :mod:`.location`) is built whole in a local temporary folder and
uploaded with its root ``zarr.json`` last; each chunk is one object written by one PUT.  Readers (``open`` in mode ``"r"``) refuse a
store whose samples are not all done, whose chunk files are missing or whose metadata does
not match its arrays; :meth:`DatasetStore.verify` reads every array back and detects flipped
bytes (crc32c codec), altered coordinates, and swapped or copied chunks (the digest table).
"""

from __future__ import annotations

import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import StoreError
from .checked import CheckedArray
from .creation import validate_new
from .integrity import IntegrityChecks
from .writes import StoreWrites
from .creation import StoreCreation
from .location import (StoreLike, StoreLocation, StoreURL, check_metadata_files, has_root,
                       location_text, store_location, zarr_store)
from . import cf
from .schema import ARRAY_CONFIG, ATTR, DIGESTS, check_attrs, digest

_HANDLES: dict[tuple[str, str], tuple[int, "DatasetStore"]] = {}
_HANDLES_LOCK = threading.Lock()


class DatasetStore(StoreCreation, StoreWrites, IntegrityChecks):
    """A Zarr v3 dataset group.  Create with :meth:`create`, open with :meth:`open`."""

    def __init__(self, path: StoreLocation, group: zarr.Group):
        self.path: StoreLocation = path if isinstance(path, StoreURL) else Path(path)
        self.group = group
        self._arrays: dict[str, Any] = {}  # opened handles (each open reads zarr.json)
        self._table: np.ndarray | None = None
        self._files: dict[str, set[int]] = {}
        meta = group.attrs.get(ATTR)
        check_attrs(self.path, meta)
        self.meta: dict[str, Any] = meta

    # -- creation / opening ---------------------------------------------------
    validate_new = staticmethod(validate_new)

    @classmethod
    def open(cls, path: StoreLike, mode: str = "r", *, partial: bool = False) -> "DatasetStore":
        """Open a store.  Readers (mode ``"r"``) get only complete, consistent stores: every
        sample done, every chunk file present, metadata matching the arrays; ``partial=True``
        (an explicit choice) skips the completeness check, e.g. to read only the done samples.
        Writers (``"r+"``) get any consistent store (a resume fills the missing chunks).
        ``path``: a local path or a store URL (``location.store_location``).

        Parameters
        ----------
        path : str or os.PathLike
            The store: a local path or a store URL (``s3://bucket/x.zarr``).
        mode : {"r", "r+"}, optional
            ``"r"`` to read (complete, verified stores only, unless ``partial``), ``"r+"``
            to write blocks or attributes.
        partial : bool, optional
            With ``mode="r"``: skip the completeness check and the verification of the
            non-image arrays (e.g. to read the done samples of an unfinished store).

        Returns
        -------
        DatasetStore
            The open store; image chunks read through it are checked against their digests.

        Raises
        ------
        StoreError
            No store at ``path``, not a Zarr v3 group, metadata that does not match the
            arrays, or (mode ``"r"``) samples not done, chunk files missing or damage found.
        """
        path = store_location(path)
        if not has_root(path):
            raise StoreError(f"{path}: no dataset store there (missing zarr.json)")
        check_metadata_files(path)
        try:
            group = zarr.open_group(store=zarr_store(path, read_only=mode == "r"), mode=mode, zarr_format=3,
                                    use_consolidated=False)
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
    def cached(cls, path: StoreLike, mode: str = "r") -> "DatasetStore":
        """A handle reused by the tasks of one process (opening a store and its arrays reads
        their metadata files: tens of ms per chunk otherwise).  Re-opened when the store's
        zarr.json changes (recreated, attributes updated; at a URL: its content).  For tasks of
        a step whose driver already checked the store: no completeness check here."""
        path = store_location(path)
        if isinstance(path, StoreURL):
            stamp = zlib.crc32(path.read_bytes("zarr.json"))  # a missing one: a StoreError naming the URL
        else:
            path = path.resolve()
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
    def root_copies(self) -> dict[str, str]:
        """{"params/R": "R", ...}: the root-level copy of each label (schema 3; none before)."""
        return dict(self.meta.get("root_copies", {}))

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
            elif not self.read_only:
                arr = arr.with_config(ARRAY_CONFIG)  # write every chunk, all-zero ones too
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
        if want is not None and want != digest(0, values):
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

    def label_attrs(self, name: str) -> dict[str, Any]:
        """The CF attributes (units, long_name, ...) of label or diagnostic ``name``: as stored
        (schema 3), else derived from the store's attributes (older stores)."""
        if name in self.param_names:
            sub = "params"
        elif name in self.diagnostic_names:
            sub = "diagnostics"
        else:
            raise StoreError(f"{self.path}: no label or diagnostic {name!r} (has {self.param_names + self.diagnostic_names})")
        stored = dict(self.array(f"{sub}/{name}").attrs)
        return stored if "units" in stored else {**cf.label_attrs(self.meta, sub, name), **stored}

    def label_units(self, name: str) -> str:
        """The units of label or diagnostic ``name`` ("1": dimensionless, "arb.": not declared)."""
        return str(self.label_attrs(name)["units"])

    def diagnostics(self) -> dict[str, np.ndarray]:
        return {n: self.array(f"diagnostics/{n}")[:] for n in self.diagnostic_names}

    # -- writing -----------------------------------------------------------------
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




def lineage_entry(store: DatasetStore) -> dict[str, Any]:
    """How a derived store records one of its sources."""
    return {"path": location_text(store.path), "kind": store.kind, "config_hash": store.config_hash}
