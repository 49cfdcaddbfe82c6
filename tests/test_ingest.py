"""End-to-end ingest over a real socket with DSLR-Remote-Pro-shaped requests
(docs/booth-contract.md)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import trio

from photochangerd.db import repositories
from photochangerd.http.ingest import _hash_check
from tests.conftest import INGEST_PASSWORD, RunningDaemon
from tests.support.dslr import build_dslr_body, dslr_upload
from tests.support.images import make_jpeg, make_png, make_webp, png_bomb, truncated

PHOTO = make_jpeg(1200, 800)


async def _count_jobs(daemon: RunningDaemon) -> int:
    def count(conn):  # type: ignore[no-untyped-def]
        import sqlalchemy as sa

        return conn.scalar(sa.text("SELECT count(*) FROM job"))

    return int(await daemon.context.db.read(count))


async def _log_rows(daemon: RunningDaemon) -> list[tuple[str | None, int, str | None]]:
    await daemon.context.activity.flush()

    def rows(conn):  # type: ignore[no-untyped-def]
        import sqlalchemy as sa

        result = conn.execute(
            sa.text("SELECT slot_id, status_code, failure_reason FROM processing_log ORDER BY id")
        )
        return [tuple(row) for row in result]

    return await daemon.context.db.read(rows)


async def test_dslr_upload_success(daemon: RunningDaemon) -> None:
    response = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD)
    assert response is not None
    assert response.got_continue
    assert response.status == 200, response.body[:300]
    assert response.body == PHOTO  # passthrough is byte-exact
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["content-length"] == str(len(PHOTO))
    assert response.headers["cache-control"] == "no-store"
    job_id = response.headers["x-job-id"]
    guest = f"{daemon.config.effective_public_base_url}/r/{job_id}"
    assert response.headers["link"] == (
        f'</public/results/{job_id}>; rel="alternate", <{guest}>; rel="alternate"; type="text/html"'
    )

    job = await daemon.job(job_id)
    assert job.is_finalized and job.failure_reason is None and job.response_status == 200
    assert job.source == "ingest" and job.provider == "local" and job.operation == "passthrough"
    assert job.result_checksum == hashlib.sha256(PHOTO).hexdigest()
    assert job.result_size_bytes == len(PHOTO)
    assert job.result_expires_at is not None and job.finalized_at is not None
    assert job.result_expires_at == pytest.approx(job.finalized_at + 72 * 3600)
    assert Path(job.result_file_path or "").read_bytes() == PHOTO
    fields = job.client_metadata["fields"]
    assert fields["profile"] == r"C:\Users\Acer\Documents\PhotoboothImages\setup_Serg.xml"
    assert fields["id"] == "CY04N068111304S2L_00000001."
    assert "password" not in fields
    assert job.client_metadata["hash_check"] == "verified_sha1"
    assert job.client_metadata["query"] == "session=42"
    assert job.input_path is None
    assert list(daemon.context.store.temp.iterdir()) == []
    assert list(daemon.context.store.spool.iterdir()) == []
    assert await _log_rows(daemon) == [("slot-001", 200, None)]


async def test_alias_route_png_and_webp(daemon: RunningDaemon) -> None:
    for data, mime in (
        (make_png(300, 200, alpha=True), "image/png"),
        (make_webp(300, 200), "image/webp"),
    ):
        response = await dslr_upload(
            "127.0.0.1",
            daemon.port,
            photo=data,
            path="/api/ingest/slot-002",
            query=None,
            password=INGEST_PASSWORD,
        )
        assert response is not None and response.status == 200
        assert response.headers["content-type"] == mime and response.body == data


@pytest.mark.parametrize("name", ["sha1", "sha256", "md5"])
def test_hash_check_recognises_each_digest(name: str) -> None:
    digest = hashlib.new(name, PHOTO).hexdigest()
    assert _hash_check(PHOTO, digest.upper()) == f"verified_{name}"
    assert _hash_check(PHOTO, "0" * len(digest)) == "unverified"
    assert _hash_check(PHOTO, "not-hex") == "unverified"
    assert _hash_check(PHOTO, "") == "absent"


async def test_hash_is_never_a_reason_to_reject(daemon: RunningDaemon) -> None:
    body, ctype = build_dslr_body(PHOTO, password=INGEST_PASSWORD, hash_value="0" * 40)
    response = await dslr_upload("127.0.0.1", daemon.port, body=body, content_type=ctype)
    assert response is not None and response.status == 200
    job = await daemon.job(response.headers["x-job-id"])
    assert job.client_metadata["hash_check"] == "unverified"
    body, ctype = build_dslr_body(PHOTO, password=INGEST_PASSWORD, include_hash=False)
    response = await dslr_upload("127.0.0.1", daemon.port, body=body, content_type=ctype)
    assert response is not None and response.status == 200


def _error(response, status: int, reason: str) -> None:  # type: ignore[no-untyped-def]
    assert response is not None
    assert response.status == status, (response.status, response.body[:300])
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "error"
    assert body["failure_reason"] == reason
    assert set(body) <= {"status", "failure_reason", "details"}


@pytest.mark.parametrize(
    "slot_path",
    [
        "/ingest/slot-016",
        "/ingest/slot-000",
        "/ingest/slot-1",
        "/ingest/..%2fslot-001",
        "/ingest/slot-001%00",
        "/ingest/slot-001%5c",
    ],
)
async def test_unknown_slot(daemon: RunningDaemon, slot_path: str) -> None:
    response = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, path=slot_path)
    _error(response, 404, "slot_not_found")


async def test_disabled_slot(daemon: RunningDaemon) -> None:
    await daemon.configure_slot("slot-003", is_active=False)
    response = await dslr_upload(
        "127.0.0.1", daemon.port, "slot-003", photo=PHOTO, password=INGEST_PASSWORD
    )
    _error(response, 404, "slot_disabled")


async def test_content_length_over_limit_answers_before_the_body(daemon: RunningDaemon) -> None:
    await daemon.configure_slot("slot-001", size_limit_mb=1)
    big = make_jpeg(4000, 3000, grain=0.3)
    assert len(big) > 2 * 1024 * 1024
    response = await dslr_upload(
        "127.0.0.1",
        daemon.port,
        photo=big,
        password=INGEST_PASSWORD,
        send_rate_bytes_per_s=200_000,
        check_close_within=2,
    )
    _error(response, 413, "payload_too_large")
    assert response is not None
    assert response.elapsed < 1.0  # answered from the header, not after trickling the body
    assert response.bytes_sent < len(big) // 2
    assert response.server_closed


@pytest.mark.parametrize(
    "case",
    ["not_multipart", "no_boundary", "broken", "missing_password", "missing_file", "empty_body"],
)
async def test_invalid_request(daemon: RunningDaemon, case: str) -> None:
    body, ctype = build_dslr_body(PHOTO, password=INGEST_PASSWORD)
    if case == "not_multipart":
        body, ctype = b'{"password": "123456"}', "application/json"
    elif case == "no_boundary":
        ctype = "multipart/form-data"
    elif case == "broken":
        body = body[: len(body) // 2]  # ends mid-file, no closing boundary
        body = body.replace(b"Content-Disposition", b"Content-Dispositoin", 1)
    elif case == "missing_password":
        body, ctype = build_dslr_body(PHOTO, password=None)
    elif case == "missing_file":
        body = (
            body.split(b'name="fileToUpload"')[0].rsplit(b"\r\n--", 1)[0]
            + b"\r\n--------------090306000104030805010400--\r\n"
        )
    elif case == "empty_body":
        body = b""
    response = await dslr_upload("127.0.0.1", daemon.port, body=body, content_type=ctype)
    _error(response, 400, "invalid_request")
    assert await _count_jobs(daemon) == 0


async def test_wrong_password(daemon: RunningDaemon) -> None:
    response = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password="654321")
    _error(response, 401, "invalid_password")
    # the same wrong password again is answered from memory, not another KDF run
    response = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password="654321")
    _error(response, 401, "invalid_password")
    assert response is not None and response.elapsed < 0.5
    assert await _count_jobs(daemon) == 0
    rows = await _log_rows(daemon)
    assert rows == [("slot-001", 401, "invalid_password")] * 2


async def test_photo_over_slot_limit_is_cut_while_streaming(daemon: RunningDaemon) -> None:
    await daemon.configure_slot("slot-001", size_limit_mb=1)
    big = make_jpeg(4000, 3000, grain=0.3)
    response = await dslr_upload(
        "127.0.0.1",
        daemon.port,
        photo=big,
        password=INGEST_PASSWORD,
        chunked=True,
        check_close_within=2,
    )
    _error(response, 413, "payload_too_large")
    assert response is not None and response.server_closed
    assert await _count_jobs(daemon) == 0
    assert list(daemon.context.store.spool.iterdir()) == []


@pytest.mark.parametrize("case", ["text", "truncated_jpeg", "png_bomb", "gif", "empty"])
async def test_unsupported_media(daemon: RunningDaemon, case: str) -> None:
    data = {
        "text": b"this is not a photo, whatever the part's Content-Type says" * 10,
        "truncated_jpeg": truncated(PHOTO, keep=0.6),
        "png_bomb": png_bomb(20000),
        "gif": b"GIF89a" + b"\x00" * 100,
        "empty": b"",
    }[case]
    response = await dslr_upload("127.0.0.1", daemon.port, photo=data, password=INGEST_PASSWORD)
    _error(response, 415, "unsupported_media_type")
    if case == "png_bomb":  # its header says 20000x20000: too large, not broken
        assert response.json()["details"].startswith("image too large: 400000000 pixels")
    assert await _count_jobs(daemon) == 0


async def test_queue_bound_answers_429(nursery: trio.Nursery, tmp_path: Path) -> None:
    from tests.conftest import make_config, start_daemon

    daemon = await start_daemon(nursery, make_config(tmp_path, max_in_flight=1, workers=2))
    await daemon.configure_slot(
        "slot-001", provider="script", operation="echo", settings={"seconds": 1.0}
    )
    results: list[int] = []

    async def first() -> None:
        response = await dslr_upload(
            "127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD
        )
        assert response is not None
        results.append(response.status)

    async with trio.open_nursery() as inner:
        inner.start_soon(first)
        with trio.fail_after(5):
            while not daemon.provider.calls:
                await trio.sleep(0.01)
        response = await dslr_upload(
            "127.0.0.1", daemon.port, "slot-002", photo=PHOTO, password=INGEST_PASSWORD
        )
        _error(response, 429, "rate_limited")
        assert response is not None and int(response.headers["retry-after"]) > 0
    assert results == [200]


async def test_busy_slot_waits_in_the_queue(nursery: trio.Nursery, tmp_path: Path) -> None:
    from tests.conftest import make_config, start_daemon

    daemon = await start_daemon(nursery, make_config(tmp_path, workers=1))
    await daemon.configure_slot(
        "slot-001", provider="script", operation="echo", settings={"seconds": 0.3}
    )
    statuses: list[int] = []

    async def shoot() -> None:
        response = await dslr_upload(
            "127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD
        )
        assert response is not None
        statuses.append(response.status)

    async with trio.open_nursery() as inner:
        for _ in range(3):
            inner.start_soon(shoot)
    assert statuses == [200, 200, 200]


@pytest.mark.parametrize(
    ("operation", "status", "reason", "failure"),
    [
        ("reject", 502, "provider_error", "provider_error"),
        ("unavailable", 503, "provider_error", "provider_error"),
        ("boom", 500, "internal_error", "internal_error"),
        ("garbage", 502, "provider_error", "provider_error"),
    ],
)
async def test_provider_failures(
    daemon: RunningDaemon, operation: str, status: int, reason: str, failure: str
) -> None:
    await daemon.configure_slot("slot-004", provider="script", operation=operation)
    response = await dslr_upload(
        "127.0.0.1", daemon.port, "slot-004", photo=PHOTO, password=INGEST_PASSWORD
    )
    _error(response, status, reason)
    jobs = await daemon.context.db.read(_all_jobs)
    assert len(jobs) == 1
    job = jobs[0]
    assert job.is_finalized and job.failure_reason == failure and job.result_file_path is None
    assert list(daemon.context.store.results.iterdir()) == []
    assert list(daemon.context.store.temp.iterdir()) == []


def _all_jobs(conn):  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from photochangerd.db.tables import job

    rows = conn.execute(sa.select(job))
    return [repositories._job(row) for row in rows]


async def test_deadline_answers_504_and_cancels_provider_work(daemon: RunningDaemon) -> None:
    await daemon.set_setting("sync_response_seconds", 1.5)
    await daemon.configure_slot("slot-005", provider="script", operation="hang")
    response = await dslr_upload(
        "127.0.0.1", daemon.port, "slot-005", photo=PHOTO, password=INGEST_PASSWORD
    )
    assert response is not None
    assert response.status == 504
    assert response.json() == {
        "status": "timeout",
        "failure_reason": "provider_timeout",
        "details": "deadline reached",
    }
    assert 1.45 <= response.elapsed <= 1.6, response.elapsed
    jobs = await daemon.context.db.read(_all_jobs)
    assert len(jobs) == 1
    # The worker, whose scope ended at the same instant, records the timeout within ms.
    jobs = [await daemon.wait_job_final(jobs[0].id, timeout=1)]
    assert jobs[0].failure_reason == "timeout" and jobs[0].response_status == 504
    assert jobs[0].finalized_at is not None
    assert jobs[0].finalized_at - jobs[0].created_at == pytest.approx(1.5, abs=0.05)
    with trio.fail_after(2):
        await daemon.provider.finished.wait()
    call = daemon.provider.calls[0]
    assert call.cancelled and call.ended is not None
    assert call.ended - call.started < 1.6
    assert list(daemon.context.store.temp.iterdir()) == []
    assert list(daemon.context.store.results.iterdir()) == []


async def test_client_gone_job_still_finishes_into_the_gallery(daemon: RunningDaemon) -> None:
    await daemon.configure_slot(
        "slot-006", provider="script", operation="echo", settings={"seconds": 1.5}
    )
    # A small photo and a drop well after the upload, well before the provider answers: robust
    # on a loaded machine.
    response = await dslr_upload(
        "127.0.0.1",
        daemon.port,
        "slot-006",
        photo=make_jpeg(320, 240),
        password=INGEST_PASSWORD,
        close_after=0.7,
    )
    assert response is None
    assert len(daemon.provider.calls) == 1
    with trio.fail_after(5):
        while (
            not (await daemon.context.db.read(_all_jobs))
            or not (await daemon.context.db.read(_all_jobs))[0].is_finalized
        ):
            await trio.sleep(0.02)
    job = (await daemon.context.db.read(_all_jobs))[0]
    assert job.failure_reason is None and Path(job.result_file_path or "").exists()


@pytest.mark.slow
async def test_new_wrong_passwords_are_paced_per_address(daemon: RunningDaemon) -> None:
    """Each new wrong password costs an argon2 run: after 20 from one address they are paced to
    one per second (docs/stack-traps.md, "A KDF per upload") — slowed, not locked out, so the
    booth's correct password (even a just-rotated one that needs a KDF run) still gets through."""
    small = make_jpeg(200, 150)
    for attempt in range(20):
        response = await dslr_upload(
            "127.0.0.1", daemon.port, photo=small, password=f"guess-{attempt}"
        )
        _error(response, 401, "invalid_password")
    started = trio.current_time()
    for attempt in (20, 21, 22):
        response = await dslr_upload(
            "127.0.0.1", daemon.port, photo=small, password=f"guess-{attempt}"
        )
        _error(response, 401, "invalid_password")
    assert trio.current_time() - started >= 1.9  # three paced KDF runs, a second apart
    seen = await dslr_upload("127.0.0.1", daemon.port, photo=small, password="guess-3")
    _error(seen, 401, "invalid_password")
    assert seen is not None and seen.elapsed < 0.5  # remembered: no KDF, no pacing
    ok = await dslr_upload("127.0.0.1", daemon.port, photo=small, password=INGEST_PASSWORD)
    assert ok is not None and ok.status == 200 and ok.elapsed < 2.5


