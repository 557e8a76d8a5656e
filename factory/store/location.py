"""Where a store lives: a local folder, or a URL on object storage (``s3://bucket/x.zarr``, ``gs://``, ...).

Users give a store as a path or a URL (:data:`StoreLike`); :func:`store_location` turns it into
a :data:`StoreLocation`: an absolute :class:`~pathlib.Path` for a local folder (exactly what
:func:`factory.outputs.user_path` gives, so local stores behave as they always did), or a
:class:`StoreURL` for any other fsspec protocol.  A ``StoreURL`` is a ``str`` (the URL, no
trailing slash): it travels to Ray and Dask workers as it is, and each worker opens the same
URL with its own credentials.

Credentials and endpoints come from the environment of every process that opens the store
(driver and workers): for S3 (s3fs, the ``s3`` extra) the standard ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``AWS_REGION`` and
``AWS_ENDPOINT_URL`` (an S3-compatible server: MinIO, Ceph, ...); for any protocol
``FACTORY_STORAGE_OPTIONS``, a JSON object passed to the fsspec filesystem (for s3fs e.g.
``{"endpoint_url": "http://127.0.0.1:9000", "anon": false}``).  The URL itself never
carries a secret.

The store contract on object storage (where there is no rename):

* creation builds the whole new store in a local temporary folder, then uploads it with the
  root ``zarr.json`` last: readers see no store until it is complete.  A creation killed
  during the upload leaves objects without a root ``zarr.json``; running the same command
  again finishes that upload (every object already there must be byte-identical to the new
  store's), anything else under the prefix is refused, never overwritten;
* ``--overwrite`` of an existing store is refused: object storage cannot swap a new store in
  place of the old one, and deleting the old one first would leave neither for a while;
* every chunk is one object written by one PUT (never torn); ``done`` is written last, as on disk.
"""

from __future__ import annotations

import functools
import json
import errno
import os
import shutil
import re
from pathlib import Path, PurePath
from typing import Any, Union

from ..errors import OutputError, StoreError
from ..outputs import check_disjoint, check_replaceable, is_dataset_store, user_path
from ..jsonfile import JSONFileError
from ..jsonfile import read_json as read_json_file

STORAGE_OPTIONS_ENV = "FACTORY_STORAGE_OPTIONS"
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://(.*)$")

#: what a user may give for a store: a local path, or a URL such as ``s3://bucket/run/raw.zarr``
StoreLike = Union[str, os.PathLike]


