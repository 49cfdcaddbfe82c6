"""The deadline is the lease (sweeper), and logs carry events, never secrets or image bytes."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import trio

from photochangerd.db import repositories
from photochangerd.domain.models import new_job_id
from tests.conftest import INGEST_PASSWORD, RunningDaemon
from tests.support.dslr import dslr_upload
from tests.support.images import make_jpeg


async def test_sweeper_finalizes_a_job_nobody_holds(daemon: RunningDaemon) -> None:
    """A job claimed by an instance that died (kill -9 elsewhere) ends at its deadline."""
    input_path = daemon.context.store.temp / "orphan-input.jpg"
    input_path.write_bytes(b"x")
    job_id = new_job_id()
    now = time.time()
    await daemon.context.db.write(
        repositories.insert_job,
        {
            "id": job_id,
            "slot_id": "slot-001",
            "source": "ingest",
            "status": "processing",
            "is_finalized": False,
            "provider": "local",
            "operation": "passthrough",
            "settings": {},
            "created_at": now - 2,
            "deadline": now - 0.1,
            "claimed_by": "dead-host:123",
            "attempts": 1,
            "client_metadata": {},
            "input_path": str(input_path),
            "input_mime_type": "image/jpeg",
        },
    )
    job = await daemon.wait_job_final(job_id, timeout=5)
    assert job.failure_reason == "timeout" and job.response_status == 504
    with trio.fail_after(5):  # the sweeper removes the input copy right after finalizing
        while (await daemon.job(job_id)).input_path is not None:
            await trio.sleep(0.02)
    assert not input_path.exists()


async def test_logs_have_events_but_no_secrets(
    daemon: RunningDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    photo = make_jpeg(400, 300)
    secret_guess = "hunter2-not-the-password"
    bad = await dslr_upload("127.0.0.1", daemon.port, photo=photo, password=secret_guess)
    good = await dslr_upload("127.0.0.1", daemon.port, photo=photo, password=INGEST_PASSWORD)
    assert bad is not None and bad.status == 401
    assert good is not None and good.status == 200
    job_id = good.headers["x-job-id"]
    await trio.sleep(0.05)
    text = "\n".join(
        record.getMessage() + " " + str(getattr(record, "fields", "")) for record in caplog.records
    )
    assert secret_guess not in text
    assert f"'{INGEST_PASSWORD}'" not in text and f"={INGEST_PASSWORD}" not in text
    settings = await daemon.context.db.read(repositories.get_settings)
    assert settings["ingest_password"]["hash"] not in text
    assert "\\xff\\xd8" not in text and "JFIF" not in text  # no image bytes
    events = [(r.getMessage(), getattr(r, "fields", {})) for r in caplog.records]
    ingests = [fields for message, fields in events if message == "ingest"]
    assert {"slot_id": "slot-001", "status": 401, "reason": "invalid_password"}.items() <= ingests[
        0
    ].items()
    assert ingests[1]["job_id"] == job_id and ingests[1]["status"] == 200
    assert any(
        message == "job.finalized" and fields.get("job_id") == job_id for message, fields in events
    )


def test_text_log_lines_cannot_be_forged() -> None:
    from photochangerd.logs import TextFormatter

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "ingest", None, None)
    record.fields = {"slot_id": "slot-001\n2026-01-01 error forged=1", "ms": 1.5}
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert 'slot_id="slot-001\\n2026-01-01 error forged=1"' in line
    assert line.endswith("ms=1.5")


async def test_shutdown_leftovers_are_cancelled(daemon: RunningDaemon, tmp_path: Path) -> None:
    """A pending job nobody will run any more (SQLite, one daemon) ends `cancelled`."""
    job_id = new_job_id()
    now = time.time()
    await daemon.context.db.write(
        repositories.insert_job,
        {
            "id": job_id,
            "slot_id": "slot-001",
            "source": "ingest",
            "status": "pending",
            "is_finalized": False,
            "provider": "local",
            "operation": "passthrough",
            "settings": {},
            "created_at": now,
            "deadline": now + 30,
            "attempts": 0,
            "client_metadata": {},
        },
    )
    assert await daemon.context.jobs.finalize_leftovers_on_shutdown() == 1
    job = await daemon.job(job_id)
    assert job.is_finalized and job.failure_reason == "cancelled"


async def test_restart_ends_interrupted_jobs_as_timeout_or_cancelled(tmp_path: Path) -> None:
    """SQLite start-up recovery: not ``internal_error`` (it would inflate the error rate)."""
    from tests.conftest import make_config, start_daemon

    config = make_config(tmp_path)
    now = time.time()
    jobs = {"overdue": now - 5, "running": now + 40}
    async with trio.open_nursery() as nursery:
        first = await start_daemon(nursery, config)
        for name, deadline in jobs.items():
            await first.context.db.write(
                repositories.insert_job,
                {
                    "id": name,
                    "slot_id": "slot-001",
                    "source": "ingest",
                    "status": "processing",
                    "is_finalized": False,
                    "provider": "local",
                    "operation": "passthrough",
                    "settings": {},
                    "created_at": deadline - 48,
                    "deadline": deadline,
                    "claimed_by": "this-host:gone",
                    "attempts": 1,
                    "client_metadata": {},
                    "input_mime_type": "image/jpeg",
                },
            )
        nursery.cancel_scope.cancel()  # like kill -9: no graceful finalization
    async with trio.open_nursery() as nursery:
        second = await start_daemon(nursery, config)
        overdue, running = await second.job("overdue"), await second.job("running")
        nursery.cancel_scope.cancel()
    assert (overdue.failure_reason, overdue.response_status) == ("timeout", 504)
    assert (running.failure_reason, running.response_status) == ("cancelled", 503)
    details = "interrupted: the daemon stopped before the job finished"
    assert overdue.failure_details == running.failure_details == details
