"""The durable write of a settled :class:`~photochangerd.jobs.run.JobRun` (docs/jobs.md).

A run is settled in memory first (the requester is answered at that instant); its outcome is
then written with the conditional ``finalize_job`` update, which only one writer can win across
every instance sharing the database.  The write runs shielded and bounded by
:data:`FINALIZE_BUDGET`, in the worker's task when a worker runs the job, else in the
recorder's background task (:meth:`Recorder.run`) — never in the requester's path.

Timeouts settled at one deadline are written together: the first of them leads a batch, lets
the event loop run until it is quiet (the 504s of every booth timed out at that instant go out
first, see :func:`_after_the_answers`), then writes every timeout that joined meanwhile in ONE
transaction (:func:`finalize_jobs`).

The winner removes the job's input copy; a loser removes the result file it wrote and learns
the row's outcome (what a requester still waiting for a success answers instead).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from typing import Any

import trio
from sqlalchemy import Connection

from photochangerd.clock import WallClock
from photochangerd.db import repositories
from photochangerd.db.engine import Database, DatabaseUnavailable
from photochangerd.domain.models import Job, Outcome, StoredResult
from photochangerd.jobs.run import JobRun, Party
from photochangerd.logs import event
from photochangerd.media.store import MediaStore
from shared.errors import JobFailure

log = logging.getLogger("photochangerd.jobs")

FINALIZE_BUDGET = 10.0  # seconds a shielded final write may take before we give up on it
ANSWERS_FIRST_BUDGET = 0.5  # seconds a write at a deadline waits at most for the answers
ANSWERS_FIRST_PASSES = 200  # scheduler passes it waits at most (the mock clock never moves)
QUIET_PASSES = 2  # consecutive passes running no other task: the answers are out


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
        return Outcome(
            None, 200, result=result, served_by=job.served_by, fallback_step=job.fallback_step
        )
    return Outcome(failure, job.response_status or 500, job.failure_details)


def finalize_jobs(conn: Connection, writes: Sequence[tuple[str, dict[str, Any]]]) -> list[bool]:
    """Several conditional ``finalize_job`` updates in ONE transaction; each one's verdict."""
    return [repositories.finalize_job(conn, job_id, **fields) for job_id, fields in writes]


class _OthersStepping(trio.abc.Instrument):
    """Counts the steps of every task but one (the one waiting for the loop to be quiet)."""

    def __init__(self, me: trio.lowlevel.Task) -> None:
        self.me = me
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is not self.me:
            self.steps += 1


async def _after_the_answers() -> None:
    """Yield the event loop until every other task has run until it blocks (bounded).

    The requesters of every job with this deadline (a provider outage times 30 booths out at
    once) were woken at settle time: their 504s go out before the write.  A write starts a
    database thread whose Python work holds the GIL; each socket write of the event loop would
    then wait for it (measured: +300 ms on the 30th 504, phase 5 of
    tests/bench/bench_ingest.py).  No timer: the loop is quiet once :data:`QUIET_PASSES`
    scheduler passes in a row ran no other task (a Trio instrument counts their steps, only
    while we wait); bounded by :data:`ANSWERS_FIRST_BUDGET` and :data:`ANSWERS_FIRST_PASSES`.
    """
    others = _OthersStepping(trio.lowlevel.current_task())
    give_up = trio.current_time() + ANSWERS_FIRST_BUDGET
    quiet = 0
    trio.lowlevel.add_instrument(others)
    try:
        for _ in range(ANSWERS_FIRST_PASSES):
            seen = others.steps
            await trio.lowlevel.cancel_shielded_checkpoint()
            quiet = quiet + 1 if others.steps == seen else 0
            if quiet >= QUIET_PASSES or trio.current_time() >= give_up:
                return
    finally:
        trio.lowlevel.remove_instrument(others)


