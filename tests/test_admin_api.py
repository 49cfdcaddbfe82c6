"""Admin REST API over real HTTP: auth, slots, settings and secrets, test runs, jobs, stats."""

from __future__ import annotations

import json
import logging
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
import trio

from photochangerd.app import Daemon
from tests.conftest import (
    ADMIN_PASSWORD,
    INGEST_PASSWORD,
    RunningDaemon,
    make_config,
    start_daemon,
)
from tests.support.dslr import dslr_upload
from tests.support.images import make_jpeg, make_png

PHOTO = make_jpeg(640, 480)


async def _token(client: httpx.AsyncClient, user: str = "serg") -> str:
    response = await client.post("/api/login", json={"username": user, "password": ADMIN_PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    return str(body["access_token"])


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> httpx.AsyncClient:
    client.headers["Authorization"] = f"Bearer {await _token(client)}"
    return client


def _jwt_key(daemon: RunningDaemon) -> bytes:
    import base64

    return base64.b64decode((daemon.config.keys_dir / "jwt.key").read_bytes().strip())


# -- auth ---------------------------------------------------------------------------------------


async def test_login_and_token_claims(daemon: RunningDaemon, client: httpx.AsyncClient) -> None:
    token = await _token(client, "igor")
    claims = jwt.decode(
        token, _jwt_key(daemon), algorithms=["HS256"], audience="photochanger-admin"
    )
    assert claims["sub"] == "igor" and claims["scope"] == "admin"
    assert claims["exp"] > claims["iat"] >= int(time.time()) - 5


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "serg", "password": "wrong"},
        {"username": "nobody", "password": ADMIN_PASSWORD},
    ],
)
async def test_login_failures_are_401(
    client: httpx.AsyncClient, credentials: dict[str, str]
) -> None:
    response = await client.post("/api/login", json=credentials)
    assert response.status_code == 401
    assert response.json()["failure_reason"] == "unauthorized"


async def test_login_body_validation_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/login", json={"username": "serg"})
    assert response.status_code == 422
    body = response.json()
    assert body["failure_reason"] == "validation_error" and "password" in body["errors"]


async def test_brute_force_is_throttled(client: httpx.AsyncClient) -> None:
    for _ in range(10):
        response = await client.post("/api/login", json={"username": "serg", "password": "x"})
        assert response.status_code == 401
    locked = await client.post("/api/login", json={"username": "serg", "password": ADMIN_PASSWORD})
    assert locked.status_code == 429
    assert locked.json()["failure_reason"] == "rate_limited"
    assert 800 < int(locked.headers["retry-after"]) <= 901


async def test_a_burst_of_parallel_guesses_is_throttled_too(client: httpx.AsyncClient) -> None:
    """Forty wrong passwords sent at once: the guesses queued for the two KDF slots all passed
    the lock check on arrival and were all tried (40 x 401, a 300-burst tried 101)."""
    statuses: list[int] = []

    async def guess(password: str) -> None:
        response = await client.post("/api/login", json={"username": "serg", "password": password})
        statuses.append(response.status_code)

    async with trio.open_nursery() as nursery:
        for number in range(40):
            nursery.start_soon(guess, f"wrong-{number}")
    assert 10 <= statuses.count(401) <= 12, statuses  # the limit, + at most one per KDF slot
    assert statuses.count(429) == 40 - statuses.count(401)
    locked = await client.post("/api/login", json={"username": "serg", "password": ADMIN_PASSWORD})
    assert locked.status_code == 429


def _valid_claims(now: float) -> dict[str, Any]:
    """Every claim a token needs, right: each tampered case changes one of them."""
    return {
        "sub": "serg",
        "scope": "admin",
        "iat": now,
        "exp": int(now) + 600,
        "iss": "photochangerd",
        "aud": "photochanger-admin",
        "jti": "forged-token-id",
    }


