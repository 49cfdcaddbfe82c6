"""Tests of the DSLR Remote Pro test client and the image helpers themselves.

The client is checked against a tiny h11 server that records every byte it receives and
when, so the wire format and the 100-continue / early-answer behaviour are verified
exactly rather than through another HTTP library.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import time
from dataclasses import dataclass, field
from functools import partial

import h11
import pytest
import trio
from PIL import Image
from werkzeug.formparser import parse_form_data
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from tests.support.dslr import (
    CAPTURED_FIELDS,
    DSLR_BOUNDARY,
    DslrConnectionError,
    build_dslr_body,
    dslr_upload,
)
from tests.support.images import (
    make_frame_png,
    make_jpeg,
    make_png,
    make_webp,
    png_bomb,
    truncated,
)

PHOTO = make_jpeg(320, 213)
FIELD_ORDER = [name for name, _ in CAPTURED_FIELDS] + ["password", "fileToUpload"]


# --------------------------------------------------------------------------- server


@dataclass
class Behaviour:
    send_continue: bool = True
    continue_delay: float = 0.0  # read (and time-stamp) for this long before the 100
    early_status: int | None = None  # answer before the whole body is read...
    early_after: int = 0  # ...once this many body bytes arrived (0: right after head)
    early_delay: float = 0.0  # wait (not reading) before the early answer
    drain_after_early: bool = True  # lingering close; False: stop reading, stay open
    close_after_response: bool = False
    hang: bool = False  # read forever, never answer
    hang_up: bool = False  # close right after the head, no answer


@dataclass
class Seen:
    raw: bytearray = field(default_factory=bytearray)
    head_len: int | None = None
    head_at: float | None = None
    first_body_at: float | None = None
    continue_at: float | None = None
    raw_len_at_continue: int | None = None
    request: h11.Request | None = None
    body: bytearray = field(default_factory=bytearray)
    eof: bool = False

    @property
    def head(self) -> bytes:
        assert self.head_len is not None
        return bytes(self.raw[: self.head_len])


class MiniServer:
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.seen: list[Seen] = []
        self.port = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        try:
            async with stream:
                await self._handle(stream)
        except trio.BrokenResourceError:
            pass  # client reset; what we recorded so far is the evidence

    async def _handle(self, stream: trio.SocketStream) -> None:
        b, seen = self.behaviour, Seen()
        self.seen.append(seen)
        conn = h11.Connection(h11.SERVER)

        async def pull() -> bool:
            data = await stream.receive_some(65536)
            now = trio.current_time()
            seen.eof = not data
            seen.raw += data
            if seen.head_len is None and (i := seen.raw.find(b"\r\n\r\n")) >= 0:
                seen.head_len, seen.head_at = i + 4, now
            if seen.head_len is not None and len(seen.raw) > seen.head_len:
                seen.first_body_at = seen.first_body_at or now
            conn.receive_data(data)
            return bool(data)

        async def drain(limit: float = 10.0) -> None:
            with trio.move_on_after(limit):
                while await pull():
                    pass

        async def answer(status: int, close: bool) -> None:
            payload = json.dumps({"received": len(seen.body)}).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
            if close:
                headers.append(("Connection", "close"))
            await stream.send_all(
                conn.send(h11.Response(status_code=status, headers=headers))
                + conn.send(h11.Data(data=payload))
                + conn.send(h11.EndOfMessage())
            )

        async def early(status: int) -> None:
            await trio.sleep(b.early_delay)
            await answer(status, close=True)
            if b.drain_after_early:
                await stream.send_eof()  # half-close: the client sees EOF, we keep reading
                await drain()
            else:
                await trio.sleep(10)  # stop reading but keep the socket open

        event = conn.next_event()
        while event is h11.NEED_DATA:
            if not await pull():
                return
            event = conn.next_event()
        assert isinstance(event, h11.Request)
        seen.request = event
        if b.hang_up:
            return
        if b.hang:
            await drain(limit=30)
            return
        if b.early_status is not None and b.early_after == 0:
            await early(b.early_status)
            return
        if b.send_continue and conn.they_are_waiting_for_100_continue:
            await drain(limit=b.continue_delay)  # catches body bytes sent too early
            seen.continue_at, seen.raw_len_at_continue = trio.current_time(), len(seen.raw)
            await stream.send_all(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                if not await pull():
                    return
            elif isinstance(event, h11.Data):
                seen.body += event.data
                if b.early_status is not None and len(seen.body) >= b.early_after:
                    await early(b.early_status)
                    return
            else:
                assert isinstance(event, h11.EndOfMessage)
                break
        await answer(200, close=b.close_after_response)
        if not b.close_after_response:
            await drain()  # keep-alive: wait for the client to hang up


@pytest.fixture
async def server(nursery: trio.Nursery) -> MiniServer:
    srv = MiniServer()
    listeners = await nursery.start(partial(trio.serve_tcp, srv.handle, 0, host="127.0.0.1"))
    srv.port = listeners[0].socket.getsockname()[1]
    return srv


def expected_head(port: int, body: bytes) -> bytes:
    return (
        "POST /ingest/slot-001?session=42 HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={DSLR_BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()


def decode_parts(body: bytes) -> list[tuple[str, str | None, bytes]]:
    """(name, filename, data) of each part, in wire order, via werkzeug's sans-IO decoder."""
    decoder = MultipartDecoder(DSLR_BOUNDARY.encode())
    decoder.receive_data(body)
    decoder.receive_data(None)
    parts: list[tuple[str, str | None, bytes]] = []
    while not isinstance(event := decoder.next_event(), Epilogue | NeedData):
        if isinstance(event, File):
            parts.append((event.name, event.filename, b""))
        elif isinstance(event, Field):
            parts.append((event.name, None, b""))
        elif isinstance(event, Data):
            name, filename, data = parts[-1]
            parts[-1] = (name, filename, data + event.data)
    return parts


