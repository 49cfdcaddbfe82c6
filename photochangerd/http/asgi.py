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

from typing import Any

import trio

ASGIApp = Any
SEND_BUDGET_SECONDS = 60.0


class ShieldedSend:
    def __init__(self, app: ASGIApp, budget: float = SEND_BUDGET_SECONDS) -> None:
        self.app = app
        self.budget = budget

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        # The moment the request reached the application: the ingest deadline counts from here,
        # not from when a busy framework got round to calling the handler.
        scope.setdefault("extensions", {})["photochanger.arrival"] = trio.current_time()
        budget = self.budget

        async def shielded_send(message: dict[str, Any]) -> None:
            with trio.CancelScope(shield=True), trio.move_on_after(budget):
                await send(message)

        await self.app(scope, receive, shielded_send)
