"""Where results, thumbnails, templates and provider-media live: a local directory or a bucket.

Both backends are addressed by *keys* we make ourselves (``results/<job>.png``,
``thumbs/<job>.webp``, ``templates/<id>.png``, ``media/<id>.jpg``, ``inputs/<job>.jpg``; see
:func:`check_key`) and
answer to the same small interface (:class:`ObjectBackend`).  What a database row holds is the
backend's *reference* for the object: the local backend answers with the file's path
(exactly what rows held before there was a second backend, so old rows, backups and the orphan
scan keep working unchanged), the S3 backend with the key itself.  A reference of a key's shape
is therefore an object of the configured backend; anything else is a file on this host (also
job inputs under ``temp/`` with the local backend).  With a bucket, the photo of a job that waits
for a worker is the object ``inputs/<job>``: another host may claim that job
(:meth:`photochangerd.media.store.MediaStore.keep_input`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from photochangerd.errors import PhotoChangerError

KEY_RE = re.compile(r"(results|thumbs|templates|media|inputs)/[A-Za-z0-9_-]{1,64}\.[a-z0-9]{2,5}")


class UnsafeKey(ValueError):
    """A key (or a stored reference) that is not one of ours: never sent anywhere."""


class ObjectStoreUnavailable(PhotoChangerError):
    """The object store did not answer (unreachable, timed out, refused our credentials)."""


def check_key(key: str) -> str:
    """``key`` if it is one of the shapes we make (no ``..``, no slashes beyond the first, no
    client text), else :class:`UnsafeKey`."""
    if KEY_RE.fullmatch(key) is None:
        raise UnsafeKey(f"not an object key of ours: {key[:80]!r}")
    return key


def is_local_reference(reference: str) -> bool:
    """Not a key: a file path on this host (the local backend, a job input, an old row).

    Paths are relative when the data dir is (the default ``photochanger-data``); a path always
    has a directory before ``results/`` and so never has a key's shape."""
    return KEY_RE.fullmatch(reference) is None


@dataclass(slots=True)
class ObjectStream:
    """An object being read: its size and validators, and its bytes in chunks (blocking reads,
    done in a thread by the caller).  :meth:`close` releases the connection."""

    size: int
    etag: str | None
    last_modified: float | None
    chunks: Iterator[bytes]
    close: Callable[[], None]


class ObjectBackend(Protocol):
    """The operations the daemon needs of a store (blocking: run them in a thread)."""

    name: str

    def put(self, key: str, data: bytes) -> str:
        """Store ``data`` durably and atomically under ``key``; returns the row's reference."""

    def get(self, reference: str) -> bytes | None:
        """The whole object, None when there is none."""

    def open(self, reference: str, span: tuple[int, int] | None = None) -> ObjectStream | None:
        """Stream the object (or bytes ``[start, stop)`` of it), None when there is none."""

    def stat(self, reference: str) -> ObjectStream | None:
        """The object's size and validators without its bytes (``chunks`` empty), None when
        there is none: what a HEAD, a revalidation (304) or a range needs first."""

    def delete(self, references: list[str]) -> None:
        """Remove objects that may or may not exist (idempotent)."""

    def reference(self, key: str) -> str:
        """What a row holds for ``key`` (without storing anything)."""


class LocalObjects:
    """Objects as files under the media root (the default): writes atomic and fsynced."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _file(self, reference: str) -> Path:
        """A row's reference as a file: a path as it is, a key under the root (a row written
        while the objects were in a bucket, then moved here)."""
        return Path(reference) if is_local_reference(reference) else self.path(reference)

    def path(self, key: str) -> Path:
        folder, _, name = check_key(key).partition("/")
        if folder == "media":  # provider-media has always lived beside the job inputs
            return self.root / "temp" / f"media-{name}"
        return self.root / folder / name

    def reference(self, key: str) -> str:
        return str(self.path(key))

    def put(self, key: str, data: bytes) -> str:
        from photochangerd.media.store import write_atomic

        target = self.path(key)
        write_atomic(target, data)
        return str(target)

    def get(self, reference: str) -> bytes | None:
        try:
            return self._file(reference).read_bytes()
        except FileNotFoundError:
            return None

    def open(self, reference: str, span: tuple[int, int] | None = None) -> ObjectStream | None:
        path = self._file(reference)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by ObjectStream.close
        except FileNotFoundError:
            return None
        status = os.fstat(handle.fileno())
        size = status.st_size
        start, stop = span if span is not None else (0, size)
        handle.seek(start)

        def chunks() -> Iterator[bytes]:
            left = stop - start
            while left > 0:
                chunk = handle.read(min(left, 256 * 1024))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

        return ObjectStream(stop - start, None, status.st_mtime, chunks(), handle.close)

    def stat(self, reference: str) -> ObjectStream | None:
        try:
            status = self._file(reference).stat()
        except FileNotFoundError:
            return None
        return ObjectStream(status.st_size, None, status.st_mtime, iter(()), lambda: None)

    def delete(self, references: list[str]) -> None:
        for reference in references:
            self._file(reference).unlink(missing_ok=True)
