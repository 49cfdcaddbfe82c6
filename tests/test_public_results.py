"""``GET /public/results/{job_id}``: 200 while valid, 410 after expiry, 404 otherwise."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from photochangerd.media.cleaner import Cleaner
from tests.conftest import INGEST_PASSWORD, RunningDaemon
from tests.support.dslr import dslr_upload
from tests.support.images import make_jpeg

PHOTO = make_jpeg(640, 480)


async def _ingest(daemon: RunningDaemon, slot: str = "slot-001") -> str:
    response = await dslr_upload(
        "127.0.0.1", daemon.port, slot, photo=PHOTO, password=INGEST_PASSWORD
    )
    assert response is not None and response.status == 200
    return response.headers["x-job-id"]


async def test_result_download_then_410_after_ttl(
    daemon: RunningDaemon, client: httpx.AsyncClient
) -> None:
    job_id = await _ingest(daemon)
    response = await client.get(f"/public/results/{job_id}")
    assert response.status_code == 200
    assert response.content == PHOTO
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["content-disposition"] == f'attachment; filename="{job_id}.jpg"'
    assert "etag" in response.headers and "last-modified" in response.headers
    # A guest's photo: the browser may keep it, a shared cache may not (nor past its expiry).
    assert response.headers["cache-control"] == "private, max-age=3600"  # the cap
    assert response.headers["x-robots-tag"] == "noindex, nofollow"

    head = await client.head(f"/public/results/{job_id}")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(PHOTO))
    ranged = await client.get(f"/public/results/{job_id}", headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and ranged.content == PHOTO[:100]
    cached = await client.get(
        f"/public/results/{job_id}", headers={"If-None-Match": response.headers["etag"]}
    )
    assert cached.status_code == 304

    # 71 h later: still there.  73 h later: 410, even before the cleaner has run.
    daemon.clock.offset = 71 * 3600 + 1800
    late = await client.get(f"/public/results/{job_id}")
    assert late.status_code == 200
    assert late.headers["cache-control"] in ("private, max-age=1800", "private, max-age=1799")
    daemon.clock.offset = 73 * 3600
    expired = await client.get(f"/public/results/{job_id}")
    assert expired.status_code == 410
    assert expired.json()["failure_reason"] == "result_expired"

    job = await daemon.job(job_id)
    assert job.result_file_path is not None
    report = await Cleaner(daemon.context.db, daemon.context.store, daemon.clock).run_once()
    assert report.expired_results == 1
    job = await daemon.job(job_id)
    assert job.result_file_path is None
    assert list(daemon.context.store.results.iterdir()) == []
    again = await client.get(f"/public/results/{job_id}")
    assert again.status_code == 410 and again.json()["failure_reason"] == "result_expired"


async def test_result_ttl_setting_is_used(daemon: RunningDaemon, client: httpx.AsyncClient) -> None:
    await daemon.set_setting("result_ttl_hours", 1)
    job_id = await _ingest(daemon)
    daemon.clock.offset = 3700
    assert (await client.get(f"/public/results/{job_id}")).status_code == 410


@pytest.mark.parametrize(
    "job_path",
    [
        "AAAAAAAAAAAAAAAAAAAAAA",  # well formed, unknown
        "..",
        "%2e%2e",
        "..%2f..%2fetc%2fpasswd",
        "abc%00def",
        "abc%5cdef",
        "x" * 5000,
    ],
)
async def test_unknown_or_hostile_ids_are_404(client: httpx.AsyncClient, job_path: str) -> None:
    response = await client.get(f"/public/results/{job_path}")
    assert response.status_code == 404
    assert response.json()["failure_reason"] in ("result_not_found", "not_found")
    assert "/" not in response.json().get("details", "")


async def test_failed_job_has_no_result(daemon: RunningDaemon, client: httpx.AsyncClient) -> None:
    await daemon.configure_slot("slot-002", provider="script", operation="reject")
    response = await dslr_upload(
        "127.0.0.1", daemon.port, "slot-002", photo=PHOTO, password=INGEST_PASSWORD
    )
    assert response is not None and response.status == 502
    from tests.test_ingest import _all_jobs

    jobs = await daemon.context.db.read(_all_jobs)
    answer = await client.get(f"/public/results/{jobs[0].id}")
    assert answer.status_code == 404 and answer.json()["failure_reason"] == "result_not_found"


N = len(PHOTO)


def _range_case(header: str, status: int, content_range: str | None, body: bytes) -> Any:
    return pytest.param(header, status, content_range, body, id=header)


@pytest.mark.parametrize(
    ("range_header", "status", "content_range", "body"),
    [
        _range_case("bytes=0-99", 206, f"bytes 0-99/{N}", PHOTO[:100]),
        _range_case("bytes=-10", 206, f"bytes {N - 10}-{N - 1}/{N}", PHOTO[-10:]),
        # a suffix longer than the file is the whole file (RFC 9110 §14.1.2)
        _range_case(f"bytes=-{N + 100}", 206, f"bytes 0-{N - 1}/{N}", PHOTO),
        _range_case("bytes=5-", 206, f"bytes 5-{N - 1}/{N}", PHOTO[5:]),
        _range_case(f"bytes={N - 3}-{N + 50}", 206, f"bytes {N - 3}-{N - 1}/{N}", PHOTO[-3:]),
        # malformed or not bytes: ignored, the whole file (RFC 9110 §14.2)
        _range_case("bytes=abc", 200, None, PHOTO),
        _range_case("bytes=9-5", 200, None, PHOTO),
        _range_case("bytes=-0", 200, None, PHOTO),
        _range_case("pages=1-2", 200, None, PHOTO),
        _range_case("bytes=0-1,5-6", 200, None, PHOTO),  # multi-range: the whole file is allowed
    ],
)
async def test_result_range_requests(
    daemon: RunningDaemon,
    client: httpx.AsyncClient,
    range_header: str,
    status: int,
    content_range: str | None,
    body: bytes,
) -> None:
    job_id = await _ingest(daemon)
    url = f"/public/results/{job_id}"
    response = await client.get(url, headers={"Range": range_header})
    assert response.status_code == status
    assert response.content == body
    assert response.headers["content-length"] == str(len(body))
    assert response.headers.get("content-range") == content_range
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "image/jpeg"

    head = await client.head(url, headers={"Range": range_header})
    assert head.status_code == status and head.content == b""
    for name in ("content-length", "content-range", "content-type", "etag"):
        assert head.headers.get(name) == response.headers.get(name), name


async def test_unsatisfiable_range_is_416_with_error_body(
    daemon: RunningDaemon, client: httpx.AsyncClient
) -> None:
    job_id = await _ingest(daemon)
    url = f"/public/results/{job_id}"
    for method in ("GET", "HEAD"):
        for range_header in ("bytes=999999999-", f"bytes={N}-{N + 10}"):
            response = await client.request(method, url, headers={"Range": range_header})
            assert response.status_code == 416, (method, range_header)
            assert response.headers["content-range"] == f"bytes */{N}"
            if method == "GET":
                assert response.json() == {
                    "status": "error",
                    "failure_reason": "invalid_request",
                    "details": "requested range not satisfiable",
                }


async def test_if_range_mismatch_sends_whole_file(
    daemon: RunningDaemon, client: httpx.AsyncClient
) -> None:
    job_id = await _ingest(daemon)
    url = f"/public/results/{job_id}"
    etag = (await client.head(url)).headers["etag"]
    matching = await client.get(url, headers={"Range": "bytes=-10", "If-Range": etag})
    assert matching.status_code == 206 and matching.content == PHOTO[-10:]
    stale = await client.get(url, headers={"Range": "bytes=-10", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == PHOTO
    # Preconditions come before Range: a cached copy is still a 304.
    cached = await client.get(url, headers={"Range": "bytes=-10", "If-None-Match": etag})
    assert cached.status_code == 304


async def test_thumbnail_ranges_too(daemon: RunningDaemon, client: httpx.AsyncClient) -> None:
    job_id = await _ingest(daemon)
    url = f"/public/results/{job_id}/thumbnail"
    whole = await client.get(url)
    assert whole.status_code == 200
    size = len(whole.content)
    tail = await client.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == whole.content[-10:]
    assert tail.headers["content-range"] == f"bytes {size - 10}-{size - 1}/{size}"
    head = await client.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(size)
