"""OpenAI image edits driver end to end against the fake ``/v1/images/edits``."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.conftest import INGEST_PASSWORD, RunningDaemon, make_config, start_daemon
from tests.fakes import FakeOpenAIImages, looks_derived_from, outcome
from tests.support.dslr import DslrResponse, dslr_upload
from tests.support.images import make_jpeg, make_png

PHOTO = make_jpeg(800, 600)
KEY = "test-openai-key"


async def _setup(
    nursery: trio.Nursery,
    tmp_path: Path,
    *,
    deadline: float = 10,
    settings: dict[str, object] | None = None,
) -> tuple[RunningDaemon, FakeOpenAIImages]:
    fake = FakeOpenAIImages(api_key=KEY)
    url = await nursery.start(fake.serve)
    daemon = await start_daemon(
        nursery, make_config(tmp_path, openai_base_url=url + "/v1"), env={"OPENAI_API_KEY": KEY}
    )
    await daemon.set_setting("sync_response_seconds", deadline)
    await daemon.configure_slot(
        "slot-005",
        provider="openai",
        operation="edit",
        settings=settings or {"prompt": "make it a comic"},
    )
    return daemon, fake


async def _shoot(daemon: RunningDaemon) -> DslrResponse:
    response = await dslr_upload(
        "127.0.0.1", daemon.port, "slot-005", photo=PHOTO, password=INGEST_PASSWORD
    )
    assert response is not None
    return response


async def test_success_requests_jpeg_directly(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon, fake = await _setup(nursery, tmp_path)
    response = await _shoot(daemon)
    assert response.status == 200, response.body[:300]
    assert response.headers["content-type"] == "image/jpeg"
    assert looks_derived_from(response.body, PHOTO)
    [request] = fake.requests
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.form["output_format"] == "jpeg" and request.form["model"] == "gpt-image-1"
    assert request.form["quality"] == "medium" and request.form["input_fidelity"] == "high"
    assert [f.field for f in request.files] == ["image"]


async def test_templates_go_as_image_array(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon, fake = await _setup(
        nursery, tmp_path, settings={"prompt": "p", "output_format": "webp"}
    )
    data = make_png(256, 256)
    await daemon.bind_template("slot-005", "reference", data)
    response = await _shoot(daemon)
    assert response.status == 200 and response.headers["content-type"] == "image/webp"
    files = fake.requests[0].files
    assert [f.field for f in files] == ["image[]", "image[]"]
    assert files[1].data == data


@pytest.mark.parametrize(
    ("script", "status", "requests"),
    [
        ("moderation_blocked", 502, 1),
        ("insufficient_quota", 503, 1),
    ],
)
async def test_errors_that_are_not_retried(
    nursery: trio.Nursery, tmp_path: Path, script: str, status: int, requests: int
) -> None:
    daemon, fake = await _setup(nursery, tmp_path)
    fake.script(script)
    response = await _shoot(daemon)
    assert response.status == status
    assert response.json()["failure_reason"] == "provider_error"
    assert len(fake.requests) == requests


@pytest.mark.slow
async def test_rate_limit_is_retried_after_retry_after(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    daemon, fake = await _setup(nursery, tmp_path)
    fake.script(outcome("rate_limited", retry_after="1"), "success")
    response = await _shoot(daemon)
    assert response.status == 200
    first, second = fake.requests
    assert second.received_at - first.received_at >= 0.95


@pytest.mark.slow
async def test_server_errors_until_deadline_give_503(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon, fake = await _setup(nursery, tmp_path, deadline=7)
    fake.default = "server_error"
    response = await _shoot(daemon)
    assert response.status == 503 and response.elapsed < 7
    assert len(fake.requests) >= 2


async def test_hang_is_504_and_the_call_is_cancelled(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon, fake = await _setup(nursery, tmp_path, deadline=1.5)
    fake.default = "hang"
    response = await _shoot(daemon)
    assert response.status == 504 and 1.45 <= response.elapsed <= 1.7
    with trio.fail_after(2):
        await fake.wait_until(lambda: bool(fake.requests) and fake.requests[0].disconnected)
