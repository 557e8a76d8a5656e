"""The dataset store: one Zarr v3 group per dataset (DESIGN.md section 3).

Layout::

    images            (sample, H, W) float32, chunk = (chunk, H, W), zstd + crc32c
    params/<name>     (sample,) float64      one array per label
    diagnostics/<n>   (sample,) float64      per-sample simulator diagnostics
    done              (sample,) bool         set only after the sample's data is written
    sample, <H>, <W>  coordinate arrays      so that xarray.open_zarr gives a labelled Dataset
    attrs["factory"]  schema version, kind, resolved config + hash, seed, code version,
                      creation time, lineage

Writers own whole chunks: :meth:`DatasetStore.write_block` writes the samples of exactly
one chunk and sets their ``done`` flags last.  Zarr's local store writes each chunk file
atomically (temporary file + rename), so a killed writer leaves either the old chunk or the
new one, never a torn file, and ``done`` is never set for data that is not on disk.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec
from zarr.core.sync import sync as zarr_sync

from . import __version__
from .errors import StoreError
from .simulators import Coord

SCHEMA_VERSION = 1
ATTR = "factory"


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


class DatasetStore:
    """A Zarr v3 dataset group.  Create with :meth:`create`, open with :meth:`open`."""

    def __init__(self, path: Path, group: zarr.Group):
        self.path = Path(path)
        self.group = group
        self._arrays: dict[str, zarr.Array] = {}  # opened handles (each open reads zarr.json)
        meta = group.attrs.get(ATTR)
        if not isinstance(meta, dict) or "schema_version" not in meta:
            raise StoreError(f"{path}: not a factory dataset store (no '{ATTR}' attributes)")
        if meta["schema_version"] > SCHEMA_VERSION:
            raise StoreError(
                f"{path}: store schema {meta['schema_version']} is newer than this code's "
                f"{SCHEMA_VERSION}; upgrade the factory package"
            )
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
        overwrite: bool = False,
        dtype: str = "float32",
    ) -> "DatasetStore":
        """Create the group and every array's metadata once (on the driver)."""
        path = Path(path)
        if path.exists():
            if not overwrite:
                raise StoreError(
                    f"{path} already exists; pass --overwrite to replace it or --resume to continue it"
                )
            _check_is_store_before_delete(path)
            shutil.rmtree(path)
        if n_samples < 1 or chunk < 1:
            raise StoreError(f"{path}: need n_samples >= 1 and chunk >= 1 (got {n_samples}, {chunk})")
        chunk = min(chunk, n_samples)
        shape = tuple(len(c.values) for c in coords)
        nbytes_chunk = chunk * int(np.prod(shape)) * np.dtype(dtype).itemsize
        if nbytes_chunk > 2**31:
            raise StoreError(f"{path}: one chunk would be {nbytes_chunk / 2**30:.1f} GiB; lower 'chunk'")
        group = zarr.open_group(store=str(path), mode="w-", zarr_format=3)
        dims = ["sample", *[c.name for c in coords]]
        group.create_array(
            "images", shape=(n_samples, *shape), chunks=(chunk, *shape), dtype=dtype,
            compressors=_compressors(), dimension_names=dims, fill_value=0.0, config=_ARRAY_CONFIG,
        )
        group.create_array(
            "done", shape=(n_samples,), chunks=(chunk,), dtype="bool",
            compressors=_compressors(), dimension_names=["sample"], fill_value=False, config=_ARRAY_CONFIG,
        )
        idx = group.create_array(
            "sample", shape=(n_samples,), chunks=(n_samples,), dtype="int64",
            compressors=_compressors(), dimension_names=["sample"],
        )
        idx[:] = np.arange(n_samples)
        for c in coords:
            arr = group.create_array(
                c.name, shape=(len(c.values),), chunks=(len(c.values),), dtype="float64",
                compressors=_compressors(), dimension_names=[c.name],
                attributes={"units": c.units, "long_name": c.long_name or c.name},
            )
            arr[:] = np.asarray(c.values, dtype=np.float64)
        for sub, names in (("params", param_names), ("diagnostics", diagnostic_names)):
            g = group.create_group(sub)
            for name in names:
                g.create_array(
                    name, shape=(n_samples,), chunks=(chunk,), dtype="float64",
                    compressors=_compressors(), dimension_names=["sample"], fill_value=np.nan,
                    config=_ARRAY_CONFIG,
                )
        meta = {
            "schema_version": SCHEMA_VERSION,
            "kind": kind,
            "n_samples": n_samples,
            "chunk": chunk,
            "image_dims": dims,
            "param_names": list(param_names),
            "diagnostic_names": list(diagnostic_names),
            "config": config or {},
            "config_hash": config_hash,
            "seed": seed,
            "code_version": code_version(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "lineage": list(lineage),
            **(extra_attrs or {}),
        }
        group.attrs[ATTR] = meta
        return cls(path, group)

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> "DatasetStore":
        path = Path(path)
        if not (path / "zarr.json").is_file():
            raise StoreError(f"{path}: no dataset store there (missing zarr.json)")
        try:
            group = zarr.open_group(store=str(path), mode=mode, zarr_format=3)
        except Exception as exc:  # zarr raises several types for bad metadata
            raise StoreError(f"{path}: cannot open as a Zarr v3 group ({exc})") from None
        return cls(path, group)

    @classmethod
    def cached(cls, path: str | Path, mode: str = "r") -> "DatasetStore":
        """A handle reused by the tasks of one process (opening a store and its arrays reads
        their metadata files: tens of ms per chunk otherwise).  Re-opened when the store's
        zarr.json changes (recreated, attributes updated)."""
        path = Path(path).resolve()
        try:
            stamp = (path / "zarr.json").stat().st_mtime_ns
        except OSError:
            raise StoreError(f"{path}: no dataset store there (missing zarr.json)") from None
        key = (str(path), mode)
        with _HANDLES_LOCK:  # tasks of one process run on several threads
            hit = _HANDLES.get(key)
            if hit is None or hit[0] != stamp:
                hit = _HANDLES[key] = (stamp, cls.open(path, mode))
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

    def array(self, name: str) -> zarr.Array:
        """The array at ``name`` ('images', 'params/R', ...), opened once per handle."""
        arr = self._arrays.get(name)
        if arr is None:
            arr = self._arrays[name] = self.group[name]
        return arr

    @property
    def images(self) -> zarr.Array:
        return self.array("images")

    def coords(self) -> dict[str, np.ndarray]:
        return {d: self.group[d][:] for d in self.meta["image_dims"][1:]}

    def blocks(self) -> list[tuple[int, int]]:
        """The chunk-aligned [start, stop) blocks covering all samples."""
        n, c = self.n_samples, self.chunk
        return [(s, min(s + c, n)) for s in range(0, n, c)]

    def done_mask(self) -> np.ndarray:
        return np.asarray(self.array("done")[:], dtype=bool)

    def missing_blocks(self) -> list[tuple[int, int]]:
        done = self.done_mask()
        return [(s, e) for s, e in self.blocks() if not done[s:e].all()]

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
        """Write one whole chunk of samples; ``done`` is set last.

        Refuses blocks that are not chunk-aligned, have the wrong shape, miss a label, or
        hold NaN/Inf, so that nothing wrong is ever marked done.
        """
        stop = start + len(images)
        if start % self.chunk or (stop != min(start + self.chunk, self.n_samples)):
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
        writes = [(self.images, images.astype(self.images.dtype, copy=False))]
        for sub, names, values in (
            ("params", self.param_names, params),
            ("diagnostics", self.diagnostic_names, diagnostics),
        ):
            writes += [(self.array(f"{sub}/{n}"), np.asarray(values[n], dtype=np.float64)) for n in names]
        sel = slice(start, stop)
        _write_all([(arr, sel, v) for arr, v in writes])
        _write_all([(self.array("done"), sel, np.ones(stop - start, dtype=bool))])  # only after the rest

    def update_meta(self, **items: Any) -> None:
        """Driver only: merge items into the store's attributes."""
        self.meta = {**self.meta, **items}
        self.group.attrs[ATTR] = self.meta

    # -- checking ----------------------------------------------------------------
    def _chunked_arrays(self) -> list[str]:
        names = ["images", "done"]
        names += [f"params/{n}" for n in self.param_names]
        names += [f"diagnostics/{n}" for n in self.diagnostic_names]
        return names

    def verify(self) -> list[Damage]:
        """Read every chunk back (checksums verified by the crc32c codec).

        Returns the damaged chunks with the samples they hold: unreadable chunks, and
        chunks of samples marked done whose file is missing.
        """
        damage: list[Damage] = []
        try:
            done = self.done_mask()
        except Exception as exc:
            done = np.ones(self.n_samples, dtype=bool)
            damage.append(Damage("done", -1, (0, self.n_samples), f"unreadable: {exc}"))
        for name in self._chunked_arrays():
            arr = self.group[name]
            for ci, (s, e) in enumerate(self.blocks()):
                key = self.path / name / "c" / str(ci)
                key = key.joinpath(*["0"] * (arr.ndim - 1)) if arr.ndim > 1 else key
                if not key.exists():
                    if done[s:e].any() and not (name == "done"):
                        damage.append(Damage(name, ci, (s, e), "chunk file missing for samples marked done"))
                    continue
                try:
                    arr[s:e]
                except Exception as exc:
                    damage.append(Damage(name, ci, (s, e), f"unreadable ({type(exc).__name__}: {exc})"))
        return damage

    def info(self) -> dict[str, Any]:
        done = self.done_mask()
        m = self.meta
        return {
            "path": str(self.path),
            "kind": m["kind"],
            "samples": self.n_samples,
            "done": int(done.sum()),
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


def _check_is_store_before_delete(path: Path) -> None:
    """Only ever delete a folder that is a factory store (never a user's other data)."""
    try:
        DatasetStore.open(path)
    except StoreError:
        raise StoreError(
            f"{path} exists and is not a factory dataset store; refusing to overwrite it"
        ) from None


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