@pytest.mark.slow
async def test_burst_of_504s_does_not_wait_for_the_timeout_writes(
    daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every booth times out at once (provider down): each 504 leaves at its deadline whoever
    settles it first — the request or the worker — while the writes queue behind a slow DB."""
    import time

    await daemon.set_setting("sync_response_seconds", 1.0)
    await daemon.configure_slot("slot-006", provider="script", operation="hang")
    real = repositories.finalize_job

    def slow_finalize(*args: object, **kwargs: object) -> bool:
        time.sleep(0.3)  # in the DB thread, under the write lock: 8 of them take 2.4 s
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(repositories, "finalize_job", slow_finalize)
    responses: list[float] = []

    async def booth() -> None:
        response = await dslr_upload(
            "127.0.0.1", daemon.port, "slot-006", photo=PHOTO, password=INGEST_PASSWORD
        )
        assert response is not None and response.status == 504
        responses.append(response.elapsed)

    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(booth)
    assert len(responses) == 8 and max(responses) < 1.3, responses
    jobs = await daemon.context.db.read(_all_jobs)
    for job in jobs:
        final = await daemon.wait_job_final(job.id, timeout=5)
        assert final.failure_reason == "timeout"


async def test_upload_slower_than_the_deadline_is_408(daemon: RunningDaemon) -> None:
    """The body is read inside the request's own deadline, not Quart's BODY_TIMEOUT; a trickling
    upload is cut at the deadline and answered at once (docs/stack-traps.md, "Quart's
    BODY_TIMEOUT and RESPONSE_TIMEOUT")."""
    await daemon.set_setting("sync_response_seconds", 1.0)
    response = await dslr_upload(
        "127.0.0.1",
        daemon.port,
        photo=PHOTO,
        password=INGEST_PASSWORD,
        send_rate_bytes_per_s=100_000,
        check_close_within=2,
    )
    _error(response, 408, "invalid_request")
    assert response is not None and 0.95 <= response.elapsed <= 1.5
    assert response.server_closed
    assert await _count_jobs(daemon) == 0
