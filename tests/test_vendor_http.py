"""Outbound HTTP guards (docs/stack-traps.md, "Outbound HTTP: httpx") and the slot settings
schema."""

from __future__ import annotations

import os
import ssl
from functools import partial
from pathlib import Path
from typing import cast

import httpcore
import httpx
import pytest
import trio

from photochangerd.providers.vendor_http import (
    VENDOR_READ_BYTES,
    ResponseTooLarge,
    VendorUnreachable,
    _pools,
    close_expired_connections,
    make_client,
    parse_duration,
    send,
    sleep_if_time,
)
from photochangerd.providers.vendor_network import TLS_WRITE_BYTES, DrainingStream, VendorNetwork
from shared.slot_settings import SlotSettingsError, validate_slot
from tests.support.nginx import self_signed


def _client(handler: httpx.MockTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=handler)


# httpx does not aclose its own nested stream generators when a body is abandoned mid-way
# (ours, aiter_raw, is closed: see vendor_http.send); trio's finalizer then reports them.
HTTPX_ABANDONED_STREAM = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning"
)


@HTTPX_ABANDONED_STREAM
async def test_response_size_cap_is_enforced_while_streaming() -> None:
    async def endless() -> object:
        while True:
            yield b"x" * 65536

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=endless()))
    async with _client(transport) as client:
        with pytest.raises(ResponseTooLarge):
            await send(client, client.build_request("GET", "http://vendor/x"), 1_000_000)


async def test_declared_length_over_cap_is_refused_before_reading() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, headers={"content-length": "999999999"}, content=b"")
    )
    async with _client(transport) as client:
        with pytest.raises(ResponseTooLarge):
            await send(client, client.build_request("GET", "http://vendor/x"), 1000)


@HTTPX_ABANDONED_STREAM
async def test_a_dripping_vendor_is_bounded_by_the_cancel_scope() -> None:
    async def drip() -> object:
        for _ in range(1000):
            await trio.sleep(0.05)  # a byte every 50 ms: httpx's per-chunk timeouts never fire
            yield b"x"

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=drip()))
    async with _client(transport) as client:
        started = trio.current_time()
        with trio.move_on_after(0.5) as scope:
            await send(client, client.build_request("GET", "http://vendor/x"), 10_000)
    assert scope.cancelled_caught and trio.current_time() - started < 0.8


async def test_connection_errors_are_translated() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with _client(httpx.MockTransport(refuse)) as client:
        with pytest.raises(VendorUnreachable):
            await send(client, client.build_request("GET", "http://vendor/x"), 10)


async def test_a_big_answer_is_read_in_wide_reads_over_a_real_socket() -> None:
    """A Gemini answer is ~2 MB: read 64 KiB at a time (httpcore's default) it took 32 trips
    through the stream layers; the vendor clients read what has arrived, up to 256 KiB."""
    body = bytes(range(256)) * 4096  # 1 MiB
    sent = trio.Event()

    async def vendor(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)  # the request (a GET: its head is all there is)
        head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body)
        await stream.send_all(head + body)
        sent.set()
        await stream.receive_some(1)  # until the client closes

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, vendor, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        async with make_client() as client:
            request = client.build_request("GET", f"http://127.0.0.1:{port}/answer")
            response = await client.send(request, stream=True)
            with trio.move_on_after(0.2):  # the socket's buffers fill (they cannot hold 1 MiB)
                await sent.wait()
            chunks = [chunk async for chunk in response.aiter_raw()]
            await response.aclose()
        nursery.cancel_scope.cancel()
    assert b"".join(chunks) == body
    assert 65536 < max(len(chunk) for chunk in chunks) <= VENDOR_READ_BYTES  # never with 64 KiB


async def test_a_tls_answer_is_read_many_records_at_a_time(tmp_path: Path) -> None:
    """Over TLS each of trio's reads returns one record (16 KiB): a 2 MB Gemini answer took
    ~125 trips through the stream layers.  The vendor clients take every record already
    received in one read (providers/vendor_network.py) — and the bytes are the same."""
    cert, key = self_signed(tmp_path, "127.0.0.1")
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    body = os.urandom(1024 * 1024)
    sent = trio.Event()

    async def vendor(stream: trio.SSLStream[trio.SocketStream]) -> None:
        for _ in range(2):  # two requests on one keep-alive connection
            await stream.receive_some(65536)
            head = b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body)
            await stream.send_all(head + body)
            sent.set()
        await stream.receive_some(1)  # until the client closes

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_ssl_over_tcp, vendor, 0, served, host="127.0.0.1")
        )
        port = listeners[0].transport_listener.socket.getsockname()[1]
        trusted = ssl.create_default_context(cafile=str(cert))
        async with make_client(tls=trusted) as client:
            for _ in range(2):
                sent = trio.Event()
                request = client.build_request("GET", f"https://127.0.0.1:{port}/answer")
                response = await client.send(request, stream=True)
                with trio.move_on_after(0.2):  # the socket's buffers fill
                    await sent.wait()
                chunks = [chunk async for chunk in response.aiter_raw()]
                await response.aclose()
                assert b"".join(chunks) == body
                assert max(len(chunk) for chunk in chunks) > 16384  # more than one record
                assert response.extensions["network_stream"].get_extra_info("ssl_object")
        nursery.cancel_scope.cancel()


