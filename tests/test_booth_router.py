"""Booth uploads bypass Quart (photochangerd.http.booth); the Quart routes that document them in
the OpenAPI document must still serve the very same pipeline and answers."""

from __future__ import annotations

from functools import partial

import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from photochangerd.http.app import create_quart_app
from photochangerd.http.asgi import ShieldedSend
from tests.conftest import INGEST_PASSWORD, RunningDaemon
from tests.support.dslr import DslrResponse, dslr_upload
from tests.support.images import make_jpeg

PHOTO = make_jpeg(640, 480)


async def _quart_only(nursery: trio.Nursery, daemon: RunningDaemon) -> int:
    """The daemon's own context served by Quart alone (no booth fast path in front)."""
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    app = ShieldedSend(create_quart_app(daemon.context))
    urls: list[str] = await nursery.start(partial(serve, app, config, mode="asgi"))
    return int(urls[0].rsplit(":", 1)[1])


def _shape(response: DslrResponse | None) -> tuple[int, str, str | None, bool]:
    assert response is not None
    reason = response.json().get("failure_reason") if response.status != 200 else None
    return (
        response.status,
        response.headers["content-type"].split(";")[0],
        reason,
        "x-job-id" in response.headers,
    )


@pytest.mark.parametrize(
    ("slot", "password", "photo"),
    [
        ("slot-001", INGEST_PASSWORD, PHOTO),
        ("slot-001", "wrong", PHOTO),
        ("slot-099", INGEST_PASSWORD, PHOTO),
        ("slot-001", INGEST_PASSWORD, b"not an image at all"),
    ],
    ids=["success", "wrong-password", "unknown-slot", "not-an-image"],
)
async def test_fast_path_and_quart_route_answer_alike(
    nursery: trio.Nursery, daemon: RunningDaemon, slot: str, password: str, photo: bytes
) -> None:
    quart_port = await _quart_only(nursery, daemon)
    fast = await dslr_upload("127.0.0.1", daemon.port, slot, photo=photo, password=password)
    via_quart = await dslr_upload("127.0.0.1", quart_port, slot, photo=photo, password=password)
    assert _shape(fast) == _shape(via_quart)
    if fast is not None and fast.status == 200:
        assert via_quart is not None and fast.body == via_quart.body == photo


async def test_other_methods_and_paths_still_go_to_quart(daemon: RunningDaemon) -> None:
    async with httpx.AsyncClient(base_url=daemon.url) as client:
        assert (await client.get("/ingest/slot-001")).status_code == 405
        assert (await client.get("/healthz")).status_code == 200
        unknown = await client.post("/ingestx/slot-001")
        assert unknown.status_code == 404
