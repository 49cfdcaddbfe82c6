"""Lingering close for connections answered before their request body was read.

When the daemon answers early (a wrong password before the photo, an unknown slot, a photo over
the size limit), the client may still be sending megabytes.  Closing a TCP socket that has
unread data in its receive buffer makes the kernel send a reset, and a reset can reach the
client before it has read the answer — the booth would log "connection reset" instead of
"invalid password".  So, like nginx's ``lingering_close``, such a connection is half-closed
(our FIN goes out after the answer), then what the client still sends is read and discarded
until it closes its end, for at most :data:`LINGER_SECONDS` and :data:`LINGER_MAX_BYTES`;
only then is the descriptor closed.  Connections that read their whole request close at once,
and any connection whose client closed its end is closed as soon as that EOF is read.

Hypercorn's ``TCPServer`` owns the reading and closing; it gets a :class:`LingeringStream`
instead of the socket stream.  Its ``aclose()`` only half-closes and arms the linger deadline
(also on a read already in progress); Hypercorn's reader keeps reading — into a protocol that
discards it — until EOF or the deadline, and the connection task
(:func:`photochangerd.http.server._run_connection`) closes the descriptor when ``TCPServer``
returns.  See docs/http.md.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Protocol

import trio

LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 64 * 1024 * 1024


class LingerFlag(Protocol):
    """Set once the connection answered before reading its whole request body."""

    linger: bool


class LingeringStream:
    """A :class:`trio.SocketStream` whose close lingers when ``must_linger()`` says so."""

    def __init__(self, transport: trio.SocketStream, info: LingerFlag) -> None:
        self.transport = transport
        self.socket = transport.socket  # Hypercorn reads the peer and local addresses here
        self._info = info
        self._closing_at: float | None = None  # Trio time after which reads report EOF
        self._discarded = 0
        self._reading: trio.CancelScope | None = None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport.send_all(data)

    async def send_eof(self) -> None:
        await self.transport.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        with trio.CancelScope(deadline=self._closing_at or float("inf")) as scope:
            self._reading = scope
            try:
                data = bytes(await self.transport.receive_some(max_bytes))
            finally:
                self._reading = None
        if scope.cancelled_caught:
            return b""  # lingered long enough: report EOF, the descriptor gets closed
        if not data:
            # The client closed its end.  Hypercorn treats that as a disconnect too, but keeps
            # the descriptor (CLOSE_WAIT) until its keep-alive timer fires, up to 5 s later.
            await self.transport.aclose()
        elif self._closing_at is not None:
            self._discarded += len(data)
            if self._discarded > LINGER_MAX_BYTES:
                return b""
        return data

    async def aclose(self) -> None:
        if not self._info.linger:
            await self.transport.aclose()
            return
        if self._closing_at is not None:
            return
        self._closing_at = trio.current_time() + LINGER_SECONDS
        if self._reading is not None:
            self._reading.deadline = self._closing_at
        # Already gone, or a send in progress that will fail on its own: nothing to half-close.
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
            await self.transport.send_eof()
