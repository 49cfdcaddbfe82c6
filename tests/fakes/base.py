"""Shared machinery of the fake vendor servers: serving, scripting and recording.

Each fake is a bare ASGI callable with a few lines of routing, served by Hypercorn on
127.0.0.1, port 0.  No web framework: quart-trio has connection-closing quirks under Hypercorn
(docs/http.md) and a fake must not have surprises of its own.

    async with trio.open_nursery() as nursery:
        url = await nursery.start(fake.serve)      # "http://127.0.0.1:PORT"
        ...                                        # point a driver at url
        nursery.cancel_scope.cancel()              # stops the server and any hung request

Scripting: ``fake.script("no_image", "success")`` queues outcomes, consumed one per scripted
request (requests rejected by validation or auth consume nothing); when the queue is empty
``fake.default`` applies.  An outcome is a name or an ``Outcome`` (``outcome(name, **params)``,
``slow(seconds)``); the string ``"slow(1.5)"`` means ``slow(1.5)``.

Recording: every request becomes a ``RecordedRequest`` in ``fake.requests`` the moment it
arrives (its body fields are filled once read), and is updated when the answer is sent or the
client goes away.  ``await fake.wait_until(predicate)`` waits for such a change; wrap it in
``trio.fail_after``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from tests.fakes.records import RecordedRequest, UploadedFile, parse_body

__all__ = [
    "Exchange",
    "FakeServer",
    "Outcome",
    "OutcomeLike",
    "RecordedRequest",
    "UploadedFile",
    "outcome",
    "slow",
]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


# --- outcomes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a fake does with one request.

    ``delay`` seconds pass before the answer (cut short if the client disconnects);
    ``params`` tune the outcome (e.g. ``retry_delay`` for Gemini's ``rate_limited``).  Every
    outcome also takes ``drip=<seconds>``: the body is then sent in 10 chunks spread over that
    time (httpx timeouts are per chunk: docs/stack-traps.md).
    """

    name: str
    delay: float = 0.0
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)


OutcomeLike = str | Outcome


def outcome(name: str, *, delay: float = 0.0, **params: Any) -> Outcome:
    """An outcome with parameters, e.g. ``outcome("rate_limited", retry_delay="42s")``."""
    return Outcome(name, delay, params)


def slow(seconds: float, then: OutcomeLike = "success") -> Outcome:
    """``then`` (default success) answered after ``seconds``."""
    base = _as_outcome(then)
    return Outcome(base.name, base.delay + seconds, base.params)


_SLOW = re.compile(r"slow\(\s*([0-9.]+)\s*\)")


def _as_outcome(value: OutcomeLike) -> Outcome:
    if isinstance(value, Outcome):
        return value
    match = _SLOW.fullmatch(value.strip())
    if match:
        return slow(float(match.group(1)))
    return Outcome(value)


# --- one request/response exchange --------------------------------------------------------


