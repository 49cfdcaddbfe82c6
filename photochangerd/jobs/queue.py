"""Wake-ups for this process's workers, and the fast hand-over to an idle one (docs/jobs.md).

A wake-up names a job id to claim, or carries a job inserted already claimed (``processing``)
for an idle worker: when a worker is idle at submission, the job is handed over directly —
that saves a transaction and two file operations per ingest.  :meth:`WorkQueue.reserve`
counts the idle workers already promised a job, so two ingests never count on the same one.
"""

from __future__ import annotations

import math

import trio

from photochangerd.domain.models import Job


class WorkQueue:
    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[str | Job](math.inf)
        self._idle = 0  # workers waiting in next()
        self._reserved = 0  # of those, promised to a submission being inserted

    def reserve(self) -> bool:
        """Promise an idle worker to one submission; pair with :meth:`release`."""
        if self._idle > self._reserved:
            self._reserved += 1
            return True
        return False

    def release(self) -> None:
        self._reserved -= 1

    def hand_over(self, job: Job) -> None:
        """Give an already claimed job to the idle worker reserved for it."""
        self._send.send_nowait(job)

    def wake(self, job_id: str) -> None:
        """Ask a worker to claim ``job_id`` (pending in the database)."""
        self._send.send_nowait(job_id)

    async def next(self, poll: float | None) -> str | Job | None:
        """The next wake-up; None after ``poll`` seconds without one (PostgreSQL polling)."""
        self._idle += 1
        try:
            if poll is None:
                return await self._receive.receive()
            with trio.move_on_after(poll):
                return await self._receive.receive()
            return None
        finally:
            self._idle -= 1

    def drain(self) -> list[str | Job]:
        """Take every queued wake-up (shutdown)."""
        taken: list[str | Job] = []
        while True:
            try:
                taken.append(self._receive.receive_nowait())
            except trio.WouldBlock:
                return taken
