"""Jobs and other instances sharing the database (PostgreSQL): docs/jobs.md, "Several
instances".

Another instance may run a job this one queued (its workers were busy), or queue one this
one's idle workers can take.  Both are announced by notifications
(:mod:`photochangerd.db.notify`) and backed by slow polls (:class:`StoragePolicy`'s
``idle_poll_seconds`` and ``cross_instance_poll_seconds``).  Idle, nothing here touches the
database more than once per poll interval.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from photochangerd.db import repositories
from photochangerd.db.engine import DatabaseUnavailable
from photochangerd.db.notify import JobEvent, JobEventListener
from photochangerd.jobs.record import outcome_of
from photochangerd.jobs.run import JobRun, Party

if TYPE_CHECKING:
    from photochangerd.jobs.service import JobService


class OtherInstances:
    """The job service's side of the notifications (a :class:`JobEventHandler`)."""

    def __init__(self, service: JobService) -> None:
        self._service = service
        self.listener: JobEventListener | None = None  # set by the daemon (PostgreSQL)

    async def check(self, run: JobRun) -> None:
        """Settle ``run`` if another instance has finalized its job."""
        service = self._service
        job = await service.db.read(repositories.get_job, run.job_id)
        if job is not None and job.is_finalized:
            service.settled_durably(run, outcome_of(job), Party.ELSEWHERE)

    async def on_job_event(self, job_event: JobEvent) -> None:
        service = self._service
        try:
            if job_event.kind == "queued":
                if job_event.job_id not in service.runs:  # ours are woken in-process
                    service.queue.look()
                return
            run = service.runs.get(job_event.job_id)
            if run is not None and not run.settled.is_set() and not run.worker_attached:
                await self.check(run)
        except DatabaseUnavailable:
            pass  # the slow poll asks again

    async def catch_up(self) -> None:
        """After the listener (re)connected: what a lost notification would have said."""
        self._service.queue.look()
        for run in list(self._service.runs.values()):
            if not run.settled.is_set() and not run.worker_attached:
                await self.on_job_event(JobEvent("final", run.job_id))

    async def poll_slowly(self) -> None:
        """The guarantee behind the notifications: now and then an idle worker looks for a
        job another instance queued."""
        interval = self._service.policy.idle_poll_seconds
        if interval is None:
            return
        while True:
            await trio.sleep(interval)
            self._service.queue.look()
