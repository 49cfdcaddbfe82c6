"""Two daemons on one PostgreSQL, both with ``media_backend = "s3"``, behind Debian's nginx.

No shared media directory this time: each instance has its own data dir, and the results,
thumbnails and provider-media are in one bucket.  Uploads through nginx (round robin) → every
result link, thumbnail and guest page works through nginx and through each daemon directly;
a Turbotext job created on A (its public_base_url points at B) has its provider-media fetched
by the vendor through B.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import cast

import httpx
import pytest
import trio

from tests.conftest import INGEST_PASSWORD
from tests.fakes import FakeGemini, FakeTurbotext, looks_derived_from, outcome, slow
from tests.support.daemon_process import DaemonProcess
from tests.support.dslr import DslrResponse, dslr_upload
from tests.support.images import make_jpeg
from tests.support.nginx import nginx_binary, run_nginx
from tests.support.postgres import PostgresCluster
from tests.support.s3 import SeaweedS3

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TURBOTEXT_KEY = "scale-out-turbotext-key"


def _instance(
    tmp_path: Path, name: str, url: str, s3: SeaweedS3, bucket: str, turbotext: str
) -> DaemonProcess:
    daemon = DaemonProcess(tmp_path / name / "data")
    daemon.env.update(s3.env())
    daemon.env.update({f"PHOTOCHANGER_{k}": v for k, v in s3.settings(bucket, "pc").items()})
    daemon.env.update(
        {
            "PHOTOCHANGER_DATABASE_URL": url,
            "PHOTOCHANGER_JWT_SECRET": "s3-scale-out-jwt-secret-shared-by-both-0123456789",
            "PHOTOCHANGER_SECRET_KEY": base64.b64encode(b"k" * 32).decode(),
            "PHOTOCHANGER_TRUSTED_PROXIES": "127.0.0.1/32",
            "PHOTOCHANGER_INSTANCE_ID": name,
            "PHOTOCHANGER_TURBOTEXT_BASE_URL": turbotext,
            "PHOTOCHANGER_TURBOTEXT_POLL_INTERVAL_SECONDS": "0.1",
            "TURBOTEXT_API_KEY": TURBOTEXT_KEY,
        }
    )
    return daemon


async def test_two_s3_instances_serve_every_link_from_either(
    tmp_path: Path, pg_cluster: PostgresCluster, s3_server: SeaweedS3, s3_bucket: str
) -> None:
    nginx_binary()
    name = f"s3scale_{os.getpid()}"
    url = pg_cluster.create_database(name)
    fake = FakeTurbotext(api_key=TURBOTEXT_KEY)
    async with trio.open_nursery() as nursery:
        turbotext = await nursery.start(fake.serve)
        a = _instance(tmp_path, "a", url, s3_server, s3_bucket, turbotext)
        b = _instance(tmp_path, "b", url, s3_server, s3_bucket, turbotext)
        # Each instance's links point at the other one: a vendor fetching A's provider-media
        # URL reaches B, which has no local copy of anything.
        a.env["PHOTOCHANGER_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{b.port}"
        b.env["PHOTOCHANGER_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{a.port}"
        proxy = run_nginx([a.port, b.port], tmp_path / "nginx")
        try:
            await trio.to_thread.run_sync(a.start)  # the first migrates the shared database
            await trio.to_thread.run_sync(b.start)
            pg_cluster._psql(
                "UPDATE slot SET provider = 'turbotext', operation = 'image2image', "
                'settings = \'{"prompt": "anime style", "strength": 55}\' '
                "WHERE id = 'slot-004'",
                database=name,
            )
            server = await trio.to_thread.run_sync(next, proxy)
            await _links_work_everywhere(
                server.http_port, server.https_port, a, b, s3_server, s3_bucket
            )
            await _provider_media_through_the_other(a, b, fake)
        finally:
            for daemon in (a, b):
                daemon.stop()
            await trio.to_thread.run_sync(lambda: next(proxy, None))
            nursery.cancel_scope.cancel()


async def _links_work_everywhere(
    http_port: int,
    https_port: int,
    a: DaemonProcess,
    b: DaemonProcess,
    s3: SeaweedS3,
    bucket: str,
) -> None:
    photo = make_jpeg(640, 480)
    jobs = []
    for number in range(6):  # round robin: both instances take uploads
        response = await dslr_upload(
            "127.0.0.1",
            http_port,
            f"slot-00{number % 3 + 1}",
            photo=photo,
            password=INGEST_PASSWORD,
        )
        assert response is not None and response.status == 200, response
        jobs.append(response.headers["x-job-id"])
    assert {f"pc/results/{job}.jpg" for job in jobs} <= set(s3.keys(bucket))
    for directory in (a.data_dir, b.data_dir):  # nothing kept on either host
        assert list((directory / "media" / "results").iterdir()) == []

    bases = [
        (f"http://127.0.0.1:{a.port}", {}),
        (f"http://127.0.0.1:{b.port}", {}),
        (f"https://127.0.0.1:{https_port}", {"Host": "booth.test"}),
    ]
    thumbnails: dict[str, bytes] = {}
    for base, headers in bases:
        async with httpx.AsyncClient(base_url=base, verify=False, headers=headers) as http:
            for job in jobs:
                result = await http.get(f"/public/results/{job}")
                assert result.status_code == 200 and result.content == photo, (base, job)
                thumb = await http.get(f"/public/results/{job}/thumbnail")
                assert thumb.status_code == 200 and thumb.content[:4] == b"RIFF", (base, job)
                assert thumbnails.setdefault(job, thumb.content) == thumb.content
                page = await http.get(f"/r/{job}")
                assert page.status_code == 200 and job in page.text, (base, job)
                picture = await http.get(f"/r/{job}/photo")
                assert picture.status_code == 200 and picture.content == photo, (base, job)


async def _provider_media_through_the_other(
    a: DaemonProcess, b: DaemonProcess, fake: FakeTurbotext
) -> None:
    fake.script(outcome("success", reconnects=1))
    photo = make_jpeg(800, 600)
    response = await dslr_upload(
        "127.0.0.1", a.port, "slot-004", photo=photo, password=INGEST_PASSWORD, timeout=40
    )
    assert response is not None and response.status == 200, response and response.body[:300]
    assert looks_derived_from(response.body, photo)
    [fetch] = fake.fetches
    assert fetch.url.startswith(f"http://127.0.0.1:{b.port}/public/provider-media/")
    assert fetch.status == 200  # B served A's provider-media from the bucket


async def test_a_job_queued_on_one_host_is_run_by_the_other(
    tmp_path: Path, pg_cluster: PostgresCluster, s3_server: SeaweedS3, s3_bucket: str
) -> None:
    """A has one worker, busy; its next upload waits as a pending job that B (idle) claims.
    With nothing shared on disk, B can only run it because the waiting photo is in the bucket;
    the booth that uploaded to A gets B's result, and the photo leaves the bucket with its job."""
    name = f"s3queue_{os.getpid()}"
    url = pg_cluster.create_database(name)
    fake = FakeGemini(api_key="queued-gemini-key")
    async with trio.open_nursery() as nursery:
        gemini = await nursery.start(fake.serve)
        a = _instance(tmp_path, "a", url, s3_server, s3_bucket, gemini)
        b = _instance(tmp_path, "b", url, s3_server, s3_bucket, gemini)
        for daemon in (a, b):
            daemon.env.update(
                PHOTOCHANGER_GEMINI_BASE_URL=gemini, GEMINI_API_KEY="queued-gemini-key"
            )
        a.env["PHOTOCHANGER_WORKERS"] = "1"
        try:
            await trio.to_thread.run_sync(a.start)
            await trio.to_thread.run_sync(b.start)
            pg_cluster._psql(
                "UPDATE slot SET provider = 'gemini', operation = 'edit', "
                "settings = '{\"prompt\": \"a watercolour\"}' WHERE id = 'slot-001'",
                database=name,
            )
            # The first call keeps A's one worker busy; the second (on B) lasts long enough
            # to look at where its photo is while it runs.
            fake.script(slow(3.0), slow(2.0))
            photos = [make_jpeg(640, 480), make_jpeg(800, 600)]
            answers: dict[int, object] = {}

            async def shoot(number: int) -> None:
                answers[number] = await dslr_upload(
                    "127.0.0.1", a.port, "slot-001", photo=photos[number], password=INGEST_PASSWORD
                )

            for number in (0, 1):
                nursery.start_soon(shoot, number)
                with trio.fail_after(10):
                    while len(fake.requests) <= number:
                        await trio.sleep(0.02)
            running_on_b = pg_cluster._psql(
                "SELECT input_path FROM job WHERE claimed_by = 'b'", database=name
            ).strip()
            assert running_on_b.startswith("inputs/"), running_on_b  # a key: in the bucket
            assert f"pc/{running_on_b}" in s3_server.keys(s3_bucket)
            with trio.fail_after(20):
                while len(answers) < 2:
                    await trio.sleep(0.05)
        finally:
            for daemon in (a, b):
                daemon.stop()
            nursery.cancel_scope.cancel()
    for number, photo in enumerate(photos):
        response = answers[number]
        assert isinstance(response, DslrResponse) and response.status == 200, response
        assert looks_derived_from(response.body, photo)
    second = cast(DslrResponse, answers[1]).headers["x-job-id"]
    claimed = pg_cluster._psql(f"SELECT claimed_by FROM job WHERE id = '{second}'", database=name)
    assert claimed.strip() == "b"
    assert [key for key in s3_server.keys(s3_bucket) if "/inputs/" in key] == []
