"""Files over HTTP: Quart's ``send_file`` with conditional and range requests as RFC 9110 says.

Quart's own range handling answers a suffix range (``bytes=-10``) with a 500, an unsatisfiable
one with a bare 416, and a malformed or multi-range header with a 416 where the RFC says to
ignore it; werkzeug's parser and the span arithmetic below do it right."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio
from quart import Response, request, send_file
from quart.wrappers.response import IterableBody
from werkzeug.datastructures import ContentRange
from werkzeug.http import parse_range_header
from werkzeug.sansio.http import is_resource_modified

from photochangerd.http.errors import ApiError
from photochangerd.media.objects import ObjectStream, is_local_reference
from photochangerd.media.store import MediaStore
from shared.errors import FailureReason

FILE_CHUNK = 256 * 1024


def _large_reads(response: Response) -> None:
    """quart-trio streams files in 8 KiB reads, each a thread hop: ~9 MB/s measured for a
    2 MB result.  Results are at most a few MB; 256 KiB reads serve them at disk speed."""
    body = response.response
    if hasattr(body, "buffer_size"):
        body.buffer_size = FILE_CHUNK


class RangeNotSatisfiable(ApiError):
    status = 416
    reason = FailureReason.INVALID_REQUEST


def _range_applies(response: Response) -> bool:
    """A ``Range`` header to honour: present, and ``If-Range`` (if any) still matches."""
    if "Range" not in request.headers:
        return False
    if "If-Range" not in request.headers:
        return True
    return not is_resource_modified(
        http_range=request.headers.get("Range"),
        http_if_range=request.headers.get("If-Range"),
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
        ignore_if_range=False,
    )


def _requested_span(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range ``[start, stop)`` asked for (RFC 9110 §14.1.2), None to send the whole
    file (no, malformed, non-byte or multi-range header); raises 416 when unsatisfiable."""
    requested = parse_range_header(header)
    if requested is None or requested.units != "bytes" or len(requested.ranges) != 1:
        return None
    start, stop = requested.ranges[0]
    if start < 0:  # suffix: the last -start bytes, the whole file when it is shorter
        start = max(size + start, 0)
    stop = size if stop is None else min(stop, size)
    if start >= stop:
        raise RangeNotSatisfiable(
            "requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"}
        )
    return start, stop


async def _serve_range(response: Response, size: int) -> None:
    """Turn the 200 for a file of ``size`` bytes into the 206 its ``Range`` header asks for."""
    if response.status_code != 200 or not _range_applies(response):
        return
    span = _requested_span(request.headers.get("Range"), size)
    if span is None:
        return
    start, stop = span
    await response.response.make_conditional(start, stop)  # type: ignore[attr-defined]
    response.content_length = stop - start
    response.content_range = ContentRange("bytes", start, stop, size)
    response.status_code = 206


async def send_file_ranged(path: Path, mimetype: str, **options: Any) -> Response:
    """``send_file`` answering ``If-None-Match``/``If-Modified-Since`` (304), ``If-Match``
    (412) and then ``Range``/``If-Range`` (206, 416) as RFC 9110 says.

    HEAD gets the GET's headers without the file being opened: quart-trio would open and read
    it for nothing, and a client that hangs up meanwhile (it has its answer) leaks the file."""
    response = await send_file(path, mimetype=mimetype, **options)
    await response.make_conditional(request)  # no complete length given: no range handling
    await _serve_range(response, int(response.content_length or 0))
    response.headers["Accept-Ranges"] = "bytes"
    if request.method == "HEAD":
        response.response = response.data_body_class(b"")
    else:
        _large_reads(response)
    return response


# Threads that may wait on the object store for a chunk (up to its read timeout) at once: a
# slow bucket and a wall of guests must not take every thread of Trio's default limiter, which
# the uploads' spools and the results' writes need.
STREAM_THREADS = trio.CapacityLimiter(8)
_CONDITIONAL = ("If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "Range")


async def _chunks(stream: ObjectStream) -> AsyncIterator[bytes]:
    """An object's bytes as they come from the store, one chunk in memory at a time."""
    try:
        while True:
            chunk = await trio.to_thread.run_sync(next, stream.chunks, None, limiter=STREAM_THREADS)
            if chunk is None:
                return
            yield chunk
    finally:
        stream.close()


class _ObjectBody(IterableBody):
    """An object's chunks as a response body that closes the object's stream when the body is
    done with, also when no chunk was ever asked for (an async generator that never started
    does not run its ``finally`` on ``aclose``)."""

    def __init__(self, stream: ObjectStream) -> None:
        super().__init__(_chunks(stream))
        self._stream = stream

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await super().__aexit__(*exc_info)
        finally:
            self._stream.close()


async def send_stored(
    store: MediaStore,
    reference: str,
    mimetype: str,
    *,
    cache_timeout: int | None = None,
    last_modified: datetime | None = None,
) -> Response | None:
    """Serve a stored object — a local file, or streamed from the bucket — with the same
    conditional and range handling as :func:`send_file_ranged`; None when it is not there.

    An object in a bucket is never read whole: its chunks go to the client as they arrive (a
    range asks the store for just those bytes)."""
    if is_local_reference(reference):
        path = Path(reference)
        if not await trio.to_thread.run_sync(path.is_file):
            return None
        return await send_file_ranged(
            path, mimetype, cache_timeout=cache_timeout, last_modified=last_modified
        )
    # A plain GET reads the object in one request; a HEAD, a revalidation or a range first
    # asks for its validators alone (HeadObject), so a 304 does not start a download.
    plain_get = request.method == "GET" and not any(h in request.headers for h in _CONDITIONAL)
    stream = await (store.open(reference) if plain_get else store.stat(reference))
    if stream is None:
        return None
    handed_over = False
    try:
        response = Response(b"", mimetype=mimetype)
        if stream.etag:
            response.headers["ETag"] = stream.etag
        if last_modified is None and stream.last_modified is not None:
            last_modified = datetime.fromtimestamp(stream.last_modified, UTC)
        if last_modified is not None:
            response.last_modified = last_modified
        if cache_timeout is not None:
            response.cache_control.public = True
            response.cache_control.max_age = cache_timeout
            response.expires = datetime.now(UTC) + timedelta(seconds=cache_timeout)
        await response.make_conditional(request)  # 304 / 412
        response.headers["Accept-Ranges"] = "bytes"
        if response.status_code != 200:
            return response
        size = stream.size
        span = (
            _requested_span(request.headers.get("Range"), size)
            if _range_applies(response)
            else None
        )
        if request.method == "HEAD":
            response.content_length = size if span is None else span[1] - span[0]
            return response
        if span is not None or not plain_get:
            stream.close()
            opened = await store.open(reference, span)
            if opened is None:
                return None
            stream = opened
        if span is not None:
            response.status_code = 206
            response.content_range = ContentRange("bytes", span[0], span[1], size)
        response.response = _ObjectBody(stream)
        response.content_length = stream.size
        handed_over = True
        return response
    finally:
        if not handed_over:
            stream.close()
