"""Where outputs go, and the only way the project ever replaces something on disk.

Rules (docs/guarantees.md):

* every user path is made absolute once, at the library boundary (:func:`user_path`), so
  workers that run in another directory (Ray Train, Dask) write where the user meant;
* an output never overlaps an input (:func:`check_disjoint`): not the same folder, not inside
  it, not containing it;
* ``--overwrite`` replaces only a folder the project itself created, recognised by a marker a
  user's file cannot be confused with (a store's ``zarr.json`` carrying the factory attributes,
  a run folder's own manifest) and holding nothing else; a symlink, a file or a folder with
  other content is refused;
* nothing is deleted before its replacement is ready: :func:`staged_output` builds the new
  output in a hidden sibling folder and swaps it into place in one atomic rename (Linux
  ``renameat2(RENAME_EXCHANGE)`` when the old one exists), so a killed process leaves either
  the old output or the new one - never neither, never a half-created one;
* a folder of named results (reports, tables, figures: :class:`ResultFolder`) may hold the
  user's own files too: the project writes a name there only if it is free or the project
  wrote it there before (listed in the folder's ``.factory-files.json``), and a lone figure
  (:func:`check_file_output`) replaces only a file of its own kind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from pathlib import Path

from .errors import OutputError
from .jsonfile import read_json

#: top-level folders where no output may go (kernel interfaces, devices)
FORBIDDEN_ROOTS = tuple(Path(p) for p in ("/proc", "/sys", "/dev"))
TMP_TAG = ".factory-tmp-"


def user_path(path: str | os.PathLike) -> Path:
    """The absolute form of a path a user gave (``~`` expanded, symlinks kept as they are)."""
    p = Path(os.path.abspath(Path(path).expanduser()))
    for root in FORBIDDEN_ROOTS:
        if p == root or root in p.parents:
            raise OutputError(f"{p}: refusing to use a path under {root}")
    return p


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def check_disjoint(out: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse an output that is, contains, or lies inside any of ``inputs``."""
    o = _real(user_path(out))
    for src in inputs:
        s = _real(user_path(src))
        if o == s:
            raise OutputError(f"output {out} is the input {src}; choose another --out")
        if s in o.parents:
            raise OutputError(f"output {out} lies inside the input {src}; choose another --out")
        if o in s.parents:
            raise OutputError(f"output {out} contains the input {src}; choose another --out")