class _TLSObject:
    def __init__(self, records: list[bytes], end: ssl.SSLError) -> None:
        self.records, self.end = records, end

    def read(self, size: int) -> bytes:
        if not self.records:
            raise self.end
        return self.records.pop(0)


class _Connection(httpcore.AsyncNetworkStream):
    def __init__(self, tls: _TLSObject) -> None:
        self.tls, self.reads = tls, 0

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.reads += 1
        return b"first;"

    def get_extra_info(self, info: str) -> object:
        return self.tls if info == "ssl_object" else None


class _Writes(_Connection):
    def __init__(self, tls: _TLSObject | None) -> None:
        super().__init__(cast(_TLSObject, tls))
        self.written: list[int] = []

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.written.append(len(buffer))


@pytest.mark.parametrize("tls", [True, False])
async def test_big_writes_go_into_a_tls_connection_in_pieces(tls: bool) -> None:
    """OpenSSL keeps a connection's outgoing buffer at the largest write sealed into it: a
    1 MiB buffer per open vendor connection is ~30 MiB for thirty of them."""
    inner = _Writes(_TLSObject([], ssl.SSLWantReadError()) if tls else None)
    await DrainingStream(inner).write(b"x" * (TLS_WRITE_BYTES * 4 + 5))
    pieces = [TLS_WRITE_BYTES] * 4 + [5]
    assert inner.written == (pieces if tls else [sum(pieces)])


async def test_draining_stops_where_no_whole_record_is_left() -> None:
    inner = _Connection(_TLSObject([b"second;", b"third;"], ssl.SSLWantReadError()))
    stream = DrainingStream(inner)
    assert await stream.read(65536) == b"first;second;third;"
    assert await stream.read(65536) == b"first;"  # trio's read again: it waits for more
    assert inner.reads == 2


async def test_a_damaged_record_met_while_draining_fails_the_next_read() -> None:
    """Left to trio, OpenSSL would report an EOF after a fatal error, and httpcore's
    https_compatible stream would make that a clean end: an answer that ends with its
    connection would pass truncated.  What came before is kept; the next read fails."""
    inner = _Connection(_TLSObject([b"second;"], ssl.SSLError("bad record mac")))
    stream = DrainingStream(inner)
    assert await stream.read(65536) == b"first;second;"
    with pytest.raises(httpcore.ReadError, match="bad record mac"):
        await stream.read(65536)
    assert inner.reads == 1


async def test_proxies_from_the_environment_still_apply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """httpx drops the environment's proxies when it is handed a transport: the vendor
    clients keep httpx's own transports (and mounts) and only change their pools' network."""
    seen: list[bytes] = []

    async def proxy(stream: trio.SocketStream) -> None:
        seen.append(await stream.receive_some(65536))
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await stream.receive_some(1)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, proxy, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with make_client() as client:
            pools = [getattr(t, "_pool", None) for t in client._mounts.values()]
            assert any(isinstance(p, httpcore.AsyncHTTPProxy) for p in pools)
            assert all(isinstance(p._network_backend, VendorNetwork) for p in pools if p)
            answer = await client.get("http://vendor.invalid/answer")
        nursery.cancel_scope.cancel()
    assert answer.status_code == 200 and answer.content == b"ok"
    assert seen[0].startswith(b"GET http://vendor.invalid/answer HTTP/1.1")


async def test_thirty_calls_at_once_keep_their_connections_for_the_next_thirty() -> None:
    """Thirty workers calling a vendor together must not turn its connections over: each new
    one is a TLS handshake, and with 16 kept alive thirty booths reached 593 MiB (README)."""
    accepted = 0
    arrived = 0
    everyone = trio.Event()

    async def vendor(stream: trio.SocketStream) -> None:
        nonlocal accepted, arrived
        accepted += 1
        while await stream.receive_some(65536):
            arrived += 1
            if arrived % 30 == 0:
                everyone.set()
            await everyone.wait()  # answer once all thirty of a round are in
            await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, vendor, 0, host="127.0.0.1"))
        url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/answer"
        async with make_client() as client:
            for _ in range(2):
                everyone = trio.Event()
                # Fewer than 30 connections would wait forever: fail instead.
                with trio.fail_after(10):
                    async with trio.open_nursery() as calls:
                        for _ in range(30):
                            calls.start_soon(client.get, url)
        nursery.cancel_scope.cancel()
    assert arrived == 60 and accepted == 30