def _forge(claims: dict[str, Any], key: bytes | str, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


@pytest.mark.parametrize(
    "case",
    [
        "none",
        "wrong_key",
        "expired",
        "wrong_scope",
        "no_exp",
        "tampered",
        "garbage",
        "wrong_audience",
        "no_jti",
    ],
)
async def test_tampered_tokens_are_401(
    daemon: RunningDaemon, client: httpx.AsyncClient, case: str
) -> None:
    now = int(time.time())
    good = _valid_claims(now)
    key = _jwt_key(daemon)
    token = {
        "none": lambda: _forge(good, "", algorithm="none"),
        "wrong_key": lambda: _forge(good, b"x" * 32),
        "expired": lambda: _forge(good | {"iat": now - 7200, "exp": now - 3600}, key),
        "wrong_scope": lambda: _forge(good | {"scope": "booth"}, key),
        "no_exp": lambda: _forge({k: v for k, v in good.items() if k != "exp"}, key),
        "tampered": lambda: _tamper(_forge(good, key)),
        "garbage": lambda: "not.a.token",
        "wrong_audience": lambda: _forge(good | {"aud": "someone-else"}, key),
        "no_jti": lambda: _forge({k: v for k, v in good.items() if k != "jti"}, key),
    }[case]()
    response = await client.get("/api/slots", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["failure_reason"] == "unauthorized"


def _tamper(token: str) -> str:
    import base64

    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "igor"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def test_every_admin_route_needs_a_token(
    daemon: RunningDaemon, client: httpx.AsyncClient
) -> None:
    app = daemon.daemon.context  # noqa: F841 - keep the daemon alive
    from photochangerd.http.app import create_quart_app

    quart = create_quart_app(daemon.context)
    checked = 0
    for rule in quart.url_map.iter_rules():
        path = str(rule.rule)
        if (
            not path.startswith("/api/")
            or rule.endpoint in ("admin.login",)
            or path.startswith("/api/ingest")
            or "openapi" in path
            or "docs" in path
        ):
            continue
        url = (
            path.replace("<slot_id>", "slot-001")
            .replace("<job_id>", "A" * 22)
            .replace("<template_id>", "x")
        )
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = await client.request(method, url)
            assert response.status_code == 401, (method, url, response.status_code)
            assert response.json()["failure_reason"] == "unauthorized"
            checked += 1
    assert checked >= 18


# -- slots --------------------------------------------------------------------------------------


async def test_slot_list_and_detail(daemon: RunningDaemon, admin: httpx.AsyncClient) -> None:
    await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD)
    slots = (await admin.get("/api/slots")).json()["slots"]
    assert len(slots) == 15 and slots[0]["id"] == "slot-001"
    assert slots[0]["ingest_url"] == f"{daemon.config.effective_public_base_url}/ingest/slot-001"
    assert slots[0]["last_job"]["is_finalized"] and slots[1]["last_job"] is None
    detail = (await admin.get("/api/slots/slot-001")).json()
    [recent] = detail["recent_results"]
    assert recent["public_url"].endswith(f"/public/results/{recent['job_id']}")
    async with httpx.AsyncClient() as plain:
        thumb = await plain.get(recent["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert len(thumb.content) < len(PHOTO)
    assert (await admin.get("/api/slots/slot-099")).status_code == 404


@pytest.mark.slow
async def test_last_job_status_follows_finalization(
    nursery: trio.Nursery, tmp_path: Path, database_url: str
) -> None:
    """``last_job.status`` is ``processing`` while a job runs and ``finalized`` once it ended
    (the stored queue column stays ``processing``), in the list, the detail and the job."""
    daemon = await start_daemon(nursery, make_config(tmp_path, database_url=database_url))
    try:
        async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as admin:
            admin.headers["Authorization"] = f"Bearer {await _token(admin)}"
            await _check_last_job_status(daemon, admin)
    finally:
        daemon.daemon.shutdown.set()


async def _last_job(admin: httpx.AsyncClient, slot_id: str) -> tuple[Any, Any]:
    listed = {s["id"]: s for s in (await admin.get("/api/slots")).json()["slots"]}
    detail = (await admin.get(f"/api/slots/{slot_id}")).json()
    return listed[slot_id]["last_job"], detail["last_job"]


async def _check_last_job_status(daemon: RunningDaemon, admin: httpx.AsyncClient) -> None:
    ok = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD)
    assert ok is not None and ok.status == 200
    for last in await _last_job(admin, "slot-001"):
        assert last["job_id"] == ok.headers["x-job-id"]
        assert last["status"] == "finalized" and last["is_finalized"] is True
        assert last["failure_reason"] is None
    job = (await admin.get(f"/api/jobs/{ok.headers['x-job-id']}")).json()
    assert job["status"] == "finalized"

    await daemon.set_setting("sync_response_seconds", 1.0)
    await daemon.configure_slot("slot-002", provider="script", operation="hang")
    answers: list[Any] = []

    async def upload() -> None:
        answers.append(
            await dslr_upload(
                "127.0.0.1", daemon.port, "slot-002", photo=PHOTO, password=INGEST_PASSWORD
            )
        )

    async with trio.open_nursery() as uploads:
        uploads.start_soon(upload)
        with trio.fail_after(5):
            while not daemon.provider.calls:
                await trio.sleep(0.01)
        listed, _ = await _last_job(admin, "slot-002")
        assert listed["status"] == "processing" and listed["is_finalized"] is False
    assert answers[0] is not None and answers[0].status == 504
    await daemon.wait_job_final(listed["job_id"])
    for last in await _last_job(admin, "slot-002"):
        assert last["job_id"] == listed["job_id"]
        assert last["status"] == "finalized" and last["failure_reason"] == "timeout"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"provider": "gemini", "operation": "edit", "settings": {}}, "settings.prompt"),
        (
            {
                "provider": "gemini",
                "operation": "edit",
                "settings": {"prompt": "x", "image_size": "4K"},
            },
            "settings.image_size",
        ),
        (
            {
                "provider": "turbotext",
                "operation": "image2image",
                "settings": {"prompt": "x", "strength": 200},
            },
            "settings.strength",
        ),
        ({"provider": "turbotext", "operation": "face_swap", "settings": {}}, "template_media"),
        ({"provider": "local", "operation": "blur"}, "operation"),
        ({"provider": "gemini"}, "operation"),
        ({"size_limit_mb": 50}, "size_limit_mb"),
        ({"settings": {"nonsense": 1}}, "settings.nonsense"),
        (
            {
                "provider": "sdwebui",
                "operation": "img2img",
                "settings": {"prompt": "x", "denoising_strength": 1.5},
            },
            "settings.denoising_strength",
        ),
        (
            {
                "provider": "sdwebui",
                "operation": "img2img",
                "settings": {"prompt": "x", "steps": 0},
            },
            "settings.steps",
        ),
        (
            {"provider": "sdwebui", "operation": "img2img", "settings": {"prompt": "x", "cfg": 7}},
            "settings.cfg",
        ),
        (
            {
                "provider": "sdwebui",
                "operation": "img2img",
                "settings": {"prompt": "x", "working_pixels": 10_000_000},
            },
            "settings.working_pixels",
        ),
        ({"provider": "sdwebui", "operation": "txt2img"}, "operation"),
    ],
)
async def test_slot_update_validation_is_422(
    admin: httpx.AsyncClient, payload: dict[str, Any], field: str
) -> None:
    response = await admin.put("/api/slots/slot-002", json=payload)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["status"] == "error" and body["failure_reason"] == "validation_error"
    assert field in body["errors"], body


