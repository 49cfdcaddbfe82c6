"""The server really closes connections (quart-trio on Hypercorn did not): docs/http.md,
"Connections must close".

Each test opens a raw socket, provokes one of the three measured cases and waits for EOF from
the server with a bound.  Without :class:`photochangerd.http.asgi.ShieldedSend` each of them
stays ESTABLISHED.
"""

from __future__ import annotations

from pathlib import Path

import trio

from tests.conftest import INGEST_PASSWORD, make_config, start_daemon
from tests.support.dslr import build_dslr_body
from tests.support.images import make_jpeg


async def _read_until_eof(stream: trio.SocketStream, limit: float) -> tuple[bytes, bool]:
    """Read until the server closes; (data, closed_within_limit)."""
    data = b""
    with trio.move_on_after(limit):
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return data, True
            if not chunk:
                return data, True
            data += chunk
    return data, False


async def test_connection_close_request_is_closed(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon = await start_daemon(nursery, make_config(tmp_path))
    stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
    async with stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, closed = await _read_until_eof(stream, 3)
    assert data.startswith(b"HTTP/1.1 200")
    assert closed


async def test_http10_request_is_closed(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon = await start_daemon(nursery, make_config(tmp_path))
    stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
    async with stream:
        await stream.send_all(b"GET /healthz HTTP/1.0\r\n\r\n")
        data, closed = await _read_until_eof(stream, 3)
    assert data.startswith(b"HTTP/1.1 200") and closed


async def test_idle_keep_alive_is_closed_after_timeout(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    daemon = await start_daemon(nursery, make_config(tmp_path, keep_alive_timeout_seconds=1.0))
    stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
    async with stream:
        await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        started = trio.current_time()
        data, closed = await _read_until_eof(stream, 4)
        waited = trio.current_time() - started
    assert data.startswith(b"HTTP/1.1 200")
    assert closed
    assert 0.9 <= waited <= 2.5, waited


async def test_early_401_while_client_trickles_is_closed(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    daemon = await start_daemon(nursery, make_config(tmp_path))
    body, ctype = build_dslr_body(make_jpeg(1200, 800), password="wrong-password")
    head = (
        f"POST /ingest/slot-001 HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    password_end = body.index(b'name="fileToUpload"')
    stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
    async with stream:
        await stream.send_all(head + body[:password_end])
        received = b""
        closed = False
        # Trickle the rest at ~100 bytes / 50 ms: a slow client must not pin the connection.
        with trio.move_on_after(5):
            position = password_end
            while True:
                with trio.move_on_after(0.05):
                    try:
                        chunk = await stream.receive_some(65536)
                    except trio.BrokenResourceError:
                        closed = True
                        break
                    if not chunk:
                        closed = True
                        break
                    received += chunk
                try:
                    await stream.send_all(body[position : position + 100])
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    closed = True
                    break
                position += 100
    assert received.startswith(b"HTTP/1.1 401"), received[:100]
    assert b"invalid_password" in received
    assert closed


async def test_daemon_keeps_serving_after_many_slow_clients(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Fifty clients that open a connection and send one byte a while must not starve uploads."""
    daemon = await start_daemon(nursery, make_config(tmp_path, keep_alive_timeout_seconds=1.0))
    streams = [await trio.open_tcp_stream("127.0.0.1", daemon.port) for _ in range(50)]
    try:
        for stream in streams:
            await stream.send_all(b"P")
        from tests.support.dslr import dslr_upload

        photo = make_jpeg(800, 600)
        response = await dslr_upload(
            "127.0.0.1", daemon.port, photo=photo, password=INGEST_PASSWORD, timeout=10
        )
        assert response is not None and response.status == 200 and response.body == photo
    finally:
        for stream in streams:
            await stream.aclose()
