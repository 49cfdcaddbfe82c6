"""The booth's fast path: ``POST /ingest/{slot_id}`` served in front of Quart.

Every photo of an event goes through this route, and on a 2-vCPU box the daemon's event loop
is the bottleneck under load.  Quart's request/response plumbing (request context, a body
buffer with its own events, response conversion) measured ≈ 2 ms of CPU per 1 MB upload on
top of Hypercorn (an echo app: 7–8 ms Hypercorn alone, 9–10 ms through Quart).  So booth
uploads are read straight from the ASGI ``receive`` channel into the streaming multipart
reader and answered with two ``send`` calls.  ``GET /healthz`` is answered here too: a load
balancer's probe must not queue behind Quart's plumbing while 30 booths upload (its p95 under
that load is a bar of its own).  Everything else — the admin API, public links, readiness, and
the test run, which shares the pipeline — stays in Quart.

The contract is identical either way (the Quart routes stay registered for the OpenAPI
document and serve the same pipeline): the order of checks, status codes and JSON bodies of
:mod:`photochangerd.http.ingest`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import trio

from photochangerd.http.context import BoothHandles
from photochangerd.http.ingest import (
    Answer,
    ClientGone,
    IngestRequest,
    handle_ingest,
    json_answer,
)
from shared.errors import FailureReason, error_body

log = logging.getLogger("photochangerd.http")

ASGIApp = Any
_INGEST_PATH = re.compile(r"/(?:api/)?ingest/(?P<slot_id>.+)")
HEALTHY = Answer(200, b'{"status":"ok"}', "application/json", {})


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class _Body:
    """The request body as ASGI delivers it (an iterator object, not an async generator:
    the multipart reader stops early on errors, and Trio wants generators closed)."""

    def __init__(self, receive: Any) -> None:
        self._receive = receive
        self._done = False

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        message = await self._receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        self._done = not message.get("more_body", False)
        body: bytes = message.get("body", b"")
        return body


async def _send(send: Any, answer: Answer) -> None:
    headers = [
        (b"content-type", answer.content_type.encode("latin-1")),
        (b"content-length", str(len(answer.body)).encode()),
        *(
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in answer.headers.items()
        ),
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


class BoothRouter:
    """ASGI middleware: booth uploads to the pipeline directly, the rest to Quart."""

    def __init__(self, app: ASGIApp, context: BoothHandles | None) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        context = self.context
        match = None
        if scope["type"] == "http" and scope["method"] == "POST" and context is not None:
            match = _INGEST_PATH.fullmatch(scope["path"])
        elif scope["type"] == "http" and scope["path"] == "/healthz" and scope["method"] == "GET":
            await _send(send, HEALTHY)
            return
        if match is None or context is None:
            await self.app(scope, receive, send)
            return
        await self._ingest(context, match["slot_id"], scope, receive, send)

    async def _ingest(
        self, context: BoothHandles, slot_id: str, scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        raw_headers: list[tuple[bytes, bytes]] = scope.get("headers") or []
        length = _header(raw_headers, b"content-length")
        client = scope.get("client") or ("", 0)
        extensions: dict[str, Any] = scope.get("extensions") or {}
        request = IngestRequest(
            content_length=int(length) if length and length.isdigit() else None,
            content_type=_header(raw_headers, b"content-type") or "",
            remote_addr=str(client[0]),
            query_string=scope.get("query_string", b""),
            arrival=float(extensions.get("photochanger.arrival", trio.current_time())),
            body=_Body(receive),
        )
        try:
            answer = await handle_ingest(context, slot_id, request)
        except ClientGone:
            return  # nobody to answer; a job already submitted still runs to its end
        except Exception:
            log.exception("http.internal_error")
            answer = json_answer(
                500, error_body(FailureReason.INTERNAL_ERROR), {"Connection": "close"}
            )
        await _send(send, answer)
