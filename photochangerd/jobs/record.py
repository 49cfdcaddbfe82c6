"""The durable write of a settled :class:`~photochangerd.jobs.run.JobRun` (docs/jobs.md).

A run is settled in memory first (the requester is answered at that instant); its outcome is
then written with the conditional ``finalize_job`` update, which only one writer can win across
every instance sharing the database.  The write runs shielded and bounded by
:data:`FINALIZE_BUDGET`, in the worker's task when a worker runs the job, else in the
recorder's background task (:meth:`Recorder.run`) — never in the requester's path, so when
30 booths time out together their 504s go out before the bookkeeping.

The winner removes the job's input copy; a loser removes the result file it wrote and learns
the row's outcome (what a requester still waiting for a success answers instead).
"""

from __future__ import annotations

import logging
import math

import trio
import trio.testing

from photochangerd.clock import WallClock
from photochangerd.db import repositories
from photochangerd.db.engine import Database, DatabaseUnavailable
from photochangerd.domain.models import Job, Outcome, StoredResult
from photochangerd.jobs.run import JobRun
from photochangerd.logs import event
from photochangerd.media.store import MediaStore
from shared.errors import JobFailure

log = logging.getLogger("photochangerd.jobs")

FINALIZE_BUDGET = 10.0  # seconds a shielded final write may take before we give up on it
ANSWERS_FIRST_BUDGET = 0.5  # seconds a write at a deadline waits at most for the answers


def outcome_of(job: Job) -> Outcome:
    """Rebuild an outcome from a finalized row (a job finished by another party)."""
    failure = JobFailure(job.failure_reason) if job.failure_reason else None
    if failure is None and job.result_file_path:
        result = StoredResult(
            job.result_file_path,
            job.result_mime_type or "application/octet-stream",
            job.result_size_bytes or 0,
            job.result_checksum or "",
        )
        return Outcome(None, 200, result=result)
    return Outcome(failure, job.response_status or 500, job.failure_details)


async def _after_the_answers() -> None:
    """Let every task runnable now run until it blocks, before a write at a deadline.

    Its requester, and those of every other job with the same deadline (a provider outage
    times 30 booths out at once), were woken at settle time: their 504s go out first.  A write
    starts a database thread whose Python work holds the GIL; each socket write of the event
    loop would then wait for it (measured: +300 ms on the 30th 504, phase 5 of
    tests/bench/bench_ingest.py).  No timer: the write waits for the answers, bounded.
    """
    with trio.move_on_after(ANSWERS_FIRST_BUDGET):
        await trio.testing.wait_all_tasks_blocked()


class Recorder:
    def __init__(
        self, db: Database, store: MediaStore, clock: WallClock, runs: dict[str, JobRun]
    ) -> None:
        self.db = db
        self.store = store
        self.clock = clock
        self.runs = runs  # the service's live runs: a recorded run leaves them
        self._send, self._receive = trio.open_memory_channel[JobRun](math.inf)

    def later(self, run: JobRun) -> None:
        """Write ``run`` from the background task (settled while no worker runs it)."""
        self._send.send_nowait(run)

    async def run(self) -> None:
        """Write the runs handed to :meth:`later`, forever."""
        async for run in self._receive:
            await self.record(run)

    async def flush(self) -> None:
        """Write whatever is still queued (shutdown)."""
        while True:
            try:
                run = self._receive.receive_nowait()
            except trio.WouldBlock:
                return
            await self.record(run)

    async def record(self, run: JobRun) -> None:
        """Write the run's settled outcome, or wait (bounded) for whoever is writing it."""
        if not run.claim_write():
            with trio.CancelScope(shield=True), trio.move_on_after(FINALIZE_BUDGET):
                await run.recorded.wait()
            return
        won: bool | None = None
        answer: Outcome | None = None
        with trio.CancelScope(shield=True), trio.move_on_after(FINALIZE_BUDGET):
            if run.outcome is not None and run.outcome.failure is JobFailure.TIMEOUT:
                await _after_the_answers()
            try:
                won = await self._write(run)
                if not won:
                    answer = await self._lost(run)
            except DatabaseUnavailable:
                event(
                    log,
                    logging.ERROR,
                    "job.finalize_failed",
                    job_id=run.job_id,
                    reason="database_unavailable",
                )
                # The sweeper finalizes the row once the DB is back; answer the request now.
                answer = Outcome(JobFailure.INTERNAL_ERROR, 500, "database unavailable")
                await self._discard_result(run)
            finally:
                self.runs.pop(run.job_id, None)
                run.mark_recorded(won, answer)

    async def _write(self, run: JobRun) -> bool:
        outcome = run.outcome
        assert outcome is not None, "only a settled run is recorded"
        won: bool = await self.db.write(
            repositories.finalize_job,
            run.job_id,
            now=run.settled_at,  # when the job ended, not when the write got its turn
            failure_reason=outcome.failure.value if outcome.failure else None,
            response_status=outcome.response_status,
            details=outcome.details,
            result=outcome.result,
            result_ttl_seconds=run.settings.result_ttl_seconds,
        )
        if won:
            await self.store.remove(run.input_path)
            event(
                log,
                logging.INFO,
                "job.finalized",
                job_id=run.job_id,
                outcome=outcome.failure.value if outcome.failure else "success",
                status=outcome.response_status,
                details=outcome.details,
                by=run.settled_by.value if run.settled_by else None,
            )
        return won

    async def _lost(self, run: JobRun) -> Outcome:
        """Another party finalized the row first: drop our result, learn the row's outcome."""
        await self._discard_result(run)
        job = await self.db.read(repositories.get_job, run.job_id)
        if job is not None and job.is_finalized:
            return outcome_of(job)
        return Outcome(JobFailure.INTERNAL_ERROR, 500, "the job's final write was lost")

    async def _discard_result(self, run: JobRun) -> None:
        if run.outcome is not None and run.outcome.result is not None:
            await self.store.remove(run.outcome.result.path)
