"""Wake-ups for this process's workers, and the fast hand-over to an idle one (docs/jobs.md).

A wake-up names a job id to claim, carries a job inserted already claimed (``processing``)
for an idle worker — when a worker is idle at submission, the job is handed over directly;
that saves a transaction and two file operations per ingest — or is :data:`LOOK`: claim the
oldest pending job of any instance (PostgreSQL: another instance queued one, or the slow poll
says to check).  :meth:`WorkQueue.reserve` counts the idle workers already promised a job, so
two ingests never count on the same one.
"""

from __future__ import annotations

import math

import trio

from photochangerd.domain.models import Job

LOOK = None  # the wake-up that says "claim the oldest pending job, whoever queued it"
WakeUp = str | Job | None


class WorkQueue:
    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[WakeUp](math.inf)
        self._idle = 0  # workers waiting in next()
        self._reserved = 0  # of those, promised to a submission being inserted
        self._handed = 0  # of those, handed a job they have not woken up to yet
        self._looking = False  # a LOOK is queued and not yet taken
        self._wanted = False  # a LOOK was asked for while no worker was idle

    def _free(self) -> int:
        """Idle workers neither promised to a submission, nor handed a job they have not
        taken yet, nor about to take the queued LOOK."""
        return self._idle - self._reserved - self._handed - (1 if self._looking else 0)

    def reserve(self) -> bool:
        """Promise an idle worker to one submission; pair with :meth:`release`."""
        if self._free() > 0:
            self._reserved += 1
            return True
        return False

    def release(self) -> None:
        self._reserved -= 1

    def hand_over(self, job: Job) -> None:
        """Give an already claimed job to the idle worker reserved for it."""
        self._handed += 1  # that worker counts as idle until it runs: not free any more
        self._send.send_nowait(job)

    def wake(self, job_id: str) -> None:
        """Ask a worker to claim ``job_id`` (pending in the database)."""
        self._send.send_nowait(job_id)

    def look(self) -> None:
        """Ask one idle worker to claim the oldest pending job (none idle: the next worker to
        become idle does).  At most one LOOK is queued at a time; a worker whose LOOK found a
        job asks again, so a backlog is drained one by one."""
        if self._looking:
            return
        if self._free() > 0:
            self._looking = True
            self._send.send_nowait(LOOK)
        else:
            self._wanted = True

    async def next(self) -> WakeUp:
        """The next wake-up: a job id, a claimed job, or :data:`LOOK`."""
        if self._wanted and not self._looking:
            self._wanted = False
            return LOOK
        self._idle += 1
        try:
            message = await self._receive.receive()
        finally:
            self._idle -= 1
        if message is LOOK:
            self._looking = False
        elif isinstance(message, Job):
            self._handed -= 1
        return message

    def drain(self) -> list[WakeUp]:
        """Take every queued wake-up (shutdown)."""
        taken: list[WakeUp] = []
        while True:
            try:
                message = self._receive.receive_nowait()
            except trio.WouldBlock:
                return taken
            if isinstance(message, Job):
                self._handed -= 1
            taken.append(message)
