"""The network under the vendor clients: httpcore's Trio backend, whose TLS reads take every
record that has already arrived instead of one.

trio's ``SSLStream.receive_some`` is one ``SSLObject.read``, and that returns at most one TLS
record (16 KiB) whatever size is asked for; each call then yields to the scheduler.  A Gemini
answer with a 1.5 MB image is ~2 MB of JSON: about 125 reads, each a trip through the
scheduler, h11, httpcore's and httpx's stream layers and our loop in ``vendor_http.send``.
Measured on this project's 2-vCPU machine (a 2 MB answer over loopback TLS, httpx on one core):
10-13 ms of CPU per answer, against 2.4-4 ms for the same answer in plain HTTP.  Under load
each of those trips also waits for the scheduler's next batch.

:class:`DrainingStream` reads as trio would, then takes the records already in the TLS
object's buffer with ``SSLObject.read`` until the read size is reached or a whole record is no
longer there (``SSLWantReadError``): what trio's next ``receive_some`` would have returned, one
trip instead of several.  The TLS object comes from httpcore's public
``get_extra_info("ssl_object")``; it is the same object trio reads from, used while no other
read runs on the connection (HTTP/1.1: one request at a time).  The peer's ``close_notify``
ends the draining, and trio's next read reports the end as it always does.  A damaged record or
a fatal alert ends it too, and the *next* read raises ``httpcore.ReadError``: left to trio,
OpenSSL would then report an EOF, which httpcore's ``https_compatible`` stream turns into a
clean end, and an answer that ends with its connection would pass truncated.  Bytes TLS wants
to send meanwhile (a key update's answer) stay in its outgoing buffer until trio's next
operation sends them.  Writes into a TLS connection go in pieces of at most
:data:`TLS_WRITE_BYTES` (the connection's outgoing buffer keeps the size of the largest).

Wired in by :func:`photochangerd.providers.vendor_http.make_client`, on every pool of the client
(direct, and through proxies from the environment).  Tests: ``tests/test_vendor_http.py``.
"""

# The methods keep httpcore's interface, timeout parameters included.
# ruff: noqa: ASYNC109

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any, cast

import httpcore

SocketOption = Any  # httpcore's SOCKET_OPTION: a tuple for socket.setsockopt

# The most written into a TLS connection at once.  trio seals a write whole into the
# connection's outgoing buffer, and OpenSSL keeps that buffer's size for the life of the
# connection; thirty open vendor connections each holding a 1 MiB buffer are ~30 MiB.  The
# photo's pieces over TLS are 256 KiB already (vendor_http.TLS_BASE64_CHUNK): this bounds
# whatever else a driver sends.
TLS_WRITE_BYTES = 256 * 1024


class DrainingStream(httpcore.AsyncNetworkStream):
    """A connection whose TLS reads also take the records already received."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._broken: ssl.SSLError | None = None  # met while draining: the next read raises it

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._broken is not None:
            raise httpcore.ReadError(f"TLS: {self._broken}") from self._broken
        data = await self._inner.read(max_bytes, timeout)
        tls = self._inner.get_extra_info("ssl_object")
        if not data or tls is None:  # plain TCP
            return data
        parts = [data]
        size = len(data)
        while size < max_bytes:
            try:
                more = tls.read(max_bytes - size)
            except ssl.SSLWantReadError:  # no whole record left: trio's next read waits for it
                break
            except ssl.SSLError as exc:
                # A damaged record or a fatal alert.  Not left to trio's next read: OpenSSL
                # then says "EOF", which httpcore's https_compatible stream turns into a clean
                # end of the answer.  What came before it is returned; the next read fails.
                self._broken = exc
                break
            if not more:  # the peer's close_notify: trio's next read says so too
                break
            parts.append(more)
            size += len(more)
        return data if len(parts) == 1 else b"".join(parts)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if len(buffer) <= TLS_WRITE_BYTES or self._inner.get_extra_info("ssl_object") is None:
            await self._inner.write(buffer, timeout)
            return
        # Slices of a memoryview, not copies: httpcore annotates ``bytes``, but its Trio stream
        # hands the buffer to trio's send_all, which takes any bytes-like object.
        view = memoryview(buffer)
        for start in range(0, len(view), TLS_WRITE_BYTES):
            piece = cast(bytes, view[start : start + TLS_WRITE_BYTES])
            await self._inner.write(piece, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return DrainingStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class VendorNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's Trio backend, its connections wrapped in :class:`DrainingStream`."""

    def __init__(self) -> None:
        self._trio = httpcore.TrioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._trio.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return DrainingStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._trio.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        return DrainingStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._trio.sleep(seconds)