async def test_slot_update_versions_and_if_match(admin: httpx.AsyncClient) -> None:
    before = (await admin.get("/api/slots/slot-002")).json()
    response = await admin.put(
        "/api/slots/slot-002",
        json={
            "display_name": "Gemini booth",
            "provider": "gemini",
            "operation": "edit",
            "settings": {"prompt": "a watercolour portrait", "aspect_ratio": "3:2"},
        },
    )
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["version"] == before["version"] + 1 and after["updated_by"] == "serg"
    assert after["settings"] == {"prompt": "a watercolour portrait", "aspect_ratio": "3:2"}
    stale = await admin.put(
        "/api/slots/slot-002",
        json={"is_active": False},
        headers={"If-Match": str(before["version"])},
    )
    assert stale.status_code == 409 and stale.json()["failure_reason"] == "conflict"


async def test_template_media_lifecycle(daemon: RunningDaemon, admin: httpx.AsyncClient) -> None:
    frame = make_png(200, 150, alpha=True)
    uploaded = await admin.post(
        "/api/template-media", files={"file": ("../../etc/passwd", frame, "image/png")}
    )
    assert uploaded.status_code == 201, uploaded.text
    template = uploaded.json()
    assert template["mime"] == "image/png" and template["width"] == 200
    bad = await admin.post("/api/template-media", files={"file": ("x.png", b"nope", "image/png")})
    assert bad.status_code == 415
    bound = await admin.put(
        "/api/slots/slot-006",
        json={
            "operation": "frame",
            "template_media": [{"role": "frame", "template_id": template["id"]}],
        },
    )
    assert bound.status_code == 200 and bound.json()["template_media"][0]["role"] == "frame"
    listing = (await admin.get("/api/template-media")).json()["template_media"]
    assert listing[0]["used_by"] == ["slot-006"]
    busy = await admin.delete(f"/api/template-media/{template['id']}")
    assert busy.status_code == 409
    ingest = await dslr_upload(
        "127.0.0.1", daemon.port, "slot-006", photo=PHOTO, password=INGEST_PASSWORD
    )
    assert ingest is not None and ingest.status == 200 and ingest.body != PHOTO
    await admin.put("/api/slots/slot-006", json={"operation": "passthrough", "template_media": []})
    assert (await admin.delete(f"/api/template-media/{template['id']}")).status_code == 204
    assert (await admin.delete(f"/api/template-media/{template['id']}")).status_code == 404
    assert list(daemon.context.store.templates.iterdir()) == []


