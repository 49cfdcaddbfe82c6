"""One job in this process: a :class:`JobRun`, created once when the job arrives (docs/jobs.md).

A run carries what every party needs about its job — the input bytes, ONE :class:`Deadline`
(wall and Trio time, both from the request's arrival), the job's own :class:`JobSettings`
snapshot, the cancel scope its worker runs in — and its outcome, which is settled exactly once.

:meth:`JobRun.settle` is synchronous: the first party (worker, waiting requester at the
deadline, sweeper, shutdown) wins, the requester is woken at that instant (a ``trio.Event``)
and the worker's scope is cancelled.  The durable write follows in the worker's or a
background task (see :mod:`photochangerd.jobs.record`); the conditional ``finalize_job`` update
stays the arbiter between instances sharing a database.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any

import trio

from photochangerd.clock import WallClock
from photochangerd.domain.models import Job, Outcome, Slot, TemplateBinding
from photochangerd.jobs.attempts import AttemptLog
from photochangerd.providers.gate import GateWait
from shared.errors import JobFailure

DEFAULT_SYNC_RESPONSE_SECONDS = 48.0
DEFAULT_RESULT_TTL_SECONDS = 72 * 3600.0
MIN_INSERT_SECONDS = 1.0  # a job's insert may take this long at least, even near its deadline


class Party(Enum):
    """Who settled a run."""

    WORKER = "worker"
    WAITER = "waiter"  # the waiting requester, at the deadline
    SWEEPER = "sweeper"
    SHUTDOWN = "shutdown"
    ELSEWHERE = "elsewhere"  # another instance finalized the row (shared PostgreSQL)


@dataclass(frozen=True, slots=True)
class Deadline:
    """The instant a job must be answered by, on both clocks (computed once per job)."""

    wall: float  # Unix seconds: stored in the row, used for media expiry
    trio: float  # Trio clock: enforced by cancel scopes

    @classmethod
    def after_arrival(cls, arrival: float, arrived_wall: float, seconds: float) -> Deadline:
        """``seconds`` after arrival: Trio time ``arrival``, wall clock ``arrived_wall``."""
        return cls(arrived_wall + seconds, arrival + seconds)

    @classmethod
    def from_wall(cls, clock: WallClock, wall: float) -> Deadline:
        """A stored deadline (a job claimed from the database) on this process's Trio clock."""
        return cls(wall, clock.to_trio(wall))


@dataclass(frozen=True, slots=True)
class JobSettings:
    """The settings a job was submitted with: later edits do not change a job in flight."""

    sync_response_seconds: float = DEFAULT_SYNC_RESPONSE_SECONDS
    result_ttl_seconds: float = DEFAULT_RESULT_TTL_SECONDS
    output_format: str = "jpeg"
    # The slot's template bindings as read with it at ingest; None for a job submitted by
    # another instance (read when it runs).  Saves the run a database read.
    templates: tuple[TemplateBinding, ...] | None = None

    @classmethod
    def snapshot(
        cls, runtime: dict[str, Any], slot: Slot, templates: tuple[TemplateBinding, ...]
    ) -> JobSettings:
        """From the runtime settings row, the slot and its bindings, as read for this ingest."""
        return cls(
            sync_response_seconds=float(
                runtime.get("sync_response_seconds", DEFAULT_SYNC_RESPONSE_SECONDS)
            ),
            result_ttl_seconds=float(runtime.get("result_ttl_hours", 72)) * 3600,
            output_format=str(slot.settings.get("output_format", "jpeg")),
            templates=templates,
        )

    def with_slot(self, slot: Slot) -> JobSettings:
        """The same, with the output format of ``slot`` as submitted (a test run's overrides)."""
        return dataclasses.replace(
            self, output_format=str(slot.settings.get("output_format", "jpeg"))
        )

    @classmethod
    def for_claimed(cls, job: Job, result_ttl_seconds: float) -> JobSettings:
        """A job submitted by another instance: its row has no snapshot of the TTL."""
        return cls(
            sync_response_seconds=max(0.0, job.deadline - job.created_at),
            result_ttl_seconds=result_ttl_seconds,
            output_format=str(job.settings.get("output_format", "jpeg")),
        )


