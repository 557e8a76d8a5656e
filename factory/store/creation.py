"""Creating a store: every check before anything is written, then the whole group at once."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import StoreError
from ..simulation import Coord
from . import cf
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