# -- recognising what the project created -------------------------------------------------
def _json(path: Path) -> dict | None:
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_zarr_node(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and (path / "zarr.json").is_file()


def zarr_kind(path: str | os.PathLike) -> str | None:
    """``"dataset"`` or ``"predictions"`` for a Zarr v3 group the project wrote (its ``zarr.json``
    carries the ``factory`` (dataset store) or ``stream`` (predictions store) attributes, and
    every entry beside it is a Zarr node: no user file, no foreign folder), else None."""
    path = Path(path)
    meta = _json(path / "zarr.json")
    if not meta or meta.get("node_type") != "group":
        return None
    attrs = meta.get("attributes") or {}
    factory = attrs.get("factory")
    kind = ("dataset" if isinstance(factory, dict) and "schema_version" in factory
            else "predictions" if isinstance(attrs.get("stream"), dict) else None)
    if kind is None or not all(e.name == "zarr.json" or _is_zarr_node(Path(e.path)) for e in os.scandir(path)):
        return None
    return kind


def is_factory_zarr(path: str | os.PathLike) -> bool:
    """A dataset store or a predictions store the project wrote (:func:`zarr_kind`)."""
    return zarr_kind(path) is not None


def is_dataset_store(path: str | os.PathLike) -> bool:
    """A dataset store the project wrote: what ``--overwrite`` of a dataset store may replace."""
    return zarr_kind(path) == "dataset"


def is_predictions_store(path: str | os.PathLike) -> bool:
    """A predictions store of ``factory predict stream``: what its ``--overwrite`` may replace."""
    return zarr_kind(path) == "predictions"


RecogniseFn = Callable[[Path], bool]


def check_replaceable(out: Path, *, overwrite: bool, what: str, recognise: RecogniseFn,
                      resumable: bool = False) -> None:
    """Refuse before any work: an existing ``out`` without ``overwrite``, or one that is not a
    ``what`` the project created (``recognise``), a symlink, or a file.  ``resumable``: the
    command also has ``--resume`` (said in the message)."""
    if out.is_symlink():
        raise OutputError(f"{out} is a symbolic link; refusing to write through it (give the real path)")
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputError(f"{out} exists and is a file, not a {what}; choose another path")
    if not overwrite:
        also = " or --resume to continue it" if resumable else ""
        raise OutputError(f"{out} already exists; pass --overwrite to replace it{also}")
    if not recognise(out):
        raise OutputError(
            f"{out} exists and is not a {what} made by factory (or holds other files); refusing to replace it"
        )


# -- atomic swap ---------------------------------------------------------------------------
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def _swap_into_place(tmp: Path, out: Path) -> None:
    if not out.exists() and not out.is_symlink():
        os.rename(tmp, out)  # atomic; a folder that appeared meanwhile makes this fail loudly
        return
    if _exchange(tmp, out):  # out now new, tmp holds the old one
        shutil.rmtree(tmp)
        return
    aside = out.with_name(f".{out.name}{TMP_TAG}old-{os.getpid()}-{secrets.token_hex(4)}")
    os.rename(out, aside)
    os.rename(tmp, out)
    shutil.rmtree(aside)


def _remove_stale(out: Path) -> None:
    """Temporary siblings of ``out`` (folders or files) left by a killed process of this project (by name)."""
    prefixes = (f".{out.name}{TMP_TAG}", f"..{out.name}{TMP_TAG}")  # and the staging of a replacement's staging
    with contextlib.suppress(OSError):
        for entry in os.scandir(out.parent):
            if entry.name.startswith(prefixes) and not entry.is_symlink():
                parts = entry.name.split("-")
                pid = parts[-2] if len(parts) >= 2 else ""
                if pid.isdigit() and _alive(int(pid)):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                elif entry.is_file(follow_symlinks=False):  # a staged file (export) of a killed run
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ensure_writable_parent(out: Path) -> None:
    """Create ``out``'s parent folder if needed and check it is writable (one ``OutputError`` line)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create its parent folder ({exc.strerror})") from None
    if not os.access(out.parent, os.W_OK):
        raise OutputError(f"{out.parent}: not writable")


def replacement_path(out: Path) -> Path:
    """Where a replacement of ``out`` is built and filled while ``out`` stays as it is: a hidden
    sibling named by :func:`staging_name` (temporaries of killed processes removed first)."""
    _remove_stale(out)
    return staging_name(out)


def publish_replacement(tmp: Path, out: Path, *, what: str, recognise: RecogniseFn) -> None:
    """Swap the complete replacement ``tmp`` into the place of ``out`` (checked again: still
    a ``what`` of the project's); the old ``out`` is removed only after the swap."""
    check_replaceable(out, overwrite=True, what=what, recognise=recognise)
    _swap_into_place(tmp, out)


def staging_name(out: Path) -> Path:
    """A hidden name beside ``out`` that no other process or run uses (TMP_TAG, pid, random)."""
    return out.with_name(f".{out.name}{TMP_TAG}{os.getpid()}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def staged_output(out: str | os.PathLike, *, overwrite: bool, what: str, recognise: RecogniseFn,
                  resumable: bool = False) -> Iterator[Path]:
    """Build a new output in a hidden sibling folder, then swap it into ``out``.

    Everything is checked before the caller builds anything; the old ``out`` (only ever one
    ``recognise`` accepts) is removed only after the new one is in place. A failure while
    building removes the temporary folder and leaves ``out`` as it was.
    """
    out = user_path(out)
    check_replaceable(out, overwrite=overwrite, what=what, recognise=recognise, resumable=resumable)
    ensure_writable_parent(out)
    _remove_stale(out)
    tmp = staging_name(out)
    try:
        yield tmp
        check_replaceable(out, overwrite=overwrite, what=what, recognise=recognise, resumable=resumable)  # still?
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# -- folders of named results, lone figures ---------------------------------------------------
RESULT_FILES = ".factory-files.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_not_link(path: Path) -> None:
    if path.is_symlink():
        raise OutputError(f"{path} is a symbolic link; refusing to write through it (give the real path)")


class ResultFolder:
    """A folder the project writes named results into (JSON, tables, arrays, figures) beside
    whatever else the user keeps there.  A name is written only if nothing is there yet or the
    project wrote it there before: the folder's ``.factory-files.json`` lists what it wrote.
    A user's file of the same name is refused (one ``OutputError``), never replaced; nothing
    is ever deleted.  ``names``: the files the caller will write, checked before any work."""

    def __init__(self, out: str | os.PathLike, names: Iterable[str] = ()):
        self.path = user_path(out)
        _check_not_link(self.path)
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"{self.path} exists and is a file, not a folder; choose another --out")
        listed = _json(self.path / RESULT_FILES) or {}
        files = listed.get("files") if listed.get("schema") == "factory.result-files/1" else None
        self._ours = {f for f in files if isinstance(f, str)} if isinstance(files, list) else set()
        self.claim(names)

    def claim(self, names: Iterable[str]) -> None:
        """Refuse now if any of ``names`` is taken by something the project did not write."""
        for name in names:
            target = self.path / name
            if name in self._ours and not target.is_symlink() and (target.is_file() or not target.exists()):
                continue
            if target.exists() or target.is_symlink():
                raise OutputError(
                    f"{target} exists and was not written by factory; refusing to replace it (choose another --out "
                    "or move the file)"
                )

    def wrote(self, name: str) -> bool:
        """Whether the project wrote ``name`` here before."""
        return name in self._ours

    def file(self, name: str) -> Path:
        """The path to write ``name`` to, recorded as the project's before it is written."""
        self.claim([name])
        ensure_writable_parent(self.path / RESULT_FILES)
        if name not in self._ours:
            self._ours.add(name)
            tmp = staging_name(self.path / RESULT_FILES)
            tmp.write_text(json.dumps({"schema": "factory.result-files/1", "files": sorted(self._ours)}, indent=1))
            os.replace(tmp, self.path / RESULT_FILES)
        return self.path / name

    def write(self, name: str, writer: Callable[[Path], Any]) -> Path:
        """Write ``name`` whole: ``writer(tmp)`` fills a hidden temporary beside it (of the same
        suffix), renamed onto ``name`` only once it returned; a kill leaves the old file."""
        path = self.file(name)
        tmp = path.with_name(f"{staging_name(path).name}{path.suffix}")
        try:
            writer(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def write_text(self, name: str, text: str) -> Path:
        return self.write(name, lambda tmp: tmp.write_text(text))

    def savez(self, name: str, **arrays: Any) -> Path:
        import numpy as np

        return self.write(name, lambda tmp: np.savez(tmp, **arrays))


#: the first bytes of each kind of lone file the project writes (what it may replace)
FILE_MAGIC = {"png": PNG_MAGIC, "npz": b"PK\x03\x04", "npy": b"\x93NUMPY", "zip": b"PK\x03\x04",
              "onnx": b"\x08"}  # onnx: ModelProto's first field, ir_version


def check_file_output(out: str | os.PathLike, kind: str = "png") -> Path:
    """The absolute path of a lone file to write (``kind``: a key of :data:`FILE_MAGIC`; numpy's own
    suffix added as ``np.save``/``np.savez`` would): an existing file is replaced only when it
    is of that kind (never a user's other file, a folder or a symlink)."""
    path = user_path(out)
    if kind in ("npz", "npy") and path.suffix != f".{kind}":
        path = path.with_name(f"{path.name}.{kind}")
    _check_not_link(path)
    if path.exists():
        magic = FILE_MAGIC[kind]
        try:
            with open(path, "rb") as f:
                same = f.read(len(magic)) == magic
        except OSError:  # a folder, or unreadable
            same = False
        if not same:
            raise OutputError(f"{path} exists and is not a {kind.upper()} file; refusing to replace it")
    return path

