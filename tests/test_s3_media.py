"""A daemon with ``media_backend = "s3"`` (SQLite) against a real S3 server (SeaweedFS).

A DSLR-style upload is answered 200; its result link (with HEAD, range and conditional
requests), thumbnail, guest page and picture work, streamed from the bucket; the objects are in
the bucket under the prefix, not on the local disk; a backup holds the database and keys and says
where the media are; the cleaner deletes the objects after the expiry.
Then the store goes away: the ingest answers 503 at once, ``/readyz`` names the object store,
a public link answers 503 with the JSON error body, and all of it recovers without a restart.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from photochangerd.backup import backup, read_manifest
from photochangerd.media.cleaner import Cleaner
from tests.conftest import (
    ADMIN_PASSWORD,
    INGEST_PASSWORD,
    RunningDaemon,
    make_config,
    s3_or_skip,
    start_daemon,
)
from tests.support.dslr import dslr_upload
from tests.support.images import make_jpeg, make_png
from tests.support.s3 import REGION, SeaweedS3

PHOTO = make_jpeg(640, 480)
PREFIX = "booths/"


async def _start(
    nursery: trio.Nursery, tmp_path: Path, server: SeaweedS3, bucket: str
) -> RunningDaemon:
    config = make_config(
        tmp_path,
        media_backend="s3",
        s3_endpoint_url=server.endpoint_url,
        s3_bucket=bucket,
        s3_region=REGION,
        s3_prefix=PREFIX,
    )
    return await start_daemon(nursery, config)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, s3_server: SeaweedS3) -> None:
    # boto3 reads the process environment (the standard credential chain).
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)


@pytest.mark.slow
async def test_results_live_in_the_bucket_and_are_served_from_it(
    nursery: trio.Nursery, tmp_path: Path, s3_server: SeaweedS3, s3_bucket: str, aws_env: None
) -> None:
    daemon = await _start(nursery, tmp_path, s3_server, s3_bucket)
    response = await dslr_upload(
        "127.0.0.1", daemon.port, "slot-001", photo=PHOTO, password=INGEST_PASSWORD
    )
    assert response is not None and response.status == 200, response
    job_id = response.headers["x-job-id"]
    job = await daemon.job(job_id)
    assert job.result_file_path == f"results/{job_id}.jpg"  # a key, not a path
    assert s3_server.keys(s3_bucket) == [f"{PREFIX}results/{job_id}.jpg"]
    assert list(daemon.context.store.results.iterdir()) == []  # nothing on the local disk

    async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as http:
        result = await http.get(f"/public/results/{job_id}")
        assert result.status_code == 200 and result.content == PHOTO
        assert result.headers["content-type"] == "image/jpeg"
        assert result.headers["content-disposition"] == f'attachment; filename="{job_id}.jpg"'
        assert result.headers["content-length"] == str(len(PHOTO))
        # A HEAD, a revalidation and a range ask for the validators first (HeadObject): only
        # the range then starts a download.
        downloads = []
        client = daemon.context.store.objects._client  # type: ignore[attr-defined]
        get_object = client.get_object

        def counted(**options: object) -> object:
            downloads.append(options.get("Range"))
            return get_object(**options)

        client.get_object = counted
        head = await http.head(f"/public/results/{job_id}")
        assert head.status_code == 200 and head.headers["content-length"] == str(len(PHOTO))
        ranged = await http.get(f"/public/results/{job_id}", headers={"Range": "bytes=10-109"})
        assert ranged.status_code == 206 and ranged.content == PHOTO[10:110]
        assert ranged.headers["content-range"] == f"bytes 10-109/{len(PHOTO)}"
        suffix = await http.get(f"/public/results/{job_id}", headers={"Range": "bytes=-50"})
        assert suffix.status_code == 206 and suffix.content == PHOTO[-50:]
        cached = await http.get(
            f"/public/results/{job_id}", headers={"If-None-Match": result.headers["etag"]}
        )
        assert cached.status_code == 304 and cached.content == b""
        assert downloads == ["bytes=10-109", f"bytes={len(PHOTO) - 50}-{len(PHOTO) - 1}"]
        client.get_object = get_object

        thumb = await http.get(f"/public/results/{job_id}/thumbnail")
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
        assert thumb.content[:4] == b"RIFF"
        assert f"{PREFIX}thumbs/{job_id}.webp" in s3_server.keys(s3_bucket)
        again = await http.get(f"/public/results/{job_id}/thumbnail")  # now from the bucket
        assert again.status_code == 200 and again.content == thumb.content

        page = await http.get(f"/r/{job_id}")
        assert page.status_code == 200 and f"/public/results/{job_id}" in page.text
        picture = await http.get(f"/r/{job_id}/photo")
        assert picture.status_code == 200 and picture.content == PHOTO  # screen-sized already

        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["media"] == "s3"

        # A backup: the database and keys; the bucket is said to be backed up by its own means.
        report = await trio.to_thread.run_sync(backup, daemon.config, tmp_path / "backup")
        assert report.results == 0 and report.keys == 2
        assert any(s3_bucket in warning for warning in report.warnings), report.warnings
        manifest = read_manifest(tmp_path / "backup")
        assert manifest["source"]["media_backend"] == "s3" and manifest["skipped"] == []

        # Past the expiry: the cleaner deletes result and thumbnail from the bucket.
        daemon.clock.offset = 73 * 3600
        context = daemon.context
        report = await Cleaner(context.db, context.store, daemon.clock).run_once()
        assert report.expired_results == 1
        assert s3_server.keys(s3_bucket) == []
        assert (await daemon.job(job_id)).result_file_path is None
        gone = await http.get(f"/public/results/{job_id}")
        assert gone.status_code == 410
    daemon.daemon.shutdown.set()


@pytest.mark.slow
async def test_an_object_store_outage_is_503_fast_then_recovers(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = s3_or_skip()  # its own: this test stops it
    try:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        bucket = server.create_bucket("outage")
        daemon = await _start(nursery, tmp_path, server, bucket)
        async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as http:
            first = await dslr_upload(
                "127.0.0.1", daemon.port, "slot-001", photo=PHOTO, password=INGEST_PASSWORD
            )
            assert first is not None and first.status == 200
            job_id = first.headers["x-job-id"]

            await trio.to_thread.run_sync(server.stop)
            stopped = trio.current_time()
            statuses = []
            answers = []
            while trio.current_time() - stopped < 5:
                sent = trio.current_time()
                answer = await dslr_upload(
                    "127.0.0.1", daemon.port, "slot-001", photo=PHOTO, password=INGEST_PASSWORD
                )
                assert answer is not None
                took = trio.current_time() - sent
                statuses.append(answer.status)
                answers.append(answer)
                if answer.status == 503:
                    assert took < 3, took  # fast: nowhere near the deadline (48 s)
                    assert b"service_unavailable" in answer.body
                await trio.sleep(0.5)
            # Every one, the first too: its job's PUT failed, which marked the store down.
            assert len(statuses) >= 5 and set(statuses) == {503}, statuses
            # The first got as far as storing its result: its job says why, no traceback.
            failed = await daemon.job(answers[0].headers["x-job-id"])
            assert failed.failure_reason == "internal_error"
            assert (failed.failure_details or "").startswith("object store unavailable")
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and "object store" in ready.json()["details"]
            link = await http.get(f"/public/results/{job_id}")
            assert link.status_code == 503
            assert link.json()["failure_reason"] == "service_unavailable"

            await trio.to_thread.run_sync(server.start)  # same ports, same data dir
            with trio.fail_after(15):  # the store's probe notices (every 2 s while down)
                while (await http.get("/readyz")).status_code != 200:
                    await trio.sleep(0.2)
            back = await dslr_upload(
                "127.0.0.1", daemon.port, "slot-001", photo=PHOTO, password=INGEST_PASSWORD
            )
            assert back is not None and back.status == 200
            old = await http.get(f"/public/results/{job_id}")
            assert old.status_code == 200 and old.content == PHOTO  # nothing lost
        daemon.daemon.shutdown.set()
    finally:
        await trio.to_thread.run_sync(server.close)


@pytest.mark.slow
async def test_templates_live_in_the_bucket(
    nursery: trio.Nursery, tmp_path: Path, s3_server: SeaweedS3, s3_bucket: str, aws_env: None
) -> None:
    """Uploaded through the admin API, read by a job (a frame), previewed by the console's slot
    page, deleted from the bucket with its row."""
    daemon = await _start(nursery, tmp_path, s3_server, s3_bucket)
    async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as admin:
        login = await admin.post(
            "/api/login", json={"username": "serg", "password": ADMIN_PASSWORD}
        )
        admin.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        frame = make_png(200, 150, alpha=True)
        uploaded = await admin.post(
            "/api/template-media", files={"file": ("frame.png", frame, "image/png")}
        )
        assert uploaded.status_code == 201, uploaded.text
        template_id = uploaded.json()["id"]
        key = f"{PREFIX}templates/{template_id}.png"
        assert s3_server.keys(s3_bucket) == [key]
        assert list(daemon.context.store.templates.iterdir()) == []
        bound = await admin.put(
            "/api/slots/slot-006",
            json={
                "operation": "frame",
                "template_media": [{"role": "frame", "template_id": template_id}],
            },
        )
        assert bound.status_code == 200
        framed = await dslr_upload(
            "127.0.0.1", daemon.port, "slot-006", photo=PHOTO, password=INGEST_PASSWORD
        )
        assert framed is not None and framed.status == 200 and framed.body != PHOTO
        async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as console:
            await console.post(
                "/admin/login", data={"username": "serg", "password": ADMIN_PASSWORD}
            )
            preview = await console.get(f"/admin/templates/{template_id}/preview")
            assert preview.status_code == 200, preview.text[:300]
            assert preview.headers["content-type"] == "image/webp"
        await admin.put(
            "/api/slots/slot-006", json={"operation": "passthrough", "template_media": []}
        )
        assert (await admin.delete(f"/api/template-media/{template_id}")).status_code == 204
        assert key not in s3_server.keys(s3_bucket)
    daemon.daemon.shutdown.set()