# --------------------------------------------------------------------------- body


def test_body_matches_capture_layout() -> None:
    body, content_type = build_dslr_body(PHOTO)
    assert content_type == f"multipart/form-data; boundary={DSLR_BOUNDARY}"
    assert body.startswith(
        b"--------------090306000104030805010400\r\n"
        b'Content-Disposition: form-data; name="time"\r\n\r\n1758217512\r\n'
        b"--------------090306000104030805010400\r\n"
        b'Content-Disposition: form-data; name="user_id"\r\n\r\nAcer\r\n'
    )
    assert (
        b'Content-Disposition: form-data; name="fileToUpload"; filename="IMG_0003.JPG"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + PHOTO + b"\r\n"
        b"--------------090306000104030805010400--\r\n"
    ) in body
    assert body.endswith(b"--------------090306000104030805010400--\r\n")
    parts = decode_parts(body)
    assert [name for name, _, _ in parts] == FIELD_ORDER
    values = {name: data for name, _, data in parts}
    assert values["hash"] == hashlib.sha1(PHOTO).hexdigest().encode()
    assert values["profile"] == rb"C:\Users\Acer\Documents\PhotoboothImages\setup_Serg.xml"
    assert values["password"] == b"123456"
    assert parts[-1] == ("fileToUpload", "IMG_0003.JPG", PHOTO)


def test_body_reads_back_with_werkzeug_form_parser() -> None:
    body, content_type = build_dslr_body(PHOTO)
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    _, form, files = parse_form_data(environ)
    expected = dict(CAPTURED_FIELDS) | {
        "hash": hashlib.sha1(PHOTO).hexdigest(),
        "password": "123456",
    }
    assert form.to_dict() == expected
    upload = files["fileToUpload"]
    try:
        assert upload.filename == "IMG_0003.JPG"
        assert upload.mimetype == "image/jpeg"
        assert upload.read() == PHOTO
    finally:
        upload.close()  # werkzeug spools to a temp file; unclosed -> ResourceWarning -> error


def test_body_options() -> None:
    body, _ = build_dslr_body(
        PHOTO,
        password="secret",
        filename="x.png",
        content_type="image/png",
        hash_value="deadbeef",
        extra_fields={"user_id": "Booth2", "event": "wedding"},
        omit={"status"},
    )
    parts = decode_parts(body)
    names = [name for name, _, _ in parts]
    assert names == [
        *(n for n, _ in CAPTURED_FIELDS if n != "status"),
        "event",
        "password",
        "fileToUpload",
    ]
    values = {name: data for name, _, data in parts}
    assert values["user_id"] == b"Booth2"
    assert values["hash"] == b"deadbeef"
    assert values["password"] == b"secret"
    assert parts[-1][1] == "x.png"
    assert b"Content-Type: image/png\r\n" in body

    bare, _ = build_dslr_body(PHOTO, password=None, include_hash=False, omit={"fileToUpload"})
    assert [n for n, _, _ in decode_parts(bare)] == [n for n, _ in CAPTURED_FIELDS if n != "hash"]


# --------------------------------------------------------------------------- wire


async def test_exact_wire_bytes_and_continue_handshake(server: MiniServer) -> None:
    resp = await dslr_upload("127.0.0.1", server.port, photo=PHOTO)
    body, _ = build_dslr_body(PHOTO)
    assert resp is not None
    assert (resp.status, resp.reason) == (200, "")
    assert resp.got_continue
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {"received": len(body)}
    assert resp.bytes_sent == len(body)
    assert not resp.server_closed  # keep-alive server, and no close check asked for

    (seen,) = server.seen
    assert seen.head == expected_head(server.port, body)
    assert b"user-agent" not in seen.head.lower()
    assert bytes(seen.raw[seen.head_len :]) == body
    assert seen.raw_len_at_continue == seen.head_len  # nothing sent before the 100


