"""The job service: the narrow handle request handlers get (submit, wait) plus the worker's
processing step and the one finalize path everybody goes through.

Lifecycle of a job::

    submit ──▶ pending ──claim──▶ processing ──▶ finalized (success | timeout | provider_error
                                                            | cancelled | internal_error)

*Exactly once*: every path that ends a job (worker success or failure, the waiting request at
its deadline, the sweeper, start-up recovery, shutdown) calls :meth:`JobService.finalize`, a
conditional update that only one caller can win.  The winner wakes the in-process waiter and
removes the input copy; a loser removes the result file it may have written.

*Deadlines*: the waiting request waits inside ``trio.move_on_at(deadline)``; the worker runs the
provider and the result store inside ``trio.move_on_at(deadline)`` too, so provider work for a job
is cancelled structurally at the same instant its requester is answered 504.  The final write is
shielded and bounded (``finalize``): it must happen even though its scope was just cancelled.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import trio

from photochangerd.clock import WallClock
from photochangerd.db import repositories
from photochangerd.db.engine import Database, DatabaseUnavailable
from photochangerd.domain.models import Job, Outcome, Slot, StoredResult, timeout_outcome
from photochangerd.jobs.waiters import Waiter, WaiterRegistry
from photochangerd.logs import event
from photochangerd.media.encode import convert, target_format
from photochangerd.media.images import (
    DECODE_ERRORS,
    EXT_BY_MIME,
    MIME_BY_FORMAT,
    ImageInfo,
    UnsupportedImage,
    inspect_image,
)
from photochangerd.media.imaging import ImageWorkers
from photochangerd.media.provider_media import ProviderMedia
from photochangerd.media.store import MediaStore, Spool
from photochangerd.metrics import Metrics
from photochangerd.providers.base import (
    ImageInput,
    ProviderError,
    ProviderRejected,
    ProviderRequest,
    TemplateInput,
)
from photochangerd.providers.gate import GateWait
from photochangerd.providers.registry import ProviderRegistry
from shared.errors import JobFailure

log = logging.getLogger("photochangerd.jobs")

OUTPUT_MAX_PIXELS = 200_000_000  # a provider's output: generous, but not a decompression bomb
DELEGATED_WRITE_DELAY = 0.02  # s; see process()
FINALIZE_BUDGET = 10.0  # seconds a shielded final write may take before we give up on it
CROSS_INSTANCE_POLL = 1.0  # PostgreSQL: how often a waiter checks for a job finished elsewhere


@dataclass(slots=True)
class RuntimeSettings:
    """The runtime-editable settings this instance last read from the database."""

    sync_response_seconds: float = 48.0
    result_ttl_seconds: float = 72 * 3600.0


@dataclass(slots=True)
class _Decision:
    """A job's outcome as settled in this process, and whether it is in the database yet."""

    outcome: Outcome
    decided_at: float  # wall clock
    persisted: trio.Event = field(default_factory=trio.Event)
    delegated: bool = False  # answered already; its worker writes it (a little later)


@dataclass(frozen=True, slots=True)
class Submission:
    job_id: str
    waiter: Waiter
    deadline: float  # wall clock
    input_path: str | None


def _final_image(data: bytes, output_format: str, passthrough: bool) -> tuple[bytes, str]:
    """Check a provider's output and convert it to the slot's output format (sync, thread).

    A conversion decodes every pixel, which is the check (a 1 MP PNG is not decoded twice:
    −24 ms per Gemini/Turbotext result); output kept as it is is inspected like an upload.
    """
    info = inspect_image(data, OUTPUT_MAX_PIXELS, decode_pixels=False)
    target = MIME_BY_FORMAT[target_format(output_format, info.mime_type)]
    if passthrough or target == info.mime_type:
        inspect_image(data, OUTPUT_MAX_PIXELS)
        return data, info.mime_type
    try:
        return convert(data, info.mime_type, output_format)
    except DECODE_ERRORS as exc:
        raise UnsupportedImage(f"image does not decode ({type(exc).__name__})") from None


