"""The job service: the narrow handle request handlers get (submit, wait), the worker's step
(process), and the sweeping, recovery and shutdown paths.  docs/jobs.md tells the whole story.

Lifecycle of a job::

    submit ──▶ pending ──claim──▶ processing ──▶ finalized (success | timeout | provider_error
                                                            | cancelled | internal_error)

Each job of this process is one :class:`~photochangerd.jobs.run.JobRun`, created at arrival and
kept in :attr:`JobService.runs` (by job id) until its outcome is durable.  The requester, the
worker and the sweeper talk only through it:

* the first of worker, waiting requester (at the deadline), sweeper or shutdown to call
  :meth:`JobRun.settle` decides the outcome; the requester is woken at that instant;
* the durable write follows (:mod:`photochangerd.jobs.record`) in the worker's task, or in the
  recorder's task for a job no worker holds — never in the requester's path;
* the conditional ``finalize_job`` update stays the arbiter between instances.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import trio

from photochangerd.clock import WallClock
from photochangerd.db import repositories
from photochangerd.db.engine import Database, DatabaseUnavailable
from photochangerd.db.policy import StoragePolicy, storage_policy
from photochangerd.domain.models import Job, Outcome, Slot, timeout_outcome
from photochangerd.jobs.elsewhere import OtherInstances
from photochangerd.jobs.produce import InputGone, Producer
from photochangerd.jobs.queue import WorkQueue
from photochangerd.jobs.record import FINALIZE_BUDGET, Recorder
from photochangerd.jobs.run import (
    MIN_INSERT_SECONDS,
    Deadline,
    JobRun,
    JobSettings,
    Party,
    RuntimeSettings,
    cancelled_outcome,
    unregistered_outcome,
)
from photochangerd.logs import event
from photochangerd.media.images import ImageInfo
from photochangerd.media.imaging import ImageWorkers
from photochangerd.media.objects import ObjectStoreUnavailable
from photochangerd.media.provider_media import ProviderMedia
from photochangerd.media.store import MediaStore, Spool
from photochangerd.metrics import Metrics
from photochangerd.providers.base import ProviderError
from photochangerd.providers.registry import ProviderRegistry
from shared.errors import JobFailure

__all__ = ["JobService", "RuntimeSettings"]

log = logging.getLogger("photochangerd.jobs")


class JobService:
    def __init__(
        self,
        *,
        db: Database,
        store: MediaStore,
        providers: ProviderRegistry,
        images: ImageWorkers,
        clock: WallClock,
        instance_id: str,
        provider_media: ProviderMedia | None = None,
        policy: StoragePolicy | None = None,
    ) -> None:
        self.db = db
        self.policy = policy or storage_policy(db.dialect)
        self.store = store
        self.clock = clock
        self.instance_id = instance_id
        self.metrics: Metrics | None = None
        self.runtime = RuntimeSettings()
        self.runs: dict[str, JobRun] = {}  # this process's live jobs, until recorded
        self.queue = WorkQueue()
        self.recorder = Recorder(db, store, clock, self.runs)
        self.producer = Producer(db, store, providers, images, provider_media)
        self.elsewhere = OtherInstances(self)
        self._idle = trio.Event()

    @property
    def in_progress(self) -> int:
        """Jobs a worker of this process is running (or still writing down)."""
        return sum(1 for run in self.runs.values() if run.busy)

    # -- request side ------------------------------------------------------------------------

    async def submit(
        self,
        *,
        job_id: str,
        slot: Slot,
        source: str,
        spool: Spool,
        data: bytes,
        image: ImageInfo,
        metadata: dict[str, Any],
        created_at: float,
        deadline: Deadline,
        settings: JobSettings,
    ) -> JobRun:
        """Insert the job, register its run and hand it to a worker.

        Fast path (measured: it saves a transaction and two file operations per ingest): the
        input stays in memory in the run, and when a worker is idle the job is handed over
        directly and its row inserted already claimed (``processing``) while the provider
        works (measured: 1-2 ms less per upload).  A job inserted pending may be run by
        another instance (shared PostgreSQL): only then is its input also stored, where the
        other instances can read it (the shared media directory, or the bucket).  With SQLite
        the daemon is alone and a restart ends every open job.
        """
        self.runtime.sync_response_seconds = settings.sync_response_seconds
        self.runtime.result_ttl_seconds = settings.result_ttl_seconds
        hand_over = self.queue.reserve()  # released by _hand_over
        input_path: str | None = None
        if self.policy.inputs_on_disk and not hand_over:
            input_path = await self.store.keep_input(
                job_id, image.extension, spool, data, until=deadline.trio
            )
        values = repositories.pending_job_row(
            job_id, slot, source, created_at, deadline.wall, metadata, input_path, image.mime_type
        )
        settings = settings.with_slot(slot)  # the slot as submitted (a test run's overrides)
        run = JobRun(
            job_id,
            deadline,
            settings,
            data=data,
            input_path=input_path,
            now=created_at,
            row_pending=hand_over,
        )
        self.runs[job_id] = run
        if hand_over:
            self._hand_over(values)
        await self._insert(run, values, hand_over)
        return run

    def _hand_over(self, values: dict[str, Any]) -> None:
        """Start the job on the idle worker reserved for it; its row is inserted meanwhile."""
        values.update(
            status="processing",
            started_at=values["created_at"],
            claimed_by=self.instance_id,
            attempts=1,
        )
        fields: dict[str, Any] = {name: values.get(name) for name in Job.__dataclass_fields__}
        self.queue.hand_over(Job(**fields))  # the row as it will be inserted: no read-back
        self.queue.release()

    async def _insert(self, run: JobRun, values: dict[str, Any], hand_over: bool) -> None:
        # Bounded by the deadline: a hung server must not keep the booth (docs/jobs.md).
        ends = max(run.deadline.trio, trio.current_time() + MIN_INSERT_SECONDS)
        try:
            with trio.move_on_at(ends) as late:
                await self.db.write(repositories.insert_job, values)
            if late.cancelled_caught:
                raise DatabaseUnavailable("database unavailable: no answer before the deadline")
        except BaseException:
            if hand_over:  # its worker stops, writes nothing and lets the run go
                run.row_missing = True
                # Settled on the requester's behalf: it answers 503 from this exception.
                run.settle(unregistered_outcome(), Party.WAITER, self.clock.now())
            else:
                self.runs.pop(run.job_id, None)
            with trio.CancelScope(shield=True):
                await self.store.remove(run.input_path)
            raise
        finally:
            run.row_written.set()
        if not hand_over:
            self.queue.wake(run.job_id)

    async def wait(self, run: JobRun) -> Outcome:
        """The job's outcome: woken as soon as it is settled, or settling ``timeout`` at the
        deadline.

        A timeout is answered the instant it is settled: when 30 booths time out together,
        their 504s go out before the bookkeeping.  Any other outcome was settled by the worker
        before the deadline and is answered once durable (bounded): a success links to its
        row and file, and a booth or operator may look any job up by its ``X-Job-Id`` at once.
        Cancellation (the client went away): the job keeps running in its worker until it
        ends, and its result still lands in the gallery.
        """
        with trio.move_on_at(run.deadline.trio):
            await self._until_settled(run)
        won = run.settle(timeout_outcome(run.timeout_details()), Party.WAITER, self.clock.now())
        if won and not run.worker_attached:
            # No worker holds it: written in the background.  (A worker's scope ends at this
            # same instant, and the worker writes the outcome down on its way out.)
            self.recorder.later(run)
        outcome = run.outcome
        assert outcome is not None
        if outcome.failure is JobFailure.TIMEOUT:
            return outcome
        with trio.CancelScope(shield=True), trio.move_on_after(FINALIZE_BUDGET):
            await run.recorded.wait()
        return run.answer or outcome

    async def _until_settled(self, run: JobRun) -> None:
        poll = self.policy.cross_instance_poll_seconds
        if poll is None:
            await run.settled.wait()
            return
        # Shared database: another instance may run the job.  Its end is announced (a
        # notification: jobs/elsewhere.py); this slow poll is the guarantee.
        while not run.settled.is_set():
            with trio.move_on_after(poll):
                await run.settled.wait()
            if not run.settled.is_set() and not run.worker_attached:
                with contextlib.suppress(DatabaseUnavailable):  # asked again next round
                    await self.elsewhere.check(run)

    def settled_durably(self, run: JobRun, outcome: Outcome, by: Party) -> None:
        """``outcome`` is already in the database (written by ``by``): settle and release."""
        if run.settle(outcome, by, self.clock.now()):
            run.mark_recorded(None, outcome)
            self.runs.pop(run.job_id, None)

    # -- worker side -------------------------------------------------------------------------

    async def process(self, job: Job) -> None:
        """Run a claimed job to its end: provider → store → settle → durable write.

        The provider runs in the run's cancel scope: it stops at the deadline, or when another
        party settles first.  Cancelled from outside (shutdown past its grace period), the job
        is settled ``cancelled`` on the way out; it is never left unfinalized.
        """
        run = self._attach(job)
        started = trio.current_time()
        outcome: Outcome | None = None
        try:
            if run.outcome is None:
                with run.scope:
                    outcome = await self._attempt(job, run)
                if outcome is None:  # the deadline (or another party) ended it
                    outcome = timeout_outcome(run.timeout_details())
        finally:
            party = Party.WORKER if outcome is not None else Party.SHUTDOWN
            late = not run.settle(outcome or cancelled_outcome(), party, self.clock.now())
            if late and outcome is not None and outcome.result is not None:  # discard it
                with trio.CancelScope(shield=True):
                    await self.store.remove(outcome.result.path)
            if not run.row_missing:  # a job with no row never existed for the metrics
                self._observe(job, run, started)
            await self.recorder.record(run)
            if not self.in_progress:
                self._idle.set()

    def _attach(self, job: Job) -> JobRun:
        """The job's run (created here for a job submitted by another instance)."""
        run = self.runs.get(job.id)
        if run is None:
            run = JobRun(
                job.id,
                Deadline.from_wall(self.clock, job.deadline),
                JobSettings.for_claimed(job, self.runtime.result_ttl_seconds),
                input_path=job.input_path,
                now=self.clock.now(),
            )
            self.runs[job.id] = run
        run.worker_attached = True
        return run

    async def _attempt(self, job: Job, run: JobRun) -> Outcome:
        try:
            return await self.producer.produce(job, run)
        except ProviderError as exc:
            return Outcome(JobFailure.PROVIDER_ERROR, exc.http_status, str(exc))
        except InputGone as exc:
            event(log, logging.WARNING, "job.input_missing", job_id=job.id, problem=str(exc))
            return Outcome(JobFailure.INTERNAL_ERROR, 503, str(exc))
        except DatabaseUnavailable:
            return Outcome(JobFailure.INTERNAL_ERROR, 500, "database unavailable")
        except ObjectStoreUnavailable as exc:  # the result could not be stored: 503, as at ingest
            return Outcome(JobFailure.INTERNAL_ERROR, 503, f"object store unavailable: {exc}")
        except Exception as exc:
            log.exception("job.internal_error", extra={"fields": {"job_id": job.id}})
            return Outcome(JobFailure.INTERNAL_ERROR, 500, type(exc).__name__)

    def _observe(self, job: Job, run: JobRun, started: float) -> None:
        outcome = run.outcome
        assert outcome is not None
        if self.metrics is not None:
            seconds = max(0.0, self.clock.now() - job.created_at)
            self.metrics.observe_job(job.provider, job.slot_id, outcome, run.attempts.done, seconds)
        event(
            log,
            logging.DEBUG,
            "job.processed",
            job_id=job.id,
            slot_id=job.slot_id,
            seconds=round(trio.current_time() - started, 4),
        )

    async def wait_until_idle(self) -> None:
        """Return once no job is being processed in this instance."""
        while self.in_progress:
            self._idle = trio.Event()
            await self._idle.wait()

    # -- recovery, sweeping and shutdown -----------------------------------------------------

    async def recover_on_start(self) -> int:
        """Finalize jobs a previous process left behind.

        SQLite has exactly one daemon (the data dir is locked), so every unfinalized job belongs
        to a process that is gone: ``timeout`` when its deadline has passed, else ``cancelled``
        — an interruption is not an internal error (it must not inflate the error rate).  On
        PostgreSQL other instances may be alive: only jobs past their deadline are ours to end
        (the deadline is the lease); the sweeper catches the rest when they expire.
        """
        now = self.clock.now()
        every = self.policy.recover_every_unfinished_job
        interrupted = "interrupted: the daemon stopped before the job finished"
        ended = await self.db.write(
            repositories.finalize_overdue,
            now=now,
            before=now,
            failure_reason=JobFailure.TIMEOUT.value,
            details=interrupted if every else "deadline passed while no instance held the job",
        )
        if every:
            ended += await self.db.write(
                repositories.finalize_all_unfinalized,
                now=now,
                failure_reason=JobFailure.CANCELLED.value,
                details=interrupted,
            )
        await self._remove_inputs(ended)
        if ended:
            event(log, logging.WARNING, "jobs.recovered", count=len(ended))
        return len(ended)

    async def sweep(self, grace: float) -> int:
        """Finalize jobs past their deadline (+grace) as ``timeout``; returns how many.

        A live run among them is settled (its requester answered, its worker stopped) with
        the outcome the sweeper just wrote.
        """
        now = self.clock.now()
        details = "deadline passed (swept)"
        ended = await self.db.write(
            repositories.finalize_overdue,
            now=now,
            before=now - grace,
            failure_reason=JobFailure.TIMEOUT.value,
            details=details,
        )
        for job_id, _ in ended:
            run = self.runs.get(job_id)
            if run is not None:
                self.settled_durably(run, timeout_outcome(details), Party.SWEEPER)
        for run in list(self.runs.values()):  # requester gone, finished by another instance
            if not run.busy and run.settled_by is None and run.deadline.wall < now - grace:
                self.runs.pop(run.job_id, None)
        await self._remove_inputs(ended)
        if ended:
            event(log, logging.WARNING, "jobs.swept", count=len(ended))
        return len(ended)

    async def _remove_inputs(self, ended: list[tuple[str, str | None]]) -> None:
        if not ended:  # the usual sweep: no transaction for nothing
            return
        paths = [path for _, path in ended if path]
        await self.store.remove(*paths)
        await self.db.write(repositories.clear_input_paths, [job_id for job_id, _ in ended])

    async def finalize_leftovers_on_shutdown(self) -> int:
        """Shutdown: write the runs still queued for the recorder, then end the jobs nobody
        will process any more (SQLite: we are the only daemon) as ``cancelled``.

        On PostgreSQL a pending job can still be claimed by another instance, so it is left to
        them (or to the sweeper at its deadline).
        """
        await self.recorder.flush()
        if not self.policy.finalize_leftovers_on_shutdown:
            return 0
        ended = await self.db.write(
            repositories.finalize_all_unfinalized,
            now=self.clock.now(),
            failure_reason=JobFailure.CANCELLED.value,
            details="daemon shut down",
        )
        for job_id, _ in ended:
            run = self.runs.get(job_id)
            if run is not None:
                self.settled_durably(run, cancelled_outcome(), Party.SHUTDOWN)
        await self._remove_inputs(ended)
        return len(ended)