class Exchange:
    """The handler's view of one request: its record and ways to answer it."""

    def __init__(
        self, server: FakeServer, record: RecordedRequest, receive: Receive, send: Send
    ) -> None:
        self.server = server
        self.record = record
        self._receive = receive
        self._send = send

    def _mark_disconnected(self) -> None:
        if not self.record.disconnected:
            self.record.disconnected = True
            self.record.disconnected_at = trio.current_time()
            self.server.notify()

    async def _wait_disconnect(self) -> None:
        # After the body, the only message left for an HTTP request is http.disconnect.
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._mark_disconnected()
                return

    async def read_body(self) -> bytes | None:
        """The whole body, or None if the client went away first."""
        chunks: list[bytes] = []
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._mark_disconnected()
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` (inf: forever); False as soon as the client disconnects."""
        if self.record.disconnected:
            return False
        if seconds <= 0:
            return True
        with trio.move_on_after(seconds):
            await self._wait_disconnect()
            return False
        return True

    async def hang(self) -> None:
        """Never answer; return when the client disconnects (recorded)."""
        await self.pause(math.inf)

    async def respond(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Iterable[tuple[str, str]] = (),
        *,
        drip: float = 0.0,
    ) -> None:
        """Send a complete answer (``drip``: spread the body over that many seconds)."""
        raw_headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in headers),
        ]
        self.record.status = status
        await self._send({"type": "http.response.start", "status": status, "headers": raw_headers})
        step = max(1, math.ceil(len(body) / 10)) if drip > 0 else max(1, len(body))
        chunks = [body[i : i + step] for i in range(0, len(body), step)] or [b""]
        for index, chunk in enumerate(chunks):
            if index and not await self.pause(drip / 10):
                return
            last = index == len(chunks) - 1
            if last:
                # Marked before the final write: once a client has the whole answer, the record
                # already says so (no race between the test and this task).
                self.record.responded_at = trio.current_time()
                self.record.completed = True
                self.server.notify()
            await self._send({"type": "http.response.body", "body": chunk, "more_body": not last})

    async def respond_json(
        self,
        status: int,
        document: Any,
        headers: Iterable[tuple[str, str]] = (),
        *,
        content_type: str = "application/json; charset=UTF-8",
        drip: float = 0.0,
    ) -> None:
        body = json.dumps(document, ensure_ascii=False).encode()
        await self.respond(status, body, content_type, headers, drip=drip)

    async def respond_html(self, status: int, html: str, *, drip: float = 0.0) -> None:
        await self.respond(status, html.encode(), "text/html; charset=UTF-8", drip=drip)


# --- the server ---------------------------------------------------------------------------


class FakeServer:
    """Base of the fakes: subclasses set ``OUTCOMES`` and implement ``handle``."""

    OUTCOMES: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, api_key: str) -> None:
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        # Exceptions raised by the fake itself (bugs): tests should assert this stays empty.
        self.internal_errors: list[Exception] = []
        self._script: deque[Outcome] = deque()
        self._default = Outcome("success")
        self._changed = trio.Event()
        self._url: str | None = None
        self._nursery: trio.Nursery | None = None
        # (certificate, key) PEM files: serve HTTPS, as the real vendors do (set before serve).
        self.tls: tuple[Path, Path] | None = None

    # scripting

    def _checked(self, value: OutcomeLike) -> Outcome:
        result = _as_outcome(value)
        if result.name not in self.OUTCOMES:
            known = ", ".join(sorted(self.OUTCOMES))
            raise ValueError(f"{type(self).__name__}: unknown outcome {result.name!r} ({known})")
        return result

    def script(self, *outcomes: OutcomeLike) -> None:
        """Queue outcomes for the next scripted requests, in order."""
        self._script.extend(self._checked(item) for item in outcomes)

    @property
    def default(self) -> Outcome:
        """The outcome once the script is used up (initially ``success``)."""
        return self._default

    @default.setter
    def default(self, value: OutcomeLike) -> None:
        self._default = self._checked(value)

    @property
    def scripted_left(self) -> int:
        return len(self._script)

    def next_outcome(self) -> Outcome:
        return self._script.popleft() if self._script else self._default

    # observing

    def notify(self) -> None:
        """Wake ``wait_until`` callers: a record changed."""
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` is true; re-checked whenever a record changes."""
        while not predicate():
            await self._changed.wait()

    def calls(
        self,
        path: str | None = None,
        *,
        http_method: str | None = None,
        since: float | None = None,
        **form: str,
    ) -> list[RecordedRequest]:
        """Recorded requests matching all filters (``form``: exact form-field values)."""
        return [
            r
            for r in self.requests
            if (path is None or r.path == path)
            and (http_method is None or r.method == http_method.upper())
            and (since is None or r.received_at > since)
            and all(r.form.get(k) == v for k, v in form.items())
        ]

    # serving

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (no trailing slash)."""
        if self._url is None:
            raise RuntimeError("the fake is not serving yet: url = await nursery.start(fake.serve)")
        return self._url

    @property
    def nursery(self) -> trio.Nursery:
        """The server's nursery, for background work (Turbotext's URL fetches)."""
        if self._nursery is None:
            raise RuntimeError("the fake is not serving")
        return self._nursery

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started(base_url)`` once listening."""
        config = HypercornConfig()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.errorlog = None  # our own bugs land in internal_errors instead
        config.graceful_timeout = 0.5
        if self.tls is not None:
            config.certfile, config.keyfile = (str(path) for path in self.tls)
            config.alpn_protocols = ["http/1.1"]
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            app: Any = self._asgi  # a plain ASGI callable; Hypercorn's types want its TypedDicts
            urls: list[str] = await nursery.start(partial(hypercorn_serve, app, config))
            self._url = urls[0].rstrip("/")
            task_status.started(self._url)

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        record = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            query=dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)),
            headers=headers,
            received_at=trio.current_time(),
        )
        self.requests.append(record)
        self.notify()
        exchange = Exchange(self, record, receive, send)
        body = await exchange.read_body()
        if body is None:
            return
        record.body = body
        record.body_received_at = trio.current_time()
        parse_body(record)
        self.notify()
        try:
            await self.handle(exchange)
        except Exception as exc:  # a bug in the fake: keep it visible, answer 500
            self.internal_errors.append(exc)
            if record.status is None:
                text = f"fake server bug: {exc!r}"
                await exchange.respond(500, text.encode(), "text/plain; charset=utf-8")

    async def handle(self, exchange: Exchange) -> None:
        raise NotImplementedError

    # helpers for handlers

    async def start_outcome(self, exchange: Exchange) -> Outcome | None:
        """Take the next outcome, record it, wait its delay; handle ``hang``.

        Returns None when the handler should stop (hung, or the client left during the delay).
        """
        chosen = self.next_outcome()
        exchange.record.outcome = chosen.name
        self.notify()
        if chosen.name == "hang":
            await exchange.hang()
            return None
        if not await exchange.pause(chosen.delay):
            return None
        return chosen