async def test_body_waits_for_a_late_continue(server: MiniServer) -> None:
    server.behaviour.continue_delay = 0.3
    resp = await dslr_upload("127.0.0.1", server.port, photo=PHOTO, continue_timeout=5.0)
    assert resp is not None and resp.status == 200 and resp.got_continue
    (seen,) = server.seen
    assert seen.raw_len_at_continue == seen.head_len
    assert seen.first_body_at is not None and seen.continue_at is not None
    assert seen.first_body_at >= seen.continue_at
    assert 0.3 <= resp.elapsed < 3.0


async def test_body_sent_after_continue_timeout(server: MiniServer) -> None:
    server.behaviour.send_continue = False
    resp = await dslr_upload("127.0.0.1", server.port, photo=PHOTO, continue_timeout=0.3)
    assert resp is not None and resp.status == 200 and not resp.got_continue
    (seen,) = server.seen
    assert seen.first_body_at is not None and seen.head_at is not None
    assert seen.first_body_at - seen.head_at >= 0.25  # slack for clock granularity
    assert bytes(seen.body) == build_dslr_body(PHOTO)[0]


async def test_without_expect_the_body_follows_at_once(server: MiniServer) -> None:
    server.behaviour.send_continue = False
    resp = await dslr_upload(
        "127.0.0.1", server.port, photo=PHOTO, expect_continue=False, continue_timeout=5.0
    )
    assert resp is not None and resp.status == 200
    (seen,) = server.seen
    assert b"expect" not in seen.head.lower()
    assert resp.elapsed < 2.0


async def test_chunked_framing(server: MiniServer) -> None:
    resp = await dslr_upload("127.0.0.1", server.port, photo=PHOTO, chunked=True, chunk_size=4096)
    body, _ = build_dslr_body(PHOTO)
    assert resp is not None and resp.status == 200
    (seen,) = server.seen
    assert b"Transfer-Encoding: chunked\r\n" in seen.head
    assert b"content-length" not in seen.head.lower()
    wire, sizes, rebuilt = bytes(seen.raw[seen.head_len :]), [], bytearray()
    while True:
        line, wire = wire.split(b"\r\n", 1)
        size = int(line, 16)
        sizes.append(size)
        rebuilt += wire[:size]
        assert wire[size : size + 2] == b"\r\n"
        wire = wire[size + 2 :]
        if size == 0:
            break
    assert wire == b""
    assert bytes(rebuilt) == body == bytes(seen.body)
    assert sizes[-1] == 0 and max(sizes) == 4096 and all(s > 0 for s in sizes[:-1])


async def test_trickle_rate(server: MiniServer) -> None:
    payload = bytes(100_000)
    resp = await dslr_upload(
        "127.0.0.1",
        server.port,
        body=payload,
        content_type="application/octet-stream",
        send_rate_bytes_per_s=200_000,
    )
    assert resp is not None and resp.json() == {"received": len(payload)}
    assert 0.45 <= resp.elapsed < 3.0


async def test_final_answer_instead_of_continue_means_no_body(server: MiniServer) -> None:
    server.behaviour.early_status = 413
    resp = await dslr_upload("127.0.0.1", server.port, photo=PHOTO, check_close_within=2.0)
    assert resp is not None
    assert resp.status == 413 and not resp.got_continue
    assert resp.bytes_sent == 0
    assert resp.server_closed  # the server half-closed after answering
    (seen,) = server.seen
    with trio.fail_after(2):
        while not seen.eof:  # the client closed; the server saw nothing but the head
            await trio.sleep(0.01)
    assert len(seen.raw) == seen.head_len


async def test_early_answer_mid_body_stops_the_upload(server: MiniServer) -> None:
    server.behaviour.early_status = 401
    server.behaviour.early_after = 64 * 1024
    payload = bytes(1_000_000)
    resp = await dslr_upload(
        "127.0.0.1",
        server.port,
        body=payload,
        expect_continue=False,
        send_rate_bytes_per_s=1_000_000,
    )
    assert resp is not None and resp.status == 401
    assert resp.bytes_sent < len(payload) // 2
    assert resp.elapsed < 0.8


async def test_early_answer_while_server_stops_reading(server: MiniServer) -> None:
    # The body is far larger than the socket buffers and the server answers only once
    # they are full, so the sender is blocked in send_all; the answer must still be read
    # and the blocked send abandoned.
    server.behaviour.early_status = 401
    server.behaviour.early_delay = 0.5
    server.behaviour.drain_after_early = False
    payload = bytes(64 << 20)
    resp = await dslr_upload(
        "127.0.0.1", server.port, body=payload, expect_continue=False, timeout=10
    )
    assert resp is not None and resp.status == 401
    assert resp.bytes_sent < len(payload)
    assert resp.elapsed < 3.0


