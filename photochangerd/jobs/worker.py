"""Worker tasks: take jobs from the :class:`~photochangerd.jobs.queue.WorkQueue` and run them.

A wake-up names the job just enqueued in this process (claimed by id: one cheap conditional
update), carries a job inserted already claimed for an idle worker, or is a LOOK: claim the
oldest pending job with ``claim_next_job`` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) — sent
when another instance queued a job (its notification) and by the job service's slow poll.
No worker polls on its own: idle, the daemon does nothing.  Each job then runs through
:meth:`JobService.process` (docs/jobs.md).
"""

from __future__ import annotations

import logging

import trio

from photochangerd.db import repositories
from photochangerd.db.engine import DatabaseUnavailable
from photochangerd.domain.models import Job
from photochangerd.jobs.queue import LOOK
from photochangerd.jobs.service import JobService
from photochangerd.logs import event

log = logging.getLogger("photochangerd.worker")

DB_RETRY_SECONDS = 1.0


async def run_worker(service: JobService, number: int) -> None:
    """Process jobs forever.  Cancellation stops the worker; a job in progress is finalized."""
    while True:
        message = await service.queue.next()
        if isinstance(message, Job):  # inserted already claimed for us
            job: Job | None = message
        else:
            try:
                now = service.clock.now()
                if message is not None:
                    job = await service.db.write(
                        repositories.claim_job, message, service.instance_id, now
                    )
                else:
                    job = await service.db.write(
                        repositories.claim_next_job, service.instance_id, now, service.db.dialect
                    )
            except DatabaseUnavailable:
                event(log, logging.WARNING, "worker.db_unavailable", worker=number)
                await trio.sleep(DB_RETRY_SECONDS)
                continue
            except Exception:  # a claim query failing must not take the daemon down
                log.exception("worker.claim_failed", extra={"fields": {"worker": number}})
                await trio.sleep(DB_RETRY_SECONDS)
                continue
        if job is None:
            continue
        if message is LOOK:  # there may be more where this one came from
            service.queue.look()
        event(log, logging.DEBUG, "job.claimed", job_id=job.id, slot_id=job.slot_id, worker=number)
        await service.process(job)


async def run_sweeper(service: JobService, interval: float, grace: float) -> None:
    """Every ``interval`` s, finalize jobs past their deadline (the deadline is the lease)."""
    while True:
        try:
            await service.sweep(grace)
        except DatabaseUnavailable:
            event(log, logging.WARNING, "sweeper.db_unavailable")
        except Exception:  # maintenance must not take the daemon down; retried next round
            log.exception("sweeper.failed")
        await trio.sleep(interval)
