"""JSON read from files the project did not necessarily write (model cards, run records, store
metadata): bounded in size and nesting, and only from regular files.

A FIFO, a device or a socket in place of a ``zarr.json`` would block ``open``; a 100,000-deep
nesting makes :func:`json.loads` raise RecursionError; a 10 GB file would be read whole.  Each is
refused here with one :class:`JSONFileError` (a :class:`ValueError` too, so callers that treat
unreadable JSON as "not ours" keep doing so) before anything is parsed.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FactoryError

MAX_JSON_BYTES = 64 << 20  # a card or zarr.json is kilobytes; a digest table some MB
MAX_JSON_DEPTH = 64


class JSONFileError(FactoryError, ValueError):
    """A JSON file that is not a regular file, too large, too deeply nested or malformed."""


def check_regular(path: str | os.PathLike) -> None:
    """Refuse (JSONFileError) what is not a regular file, without opening it; a missing file
    is the caller's FileNotFoundError."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode) else "a socket"
                if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file")
        raise JSONFileError(f"{path}: {kind}, not a regular file; refusing to read it")


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


def json_too_deep(data: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a JSON text nests deeper than ``limit`` (brackets inside strings not counted), in C-speed passes."""
    data = data.encode() if isinstance(data, str) else bytes(data)
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    codes = np.frombuffer(_STRING.sub(b"", data), dtype=np.uint8)
    steps = np.isin(codes, (0x5B, 0x7B)).astype(np.int64) - np.isin(codes, (0x5D, 0x7D))
    return bool(steps.size) and int(np.cumsum(steps).max()) > limit


def check_depth(text: str | bytes, max_depth: int = MAX_JSON_DEPTH, *, where: str = "JSON") -> None:
    """Refuse (JSONFileError) JSON nested deeper than ``max_depth``."""
    if json_too_deep(text, max_depth):
        raise JSONFileError(f"{where}: nested more than {max_depth} levels deep")


def read_json(path: str | os.PathLike, *, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON value in the regular file ``path`` (at most ``max_bytes``, nested at most
    ``max_depth``).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    max_bytes, max_depth : int, optional
        Bounds checked before parsing.

    Returns
    -------
    Any
        What :func:`json.loads` gives.

    Raises
    ------
    JSONFileError
        Not a regular file, too large, too deep or not JSON.
    OSError
        The file cannot be read (missing, permissions).
    """
    path = Path(path)
    check_regular(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # replaced between the stat and the open
            raise JSONFileError(f"{path}: not a regular file; refusing to read it")
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise JSONFileError(f"{path}: larger than {max_bytes >> 20} MiB; not a metadata file")
    check_depth(raw, max_depth, where=str(path))
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise JSONFileError(f"{path}: not valid JSON ({type(exc).__name__})") from None