class Recorder:
    def __init__(
        self, db: Database, store: MediaStore, clock: WallClock, runs: dict[str, JobRun]
    ) -> None:
        self.db = db
        self.store = store
        self.clock = clock
        self.runs = runs  # the service's live runs: a recorded run leaves them
        self._send, self._receive = trio.open_memory_channel[JobRun](math.inf)
        self._deadline_batch: list[JobRun] = []  # timeouts waiting for their batch's write

    def later(self, run: JobRun) -> None:
        """Write ``run`` from the background task (settled while no worker runs it)."""
        self._send.send_nowait(run)

    async def run(self) -> None:
        """Write the runs handed to :meth:`later`, forever (concurrently: timeouts batch)."""
        async with trio.open_nursery() as nursery:
            async for run in self._receive:
                nursery.start_soon(self.record, run)

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
        with trio.CancelScope(shield=True):
            # A job handed over at once: its row first (the insert is its requester's, and
            # ends one way or the other); the budget is the final write's own.
            await run.row_written.wait()
        with trio.CancelScope(shield=True), trio.move_on_after(FINALIZE_BUDGET):
            if not run.claim_write():
                await run.recorded.wait()
                await self._keep_attempts(run)
            elif run.outcome is not None and run.outcome.failure is JobFailure.TIMEOUT:
                await self._record_at_deadline(run)
            else:
                await self._write([run])

    async def _keep_attempts(self, run: JobRun) -> None:
        """A run the sweeper finalized while its worker ran: the row's outcome is the sweeper's,
        but the steps the worker tried are still worth knowing (``GET /api/jobs/{id}``)."""
        if run.settled_by is not Party.SWEEPER or not run.worker_attached:
            return
        entries = run.attempts.entries(run.outcome)
        if entries:
            with contextlib.suppress(DatabaseUnavailable):
                await self.db.write(repositories.keep_attempt_log, run.job_id, entries)

    async def _record_at_deadline(self, run: JobRun) -> None:
        """Join the batch of timeouts being collected, or lead a new one."""
        self._deadline_batch.append(run)
        if len(self._deadline_batch) > 1:  # a leader collects it and writes it
            await run.recorded.wait()
            return
        try:
            await _after_the_answers()
        finally:
            batch, self._deadline_batch = self._deadline_batch, []
        await self._write(batch)

    async def _write(self, runs: list[JobRun]) -> None:
        """Write the settled outcomes of ``runs`` in one transaction; release their waiters."""
        won: dict[str, bool | None] = {run.job_id: None for run in runs}
        answers: dict[str, Outcome] = {}
        try:
            rows = await self._rows(runs)
            writes = [(run.job_id, self._fields(run)) for run in rows]
            if len(writes) == 1:
                [(job_id, fields)] = writes
                verdicts = [await self.db.write(repositories.finalize_job, job_id, **fields)]
            elif writes:
                verdicts = await self.db.write(finalize_jobs, writes)
            else:
                verdicts = []
            for run, verdict in zip(rows, verdicts, strict=True):
                won[run.job_id] = verdict
            for run in rows:
                try:
                    if won[run.job_id]:
                        await self._won(run)
                    else:
                        answers[run.job_id] = await self._lost(run)
                except DatabaseUnavailable:
                    answers[run.job_id] = await self._unavailable(run)
        except DatabaseUnavailable:
            for run in runs:
                answers[run.job_id] = await self._unavailable(run)
        finally:
            for run in runs:
                self.runs.pop(run.job_id, None)
                run.mark_recorded(won[run.job_id], answers.get(run.job_id))

    async def _rows(self, runs: list[JobRun]) -> list[JobRun]:
        """The runs that have a row to finalize (:meth:`record` waited for each insert); a
        run whose insert failed keeps nothing."""
        for run in runs:
            if run.row_missing:
                await self._discard_result(run)
        return [run for run in runs if not run.row_missing]

    @staticmethod
    def _fields(run: JobRun) -> dict[str, Any]:
        outcome = run.outcome
        assert outcome is not None, "only a settled run is recorded"
        return {
            "now": run.settled_at,  # when the job ended, not when the write got its turn
            "failure_reason": outcome.failure.value if outcome.failure else None,
            "response_status": outcome.response_status,
            "details": outcome.details,
            "result": outcome.result,
            "result_ttl_seconds": run.settings.result_ttl_seconds,
            "attempt_log": run.attempts.entries(outcome),
            "served_by": outcome.served_by,
            "fallback_step": outcome.fallback_step,
        }

    async def _won(self, run: JobRun) -> None:
        outcome = run.outcome
        assert outcome is not None
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

    async def _unavailable(self, run: JobRun) -> Outcome:
        event(
            log,
            logging.ERROR,
            "job.finalize_failed",
            job_id=run.job_id,
            reason="database_unavailable",
        )
        # The sweeper finalizes the row once the DB is back; answer the request now.
        await self._discard_result(run)
        return Outcome(JobFailure.INTERNAL_ERROR, 500, "database unavailable")

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