async def test_idle_connections_are_let_go_of_without_waiting_for_the_next_request() -> None:
    """httpcore tidies its pool only when a request starts or ends: a connection the vendor
    hung up on stayed open, with its buffers, until the next photo.  The sweep lets go of it
    and keeps the ones still good for the next call."""
    hang_up, hung_up = trio.Event(), trio.Event()

    async def vendor(stream: trio.SocketStream) -> None:
        request = await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        if request.startswith(b"GET /bye "):
            await hang_up.wait()  # once the client has put the connection back in its pool
            await stream.aclose()
            hung_up.set()
            return
        await stream.receive_some(1)  # keeps the connection until the client closes it

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, vendor, 0, host="127.0.0.1"))
        url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        async with make_client() as staying, make_client() as leaving:
            assert (await staying.get(f"{url}/stay")).text == "ok"
            assert (await leaving.get(f"{url}/bye")).text == "ok"
            [kept], [gone] = (_pools(staying)[0].connections, _pools(leaving)[0].connections)
            hang_up.set()
            await hung_up.wait()
            async with trio.open_nursery() as sweeping:
                sweeping.start_soon(close_expired_connections, [staying, leaving], 0.02)
                with trio.fail_after(2):
                    while _pools(leaving)[0].connections:
                        await trio.sleep(0.02)
                await trio.sleep(0.1)  # a few more sweeps
                sweeping.cancel_scope.cancel()
            assert gone.is_closed()
            assert _pools(staying)[0].connections == [kept] and kept.is_idle()
        nursery.cancel_scope.cancel()


async def test_retry_sleeps_only_when_they_fit_the_deadline() -> None:
    with trio.move_on_after(1.0):
        assert not await sleep_if_time(2.0)
        assert await sleep_if_time(0.01, reserve=0.1)


def test_parse_duration() -> None:
    assert parse_duration("42s") == 42 and parse_duration("1.5s") == 1.5
    assert parse_duration("7") == 7 and parse_duration("soon") is None
    assert parse_duration(None) is None and parse_duration("-1") is None


@pytest.mark.parametrize(
    ("provider", "operation", "settings", "field"),
    [
        ("gemini", "edit", {}, "settings.prompt"),
        ("gemini", "edit", {"prompt": "x", "image_size": "2K"}, "settings.image_size"),
        ("gemini", "edit", {"prompt": "x", "aspect_ratio": "7:5"}, "settings.aspect_ratio"),
        ("turbotext", "image2image", {"prompt": "x", "strength": 81}, "settings.strength"),
        (
            "turbotext",
            "image2image",
            {"prompt": "x", "negative_prompt": "w " * 81},
            "settings.negative_prompt",
        ),
        ("openai", "edit", {"prompt": "x", "quality": "ultra"}, "settings.quality"),
        ("local", "passthrough", {"colour": "red"}, "settings.colour"),
        ("local", "blur", {}, "operation"),
        ("dalle", "edit", {}, "provider"),
    ],
)
def test_slot_settings_errors_name_the_field(
    provider: str, operation: str, settings: dict[str, object], field: str
) -> None:
    with pytest.raises(SlotSettingsError) as caught:
        validate_slot(provider, operation, settings)
    assert field in caught.value.errors


def test_slot_settings_defaults_and_template_roles() -> None:
    parsed = validate_slot("turbotext", "image2image", {"prompt": "x"})
    assert parsed.model_dump()["strength"] == 40 and parsed.output_format == "jpeg"
    with pytest.raises(SlotSettingsError) as caught:
        validate_slot("turbotext", "face_swap", {}, template_roles=["style"])
    assert "template_media" in caught.value.errors
    validate_slot("turbotext", "face_swap", {}, template_roles=["face"])


async def test_a_failing_sweep_is_logged_and_the_next_one_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Housekeeping on httpx/httpcore private names: if a release breaks it at run time, the
    daemon must go on serving (the sweep runs in the providers' nursery for its whole life)."""
    from photochangerd.providers import vendor_http

    sweeps = 0

    def broken(client: httpx.AsyncClient) -> list[httpcore.AsyncConnectionPool]:
        nonlocal sweeps
        sweeps += 1
        raise AttributeError("_pool")

    async with make_client() as client, trio.open_nursery() as nursery:
        monkeypatch.setattr(vendor_http, "_pools", broken)
        nursery.start_soon(close_expired_connections, [client], 0.01)
        with trio.fail_after(2):
            while sweeps < 3:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert "vendor_http.sweep_failed" in caplog.text
