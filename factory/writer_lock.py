"""One writer per output: an OS file lock beside a store or run folder, naming its holder.

``generate``, every processing step and ``train`` hold :func:`writer_lock` on their output for
the whole run; a second writer of the same path (another ``--overwrite``, a second ``--resume``)
is refused at once with one :class:`~factory.errors.OutputError` naming the holder's host, pid,
command and start time.  Readers never take it.  The lock is ``flock`` on a hidden file beside
the output (``.NAME.factory-lock``, so the output itself can be swapped whole): the kernel
releases it when the holder exits or is killed, so a stale lock cannot outlive its process.
Object-storage outputs (``s3://...``) are not locked (no ``flock`` there; their ``--overwrite``
is refused anyway).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError

LOCK_TAG = ".factory-lock"


def lock_path(out: Path) -> Path:
    """The lock file of the output ``out`` (a hidden sibling)."""
    return out.with_name(f".{out.name}{LOCK_TAG}")


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text()[:4096])
        return (f"pid {info['pid']} on {info['host']} since {info['started']} "
                f"({' '.join(info.get('command', []))[:120]})")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def writer_lock(out: str | os.PathLike, what: str = "output") -> Iterator[None]:
    """Hold the writer lock of ``out`` (a local path) for the ``with`` block.

    Raises
    ------
    OutputError
        Another process holds it (named in the message), or the lock file cannot be made.
    """
    out = Path(os.path.abspath(out))
    path = lock_path(out)
    made = [p for p in (out.parent, *out.parent.parents) if not p.exists()]  # removed again if left empty
    while True:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise OutputError(f"{out}: cannot make its writer lock {path.name} ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(f"{out} is being written by {_holder(path)}; wait for that run to end or stop it "
                              f"(one writer per {what})") from None
        try:  # the file may have been removed by its last holder between our open and flock
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": sys.argv,
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still held: a waiting opener sees another inode and retries
        os.close(fd)
        for folder in made:  # the folders made for the lock alone (a refused run leaves nothing)
            with contextlib.suppress(OSError):
                folder.rmdir()


def local_writer_lock(out, what: str = "output"):
    """:func:`writer_lock` for a local path; nothing for an object-storage URL (``s3://...``)."""
    if isinstance(out, (str, os.PathLike)) and "://" not in os.fspath(out):
        return writer_lock(out, what)
    return contextlib.nullcontext()