def _job_from_values(values: dict[str, Any]) -> Job:
    """The row just inserted, as a :class:`Job` (no read-back needed)."""
    fields: dict[str, Any] = {name: values.get(name) for name in Job.__dataclass_fields__}
    return Job(**fields)


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
    ) -> None:
        self.db = db
        self.provider_media = provider_media
        self.metrics: Metrics | None = None
        self.store = store
        self.providers = providers
        self.images = images
        self.clock = clock
        self.instance_id = instance_id
        self.runtime = RuntimeSettings()
        self.waiters = WaiterRegistry()
        # Wake-ups for workers: a job id to claim, or a job already claimed for them.
        self._wake_send, self.wake_receive = trio.open_memory_channel[str | Job](math.inf)
        self.idle_workers = 0
        self._handovers = 0
        self._inputs: dict[str, bytes] = {}
        self._decisions: dict[str, _Decision] = {}  # input photos of this process's unfinished jobs
        self.running: dict[str, trio.CancelScope] = {}
        self._idle = trio.Event()

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
        deadline: float,
    ) -> Submission:
        """Insert the job and hand it to a worker.

        Fast path (measured: it saves a transaction and two file operations per ingest): the
        input stays in memory for this process's worker, and when a worker is idle the job is
        inserted already claimed (``processing``) and handed over directly.  The input is also
        written to the media directory when other instances may have to run the job (shared
        PostgreSQL); with SQLite the daemon is alone and a restart ends every open job anyway.
        """
        input_path: str | None = None
        if self.db.dialect != "sqlite":
            target = self.store.input_path(job_id, image.extension)
            await spool.commit(target, data)
            input_path = str(target)
        values: dict[str, Any] = {
            "id": job_id,
            "slot_id": slot.id,
            "source": source,
            "status": "pending",
            "is_finalized": False,
            "provider": slot.provider,
            "operation": slot.operation,
            "settings": slot.settings,
            "created_at": created_at,
            "deadline": deadline,
            "attempts": 0,
            "client_metadata": metadata,
            "input_path": input_path,
            "input_mime_type": image.mime_type,
        }
        hand_over = self.idle_workers > self._handovers
        if hand_over:
            self._handovers += 1
            values.update(
                status="processing", started_at=created_at, claimed_by=self.instance_id, attempts=1
            )
        waiter = self.waiters.register(job_id)
        self._inputs[job_id] = data
        try:
            await self.db.write(repositories.insert_job, values)
        except BaseException:
            self.waiters.discard(job_id)
            self._inputs.pop(job_id, None)
            with trio.CancelScope(shield=True):
                await self.store.remove(input_path)
            raise
        finally:
            if hand_over:
                self._handovers -= 1
        if hand_over:
            self._wake_send.send_nowait(_job_from_values(values))
        else:
            self._wake_send.send_nowait(job_id)
        return Submission(job_id, waiter, deadline, input_path)

    async def wait(self, submission: Submission) -> Outcome:
        """Wait for the job's outcome, at most until its deadline (then finalize ``timeout``).

        Cancellation (the client went away): the job keeps running in its worker until it
        finishes or reaches its deadline, and its result still lands in the gallery.
        """
        job_id = submission.job_id
        waiter = submission.waiter
        try:
            with trio.move_on_at(self.clock.to_trio(submission.deadline)):
                while not waiter.event.is_set():
                    if self.db.dialect == "sqlite":
                        await waiter.event.wait()
                        break
                    with trio.move_on_after(CROSS_INSTANCE_POLL):
                        await waiter.event.wait()
                    if not waiter.event.is_set():
                        job = await self.db.read(repositories.get_job, job_id)
                        if job is not None and job.is_finalized:
                            return await self._outcome_of(job)
                assert waiter.outcome is not None
                return waiter.outcome
            return await self._answer_deadline(job_id, waiter, submission.input_path)
        finally:
            self.waiters.discard(job_id)

    async def _outcome_of(self, job: Job) -> Outcome:
        """Rebuild an outcome from a finalized row (job finished by another instance)."""
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

    # -- finalization ------------------------------------------------------------------------

    def _decide(self, job_id: str, outcome: Outcome) -> tuple[_Decision, bool]:
        """Settle a job's outcome in this process: (the decision, whether it is ``outcome``).

        The first caller decides; later callers (the other party at the same instant) get
        that decision.  This keeps one database write per job end instead of two racing ones,
        and lets the booth get its 504 at the deadline while the worker — whose cancel scope is
        unwinding at that same instant — writes it down.  The conditional update in
        :meth:`_persist` stays the arbiter across instances.
        """
        existing = self._decisions.get(job_id)
        if existing is not None:
            return existing, False
        decision = _Decision(outcome, self.clock.now())
        self._decisions[job_id] = decision
        return decision, True

    async def _answer_deadline(
        self, job_id: str, waiter: Waiter, input_path: str | None
    ) -> Outcome:
        """The waiting request reached the deadline: decide ``timeout`` unless already decided."""
        decision, first = self._decide(job_id, timeout_outcome())
        if first:
            if job_id in self.running:
                # Its worker's scope ends right now; it records this decision (and discards
                # any result).  The booth need not wait for that write.
                decision.delegated = True
                return decision.outcome
            await self._persist(job_id, decision, input_path)
            self._decisions.pop(job_id, None)
            return waiter.outcome or decision.outcome
        if not decision.outcome.ok:
            # The worker settled a failure (its own scope ended at this same instant): answer
            # it now; the worker writes it.  Only a success is waited for (its file and row).
            return decision.outcome
        # The worker decided first with a success finishing at the deadline.
        with trio.CancelScope(shield=True), trio.move_on_after(FINALIZE_BUDGET):
            await decision.persisted.wait()
        if waiter.outcome is not None:
            return waiter.outcome
        with trio.CancelScope(shield=True), trio.move_on_after(FINALIZE_BUDGET):
            job = await self.db.read(repositories.get_job, job_id)
            if job is not None and job.is_finalized:
                return await self._outcome_of(job)
        return decision.outcome

    async def finalize(self, job_id: str, outcome: Outcome, input_path: str | None = None) -> bool:
        """Record ``outcome`` unless the job is already decided or final; True when it won.

        Runs shielded (it is the last write of a job whose scope may just have been cancelled)
        and bounded by :data:`FINALIZE_BUDGET`.
        """
        decision, first = self._decide(job_id, outcome)
        try:
            if not first:
                with trio.CancelScope(shield=True), trio.move_on_after(FINALIZE_BUDGET):
                    await decision.persisted.wait()
                if outcome.result is not None and outcome is not decision.outcome:
                    with trio.CancelScope(shield=True):
                        await self.store.remove(outcome.result.path)
                return False
            return await self._persist(job_id, decision, input_path)
        finally:
            if first:
                self._decisions.pop(job_id, None)

    async def _persist(self, job_id: str, decision: _Decision, input_path: str | None) -> bool:
        """Write a decision with the conditional update; wake the waiter if it won."""
        outcome = decision.outcome
        won = False
        with trio.CancelScope(shield=True), trio.move_on_after(FINALIZE_BUDGET):
            try:
                won = await self.db.write(
                    repositories.finalize_job,
                    job_id,
                    # A delegated write comes deliberately late: record when the job ended.
                    now=decision.decided_at if decision.delegated else self.clock.now(),
                    failure_reason=outcome.failure.value if outcome.failure else None,
                    response_status=outcome.response_status,
                    details=outcome.details,
                    result=outcome.result,
                    result_ttl_seconds=self.runtime.result_ttl_seconds,
                )
            except DatabaseUnavailable:
                event(
                    log,
                    logging.ERROR,
                    "job.finalize_failed",
                    job_id=job_id,
                    reason="database_unavailable",
                )
                # The sweeper finalizes the row once the DB is back; answer the request now.
                self.waiters.resolve(
                    job_id, Outcome(JobFailure.INTERNAL_ERROR, 500, "database unavailable")
                )
            finally:
                decision.persisted.set()
            self._inputs.pop(job_id, None)
            if won:
                self.waiters.resolve(job_id, outcome)
                await self.store.remove(input_path)
                event(
                    log,
                    logging.INFO,
                    "job.finalized",
                    job_id=job_id,
                    outcome=outcome.failure.value if outcome.failure else "success",
                    status=outcome.response_status,
                    details=outcome.details,
                )
            elif outcome.result is not None:
                await self.store.remove(outcome.result.path)
        return won

    # -- worker side -------------------------------------------------------------------------

    async def process(self, job: Job) -> None:
        """Run a claimed job to its end: provider → store → finalize, all before its deadline.

        Cancelled from outside (shutdown past its grace period), the job is finalized
        ``cancelled`` on the way out; it is never left unfinalized.
        """
        outcome: Outcome | None = None
        started = trio.current_time()
        gate_wait = GateWait()
        try:
            with trio.move_on_at(self.clock.to_trio(job.deadline)) as scope:
                self.running[job.id] = scope
                try:
                    outcome = await self._produce(job, gate_wait)
                except ProviderError as exc:
                    outcome = Outcome(JobFailure.PROVIDER_ERROR, exc.http_status, str(exc))
                except DatabaseUnavailable:
                    outcome = Outcome(JobFailure.INTERNAL_ERROR, 500, "database unavailable")
                except Exception as exc:
                    log.exception("job.internal_error", extra={"fields": {"job_id": job.id}})
                    outcome = Outcome(JobFailure.INTERNAL_ERROR, 500, type(exc).__name__)
            if outcome is None:
                # Still waiting for a capped provider's slot at the deadline: say so.
                outcome = timeout_outcome(gate_wait.describe(trio.current_time()))
        finally:
            self.running.pop(job.id, None)
            self._inputs.pop(job.id, None)
            if not self.running:
                self._idle.set()
            if outcome is None:
                outcome = Outcome(JobFailure.CANCELLED, 503, "daemon shut down")
            if self.metrics is not None:
                label = outcome.failure.value if outcome.failure else "success"
                self.metrics.job_duration.labels(provider=job.provider, outcome=label).observe(
                    max(0.0, self.clock.now() - job.created_at)
                )
                if outcome.failure is JobFailure.PROVIDER_ERROR:
                    self.metrics.provider_errors.labels(
                        provider=job.provider, status=str(outcome.response_status)
                    ).inc()
            event(
                log,
                logging.DEBUG,
                "job.processed",
                job_id=job.id,
                slot_id=job.slot_id,
                seconds=round(trio.current_time() - started, 4),
            )
            decision = self._decisions.get(job.id)
            if (
                decision is not None
                and decision.delegated
                and decision.outcome.failure is JobFailure.TIMEOUT
                and outcome.failure is JobFailure.TIMEOUT
            ):
                # Both ended at the deadline; the worker knows better why (a provider slot).
                decision.outcome = outcome
            if decision is None and outcome.failure is JobFailure.TIMEOUT:
                # The requester's deadline fires at this instant too: settle it now, so its 504
                # need not wait for the write (_answer_deadline), and write it like a delegated one.
                decision, _ = self._decide(job.id, outcome)
                decision.delegated = True
            if decision is not None and decision.delegated:
                # The waiting request already answered with this decision; record it here —
                # after the answers due at this same instant have gone out (a provider outage
                # times every booth out at once: their 504s first, the bookkeeping after).
                with trio.CancelScope(shield=True):
                    await trio.sleep(DELEGATED_WRITE_DELAY)
                    if outcome.result is not None and outcome is not decision.outcome:
                        await self.store.remove(outcome.result.path)
                try:
                    await self._persist(job.id, decision, job.input_path)
                finally:
                    self._decisions.pop(job.id, None)
            else:
                await self.finalize(job.id, outcome, job.input_path)

    async def _produce(self, job: Job, gate_wait: GateWait) -> Outcome:
        photo_bytes = self._inputs.get(job.id)
        if photo_bytes is None and job.input_path:
            photo_bytes = await self.store.read(job.input_path)
        if photo_bytes is None or job.input_mime_type is None:
            raise RuntimeError("job has no input")
        photo = ImageInput(photo_bytes, job.input_mime_type)
        bindings = []
        if job.provider != "local" or job.operation == "frame":  # the others use no templates
            bindings = await self.db.read(repositories.slot_templates, job.slot_id)
        templates = [
            TemplateInput(b.role, ImageInput(await self.store.read(b.path), b.mime_type))
            for b in bindings
        ]
        provider = self.providers.get(job.provider)

        async def report_reference(reference: str) -> None:
            await self.db.write(repositories.set_provider_reference, job.id, reference)

        request = ProviderRequest(
            job.id,
            job.slot_id,
            job.operation,
            job.settings,
            photo,
            templates,
            report_reference=report_reference,
            wait=gate_wait,
        )
        if self.provider_media is not None:
            request = dataclasses.replace(
                request, publish=self.provider_media.publisher(job.id, job.deadline)
            )
        provider_started = trio.current_time()
        result = await provider.process(request)
        provider_seconds = trio.current_time() - provider_started
        output_format = str(job.settings.get("output_format", "jpeg"))
        if result.data is photo.data:  # handed back untouched: the input was checked at ingest
            data, mime = photo.data, photo.mime_type
        else:
            try:
                data, mime = await self.images.run(
                    _final_image, result.data, output_format, job.operation == "passthrough"
                )
            except UnsupportedImage as exc:
                raise ProviderRejected(
                    f"the provider's output is not a usable image: {exc}"
                ) from None
        extension = EXT_BY_MIME[mime]
        stored = await self.store.write_result(job.id, data, extension, mime)
        return Outcome(None, 200, result=stored, data=data, provider_seconds=provider_seconds)

    # -- recovery and sweeping ---------------------------------------------------------------

    async def recover_on_start(self) -> int:
        """Finalize jobs a previous process left behind.

        SQLite has exactly one daemon (the data dir is locked), so every unfinalized job belongs
        to a process that is gone: ``timeout`` when its deadline has passed, else ``cancelled``
        — an interruption is not an internal error (it must not inflate the error rate).  On
        PostgreSQL other instances may be alive: only jobs past their deadline are ours to end
        (the deadline is the lease); the sweeper catches the rest when they expire.
        """
        now = self.clock.now()
        if self.db.dialect == "sqlite":
            interrupted = "interrupted: the daemon stopped before the job finished"
            ended = await self.db.write(
                repositories.finalize_overdue,
                now=now,
                before=now,
                failure_reason=JobFailure.TIMEOUT.value,
                details=interrupted,
            )
            ended += await self.db.write(
                repositories.finalize_all_unfinalized,
                now=now,
                failure_reason=JobFailure.CANCELLED.value,
                details=interrupted,
            )
        else:
            ended = await self.db.write(
                repositories.finalize_overdue,
                now=now,
                before=now,
                failure_reason=JobFailure.TIMEOUT.value,
                details="deadline passed while no instance held the job",
            )
        await self._remove_inputs(ended)
        if ended:
            event(log, logging.WARNING, "jobs.recovered", count=len(ended))
        return len(ended)

    async def sweep(self, grace: float) -> int:
        """Finalize jobs past their deadline (+grace) as ``timeout``; returns how many."""
        now = self.clock.now()
        ended = await self.db.write(
            repositories.finalize_overdue,
            now=now,
            before=now - grace,
            failure_reason=JobFailure.TIMEOUT.value,
            details="deadline passed (swept)",
        )
        for job_id, _ in ended:
            self._inputs.pop(job_id, None)
            self.waiters.resolve(job_id, timeout_outcome())
        await self._remove_inputs(ended)
        if ended:
            event(log, logging.WARNING, "jobs.swept", count=len(ended))
        return len(ended)

    async def _remove_inputs(self, ended: list[tuple[str, str | None]]) -> None:
        paths = [path for _, path in ended if path]
        await self.store.remove(*paths)
        await self.db.write(repositories.clear_input_paths, [job_id for job_id, _ in ended])

    async def wait_until_idle(self) -> None:
        """Return once no job is being processed in this instance."""
        while self.running:
            self._idle = trio.Event()
            await self._idle.wait()

    async def finalize_leftovers_on_shutdown(self) -> int:
        """Shutdown: end jobs nobody will process any more (SQLite: we are the only daemon).

        On PostgreSQL a pending job can still be claimed by another instance, so it is left to
        them (or to the sweeper at its deadline).
        """
        if self.db.dialect != "sqlite":
            return 0
        ended = await self.db.write(
            repositories.finalize_all_unfinalized,
            now=self.clock.now(),
            failure_reason=JobFailure.CANCELLED.value,
            details="daemon shut down",
        )
        await self._remove_inputs(ended)
        return len(ended)
