"""Creating a store: every check before anything is written, then the whole group at once."""

from __future__ import annotations

import datetime as _dt
import shutil
import tempfile
from pathlib import Path
from typing import Any, Self

import numpy as np
import zarr

from ..errors import StoreError
from ..outputs import (check_replaceable, is_dataset_store, publish_replacement, replacement_path, staged_output,
                       user_path)
from ..simulation import Coord
from . import cf
from .location import StoreLike, StoreLocation, StoreURL, check_new_store, disk_full, publish, store_location
from .schema import (ATTR, MAX_DIGEST_ARRAYS, RESERVED, SCHEMA_VERSION, code_version, compressors, consolidate,
                     create_arrays, digest, is_int, root_copy_names)


#: the most samples one store may hold (the configs' limit too)
MAX_SAMPLES = 10**9
#: chunks in one store: the driver keeps a few hundred bytes of bookkeeping per chunk (done
#: flags, digests, the blocks still to compute), so 4 Mi chunks stay under ~1 GiB
MAX_CHUNKS = 1 << 22


def check_memory_for(n: int, bytes_per_sample: int, what: str) -> None:
    """Refuse, before allocating, ``n`` new samples whose per-sample bookkeeping (labels,
    indices, weights: ``bytes_per_sample`` in memory) would not fit: more than
    :data:`MAX_SAMPLES`, or more than half the memory available now (one ``StoreError``)."""
    import psutil

    if n > MAX_SAMPLES:
        raise StoreError(f"{what}: {n} samples; a store holds at most {MAX_SAMPLES}")
    need, have = n * bytes_per_sample, psutil.virtual_memory().available
    if need > have // 2:
        raise StoreError(f"{what}: {n} samples need {need / 2**30:.1f} GiB of memory for their labels and indices; "
                         f"{have / 2**30:.1f} GiB is available (use fewer samples)")


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
    if not is_int(n_samples) or not is_int(chunk) or n_samples < 1 or chunk < 1:
        raise StoreError(f"{path}: need n_samples >= 1 and chunk >= 1 (got {n_samples}, {chunk})")
    if n_samples > MAX_SAMPLES:
        raise StoreError(f"{path}: {n_samples} samples; a store holds at most {MAX_SAMPLES}")
    chunk = min(chunk, n_samples)
    n_chunks = -(-n_samples // chunk)
    if n_chunks > MAX_CHUNKS:
        raise StoreError(f"{path}: {n_samples} samples in chunks of {chunk} make {n_chunks:,} chunks; a store has at "
                         f"most {MAX_CHUNKS:,} (set chunk >= {-(-n_samples // MAX_CHUNKS)})")
    shape = tuple(len(c.values) for c in coords)
    nbytes_chunk = chunk * int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes_chunk > 2**31:
        raise StoreError(f"{path}: one chunk would be {nbytes_chunk / 2**30:.1f} GiB; lower 'chunk'")
    dims = ["sample", *[c.name for c in coords]]
    sample_arrays = dict(sample_arrays or {})
    names = [*dims, *sample_arrays, *(n for n in RESERVED if n not in (*sample_arrays, "sample"))]
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



def write_new_store(tmp: Path, *, kind: str, n_samples: int, chunk: int, coords: tuple[Coord, ...],
                    param_names: list[str], diagnostic_names: list[str], sample_arrays, dtype: str,
                    attrs: dict[str, Any]) -> None:
    """The whole group in the (temporary) folder ``tmp``: array metadata with CF attributes,
    the sample index, the coordinates and per-sample arrays with their digests, the factory
    attributes (and flat CF global attributes) last, then the consolidated metadata."""
    dims = ["sample", *[c.name for c in coords]]
    sample_arrays = dict(sample_arrays or {})
    copies = root_copy_names(param_names, diagnostic_names, [*dims, *sample_arrays])
    meta = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "n_samples": n_samples,
        "chunk": chunk,
        "image_dims": dims,
        "param_names": list(param_names),
        "diagnostic_names": list(diagnostic_names),
        "sample_arrays": list(sample_arrays),
        "root_copies": copies,
        "digests": {},
        "code_version": code_version(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **attrs,
    }
    group = zarr.open_group(store=str(tmp), mode="w-", zarr_format=3)
    create_arrays(group, n_samples=n_samples, chunk=chunk, coords=coords, dims=dims, dtype=dtype,
                  param_names=param_names, diagnostic_names=diagnostic_names, meta=meta, copies=copies)
    index = group.create_array(
        "sample", shape=(n_samples,), chunks=(min(n_samples, 2**20),), dtype="int64",
        compressors=compressors(), dimension_names=["sample"], attributes=dict(cf.SAMPLE_ATTRS),
    )
    for s in range(0, n_samples, 2**20):  # O(chunks) memory, whatever the number of samples
        index[s:min(s + 2**20, n_samples)] = np.arange(s, min(s + 2**20, n_samples))
    for c in coords:
        values = np.asarray(c.values, dtype=np.float64)
        arr = group.create_array(
            c.name, shape=(len(values),), chunks=(len(values),), dtype="float64",
            compressors=compressors(), dimension_names=[c.name],
            attributes={"units": c.units or "1", "long_name": c.long_name or c.name},
        )
        arr[:] = values
        meta["digests"][c.name] = digest(0, values)
    for name, (values, array_attrs) in sample_arrays.items():
        values = np.asarray(values)
        arr = group.create_array(
            name, shape=(n_samples,), chunks=(n_samples,), dtype=values.dtype,
            compressors=compressors(), dimension_names=["sample"],
            attributes=cf.sample_array_attrs(name, array_attrs),
        )
        arr[:] = values
        meta["digests"][name] = digest(0, values)
    group.attrs.update({**cf.global_attrs(meta), ATTR: meta})
    consolidate(tmp)


def _write_new(path: StoreLocation, tmp: Path, build: dict[str, Any]) -> None:
    """A new store's metadata in ``tmp``; a full disk is one StoreError naming ``path``."""
    try:
        write_new_store(tmp, **build)
    except OSError as exc:
        raise disk_full(path, exc, "free some space and rerun (nothing was replaced)") or exc from None


class StoreCreation:
    """Creating a store and replacing one (a mixin of :class:`factory.store.DatasetStore`)."""

    #: the store a replacement built beside it will take the place of (:meth:`publish`), else None
    replaces: Path | None = None

    @classmethod
    def create(
        cls,
        path: StoreLike,
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
        staged: bool = False,
    ) -> Self:
        """Create the group, every array's metadata, the coordinates and the per-sample
        ``sample_arrays`` (name -> (values, attributes), e.g. the split) once, on the driver.

        Everything is checked first; the store is built in a hidden sibling folder and renamed
        into place, replacing an existing store only with ``overwrite`` and only once the new
        one is complete (never anything that is not a factory store).  At a URL it is built in
        a local temporary folder and uploaded, root ``zarr.json`` last (:func:`.location.publish`);
        an existing store there is never replaced (``overwrite`` is refused).

        Parameters
        ----------
        path : str or os.PathLike
            Where the store goes: a local path or a store URL (``s3://bucket/x.zarr``).
        kind : str
            What made the samples (the simulator kind, e.g. ``"tdse"``); recorded, and checked
            by the steps that read the store.
        n_samples : int
            Number of samples (>= 1, at most ``MAX_SAMPLES``).
        chunk : int
            Samples per chunk, the unit of writing (``write_block``); capped at
            ``n_samples``.
        coords : tuple of Coord
            The image axes in image order (name, values, units, long name); the images are
            ``(n_samples, *(len(c.values) for c in coords))``.
        param_names : list of str
            The labels, one float64 array ``params/<name>`` each.
        diagnostic_names : list of str, optional
            Per-sample simulator diagnostics, one float64 array ``diagnostics/<name>`` each.
        config : dict, optional
            The resolved config that made the store (recorded in its attributes).
        config_hash : str, optional
            The hash of ``config``; a resume or a processing step compares it.
        seed : int, optional
            The seed of the samples (recorded).
        lineage : list of dict, optional
            The source stores of a derived store (``lineage_entry`` of each).
        extra_attrs : dict, optional
            More entries of the store's ``factory`` attributes (e.g. the simulator's).
        sample_arrays : dict, optional
            Per-sample arrays written once now, name -> (values of shape ``(n_samples,)``,
            attributes), e.g. the ``split``.
        overwrite : bool, optional
            Replace an existing dataset store at a local ``path`` once the new one is complete.
        dtype : str, optional
            The images' dtype.
        staged : bool, optional
            With ``overwrite`` over an existing store: return the new store built beside the
            old one (``replaces`` set), to be filled and then swapped in by :meth:`publish`
            (or removed by :meth:`discard`); the old store stays whole until then.  Without it
            the (empty) new store replaces the old one at once.

        Returns
        -------
        DatasetStore
            The new store, opened for writing (``mode="r+"``), no sample done yet.

        Raises
        ------
        StoreError
            The arguments describe an impossible store (sample count, a chunk over 2 GiB,
            colliding names, NaN/Inf coordinates, wrongly shaped per-sample arrays).
        OutputError
            ``path`` exists and ``overwrite`` is not given (always at a URL), or it is not a
            dataset store, or it cannot be written.
        """
        path = store_location(path)
        chunk = cls.validate_new(path, n_samples=n_samples, chunk=chunk, coords=coords, param_names=param_names,
                                 diagnostic_names=diagnostic_names, sample_arrays=sample_arrays, dtype=dtype)
        build = dict(kind=kind, n_samples=n_samples, chunk=chunk, coords=coords, param_names=param_names,
                     diagnostic_names=diagnostic_names, sample_arrays=sample_arrays, dtype=dtype, attrs={
                         "config": config or {}, "config_hash": config_hash, "seed": seed,
                         "lineage": list(lineage), **(extra_attrs or {})})
        if isinstance(path, StoreURL):
            check_new_store(path, overwrite=overwrite, resumable=True)
            with tempfile.TemporaryDirectory(prefix="factory-store-") as tmp:
                write_new_store(Path(tmp) / "store.zarr", **build)
                publish(Path(tmp) / "store.zarr", path)
        elif overwrite and staged and (Path(path).exists() or Path(path).is_symlink()):  # a replacement:
            # built and filled beside the old store, which stays whole until publish() (a kill leaves it as it was)
            path = user_path(path)
            check_replaceable(path, overwrite=True, what="dataset store", recognise=is_dataset_store, resumable=True)
            staged = replacement_path(path)  # a killed run's is removed as stale by the next
            try:
                _write_new(path, staged, build)
            except BaseException:
                shutil.rmtree(staged, ignore_errors=True)
                raise
            store = cls.open(staged, mode="r+")
            store.replaces = path
            return store
        else:
            with staged_output(path, overwrite=overwrite, what="dataset store", recognise=is_dataset_store,
                               resumable=True) as tmp:
                _write_new(path, tmp, build)
        return cls.open(path, mode="r+")

    def publish(self) -> Self:
        """The store in its place: a complete replacement made by ``create(..., overwrite=True)``
        over an existing store is swapped into the place of that store now (the old one is removed
        only after the swap); any other store is returned as it is.

        Returns
        -------
        DatasetStore
            The store at its final path.

        Raises
        ------
        StoreError
            The replacement still lacks blocks (it is never published incomplete).
        """
        if self.replaces is None:
            return self
        missing = self.missing_blocks()
        if missing:
            raise StoreError(f"{self.replaces}: the new store lacks {len(missing)} blocks; the old one is kept")
        publish_replacement(self.path, self.replaces, what="dataset store", recognise=is_dataset_store)
        return type(self).open(self.replaces, mode="r+")

    def discard(self) -> None:
        """Remove an unpublished replacement (see :meth:`publish`); the store it was to replace
        stays as it was.  Nothing happens to any other store."""
        if self.replaces is not None:
            shutil.rmtree(self.path, ignore_errors=True)
