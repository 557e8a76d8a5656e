"""The store's schema: names, codecs, the split codes, digests and attribute checks."""

from __future__ import annotations

import subprocess
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import crc32c
import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.codecs import Crc32cCodec, ZstdCodec

from .. import __version__
from ..errors import StoreError
from . import cf

SCHEMA_VERSION = 3  # 2: digest table, per-sample arrays and coordinate digests recorded;
#                     3: labels copied at the root for xarray, CF attributes, consolidated metadata
ATTR = "factory"
DIGESTS = "integrity/chunk_crc32c"
MAX_DIGEST_ARRAYS = 4096
#: every chunk gets a file, even one equal to the fill value, so `verify` can tell a lost chunk
#: from an all-zero one (a runtime setting of each array handle that writes, not stored)
ARRAY_CONFIG = {"write_empty_chunks": True}
#: names no root-level label copy may take
RESERVED = ("images", "done", "sample", "params", "diagnostics", "integrity", "split")


class Split(IntEnum):
    """The codes of the ``split`` array."""

    TRAIN = 0
    VALIDATION = 1
    TEST = 2


#: code -> name, as recorded in the store's attributes
SPLIT_NAMES = {int(s): s.name.lower() for s in Split}


def code_version() -> str:
    """Package version plus the git commit of the source tree when there is one."""
    root = Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return f"{__version__}+g{rev}" if rev else __version__


def compressors():
    return (ZstdCodec(level=3), Crc32cCodec())




@dataclass(frozen=True)
class Damage:
    """One unreadable or missing chunk found by :meth:`DatasetStore.verify`."""

    array: str
    chunk: int
    samples: tuple[int, int]  # [start, stop)
    reason: str


def digest(index: int, values: np.ndarray) -> int:
    """crc32c of a chunk's position and its decoded values (a swapped or copied chunk differs)."""
    return crc32c.crc32c(np.ascontiguousarray(values).tobytes(), crc32c.crc32c(np.int64(index).tobytes()))


def ranges(idx: Iterable[int]) -> str:
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


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_attrs(path: Path, meta: Any) -> None:
    """The factory attributes have the types the code relies on (one-line StoreError if not)."""
    if not isinstance(meta, dict) or "schema_version" not in meta:
        raise StoreError(f"{path}: not a factory dataset store (no '{ATTR}' attributes)")
    ver = meta["schema_version"]
    if not is_int(ver) or ver < 1:
        raise StoreError(f"{path}: zarr.json has schema_version {ver!r}; expected a positive integer")
    if ver > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: store schema {ver} is newer than this code's {SCHEMA_VERSION}; upgrade the factory package"
        )
    for key in ("n_samples", "chunk"):
        if not is_int(meta.get(key)) or meta[key] < 1:
            raise StoreError(f"{path}: zarr.json has {key} = {meta.get(key)!r}; expected an integer >= 1")
    for key in ("param_names", "diagnostic_names", "image_dims"):
        v = meta.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v) or len(set(v)) != len(v):
            raise StoreError(f"{path}: zarr.json has {key} = {v!r}; expected a list of distinct names")
    if not isinstance(meta.get("kind"), str):
        raise StoreError(f"{path}: zarr.json has kind = {meta.get('kind')!r}; expected a string")
    if len(meta["image_dims"]) < 2 or meta["image_dims"][0] != "sample":
        raise StoreError(f"{path}: zarr.json has image_dims = {meta['image_dims']!r}; expected ['sample', ...]")
    copies = meta.get("root_copies")
    if copies is not None or ver >= 3:
        labels = {*(f"params/{n}" for n in meta["param_names"]),
                  *(f"diagnostics/{n}" for n in meta.get("diagnostic_names", []))}
        taken = {*RESERVED, *meta["image_dims"], *meta.get("sample_arrays", [])}
        ok = isinstance(copies, dict) and set(copies) == labels and all(
            isinstance(v, str) and v and "/" not in v and v not in taken for v in copies.values())
        if not ok or len(set(copies.values())) != len(copies):
            raise StoreError(f"{path}: zarr.json has root_copies = {copies!r}; expected one distinct root-level "
                             "name per label and diagnostic")


def root_copy_names(param_names, diagnostic_names, taken) -> dict[str, str]:
    """Where each label is copied at the root ({"params/R": "R", ...}): its own name, or
    ``<sub>_<name>`` where that is taken (a coordinate, a per-sample array, another label)."""
    labels = [("params", n) for n in param_names] + [("diagnostics", n) for n in diagnostic_names]
    counts: dict[str, int] = {}
    for _, n in labels:
        counts[n] = counts.get(n, 0) + 1
    used = set(taken) | set(RESERVED)
    out: dict[str, str] = {}
    for sub, n in labels:
        name = n if counts[n] == 1 and n not in used else f"{sub}_{n}"
        while name in used or name in out.values():
            name = f"{sub}_{name}"
        out[f"{sub}/{n}"] = name
    return out


def consolidate(path) -> None:
    """Write the consolidated metadata of the group at ``path`` (for xarray and other readers;
    the project's own readers never use it).  Called once the structure or the attributes
    changed, so it never describes arrays that are not there.  ``path``: a local folder, or a
    zarr store (the ``FsspecStore`` of a store URL)."""
    target = path if isinstance(path, Store) else str(path)
    with warnings.catch_warnings():  # "not part of the Zarr v3 specification yet": known, wanted
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(target, zarr_format=3)


def create_arrays(group, *, n_samples, chunk, coords, dims, dtype, param_names, diagnostic_names,
                  meta: dict[str, Any], copies: dict[str, str]) -> None:
    """The sample-chunked arrays of a new store (metadata only: no chunk is written), with
    their CF attributes; ``copies``: the root-level copies of the labels (see root_copy_names)."""
    shape = tuple(len(c.values) for c in coords)
    group.create_array(
        "images", shape=(n_samples, *shape), chunks=(chunk, *shape), dtype=dtype,
        compressors=compressors(), dimension_names=dims, fill_value=0.0, config=ARRAY_CONFIG,
        attributes=cf.image_attrs(meta),
    )
    group.create_array(
        "done", shape=(n_samples,), chunks=(chunk,), dtype="bool",
        compressors=compressors(), dimension_names=["sample"], fill_value=False, config=ARRAY_CONFIG,
        attributes=dict(cf.DONE_ATTRS),
    )

    def label(where, name, attrs):
        where.create_array(
            name, shape=(n_samples,), chunks=(chunk,), dtype="float64",
            compressors=compressors(), dimension_names=["sample"], fill_value=np.nan,
            config=ARRAY_CONFIG, attributes=attrs,
        )

    for sub, names in (("params", param_names), ("diagnostics", diagnostic_names)):
        g = group.create_group(sub)
        for name in names:
            attrs = cf.label_attrs(meta, sub, name)
            label(g, name, attrs)
            label(group, copies[f"{sub}/{name}"], {**attrs, "comment": f"copy of {sub}/{name} for xarray"})
    n_digest = 1 + len(param_names) + len(diagnostic_names)
    group.create_group("integrity").create_array(
        "chunk_crc32c", shape=(-(-n_samples // chunk), n_digest), chunks=(1, n_digest), dtype="uint32",
        compressors=compressors(), dimension_names=["chunk", "array"], fill_value=0, config=ARRAY_CONFIG,
        attributes={"arrays": ["images", *[f"params/{n}" for n in param_names],
                               *[f"diagnostics/{n}" for n in diagnostic_names]],
                    "algorithm": "crc32c(int64 chunk index, then the chunk's decoded C-order bytes)",
                    **cf.DIGEST_ATTRS},
    )
