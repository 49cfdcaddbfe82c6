"""The ingest deadline starts when the booth's connection was accepted (its first request) or
the request head was parsed — never when a busy loop got round to the app task."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from photochangerd.http.asgi import MAX_START_DELAY, PRECONNECT_GAP, request_arrival
from photochangerd.http.server import ConnectionInfo
from tests.conftest import INGEST_PASSWORD, RunningDaemon
from tests.support.dslr import build_dslr_body
from tests.support.images import make_jpeg


class _Stream:
    def __init__(self, start_time: object) -> None:
        self.start_time = start_time

    async def app_send(self, message: object) -> None:  # pragma: no cover - never called
        pass


@pytest.mark.parametrize(
    ("age", "expected_shift"),
    [(0.2, 0.2), (-1.0, 0.0), (MAX_START_DELAY + 1, 0.0)],
    ids=["head-parsed-earlier", "clock-stepped-back", "implausibly-old"],
)
async def test_arrival_uses_the_stream_stamp_when_plausible(
    age: float, expected_shift: float
) -> None:
    send = _Stream(time.time() - age).app_send
    before = trio.current_time()
    arrival = request_arrival(send)
    assert arrival == pytest.approx(before - expected_shift, abs=0.02)


async def test_arrival_without_a_stamp_is_now() -> None:
    async def plain_send(message: object) -> None:  # pragma: no cover - never called
        pass

    before = trio.current_time()
    assert before <= request_arrival(plain_send) <= trio.current_time()
    assert request_arrival(_Stream("not a time").app_send) >= before


async def test_hypercorn_hands_the_app_its_stamped_stream(nursery: trio.Nursery) -> None:
    """Guards a Hypercorn upgrade: without the stamp the deadline would silently start late."""
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        seen["stamp"] = getattr(getattr(send, "__self__", None), "start_time", None)
        seen["arrival_lag"] = trio.current_time() - request_arrival(send)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    urls: list[str] = await nursery.start(partial(serve, app, config, mode="asgi"))
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{urls[0]}/")
    assert response.status_code == 204
    assert isinstance(seen["stamp"], float)
    assert 0.0 <= seen["arrival_lag"] < 1.0


@pytest.mark.parametrize(
    ("head_after", "first_request", "expected"),
    [(0.3, True, "accepted"), (PRECONNECT_GAP + 0.5, True, "head"), (0.3, False, "head")],
    ids=["first-request", "connection-opened-early", "keep-alive-request"],
)
async def test_first_request_of_a_connection_counts_from_its_accept(
    head_after: float, first_request: bool, expected: str
) -> None:
    now = trio.current_time()
    connection = ConnectionInfo(accepted_at=now - head_after, requests=0 if first_request else 1)
    send = _Stream(time.time()).app_send  # head parsed just now
    arrival = request_arrival(send, connection)
    target = connection.accepted_at if expected == "accepted" else now
    assert arrival == pytest.approx(target, abs=0.02)
    assert connection.requests == (1 if first_request else 2)


async def test_daemon_deadline_starts_when_the_connection_was_accepted(
    daemon: RunningDaemon,
) -> None:
    """A booth that connects, then needs 0.4 s to send its request, loses those 0.4 s."""
    body, content_type = build_dslr_body(make_jpeg(320, 240), password=INGEST_PASSWORD)
    head = (
        f"POST /ingest/slot-001 HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    connected = time.time()
    stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
    async with stream:
        await trio.sleep(0.4)
        await stream.send_all(head + body)
        answer = b""
        while chunk := await stream.receive_some(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200")
    job_id = answer.split(b"x-job-id: ", 1)[1].split(b"\r\n", 1)[0].decode()
    job = await daemon.job(job_id)
    # From the accept (right after the connect), not from the head sent 0.4 s later.
    assert connected - 0.01 <= job.created_at < connected + 0.3
