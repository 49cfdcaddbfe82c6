"""Files over HTTP: Quart's ``send_file`` with conditional and range requests as RFC 9110 says.

Quart's own range handling answers a suffix range (``bytes=-10``) with a 500, an unsatisfiable
one with a bare 416, and a malformed or multi-range header with a 416 where the RFC says to
ignore it; werkzeug's parser and the span arithmetic below do it right."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quart import Response, request, send_file
from werkzeug.datastructures import ContentRange
from werkzeug.http import parse_range_header
from werkzeug.sansio.http import is_resource_modified

from photochangerd.http.errors import ApiError
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
