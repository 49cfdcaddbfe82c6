"""Gemini driver end to end: DSLR upload → daemon → real driver → fake Gemini → image back."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
import trio
from PIL import Image

from tests.conftest import INGEST_PASSWORD, RunningDaemon, make_config, start_daemon
from tests.fakes import FakeGemini, looks_derived_from, outcome
from tests.support.daemon_process import DaemonProcess
from tests.support.dslr import DslrResponse, dslr_upload
from tests.support.images import make_jpeg, make_png
from tests.support.nginx import self_signed

PHOTO = make_jpeg(800, 600)
KEY = "test-gemini-key"


async def _setup(
    nursery: trio.Nursery,
    tmp_path: Path,
    *,
    key: str | None = KEY,
    deadline: float = 10,
    settings: dict[str, object] | None = None,
) -> tuple[RunningDaemon, FakeGemini]:
    fake = FakeGemini(api_key=KEY)
    url = await nursery.start(fake.serve)
    env = {"GEMINI_API_KEY": key} if key else {}
    daemon = await start_daemon(nursery, make_config(tmp_path, gemini_base_url=url), env=env)
    await daemon.set_setting("sync_response_seconds", deadline)
    await daemon.configure_slot(
        "slot-003",
        provider="gemini",
        operation="edit",
        settings=settings or {"prompt": "turn it into a watercolour"},
    )
    return daemon, fake


async def _shoot(daemon: RunningDaemon, photo: bytes = PHOTO) -> DslrResponse:
    response = await dslr_upload(
        "127.0.0.1", daemon.port, "slot-003", photo=photo, password=INGEST_PASSWORD
    )
    assert response is not None
    return response


async def test_success_returns_the_edited_image_as_jpeg(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    daemon, fake = await _setup(nursery, tmp_path)
    response = await _shoot(daemon)
    assert response.status == 200, response.body[:300]
    assert response.headers["content-type"] == "image/jpeg"  # PNG from Gemini, JPEG for the booth
    assert looks_derived_from(response.body, PHOTO)
    [request] = fake.requests
    assert request.headers["x-goog-api-key"] == KEY
    assert request.path == "/v1beta/models/gemini-2.5-flash-image:generateContent"
    parts = request.json["contents"][0]["parts"]
    assert "inline_data" in parts[0] and parts[-1] == {"text": "turn it into a watercolour"}
    assert request.json["generationConfig"]["responseModalities"] == ["IMAGE"]
    assert "responseMimeType" not in request.json["generationConfig"]
    job = await daemon.job(response.headers["x-job-id"])
    assert job.provider == "gemini" and job.failure_reason is None


async def test_thought_parts_are_skipped(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon, fake = await _setup(
        nursery,
        tmp_path,
        settings={
            "prompt": "p",
            "model": "gemini-3-pro-image-preview",
            "image_size": "1K",
            "output_format": "png",
        },
    )
    fake.script("success_with_thoughts")
    response = await _shoot(daemon)
    assert response.status == 200 and response.headers["content-type"] == "image/png"
    assert looks_derived_from(response.body, PHOTO)  # the final image, not the thought image
    config = fake.requests[0].json["generationConfig"]
    assert config["imageConfig"] == {"imageSize": "1K"}


@pytest.mark.slow
async def test_intermittent_no_image_is_retried(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon, fake = await _setup(nursery, tmp_path)
    fake.script("no_image", "text_only", "success")
    response = await _shoot(daemon)
    assert response.status == 200
    assert [r.outcome for r in fake.requests] == ["no_image", "text_only", "success"]


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        ("image_safety", "IMAGE_SAFETY"),
        ("prohibited", "PROHIBITED_CONTENT"),
        ("blocked_prompt", "PROHIBITED_CONTENT"),
    ],
)
async def test_safety_blocks_are_not_retried(
    nursery: trio.Nursery, tmp_path: Path, script: str, reason: str
) -> None:
    daemon, fake = await _setup(nursery, tmp_path)
    fake.script(script)
    response = await _shoot(daemon)
    assert response.status == 502
    assert response.json()["failure_reason"] == "provider_error"
    assert reason in response.json()["details"]
    assert len(fake.requests) == 1
    from tests.test_ingest import _all_jobs

    [job] = await daemon.context.db.read(_all_jobs)
    assert job.failure_reason == "provider_error" and reason in (job.failure_details or "")


async def test_rate_limit_honours_retry_delay(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon, fake = await _setup(nursery, tmp_path)
    fake.script(outcome("rate_limited", retry_delay="1s"), "success")
    response = await _shoot(daemon)
    assert response.status == 200
    first, second = fake.requests
    assert second.received_at - first.received_at >= 0.95


@pytest.mark.slow
async def test_overloaded_until_the_deadline_is_503(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon, fake = await _setup(nursery, tmp_path, deadline=6)
    fake.default = "unavailable"
    response = await _shoot(daemon)
    assert response.status == 503
    assert response.json()["failure_reason"] == "provider_error"
    assert response.elapsed < 6  # gave up before the deadline instead of a 504
    assert 2 <= len(fake.requests) <= 5


@pytest.mark.slow
async def test_garbage_then_success(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon, fake = await _setup(nursery, tmp_path)
    fake.script("malformed_json", "bad_gateway_html", "success")
    response = await _shoot(daemon)
    assert response.status == 200 and len(fake.requests) == 3


async def test_bad_and_missing_keys(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon, fake = await _setup(nursery, tmp_path / "a", key="wrong-key")
    response = await _shoot(daemon)
    assert response.status == 502 and "API_KEY_INVALID" in response.json()["details"]
    assert "wrong-key" not in response.body.decode()
    daemon, fake = await _setup(nursery, tmp_path / "b", key=None)
    response = await _shoot(daemon)
    assert response.status == 502
    assert response.json()["details"] == "gemini API key not configured"
    assert fake.requests == []


async def test_a_vendor_error_that_names_the_key_does_not_pass_it_on(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Google's 403 for a suspended key names it ("Consumer 'api_key:…'"): the text went to the
    booth's answer, the log, the job record and the admin API."""
    from tests.test_ingest import _all_jobs

    daemon, fake = await _setup(nursery, tmp_path)
    fake.script("key_suspended")
    response = await _shoot(daemon)
    assert response.status == 502
    assert "has been suspended" in response.json()["details"]
    [job] = await daemon.context.db.read(_all_jobs)
    texts = [response.body.decode(), caplog.text, job.failure_details or "", str(job.attempts)]
    assert KEY in fake.requests[0].headers["x-goog-api-key"]  # it was there to leak
    for text in texts:
        assert KEY not in text, text[:300]
    assert "api_key:***" in response.json()["details"]