class RuntimeSettings:
    """This instance's latest view of the runtime settings (from the last job submitted or
    the last admin edit).  Jobs never read it: each has its own :class:`JobSettings`; it serves
    the admin API and jobs submitted by another instance (whose rows carry no TTL)."""

    def __init__(self) -> None:
        self.sync_response_seconds = DEFAULT_SYNC_RESPONSE_SECONDS
        self.result_ttl_seconds = DEFAULT_RESULT_TTL_SECONDS


def cancelled_outcome() -> Outcome:
    """What a job the daemon stopped for ends with (shutdown)."""
    return Outcome(JobFailure.CANCELLED, 503, "daemon shut down")


def unregistered_outcome() -> Outcome:
    """What a run whose row could not be inserted ends with (its requester answers 503)."""
    return Outcome(JobFailure.INTERNAL_ERROR, 503, "the job's row could not be written")


class JobRun:
    """One job's life in this process; see the module docstring."""

    def __init__(
        self,
        job_id: str,
        deadline: Deadline,
        settings: JobSettings,
        *,
        data: bytes | None = None,
        input_path: str | None = None,
        now: float = 0.0,
        row_pending: bool = False,
    ) -> None:
        self.job_id = job_id
        self.deadline = deadline
        self.settings = settings
        self.data = data  # the input photo, while this process may still need it
        self.input_path = input_path
        self.scope = trio.CancelScope(deadline=deadline.trio)
        self.gate_wait = GateWait()  # shared: whoever settles a timeout names the cap
        self.attempts = AttemptLog()  # the chain's steps (the producer opens and closes them)
        self.outcome: Outcome | None = None
        self.settled_by: Party | None = None
        self.settled_at = now  # wall clock; set again by settle()
        self.settled = trio.Event()
        # The durable write: one writer (claim_write), everybody else waits for ``recorded``.
        self.worker_attached = False
        self._writing = False
        self.recorded = trio.Event()
        # The job's row: written before the run starts, or while it runs (``row_pending``: a
        # job handed to an idle worker is inserted while the provider works).  Whoever writes
        # about the job waits for it; ``row_missing``: that insert failed, write nothing.
        self.row_written = trio.Event()
        self.row_missing = False
        if not row_pending:
            self.row_written.set()
        self.won: bool | None = None  # the conditional update's verdict (None: not written)
        self.answer: Outcome | None = None  # what the requester answers once recorded

    def settle(self, outcome: Outcome, by: Party, now: float | None = None) -> bool:
        """Settle the outcome unless already settled; True when this call won.

        Synchronous: the requester is woken and the worker's scope cancelled right here.
        """
        if self.outcome is not None:
            return False
        self.outcome = outcome
        self.answer = outcome
        self.settled_by = by
        if now is not None:
            self.settled_at = now
        self.settled.set()
        self.scope.cancel()
        return True

    def timeout_details(self) -> str | None:
        """What a timeout says about this job (the provider slot it waited for, if any)."""
        return self.gate_wait.describe(trio.current_time())

    def claim_write(self) -> bool:
        """The first caller writes the settled outcome down; the others wait for it."""
        if self._writing or self.recorded.is_set():
            return False
        self._writing = True
        return True

    def mark_recorded(self, won: bool | None, answer: Outcome | None = None) -> None:
        """The durable write is done (or was done elsewhere): release everybody waiting."""
        self._writing = True
        self.won = won
        if answer is not None:
            self.answer = answer
        self.recorded.set()

    @property
    def busy(self) -> bool:
        """A worker of this process is running (or still writing) this job."""
        return self.worker_attached and not self.recorded.is_set()