async def test_temporary_media_and_purge(daemon: RunningDaemon, admin: httpx.AsyncClient) -> None:
    registered = await admin.post(
        "/api/media/register", files={"file": ("p.jpg", PHOTO, "image/jpeg")}
    )
    assert registered.status_code == 201
    media = registered.json()
    assert media["expires_at"] == pytest.approx(time.time() + 48, abs=5)
    async with httpx.AsyncClient() as plain:
        assert (await plain.get(media["public_url"])).content == PHOTO
        daemon.clock.offset = 60
        assert (await plain.get(media["public_url"])).status_code == 410
    purge = await admin.post("/api/media/cache/purge")
    assert purge.status_code == 202 and purge.json() == {"status": "accepted"}
    with trio.fail_after(5):
        while any(p.name.startswith("media-") for p in daemon.context.store.temp.iterdir()):
            await trio.sleep(0.02)


# -- settings and secrets -------------------------------------------------------------------------


async def test_ingest_password_rotation_takes_effect_at_once(
    daemon: RunningDaemon, admin: httpx.AsyncClient
) -> None:
    rotated = await admin.put("/api/settings", json={"ingest_password": "new-booth-pass"})
    assert rotated.status_code == 200
    state = rotated.json()["ingest_password"]
    assert state["configured"] and state["rotated_by"] == "serg"
    assert "new-booth-pass" not in rotated.text
    old = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD)
    new = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password="new-booth-pass")
    assert old is not None and old.status == 401
    assert new is not None and new.status == 200


