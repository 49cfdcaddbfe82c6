"""A Trio test client that uploads a photo byte-for-byte like DSLR Remote Pro.

The booth program is not a browser: it sends exactly four headers (Host, Content-Type,
Content-Length, Expect: 100-continue), no User-Agent, a fixed boundary and a fixed set of
form fields. Using httpx would hide all of that, so the request is written by hand onto a
raw TCP stream and only the *response* is parsed (by h11).

Sending and reading run concurrently: a server may answer (401, 413, ...) before the body
is through, and a real client stops sending and shows that answer instead of dying on a
broken pipe.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import h11
import trio

from .images import make_jpeg

__all__ = [
    "CAPTURED_FIELDS",
    "DSLR_BOUNDARY",
    "DslrConnectionError",
    "DslrResponse",
    "build_dslr_body",
    "dslr_upload",
]

DSLR_BOUNDARY = "------------090306000104030805010400"

# Text fields of a captured upload, in the order they go on the wire. "hash" is a
# placeholder: build_dslr_body fills in the SHA-1 of the photo unless told otherwise.
CAPTURED_FIELDS: tuple[tuple[str, str], ...] = (
    ("time", "1758217512"),
    ("user_id", "Acer"),
    ("id", "CY04N068111304S2L_00000001."),
    ("profile", r"C:\Users\Acer\Documents\PhotoboothImages\setup_Serg.xml"),
    ("status", r"C:\Users\Acer\Documents\PhotoboothImages\screenSerg\preview.jpg"),
    ("hash", "7b6c683e1d3fd29c8701791c54e3c12a236f5a5b"),
    ("name", "DESKTOP-K968T3F"),
    ("model", "Windows"),
    ("version", "3.30.2"),
)


class DslrConnectionError(ConnectionError):
    """The server closed or reset the connection before a complete final response."""


@dataclass
class DslrResponse:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    got_continue: bool  # a "100 Continue" arrived before the final response
    elapsed: float  # connect -> end of final response, trio clock seconds
    server_closed: bool  # EOF/reset seen after the response (see check_close_within)
    bytes_sent: int  # body payload bytes fully written (excludes chunk framing)

    def json(self) -> Any:
        return json.loads(self.body)


def build_dslr_body(
    photo: bytes,
    *,
    password: str | None = "123456",
    filename: str = "IMG_0003.JPG",
    content_type: str = "image/jpeg",
    include_hash: bool = True,
    hash_value: str | None = None,
    extra_fields: Mapping[str, str] | None = None,
    omit: Iterable[str] = frozenset(),
    boundary: str = DSLR_BOUNDARY,
) -> tuple[bytes, str]:
    """Return ``(body, content_type_header)`` for one upload.

    Order: captured text fields, then ``password``, then the ``fileToUpload`` part.
    ``extra_fields`` replace captured values in place, new names go before password
    (an extra "password" is used as the password). ``omit`` drops parts by name,
    "password" and "fileToUpload" included; ``password=None`` also drops it.
    """
    fields = dict(CAPTURED_FIELDS)  # dicts keep insertion order = wire order
    fields["hash"] = hashlib.sha1(photo).hexdigest() if hash_value is None else hash_value
    extra = dict(extra_fields or {})
    password = extra.pop("password", password)
    fields.update(extra)
    if password is not None:
        fields["password"] = password
    skip = set(omit)
    if not include_hash:
        skip.add("hash")

    out = bytearray()
    for name, value in fields.items():
        if name not in skip:
            out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            out += value.encode() + b"\r\n"
    if "fileToUpload" not in skip:
        out += (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="fileToUpload"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        out += photo + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


@dataclass
class _Exchange:
    proceed: trio.Event = field(default_factory=trio.Event)  # 100, final answer or EOF
    answered: bool = False  # the final response's head has arrived
    got_continue: bool = False
    eof: bool = False
    bytes_sent: int = 0


async def dslr_upload(
    host: str,
    port: int,
    slot_id: str = "slot-001",
    photo: bytes | None = None,
    *,
    query: str | None = "session=42",
    password: str | None = "123456",
    expect_continue: bool = True,
    continue_timeout: float = 1.0,
    chunked: bool = False,
    chunk_size: int = 65536,
    send_rate_bytes_per_s: float | None = None,
    body: bytes | None = None,
    content_type: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
    host_header: str | None = None,
    path: str | None = None,
    close_after: float | None = None,
    check_close_within: float | None = None,
    timeout: float = 60.0,
) -> DslrResponse | None:
    """POST one photo like DSLR Remote Pro and return the final response.

    * ``photo`` defaults to ``make_jpeg()`` (2000x1333, ~0.8 MB); ``body`` and
      ``content_type`` replace the generated multipart body / its header.
    * ``headers`` replaces the whole header list (Host, Content-Type, Content-Length or
      Transfer-Encoding, Expect); ``extra_headers`` are appended after it.
    * When an ``Expect: 100-continue`` header is actually sent, the body waits for the
      100 up to ``continue_timeout`` seconds; a final response instead means no body.
    * ``chunked`` frames each ``chunk_size`` piece as one chunk; ``send_rate_bytes_per_s``
      trickles the body in ~50 ms pieces.
    * ``close_after``: drop the connection after that many seconds and return None.
      ``timeout`` (default 60 s) raises ``trio.TooSlowError`` so a hung server fails fast.
    * ``check_close_within``: wait that long after the response for the server to close;
      otherwise ``server_closed`` is True only if EOF was already seen while reading.
    """
    if body is None:
        body, generated_type = build_dslr_body(
            make_jpeg() if photo is None else photo, password=password
        )
        content_type = content_type or generated_type
    content_type = content_type or f"multipart/form-data; boundary={DSLR_BOUNDARY}"
    target = path or f"/ingest/{slot_id}"
    if query:
        target += "?" + query
    if headers is None:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        headers = [("Host", host_header or authority), ("Content-Type", content_type)]
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        else:
            headers.append(("Content-Length", str(len(body))))
        if expect_continue:
            headers.append(("Expect", "100-continue"))
    headers = [*headers, *extra_headers]
    head = f"POST {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    wait_continue = any(k.lower() == "expect" and v.lower() == "100-continue" for k, v in headers)

    start = trio.current_time()
    with (
        trio.fail_after(timeout),
        trio.move_on_after(math.inf if close_after is None else close_after),
    ):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            return await _exchange(
                stream,
                (head + "\r\n").encode(),
                body,
                start=start,
                wait_continue=wait_continue,
                continue_timeout=continue_timeout,
                chunked=chunked,
                piece=_piece_size(chunk_size, send_rate_bytes_per_s),
                rate=send_rate_bytes_per_s,
                check_close_within=check_close_within,
            )
    return None  # close_after fired: the connection was dropped on purpose


def _piece_size(chunk_size: int, rate: float | None) -> int:
    # Trickling sends ~20 small writes per second so the rate is smooth, not bursty.
    return chunk_size if rate is None else max(1, min(chunk_size, int(rate * 0.05)))


async def _exchange(
    stream: trio.SocketStream,
    head: bytes,
    body: bytes,
    *,
    start: float,
    wait_continue: bool,
    continue_timeout: float,
    chunked: bool,
    piece: int,
    rate: float | None,
    check_close_within: float | None,
) -> DslrResponse:
    # h11 is used only to parse; tell it a request went out so it expects a response.
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="POST", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    ex = _Exchange()

    await stream.send_all(head)
    failure: DslrConnectionError | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            _send_body, stream, body, ex, wait_continue, continue_timeout, chunked, piece, rate
        )
        try:
            response, payload = await _read_response(stream, conn, ex)
        except DslrConnectionError as exc:
            failure = exc  # raised after the nursery so callers don't get an ExceptionGroup
        # Response complete (or dead): stop a sender that may be blocked on a full socket.
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    elapsed = trio.current_time() - start

    closed = ex.eof
    if not closed and check_close_within is not None:
        with trio.move_on_after(check_close_within):
            try:
                while await stream.receive_some(65536):
                    pass  # stray bytes after the response; keep waiting for EOF
            except trio.BrokenResourceError:
                pass  # a reset counts as closed too
            closed = True

    return DslrResponse(
        status=response.status_code,
        reason=response.reason.decode("latin-1"),
        headers=_header_dict(response.headers),
        body=payload,
        got_continue=ex.got_continue,
        elapsed=elapsed,
        server_closed=closed,
        bytes_sent=ex.bytes_sent,
    )


async def _send_body(
    stream: trio.SocketStream,
    body: bytes,
    ex: _Exchange,
    wait_continue: bool,
    continue_timeout: float,
    chunked: bool,
    piece: int,
    rate: float | None,
) -> None:
    if wait_continue:
        # Like curl: wait a bounded time for 100, then send anyway (old servers never say it).
        with trio.move_on_after(continue_timeout):
            await ex.proceed.wait()
    view = memoryview(body)
    t0 = trio.current_time()
    try:
        for offset in range(0, len(body), piece):
            if ex.answered or ex.eof:
                return  # the server already decided; the rest of the body is pointless
            data = view[offset : offset + piece]
            await stream.send_all(b"%x\r\n" % len(data) + data + b"\r\n" if chunked else data)
            ex.bytes_sent += len(data)
            if rate is not None:
                await trio.sleep_until(t0 + ex.bytes_sent / rate)  # no drift over time
        if chunked and not ex.answered:
            await stream.send_all(b"0\r\n\r\n")
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # server hung up mid-body; the reader reports whatever it answered


async def _read_response(
    stream: trio.SocketStream, conn: h11.Connection, ex: _Exchange
) -> tuple[h11.Response, bytes]:
    response: h11.Response | None = None
    payload = bytearray()
    while True:
        try:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                ex.eof = not data
                if ex.eof:
                    ex.proceed.set()
                conn.receive_data(data)
                continue
        except (h11.RemoteProtocolError, trio.BrokenResourceError) as exc:
            raise DslrConnectionError(f"no complete response: {exc!r}") from exc
        if isinstance(event, h11.InformationalResponse):
            if event.status_code == 100:
                ex.got_continue = True
                ex.proceed.set()
        elif isinstance(event, h11.Response):
            response = event
            ex.answered = True
            ex.proceed.set()
        elif isinstance(event, h11.Data):
            payload += event.data
        elif isinstance(event, h11.EndOfMessage) and response is not None:
            return response, bytes(payload)
        elif isinstance(event, h11.ConnectionClosed):
            raise DslrConnectionError("server closed the connection without answering")


def _header_dict(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in raw:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out