class StoreURL(str):
    """A store on object storage: its URL (``protocol://path``, no trailing slash).

    The few object operations the store needs (read, list, upload) go through fsspec; the
    arrays themselves through zarr's ``FsspecStore`` (:meth:`zarr_store`)."""

    __slots__ = ()

    @property
    def protocol(self) -> str:
        return self.split("://", 1)[0]

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]

    @property
    def fs(self):
        """The (synchronous) fsspec filesystem of this URL, with the storage options."""
        return self._call("connect", lambda: _filesystem(self.protocol, json.dumps(storage_options(), sort_keys=True)))

    @property
    def root(self) -> str:
        """The store's path inside the filesystem (``bucket/x.zarr`` for ``s3://bucket/x.zarr``)."""
        return self.fs._strip_protocol(str(self)).rstrip("/")

    def key(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def has(self, rel: str) -> bool:
        """The object ``rel`` (e.g. ``zarr.json``) exists, asked fresh (no cached listing)."""
        path = self.key(rel)

        def exists() -> bool:  # not fs.isfile: it answers False for an unreachable endpoint too
            self.fs.invalidate_cache(path)
            try:
                return self.fs.info(path).get("type", "file") == "file"
            except FileNotFoundError:
                return False

        return self._call("read", exists)

    def read_bytes(self, rel: str) -> bytes:
        return self._call("read", lambda: self.fs.cat_file(self.key(rel)))

    def listing(self, rel: str = "") -> list[str]:
        """Every object under ``rel`` (relative to the store's root), listed fresh."""
        base = self.key(rel).rstrip("/")

        def find():
            self.fs.invalidate_cache(base)
            try:
                return self.fs.find(base)
            except FileNotFoundError:
                return []

        start = f"{self.root}/"
        return sorted(p[len(start):] for p in self._call("list", find) if p.startswith(start))

    def upload(self, files: dict[str, Path]) -> None:
        """Upload local files to ``rel`` keys (several at once where the filesystem can)."""
        if files:
            rels = sorted(files)
            self._call("write", lambda: self.fs.put([str(files[r]) for r in rels], [self.key(r) for r in rels]))

    def zarr_store(self, read_only: bool):
        """zarr's store for this URL (what :func:`zarr.open_group` opens)."""
        from zarr.storage import FsspecStore

        return self._call("open", lambda: FsspecStore.from_url(str(self), storage_options=storage_options(),
                                                                read_only=read_only))

    def _call(self, what: str, fn):
        """Run an object-storage operation; unreachable servers, missing credentials or
        buckets, or a protocol without its package become one StoreError line."""
        try:
            return fn()
        except (StoreError, OutputError):
            raise
        except ImportError as exc:
            raise StoreError(f"{self}: cannot {what} ({exc}); for S3 install the 's3' extra "
                             "(pip install 'ultrafast-data-factory[s3]')") from None
        except Exception as exc:  # botocore/aiohttp/fsspec raise many types for the same few causes
            text = " ".join(str(exc).split())[:200]
            raise StoreError(f"{self}: cannot {what} on object storage ({type(exc).__name__}: {text}); check the "
                             "URL, the credentials and the endpoint (AWS_ENDPOINT_URL, "
                             f"{STORAGE_OPTIONS_ENV})") from None


#: a store's location: an absolute local path, or a URL on object storage
StoreLocation = Union[Path, StoreURL]


def storage_options() -> dict[str, Any]:
    """The fsspec options of every store URL: the JSON object in ``FACTORY_STORAGE_OPTIONS`` (default none)."""
    text = os.environ.get(STORAGE_OPTIONS_ENV, "").strip()
    if not text:
        return {}
    try:
        opts = json.loads(text)
    except ValueError as exc:
        raise StoreError(f"{STORAGE_OPTIONS_ENV} is not valid JSON ({exc})") from None
    if not isinstance(opts, dict):
        raise StoreError(f"{STORAGE_OPTIONS_ENV} must be a JSON object of fsspec options, not {type(opts).__name__}")
    return opts


@functools.lru_cache(maxsize=16)
def _filesystem(protocol: str, options_json: str):
    import fsspec

    options = json.loads(options_json)
    if protocol in ("s3", "s3a"):  # an unreachable endpoint is named within seconds, not after a minute of retries
        options.setdefault("config_kwargs", {"connect_timeout": 3, "read_timeout": 30,
                                             "retries": {"max_attempts": 2, "mode": "standard"}})
    return fsspec.filesystem(protocol, **options)


def _known_protocol(name: str) -> bool:
    from fsspec.registry import known_implementations, registry

    return name in known_implementations or name in registry


def is_url(value: Any) -> bool:
    """``value`` names a store on object storage (a URL other than ``file://``)."""
    return isinstance(value, StoreURL) or (isinstance(value, str) and bool(_URL.match(value))
                                           and not value.lower().startswith("file://"))


def store_location(value: StoreLike) -> StoreLocation:
    """Where the store ``value`` lives: a :class:`StoreURL` for an object-storage URL, else the
    absolute local path (:func:`factory.outputs.user_path`; ``file://`` URLs are local paths).

    A URL that went through :class:`pathlib.Path` on its way here (``s3:/bucket/x``: pathlib
    folds the ``//``) is recognised when its first part is a known fsspec protocol."""
    if isinstance(value, StoreURL):
        return value
    if isinstance(value, PurePath):
        parts = value.parts
        if not value.is_absolute() and len(parts) > 1 and parts[0].endswith(":") and _known_protocol(parts[0][:-1]):
            value = f"{parts[0]}//{'/'.join(parts[1:])}"
        else:
            return user_path(value)
    text = os.fspath(value)
    m = _URL.match(text)
    if not m:
        return user_path(text)
    protocol, rest = m.group(1).lower(), m.group(2)
    if protocol == "file":
        return user_path(rest)
    rest = rest.rstrip("/")
    if not rest or rest.startswith("/") and protocol != "memory":
        raise StoreError(f"{text}: give a store URL as {protocol}://BUCKET/PATH")
    if not _known_protocol(protocol):
        raise StoreError(f"{text}: unknown storage protocol {protocol!r} (fsspec knows none of that name)")
    return StoreURL(f"{protocol}://{rest}")


def has_root(loc: StoreLocation) -> bool:
    """The store's root ``zarr.json`` is there."""
    return loc.has("zarr.json") if isinstance(loc, StoreURL) else (loc / "zarr.json").is_file()


def store_exists(loc: StoreLocation) -> bool:
    """Something is at ``loc``: a local path that exists (anything), or a store URL with its
    root ``zarr.json`` (objects without one are an interrupted creation: see :func:`publish`)."""
    return has_root(loc) if isinstance(loc, StoreURL) else loc.exists()


def disk_full(loc: StoreLocation, exc: OSError,
              hint: str = "free some space and rerun with --resume (the blocks written are kept)") -> StoreError | None:
    """The one-line error for a write that ran out of space (ENOSPC, EDQUOT) at ``loc``, naming
    the free space left; None for any other error."""
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    where = Path(loc) if not isinstance(loc, StoreURL) else None
    while where is not None and not where.exists() and where != where.parent:
        where = where.parent
    free = f"{shutil.disk_usage(where).free / 2**20:.1f} MiB free there" if where is not None else "the bucket is full"
    return StoreError(f"{loc}: no space left on the device ({free}); {hint}")


def check_metadata_files(loc: StoreLocation) -> None:
    """Refuse (StoreError) a local store whose ``zarr.json`` files (the group's and its arrays')
    are not regular files, or are too large or too deeply nested to be metadata: zarr would block
    on a FIFO and recurse without bound on hostile nesting."""
    if isinstance(loc, StoreURL):
        return
    files = [loc / "zarr.json", *(Path(e.path) / "zarr.json" for e in os.scandir(loc)
                                  if e.is_dir(follow_symlinks=False) and os.path.lexists(Path(e.path) / "zarr.json"))]
    for f in files:
        try:
            read_json_file(f)
        except JSONFileError as exc:
            raise StoreError(f"{loc}: {exc}") from None
        except OSError as exc:
            raise StoreError(f"{f}: unreadable ({exc.strerror or exc})") from None


def read_json(loc: StoreLocation, rel: str) -> dict | None:
    """The JSON object at ``rel`` inside the store (None when missing or not a JSON object)."""
    try:
        data = json.loads(loc.read_bytes(rel)) if isinstance(loc, StoreURL) else read_json_file(loc / rel)
    except (OSError, ValueError, StoreError):
        return None
    return data if isinstance(data, dict) else None


def zarr_store(loc: StoreLocation, read_only: bool = False):
    """What zarr opens for ``loc``: the local folder's path (as always), or an ``FsspecStore``."""
    return loc.zarr_store(read_only) if isinstance(loc, StoreURL) else str(loc)


def chunk_indices(loc: StoreLocation, name: str, ndim: int) -> set[int]:
    """Indices (along the sample axis) of the chunk files or objects present for array ``name``
    (the default Zarr v3 key encoding: ``name/c/<i>/0/...``, one chunk across other axes)."""
    tail = ["0"] * (ndim - 1)
    if isinstance(loc, StoreURL):
        want, start = "/".join(tail), f"{name}/c/"
        found = set()
        for rel in loc.listing(f"{name}/c"):
            head, _, rest = rel[len(start):].partition("/")
            if rel.startswith(start) and head.isdigit() and rest == want:
                found.add(int(head))
        return found
    root = loc / name / "c"
    try:
        names = [e.name for e in os.scandir(root) if e.name.isdigit()]
    except (FileNotFoundError, NotADirectoryError):
        return set()
    return {int(k) for k in names if root.joinpath(k, *tail).is_file()}


def check_new_store(loc: StoreLocation, *, overwrite: bool, what: str = "dataset store", recognise=None,
                    resumable: bool = False) -> None:
    """Refuse, before any work, to create a store at ``loc``: locally the rules of
    :func:`factory.outputs.check_replaceable`; on object storage an existing store (with
    ``overwrite`` too: there is no safe replace there)."""
    if not isinstance(loc, StoreURL):
        check_replaceable(loc, overwrite=overwrite, what=what, recognise=recognise or is_dataset_store,
                          resumable=resumable)
        return
    if not has_root(loc):
        return  # nothing there, or an interrupted creation (publish finishes it or refuses)
    if overwrite:
        raise OutputError(
            f"{loc} already exists and --overwrite is not available on object storage (no atomic replace: the old "
            "store would have to be deleted before the new one exists); write to a new URL, or delete the old "
            "store yourself first"
        )
    also = " or --resume to continue it" if resumable else ""
    raise OutputError(f"{loc} already exists; write to a new URL{also}")


def publish(staged: Path, loc: StoreURL) -> None:
    """Upload the complete store built in the local folder ``staged`` to ``loc``, the root
    ``zarr.json`` last (the store exists for readers only from then on).

    Objects already under ``loc`` are the upload of an interrupted creation of this same store
    only if each is byte-identical to the staged file of its name; then the rest is uploaded.
    Anything else there is refused and left untouched."""
    files = {p.relative_to(staged).as_posix(): p for p in sorted(staged.rglob("*")) if p.is_file()}
    present = loc.listing()
    if "zarr.json" in present:
        raise OutputError(f"{loc} already exists (created meanwhile by another process); write to a new URL")
    foreign = [k for k in present if k not in files or loc.read_bytes(k) != files[k].read_bytes()]
    if foreign:
        raise OutputError(
            f"{loc} holds {len(present)} objects but no dataset store (no zarr.json), and they are not an interrupted "
            f"creation of this store (e.g. {foreign[0]!r}); refusing to write there: choose another URL or delete them"
        )
    loc.upload({k: p for k, p in files.items() if k != "zarr.json" and k not in present})
    loc.upload({"zarr.json": files["zarr.json"]})


def check_disjoint_stores(out: StoreLike, inputs: list[StoreLike]) -> None:
    """Refuse an output store that is, contains, or lies inside any input (local paths: the
    rules of :func:`factory.outputs.check_disjoint`; URLs: by their keys)."""
    o = store_location(out)
    locs = [store_location(s) for s in inputs]
    if not isinstance(o, StoreURL):
        check_disjoint(o, [s for s in locs if not isinstance(s, StoreURL)])
        return
    for s in locs:
        if not isinstance(s, StoreURL) or s.protocol != o.protocol:
            continue
        if o == s:
            raise OutputError(f"output {o} is the input {s}; choose another --out")
        if o.startswith(f"{s}/"):
            raise OutputError(f"output {o} lies inside the input {s}; choose another --out")
        if s.startswith(f"{o}/"):
            raise OutputError(f"output {o} contains the input {s}; choose another --out")


def location_text(loc: StoreLocation) -> str:
    """How lineage records a store: the URL, or the resolved local path."""
    return str(loc) if isinstance(loc, StoreURL) else os.fspath(Path(loc).resolve())