async def test_close_after_drops_the_connection(server: MiniServer) -> None:
    server.behaviour.hang = True
    start = trio.current_time()
    resp = await dslr_upload("127.0.0.1", server.port, photo=PHOTO, close_after=0.3)
    assert resp is None
    assert 0.3 <= trio.current_time() - start < 2.0
    (seen,) = server.seen
    with trio.fail_after(2):
        while not seen.eof:
            await trio.sleep(0.01)


async def test_timeout_raises_instead_of_hanging(server: MiniServer) -> None:
    server.behaviour.hang = True
    with pytest.raises(trio.TooSlowError):
        await dslr_upload("127.0.0.1", server.port, photo=PHOTO, timeout=0.3)


async def test_hang_up_without_answer_raises(server: MiniServer) -> None:
    server.behaviour.hang_up = True
    with pytest.raises(DslrConnectionError):
        await dslr_upload("127.0.0.1", server.port, photo=PHOTO)


@pytest.mark.parametrize("close", [True, False])
async def test_server_closed_detection(server: MiniServer, close: bool) -> None:
    server.behaviour.close_after_response = close
    resp = await dslr_upload("127.0.0.1", server.port, photo=PHOTO, check_close_within=0.3)
    assert resp is not None and resp.status == 200
    assert resp.server_closed is close


async def test_path_query_and_header_overrides(server: MiniServer) -> None:
    resp = await dslr_upload(
        "127.0.0.1",
        server.port,
        photo=PHOTO,
        path="/api/ingest/slot-001",
        query=None,
        host_header="booth-server.local:8080",
        extra_headers=[("X-Test", "1")],
    )
    assert resp is not None and resp.status == 200
    head = server.seen[0].head
    assert head.startswith(
        b"POST /api/ingest/slot-001 HTTP/1.1\r\nHost: booth-server.local:8080\r\n"
    )
    assert head.endswith(b"Expect: 100-continue\r\nX-Test: 1\r\n\r\n")


# --------------------------------------------------------------------------- images


def test_make_jpeg_default_is_photo_sized_and_deterministic() -> None:
    data = make_jpeg()
    assert 500_000 <= len(data) <= 1_500_000
    with Image.open(io.BytesIO(data)) as img:
        assert (img.format, img.size, img.mode) == ("JPEG", (2000, 1333), "RGB")
        img.load()
    assert make_jpeg.__wrapped__(320, 213) == PHOTO  # same bytes without the cache
    assert make_jpeg(320, 213, seed=1) != PHOTO


def test_make_jpeg_target_bytes_and_orientation() -> None:
    data = make_jpeg(target_bytes=1_300_000)
    assert abs(len(data) - 1_300_000) <= 65_000
    with pytest.raises(ValueError, match="unreachable"):
        make_jpeg(320, 213, target_bytes=10_000_000)
    with Image.open(io.BytesIO(make_jpeg(64, 48, orientation=6))) as img:
        assert img.getexif()[0x0112] == 6


def test_png_webp_and_frame() -> None:
    with Image.open(io.BytesIO(make_png(120, 80))) as img:
        assert (img.format, img.size, img.mode) == ("PNG", (120, 80), "RGB")
    with Image.open(io.BytesIO(make_png(120, 80, alpha=True))) as img:
        assert img.mode == "RGBA"
    with Image.open(io.BytesIO(make_webp(120, 80))) as img:
        assert (img.format, img.size) == ("WEBP", (120, 80))
        img.load()
    with Image.open(io.BytesIO(make_frame_png(200, 100))) as img:
        assert (img.format, img.mode, img.size) == ("PNG", "RGBA", (200, 100))
        assert img.getpixel((0, 0)) == (200, 30, 90, 255)  # opaque border
        assert img.getpixel((100, 50)) == (0, 0, 0, 0)  # transparent centre


def test_truncated_fails_on_load() -> None:
    with Image.open(io.BytesIO(truncated(PHOTO))) as img:
        assert img.size == (320, 213)  # the header still parses
        with pytest.raises(OSError):
            img.load()


def test_png_bomb() -> None:
    start = time.perf_counter()
    data = png_bomb.__wrapped__(20000)
    assert time.perf_counter() - start < 2.0
    assert len(data) < 1_000_000
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (20000, 20000)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))
    # The same construction, small enough to decode, really is a valid all-black PNG.
    with Image.open(io.BytesIO(png_bomb(100))) as img:
        img.load()
        assert (img.size, img.mode, img.getextrema()) == ((100, 100), "1", (0, 0))
