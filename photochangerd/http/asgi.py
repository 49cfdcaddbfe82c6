"""ASGI wrapper fixing connection closing for quart-trio on Hypercorn (docs/http.md).

Hypercorn runs its end-of-response / close sequence *inside* the application's final ``send()``.
That sequence delivers ``http.disconnect`` to quart-trio, whose message task then cancels the
request nursery — cancelling the very ``send()`` that was closing the connection.  The socket
then stays ESTABLISHED after ``Connection: close``, after an early 401/413 while the client still
trickles, and past the keep-alive timeout; one slow client could hold a thousand descriptors.

Shielding each ``send`` lets the close sequence finish.  The shield is bounded so a client that
stops reading cannot pin a task forever.

Early answers (a 401/404/413/415 before the request body was read) need two more things.  That
same close sequence puts ``http.disconnect`` on the application's receive queue, which holds
``max_app_queue_size`` body chunks: if the client sent more than that before the answer, the
queue is full, nobody reads it, and both Hypercorn's reader and the final ``send()`` block until
the graceful-shutdown timeout — the connection stays open with megabytes unread (measured: 5 of
22 early answers; a SIGTERM then took 65 s).  So the final ``send()`` of an early answer drains
the queue while it runs.  And the answer says ``Connection: close`` and marks the connection
for a lingering close (:mod:`photochangerd.http.linger`).  See docs/http.md.
"""

from __future__ import annotations

import time
from typing import Any

import trio

from photochangerd.http.server import CONNECTION_KEY, ConnectionInfo

ASGIApp = Any
SEND_BUDGET_SECONDS = 60.0
MAX_START_DELAY = 5.0  # a larger gap between head and application start is not believed
PRECONNECT_GAP = 1.0  # connect → first request head; longer means a connection opened early


def request_arrival(send: Any, connection: ConnectionInfo | None = None) -> float:
    """When the request arrived, on Trio's clock.

    Hypercorn stamps each request's stream with ``start_time`` (``time.time()``) as it parses
    the head, and hands the application that stream's bound ``app_send``.  In a burst of 30
    uploads the application task may start tens of milliseconds later; the booth's deadline
    must not silently grow by that.  Anything unexpected (another server, a clock step) falls
    back to now.  The first request of a connection counts from the moment the connection was
    accepted (:mod:`photochangerd.http.server`) — unless its head came more than
    :data:`PRECONNECT_GAP` later: a client that opened the connection ahead of time gets its
    full deadline from the head.
    """
    now = trio.current_time()
    arrival = now
    started = getattr(getattr(send, "__self__", None), "start_time", None)
    if isinstance(started, float):
        waited = time.time() - started
        if 0.0 <= waited <= MAX_START_DELAY:
            arrival = now - waited
    if connection is not None:
        first = connection.requests == 0
        connection.requests += 1
        if first and 0.0 <= arrival - connection.accepted_at <= PRECONNECT_GAP:
            arrival = connection.accepted_at
    return arrival


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        name = name.lower()
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


class RequestBody:
    """Whether the request body has been received completely (as the application saw it)."""

    def __init__(self, receive: Any, headers: list[tuple[bytes, bytes]]) -> None:
        self._receive = receive
        self.complete = not _has_body(headers)

    async def receive(self) -> dict[str, Any]:
        message: dict[str, Any] = await self._receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            self.complete = True
        return message

    async def drain(self) -> None:
        """Read and drop body chunks until the body ends or the client is gone."""
        while not self.complete:
            await self.receive()


def _with_connection_close(message: dict[str, Any]) -> dict[str, Any]:
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
    return {**message, "headers": [*headers, (b"connection", b"close")]}


class ShieldedSend:
    def __init__(self, app: ASGIApp, budget: float = SEND_BUDGET_SECONDS) -> None:
        self.app = app
        self.budget = budget

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        # The moment the request arrived: the ingest deadline counts from here, not from when a
        # busy loop got round to starting the application's task.
        state = (scope.get("state") or {}).get(CONNECTION_KEY)
        connection = state if isinstance(state, ConnectionInfo) else None
        scope.setdefault("extensions", {})["photochanger.arrival"] = request_arrival(
            send, connection
        )
        budget = self.budget
        body = RequestBody(receive, scope.get("headers") or [])

        async def shielded_send(message: dict[str, Any]) -> None:
            early = not body.complete
            if early and message["type"] == "http.response.start":
                message = _with_connection_close(message)
                if connection is not None:
                    connection.linger = True
            last = message["type"] == "http.response.body" and not message.get("more_body")
            with trio.CancelScope(shield=True), trio.move_on_after(budget):
                if not (early and last):
                    await send(message)
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(body.drain)
                    await send(message)  # Hypercorn's close sequence runs in here
                    nursery.cancel_scope.cancel()

        await self.app(scope, body.receive, shielded_send)