@pytest.mark.slow
async def test_hanging_vendor_gets_504_and_is_cancelled(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    daemon, fake = await _setup(nursery, tmp_path, deadline=2)
    fake.default = "hang"
    response = await _shoot(daemon)
    assert response.status == 504 and response.json()["status"] == "timeout"
    assert 1.95 <= response.elapsed <= 2.2
    with trio.fail_after(2):
        await fake.wait_until(lambda: bool(fake.requests) and fake.requests[0].disconnected)
    assert fake.requests[0].disconnected_at is not None


async def test_large_photo_is_downscaled_and_templates_follow_it(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    daemon, fake = await _setup(
        nursery,
        tmp_path,
        settings={"prompt": "p", "max_input_pixels": 1_000_000},
    )
    style = make_png(300, 200)
    await daemon.bind_template("slot-003", "style", style)
    big = make_jpeg(3000, 2000)
    response = await _shoot(daemon, big)
    assert response.status == 200
    parts = fake.requests[0].json["contents"][0]["parts"]
    assert len(parts) == 3 and "text" in parts[2]
    sent = Image.open(io.BytesIO(base64.b64decode(parts[0]["inline_data"]["data"])))
    assert sent.width * sent.height <= 1_000_000 and sent.width > 1000
    template = base64.b64decode(parts[1]["inline_data"]["data"])
    assert template == style  # small enough: sent as it is


async def test_a_gemini_over_https_with_an_operators_ca(tmp_path: Path) -> None:
    """The real vendors speak HTTPS: the daemon (a real process) calls a Gemini served over TLS
    with a certificate of a private CA it was told to trust (``SSL_CERT_FILE``, as an operator
    with a TLS-terminating proxy or an in-house CA would), and a 1 MB-class answer comes through
    the vendor clients' TLS reads (providers/vendor_network.py) intact.  The draining itself is
    tested in tests/test_vendor_http.py."""
    fake = FakeGemini(api_key=KEY)
    fake.tls = self_signed(tmp_path, "127.0.0.1")
    photo = make_jpeg(1600, 1200)
    daemon = DaemonProcess(tmp_path / "data")
    async with trio.open_nursery() as nursery:
        url = await nursery.start(fake.serve)
        assert url.startswith("https://")
        daemon.env.update(
            PHOTOCHANGER_GEMINI_BASE_URL=url, GEMINI_API_KEY=KEY, SSL_CERT_FILE=str(fake.tls[0])
        )
        try:
            await trio.to_thread.run_sync(lambda: daemon.start(scripted=False))
            daemon.sql(
                "UPDATE slot SET provider = 'gemini', operation = 'edit', settings = ? "
                "WHERE id = 'slot-003'",
                '{"prompt": "turn it into a watercolour", "output_format": "png"}',
            )
            response = await dslr_upload(
                "127.0.0.1", daemon.port, "slot-003", photo=photo, password=INGEST_PASSWORD
            )
        finally:
            daemon.stop()
            nursery.cancel_scope.cancel()
    assert response is not None and response.status == 200, response
    assert response.headers["content-type"] == "image/png" and len(response.body) > 500_000
    assert looks_derived_from(response.body, photo)
    assert [r.path for r in fake.requests] == [
        "/v1beta/models/gemini-2.5-flash-image:generateContent"
    ]
    assert fake.internal_errors == []
