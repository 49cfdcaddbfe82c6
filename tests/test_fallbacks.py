"""Fallback chains end to end: a DSLR upload → daemon → fake Gemini failing or hanging → the
slot's fallback → a processed photo for the booth, with every attempt on the job.

The chain is configured through the admin API (as pcctl and the console do), so what is
validated on save is what runs.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from PIL import Image

from tests.conftest import ADMIN_PASSWORD, INGEST_PASSWORD, RunningDaemon, make_config, start_daemon
from tests.fakes import FakeGemini
from tests.support.dslr import DslrResponse, dslr_upload
from tests.support.images import make_jpeg, make_png

PHOTO = make_jpeg(800, 600)
KEY = "test-gemini-key"
GEMINI = {"provider": "gemini", "operation": "edit", "settings": {"prompt": "watercolour"}}


class Booth:
    def __init__(self, daemon: RunningDaemon, fake: FakeGemini, api: httpx.AsyncClient) -> None:
        self.daemon, self.fake, self.api = daemon, fake, api

    async def configure(self, fallbacks: list[dict[str, Any]], **slot: Any) -> httpx.Response:
        body = {**GEMINI, **slot, "fallbacks": fallbacks}
        return await self.api.put("/api/slots/slot-003", json=body)

    async def shoot(self) -> tuple[DslrResponse, float]:
        started = trio.current_time()
        response = await dslr_upload(
            "127.0.0.1", self.daemon.port, "slot-003", photo=PHOTO, password=INGEST_PASSWORD
        )
        assert response is not None
        return response, trio.current_time() - started

    async def job(self, response: DslrResponse) -> dict[str, Any]:
        answer = await self.api.get(f"/api/jobs/{response.headers['x-job-id']}")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


@pytest.fixture
async def booth(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[Booth]:
    fake = FakeGemini(api_key=KEY)
    url = await nursery.start(fake.serve)
    daemon = await start_daemon(
        nursery, make_config(tmp_path, gemini_base_url=url), env={"GEMINI_API_KEY": KEY}
    )
    await daemon.set_setting("sync_response_seconds", 10)
    async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as api:
        login = await api.post("/api/login", json={"username": "serg", "password": ADMIN_PASSWORD})
        api.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        yield Booth(daemon, fake, api)


def _is_enhanced_photo(body: bytes) -> bool:
    with Image.open(io.BytesIO(body)) as image:
        return image.format == "JPEG" and image.size == (800, 600)


@pytest.mark.slow
async def test_no_image_every_time_falls_back_to_local_enhance(booth: Booth) -> None:
    booth.fake.default = "no_image"
    saved = await booth.configure([{"provider": "local", "operation": "enhance"}])
    assert saved.status_code == 200, saved.text
    assert saved.json()["fallbacks"] == [
        {
            "provider": "local",
            "operation": "enhance",
            "settings": {},
            "templates": [],
            "reserve_seconds": 2.0,
        }
    ]
    response, seconds = await booth.shoot()
    assert response.status == 200, response.body[:300]
    assert response.headers["x-provider"] == "local/enhance"
    assert _is_enhanced_photo(response.body) and seconds < 10
    assert len(booth.fake.requests) >= 2  # Gemini was really asked (and retried)
    job = await booth.job(response)
    assert job["served_by"] == "local/enhance" and job["failure_reason"] is None
    first, second = job["attempts"]
    assert (first["provider"], first["outcome"], first["status"]) == (
        "gemini",
        "provider_error",
        502,
    )
    assert "NO_IMAGE" in first["details"]
    assert (second["provider"], second["operation"], second["outcome"]) == (
        "local",
        "enhance",
        "success",
    )
    stats = (await booth.api.get("/api/stats/slot-003")).json()
    assert stats["fallbacks_served"] == 1
    assert stats["fallbacks_by_provider"] == {"local/enhance": 1}
    metrics = (await booth.api.get("/metrics")).text
    assert (
        'photochanger_fallbacks_served_total{provider="local/enhance",slot_id="slot-003"} 1.0'
        in metrics
    )


@pytest.mark.slow
async def test_a_hanging_primary_still_gets_the_fallback_answered_in_time(booth: Booth) -> None:
    booth.fake.default = "hang"
    saved = await booth.configure(
        [{"provider": "local", "operation": "enhance", "reserve_seconds": 3}]
    )
    assert saved.status_code == 200, saved.text
    response, seconds = await booth.shoot()
    assert response.status == 200, response.body[:300]
    assert response.headers["x-provider"] == "local/enhance"
    # 10 s deadline, 3 s reserved: Gemini is cut at 7 s and the fallback answers right after.
    assert 6.5 <= seconds <= 8.0, seconds
    [request] = booth.fake.requests
    assert request.disconnected  # the hanging call was really abandoned
    job = await booth.job(response)
    first, second = job["attempts"]
    assert first["outcome"] == "timeout" and 6.5 <= first["duration_seconds"] <= 7.5
    assert "3 s kept for the next steps" in first["details"]
    assert second["outcome"] == "success"


@pytest.mark.slow
async def test_every_step_failing_is_a_502_with_every_attempt(booth: Booth) -> None:
    booth.fake.default = "image_safety"  # never retried: each Gemini step fails at once
    saved = await booth.configure(
        [
            {**GEMINI, "settings": {"prompt": "another try"}, "reserve_seconds": 3},
            {**GEMINI, "settings": {"prompt": "a third"}, "reserve_seconds": 3},
        ]
    )
    assert saved.status_code == 200, saved.text
    response, seconds = await booth.shoot()
    assert response.status == 502, response.body[:300]
    assert "x-provider" not in response.headers
    assert seconds < 5
    job = await booth.job(response)
    assert job["failure_reason"] == "provider_error"
    assert [(a["step"], a["outcome"]) for a in job["attempts"]] == [
        (0, "provider_error"),
        (1, "provider_error"),
        (2, "provider_error"),
    ]
    prompts = [r.json["contents"][0]["parts"][-1]["text"] for r in booth.fake.requests]
    assert prompts == ["watercolour", "another try", "a third"]


async def test_a_chain_is_refused_with_422_naming_the_field(booth: Booth) -> None:
    cases: list[tuple[list[dict[str, Any]], str]] = [
        ([{"provider": "dall-e", "operation": "edit"}], "fallbacks.0.provider"),
        ([{"provider": "local", "operation": "paint"}], "fallbacks.0.operation"),
        ([{"provider": "local", "operation": "enhance"}] * 4, "fallbacks"),
        ([{**GEMINI, "reserve_seconds": 9.5}], "fallbacks"),  # the deadline is 10 s
        (
            [
                {
                    "provider": "local",
                    "operation": "frame",
                    "templates": [{"role": "frame", "template_id": "nope"}],
                }
            ],
            "fallbacks",
        ),
    ]
    for chain, field in cases:
        answer = await booth.configure(chain)
        assert answer.status_code == 422, (chain, answer.text)
        assert field in answer.text, answer.text
    detail = (await booth.api.get("/api/slots/slot-003")).json()
    assert detail["fallbacks"] == []  # nothing of the refused chains was stored


async def test_a_shorter_deadline_must_leave_the_reserves(booth: Booth) -> None:
    assert (await booth.api.put("/api/settings", json={"sync_response_seconds": 20})).is_success
    saved = await booth.configure([{**GEMINI, "reserve_seconds": 15}])
    assert saved.status_code == 200, saved.text
    refused = await booth.api.put("/api/settings", json={"sync_response_seconds": 12})
    assert refused.status_code == 422
    assert "slot-003" in refused.json()["errors"]["sync_response_seconds"]
    settings = (await booth.api.get("/api/settings")).json()
    assert settings["sync_response_seconds"] == 20  # unchanged
    assert (await booth.configure([])).json()["fallbacks"] == []
    assert (await booth.api.put("/api/settings", json={"sync_response_seconds": 12})).is_success


async def test_a_fallback_template_is_in_use_and_framed(booth: Booth) -> None:
    frame = make_png(200, 150, alpha=True)
    upload = await booth.api.post(
        "/api/template-media", files={"file": ("frame.png", frame, "image/png")}
    )
    assert upload.status_code == 201, upload.text
    template_id = upload.json()["id"]
    booth.fake.default = "image_safety"
    step = {
        "provider": "local",
        "operation": "frame",
        "templates": [{"role": "frame", "template_id": template_id}],
    }
    assert (await booth.configure([step])).status_code == 200
    refused = await booth.api.delete(f"/api/template-media/{template_id}")
    assert refused.status_code == 409 and "slot-003" in refused.text
    response, _ = await booth.shoot()
    assert response.status == 200 and response.headers["x-provider"] == "local/frame"
