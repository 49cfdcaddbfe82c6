"""One process per data dir: an exclusive ``flock`` on ``<data_dir>/photochangerd.lock``.

The data dir holds the SQLite database, the keys and the upload spool.  Start-up recovery on
SQLite finalizes every unfinished job and removes abandoned spool files — right only when no
other process is using them — so a second daemon on the same data dir must not get that far.
The daemon takes the lock first, before the database is opened or anything is created or
recovered, and holds it until it exits; the file holds the holder's pid for the one-line error a
second start prints.  The kernel drops the lock with the process (``kill -9`` included): a file
left behind never blocks a restart.  Every dialect locks: on PostgreSQL several daemons share the
database, but each one has its own data dir.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from photochangerd.errors import StartupError

LOCK_FILE = "photochangerd.lock"


class DataDirInUse(StartupError):
    """Another process holds the data dir's lock; the message names the dir and its pid."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "another process"
        super().__init__(f"data dir {data_dir} is in use by {holder} (another photochangerd?)")
        self.data_dir = data_dir
        self.pid = pid


class DataDirUnusable(StartupError):
    """The data dir cannot be created or written (permissions, read-only file system...)."""

    def __init__(self, data_dir: Path, error: OSError) -> None:
        super().__init__(f"cannot use data dir {data_dir}: {error.strerror or error}")


def _holder_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None  # None: the holder has not written it yet


@contextmanager
def lock_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold ``data_dir`` exclusively for the ``with`` block, or raise :class:`DataDirInUse`."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DataDirUnusable(data_dir.absolute(), exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirInUse(data_dir.resolve(), _holder_pid(fd)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # still ours: nobody reads a pid that has gone
    finally:
        os.close(fd)  # releases the lock