async def test_provider_keys_are_stored_encrypted_and_never_echoed(
    daemon: RunningDaemon, admin: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "AIzaSy-this-is-a-very-secret-key-0123456789"
    response = await admin.put(
        "/api/settings", json={"provider_keys": {"gemini": secret}, "sync_response_seconds": 30}
    )
    assert response.status_code == 200
    state = response.json()
    assert state["provider_keys"]["gemini"]["configured"] is True
    assert state["provider_keys"]["gemini"]["source"] == "settings"
    assert state["provider_keys"]["openai"]["configured"] is False
    assert state["sync_response_seconds"] == 30
    texts = [
        response.text,
        (await admin.get("/api/settings")).text,
        (await admin.get("/api/slots/slot-001")).text,
    ]
    texts += [r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records]
    assert not any(secret in text for text in texts)
    from photochangerd.db import repositories

    stored = await daemon.context.db.read(repositories.provider_secrets)
    assert secret.encode() not in stored["gemini"][0]
    assert await daemon.context.keys.get("gemini") == secret
    removed = await admin.put("/api/settings", json={"provider_keys": {"gemini": ""}})
    assert removed.json()["provider_keys"]["gemini"]["configured"] is False


@pytest.mark.parametrize(
    "payload",
    [
        {"sync_response_seconds": 5},
        {"sync_response_seconds": 61},
        {"provider_keys": {"dalle": "x"}},
        {"ingest_password": "ab"},
    ],
)
async def test_settings_validation(admin: httpx.AsyncClient, payload: dict[str, Any]) -> None:
    response = await admin.put("/api/settings", json=payload)
    assert response.status_code == 422 and response.json()["failure_reason"] == "validation_error"


# -- test run, jobs, stats -----------------------------------------------------------------------


async def test_test_run_end_to_end(daemon: RunningDaemon, admin: httpx.AsyncClient) -> None:
    response = await admin.post(
        "/api/slots/slot-008/test-run",
        files={"test_image": ("t.jpg", PHOTO, "image/jpeg")},
        data={"slot_payload": json.dumps({"operation": "grayscale"})},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok" and body["completed_in_seconds"] > 0
    job = (await admin.get(f"/api/jobs/{body['job_id']}")).json()
    assert job["source"] == "test_run" and job["operation"] == "grayscale"
    async with httpx.AsyncClient() as plain:
        result = await plain.get(body["public_result_url"])
    assert result.status_code == 200 and result.content != PHOTO
    saved = (await admin.get("/api/slots/slot-008")).json()
    assert saved["operation"] == "passthrough"  # the override was not saved
    bad = await admin.post(
        "/api/slots/slot-008/test-run",
        files={"test_image": ("t.jpg", PHOTO, "image/jpeg")},
        data={"slot_payload": json.dumps({"provider": "gemini", "operation": "edit"})},
    )
    assert bad.status_code == 422 and "settings.prompt" in bad.json()["errors"]


async def test_stats_match_a_known_sequence(
    daemon: RunningDaemon, admin: httpx.AsyncClient
) -> None:
    await daemon.set_setting("sync_response_seconds", 1.0)
    await daemon.configure_slot("slot-010", provider="script", operation="hang")
    await daemon.configure_slot("slot-011", provider="script", operation="reject")

    async def shoot(slot: str, password: str = INGEST_PASSWORD, photo: bytes = PHOTO) -> int:
        response = await dslr_upload("127.0.0.1", daemon.port, slot, photo=photo, password=password)
        assert response is not None
        return response.status

    assert [await shoot("slot-009") for _ in range(3)] == [200, 200, 200]
    assert await shoot("slot-010") == 504
    assert [await shoot("slot-011") for _ in range(2)] == [502, 502]
    assert await shoot("slot-009", password="wrong") == 401
    assert await shoot("slot-009", photo=b"not an image") == 415
    with trio.fail_after(3):  # the timeout is recorded by its worker right after the 504
        while (await admin.get("/api/stats/slot-010")).json()["timeouts"] != 1:
            await trio.sleep(0.02)
    await daemon.context.activity.flush()

    stats = (await admin.get("/api/stats/global", params={"window_minutes": 60})).json()
    assert stats["jobs"] == 6 and stats["successes"] == 3
    assert stats["timeouts"] == 1 and stats["provider_errors"] == 2
    assert stats["rejected"] == {"invalid_password": 1, "unsupported_media_type": 1}
    assert stats["success_rate"] == 0.5 and stats["timeout_rate"] == pytest.approx(0.1667, 0.01)
    assert stats["p50_duration_seconds"] is not None and stats["last_success_at"] is not None
    assert stats["last_error_reason"] in ("provider_error", "timeout")
    assert stats["storage_usage_mb"] > 0
    assert sum(b["jobs"] for b in stats["buckets"]) == 6
    assert sum(b["rejected"] for b in stats["buckets"]) == 2
    slot9 = (await admin.get("/api/stats/slot-009")).json()
    assert slot9["jobs"] == 3 and slot9["rejected"] == {
        "invalid_password": 1,
        "unsupported_media_type": 1,
    }
    per_slot = (await admin.get("/api/stats/slots")).json()["slots"]
    assert {s["slot_id"]: s["jobs"] for s in per_slot if s["jobs"]} == {
        "slot-009": 3,
        "slot-010": 1,
        "slot-011": 2,
    }
    assert (await admin.get("/api/stats/overview")).json()["jobs"] == 6

    jobs = (await admin.get("/api/jobs", params={"slot_id": "slot-011"})).json()["jobs"]
    assert len(jobs) == 2 and all(j["failure_reason"] == "provider_error" for j in jobs)
    timeouts = (await admin.get("/api/jobs", params={"status": "timeout"})).json()["jobs"]
    assert len(timeouts) == 1
    assert (await admin.get("/api/jobs", params={"limit": 0})).status_code == 422

    metrics = (await admin.get("/metrics")).text
    assert (
        'photochanger_ingest_requests_total{reason="invalid_password",slot="slot-009",'
        'status="401"} 1.0' in metrics
    )
    assert "photochanger_job_duration_seconds_bucket" in metrics
    assert 'photochanger_provider_errors_total{provider="script",status="502"} 2.0' in metrics


async def test_slot_cleanup(daemon: RunningDaemon, admin: httpx.AsyncClient) -> None:
    ok = await dslr_upload(
        "127.0.0.1", daemon.port, "slot-012", photo=PHOTO, password=INGEST_PASSWORD
    )
    assert ok is not None and ok.status == 200
    daemon.clock.offset = 80 * 3600
    response = await admin.post("/api/slots/slot-012/cleanup")
    assert response.json() == {"status": "ok", "deleted_results": 1}


# -- health and the contract -------------------------------------------------------------------


async def test_health_endpoints(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json()["status"] == "ok"


OPENAPI_FILE = Path(__file__).resolve().parent.parent / "shared" / "openapi.json"


async def test_openapi_document_is_valid_and_committed(client: httpx.AsyncClient) -> None:
    from openapi_spec_validator import validate

    document = (await client.get("/api/openapi.json")).json()
    validate(document)
    paths = document["paths"]
    for path in (
        "/api/login",
        "/api/slots/{slot_id}",
        "/api/settings",
        "/api/stats/global",
        "/ingest/{slot_id}",
        "/public/results/{job_id}",
    ):
        assert path in paths, path
    committed = json.loads(OPENAPI_FILE.read_text()) if OPENAPI_FILE.exists() else None
    assert committed == document, (
        "the API changed: regenerate shared/openapi.json with "
        "`python -m photochangerd openapi > shared/openapi.json`"
    )


class _Assets(HTMLParser):
    """Every script, style sheet and icon a page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        url = values.get("src") if tag == "script" else values.get("href")
        if tag in ("script", "link") and url:
            self.urls.append(url)


async def test_api_docs_work_offline(client: httpx.AsyncClient) -> None:
    page = await client.get("/api/docs")  # no token: documentation is public, like the document
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/api/openapi.json" in page.text
    parser = _Assets()
    parser.feed(page.text)
    assert len(parser.urls) >= 2  # Swagger UI's script and its style sheet
    for url in parser.urls:
        # Served by the daemon itself: a local path, never a CDN.
        assert urlsplit(url).netloc == "" and url.startswith("/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0, url
        if url.endswith("/init.js"):  # ours, a few lines: no ranges
            assert b"SwaggerUIBundle(" in asset.content
            continue
        tail = await client.get(url, headers={"Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == asset.content[-10:], url
    assert (await client.get("/api/openapi.json")).status_code == 200
    # Only the assets the page uses are served from the bundle.
    for path in ("/api/docs/swagger-ui-bundle.js.map", "/api/docs/index.html", "/api/docs/..%2f"):
        assert (await client.get(path)).status_code == 404, path


async def test_openapi_lists_only_routes_that_exist(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/api/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/static")]
    assert not [path for path in paths if path.startswith("/api/docs")]
    assert (await client.get("/static/x.js")).status_code == 404


def test_daemon_type_is_exported() -> None:
    assert Daemon.__name__ == "Daemon"


async def test_the_instance_names_itself(nursery: trio.Nursery, tmp_path: Path) -> None:
    """``instance_id``: in /readyz, in the job it ran (``claimed_by``), in JSON log lines."""
    from photochangerd.logs import JsonFormatter, set_log_instance

    daemon = await start_daemon(nursery, make_config(tmp_path, instance_id="booth-box-1"))
    async with httpx.AsyncClient(base_url=daemon.url) as client:
        ready = (await client.get("/readyz")).json()
        assert ready["instance"] == "booth-box-1"
        upload = await dslr_upload(
            "127.0.0.1", daemon.port, photo=make_jpeg(320, 240), password=INGEST_PASSWORD
        )
        assert upload is not None and upload.status == 200
        token = await _token(client)
        job = await client.get(
            f"/api/jobs/{upload.headers['x-job-id']}",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert job.json()["claimed_by"] == "booth-box-1"
    record = logging.LogRecord("photochangerd", logging.INFO, __file__, 1, "job.done", None, None)
    set_log_instance("booth-box-1")
    try:
        assert json.loads(JsonFormatter().format(record))["instance"] == "booth-box-1"
    finally:
        set_log_instance(None)


async def test_a_forged_token_with_every_claim_is_accepted(
    daemon: RunningDaemon, client: httpx.AsyncClient
) -> None:
    """The control for the cases above: they fail for their own reason, not a missing claim."""
    token = _forge(_valid_claims(round(time.time(), 3)), _jwt_key(daemon))
    response = await client.get("/api/slots", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


async def test_logout_signs_the_token_out(client: httpx.AsyncClient) -> None:
    token = await _token(client)
    other = await _token(client)
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/slots", headers=headers)).status_code == 200
    assert (await client.post("/api/logout", headers=headers)).status_code == 204
    refused = await client.get("/api/slots", headers=headers)
    assert refused.status_code == 401 and "signed out" in refused.json()["details"]
    still = await client.get("/api/slots", headers={"Authorization": f"Bearer {other}"})
    assert still.status_code == 200  # only that token
    assert (await client.post("/api/logout")).status_code == 401  # needs a token


async def test_a_new_password_ends_earlier_tokens_and_console_sessions(
    daemon: RunningDaemon, client: httpx.AsyncClient
) -> None:
    """``photochangerd set-admin-password``: a leaked token or an open console must not
    outlive the password it was opened with (up to 12 h, the token's life)."""
    from photochangerd.auth.passwords import hash_password
    from photochangerd.db import repositories

    token = await _token(client)
    other_user = await _token(client, "igor")
    sessions = daemon.context.sessions
    console = await sessions.open("serg")
    new_password = "a-new-password-for-serg"
    digest = hash_password(new_password)
    await daemon.context.db.write(repositories.set_admin_password, "serg", digest, time.time())

    refused = await client.get("/api/slots", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401
    assert refused.json()["details"] == (
        "the password changed after the token was issued: sign in again"
    )
    assert await sessions.lookup(console.session_id) is None
    old = await client.post("/api/login", json={"username": "serg", "password": ADMIN_PASSWORD})
    assert old.status_code == 401
    # A token carries its password's version (compared exactly: no clock of one host against
    # another's); the new password's version is the change's.
    import jwt

    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["pwv"] < (await daemon.context.db.read(repositories.admin_credentials, "serg"))[1]
    # At once with the new one (the same second as the change), and only serg's were ended.
    fresh = await client.post("/api/login", json={"username": "serg", "password": new_password})
    assert fresh.status_code == 200
    # An instance whose clock is 100 s behind issued it with the new password: accepted.
    version = (await daemon.context.db.read(repositories.admin_credentials, "serg"))[1]
    behind = _valid_claims(round(time.time() - 100, 3)) | {"pwv": version, "jti": "behind"}
    skewed = _forge(behind, _jwt_key(daemon))
    for bearer in (fresh.json()["access_token"], other_user, skewed):
        allowed = await client.get("/api/slots", headers={"Authorization": f"Bearer {bearer}"})
        assert allowed.status_code == 200


async def test_a_body_that_is_not_json_says_so(client: httpx.AsyncClient) -> None:
    headers = {"Authorization": f"Bearer {await _token(client)}"}
    broken = await client.put(
        "/api/slots/slot-009",
        content=b'{"display_name": "Garden", "settings": {',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert broken.status_code == 400
    assert broken.json()["failure_reason"] == "invalid_request"
    assert broken.json()["details"].startswith("the body is not valid JSON: ")
    assert "line 1 column" in broken.json()["details"]
    form = await client.put("/api/slots/slot-009", data={"display_name": "Garden"}, headers=headers)
    assert form.status_code == 415
    assert form.json() == {
        "status": "error",
        "failure_reason": "unsupported_media_type",
        "details": "the body must be JSON (Content-Type: application/json), "
        "not application/x-www-form-urlencoded",
    }
