"""The ingest deadline starts when the request head was parsed, not when the app task ran."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from photochangerd.http.asgi import MAX_START_DELAY, request_arrival


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
