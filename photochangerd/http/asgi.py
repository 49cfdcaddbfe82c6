"""ASGI wrapper fixing connection closing for quart-trio on Hypercorn (pitfalls.md #1).

Hypercorn runs its end-of-response / close sequence *inside* the application's final ``send()``.
That sequence delivers ``http.disconnect`` to quart-trio, whose message task then cancels the
request nursery — cancelling the very ``send()`` that was closing the connection.  The socket
then stays ESTABLISHED after ``Connection: close``, after an early 401/413 while the client still
trickles, and past the keep-alive timeout; one slow client could hold a thousand descriptors.

Shielding each ``send`` lets the close sequence finish.  The shield is bounded so a client that
stops reading cannot pin a task forever.
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
        connection = (scope.get("state") or {}).get(CONNECTION_KEY)
        scope.setdefault("extensions", {})["photochanger.arrival"] = request_arrival(
            send, connection if isinstance(connection, ConnectionInfo) else None
        )
        budget = self.budget

        async def shielded_send(message: dict[str, Any]) -> None:
            with trio.CancelScope(shield=True), trio.move_on_after(budget):
                await send(message)

        await self.app(scope, receive, shielded_send)
