"""Every ingest answer about a job names it in ``X-Job-Id``; ``Link`` only where a result exists."""

from __future__ import annotations

import pytest

from tests.conftest import INGEST_PASSWORD, RunningDaemon
from tests.support.dslr import dslr_upload
from tests.support.images import make_jpeg

PHOTO = make_jpeg(320, 240)


@pytest.mark.parametrize(
    ("operation", "status", "failure"),
    [
        ("echo", 200, None),
        ("reject", 502, "provider_error"),
        ("unavailable", 503, "provider_error"),
        ("hang", 504, "timeout"),
        ("boom", 500, "internal_error"),
    ],
)
async def test_answers_with_a_job_carry_its_id(
    daemon: RunningDaemon, operation: str, status: int, failure: str | None
) -> None:
    await daemon.set_setting("sync_response_seconds", 1.0)
    await daemon.configure_slot("slot-003", provider="script", operation=operation)
    response = await dslr_upload(
        "127.0.0.1", daemon.port, "slot-003", photo=PHOTO, password=INGEST_PASSWORD
    )
    assert response is not None and response.status == status
    job_id = response.headers.get("x-job-id")
    assert job_id is not None, response.headers
    job = await daemon.wait_job_final(job_id)
    assert job.slot_id == "slot-003" and job.failure_reason == failure
    if failure is None:
        guest = f"{daemon.config.effective_public_base_url}/r/{job_id}"
        assert response.headers["link"] == (
            f'</public/results/{job_id}>; rel="alternate", '
            f'<{guest}>; rel="alternate"; type="text/html"'
        )
    else:
        assert "link" not in response.headers


async def test_answers_without_a_job_have_no_id(daemon: RunningDaemon) -> None:
    wrong = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password="wrong-password")
    assert wrong is not None and wrong.status == 401
    assert "x-job-id" not in wrong.headers and "link" not in wrong.headers


async def test_a_defect_after_submission_answers_500_with_the_job_id(
    daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug of ours after the job exists (here: the wait itself) is a JSON 500 that still names
    the job, and the daemon keeps serving."""
    service = daemon.context.jobs
    real_wait = service.wait

    async def broken_wait(run: object) -> object:
        raise RuntimeError("a defect")

    monkeypatch.setattr(service, "wait", broken_wait)
    response = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD)
    assert response is not None and response.status == 500
    assert response.json()["failure_reason"] == "internal_error"
    assert response.headers.get("x-job-id")
    monkeypatch.setattr(service, "wait", real_wait)
    again = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD)
    assert again is not None and again.status == 200
