"""The sweeper on Trio's ``MockClock`` (``autojump_clock``), against an in-memory job table.

``JobService.sweep`` finalizes the rows past their deadline + grace as ``timeout`` (the
deadline is the lease), settles the live runs of this process among them (their requesters are
answered, their workers stop) and never writes an outcome twice; ``run_sweeper`` repeats it
every interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import trio

from photochangerd.clock import WallClock
from photochangerd.db import repositories
from photochangerd.db.engine import DatabaseUnavailable
from photochangerd.domain.models import Job, Outcome
from photochangerd.jobs.run import Deadline, JobRun, JobSettings, Party
from photochangerd.jobs.service import JobService
from photochangerd.jobs.worker import run_sweeper
from shared.errors import JobFailure
from tests.support.jobs import claimed_job

EPOCH = 1_800_000_000.0
GRACE = 10.0


class MockWallClock(WallClock):
    """Wall-clock time that follows Trio's (mock) clock."""

    def now(self) -> float:
        return EPOCH + trio.current_time() + self.offset


@dataclass
class Row:
    deadline: float
    input_path: str | None = None
    is_finalized: bool = False
    failure_reason: str | None = None
    details: str | None = None
    finalized_at: float | None = None


class MemoryDatabase:
    """The job table in memory; ``finalize_overdue`` applies the repository's predicate."""

    dialect = "sqlite"

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.sweeps: list[float] = []  # Trio times of each finalize_overdue
        self.finalize_job_calls: list[str] = []
        self.cleared: list[str] = []
        self.unavailable = False
        self.kept_attempts: dict[str, list[dict[str, Any]]] = {}

    async def write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        await trio.sleep(0.01)  # a write takes a little (mock) time
        if self.unavailable:
            raise DatabaseUnavailable("down")
        if fn is repositories.finalize_overdue:
            self.sweeps.append(trio.current_time())
            ended = []
            for job_id, row in self.rows.items():
                if not row.is_finalized and row.deadline < kwargs["before"]:
                    row.is_finalized = True
                    row.failure_reason = kwargs["failure_reason"]
                    row.details = kwargs["details"]
                    row.finalized_at = kwargs["now"]
                    ended.append((job_id, row.input_path))
            return ended
        if fn is repositories.clear_input_paths:
            for job_id in args[0]:
                self.rows[job_id].input_path = None
                self.cleared.append(job_id)
            return None
        if fn is repositories.keep_attempt_log:
            self.kept_attempts[args[0]] = args[1]
            return None
        if fn is repositories.finalize_job:
            self.finalize_job_calls.append(args[0])
            row = self.rows[args[0]]
            won = not row.is_finalized
            row.is_finalized = True
            return won
        raise AssertionError(f"unexpected write {fn.__name__}")

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        return None


class FakeStore:
    def __init__(self) -> None:
        self.removed: list[str] = []

    async def remove(self, *paths: str | None) -> None:
        self.removed.extend(p for p in paths if p)


class HangingProducer:
    async def produce(self, job: Job, run: JobRun) -> Outcome:
        await trio.sleep_forever()
        raise AssertionError("unreachable")


class HangingStep:
    """A producer whose first step failed and whose fallback hangs."""

    async def produce(self, job: Job, run: JobRun) -> Outcome:
        run.attempts.begin(0, "gemini", "edit")
        run.attempts.end("provider_error", "NO_IMAGE", 502)
        run.attempts.begin(1, "local", "enhance")
        await trio.sleep_forever()
        raise AssertionError("unreachable")


def _service() -> tuple[JobService, MemoryDatabase, FakeStore]:
    db, store = MemoryDatabase(), FakeStore()
    service = JobService(
        db=cast(Any, db),
        store=cast(Any, store),
        providers=cast(Any, None),
        images=cast(Any, None),
        clock=MockWallClock(),
        instance_id="test",
    )
    service.producer = cast(Any, HangingProducer())
    return service, db, store


def _row(db: MemoryDatabase, job_id: str, deadline: float) -> None:
    db.rows[job_id] = Row(deadline, input_path=f"/in/{job_id}")


def _live_run(service: JobService, job_id: str, trio_deadline: float) -> tuple[Job, JobRun]:
    """A run of this process whose Trio deadline is ``trio_deadline`` (its row may differ)."""
    deadline = Deadline(EPOCH + trio_deadline, trio_deadline)
    run = JobRun(job_id, deadline, JobSettings(), data=b"photo", input_path=f"/in/{job_id}")
    service.runs[job_id] = run
    return claimed_job(job_id, created_at=EPOCH, deadline=deadline.wall), run


async def test_only_rows_past_deadline_plus_grace_are_swept(autojump_clock: object) -> None:
    service, db, store = _service()
    await trio.sleep(100)
    now = service.clock.now()
    _row(db, "overdue", now - GRACE - 1)
    _row(db, "within-grace", now - GRACE + 1)
    _row(db, "future", now + 30)
    _row(db, "done", now - 1000)
    db.rows["done"].is_finalized = True
    assert await service.sweep(GRACE) == 1
    swept = db.rows["overdue"]
    assert swept.is_finalized and swept.failure_reason == JobFailure.TIMEOUT.value
    assert swept.finalized_at == now
    assert not any(db.rows[j].is_finalized for j in ("within-grace", "future"))
    assert store.removed == ["/in/overdue"] and db.cleared == ["overdue"]
    # Later, the row within its grace becomes overdue too; nothing is swept twice.
    await trio.sleep(2)
    assert await service.sweep(GRACE) == 1
    assert store.removed == ["/in/overdue", "/in/within-grace"]
    assert await service.sweep(GRACE) == 0
    assert db.finalize_job_calls == []


async def test_live_runs_are_woken_and_never_written_twice(autojump_clock: object) -> None:
    service, db, _ = _service()
    worked, worked_run = _live_run(service, "worked", trio.current_time() + 48)
    _, queued_run = _live_run(service, "queued", trio.current_time() + 48)
    # Their rows say they are past their lease (e.g. another instance's clock).
    _row(db, "worked", service.clock.now() - GRACE - 1)
    _row(db, "queued", service.clock.now() - GRACE - 1)
    answered: dict[str, tuple[Outcome, float]] = {}

    async def requester(run: JobRun) -> None:
        answered[run.job_id] = (await service.wait(run), trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(service.recorder.run)
        nursery.start_soon(service.process, worked)
        nursery.start_soon(requester, worked_run)
        nursery.start_soon(requester, queued_run)
        await trio.sleep(5)
        swept_at = trio.current_time()
        assert await service.sweep(GRACE) == 2
        await trio.sleep(60)  # past every deadline: nobody settles or writes again
        nursery.cancel_scope.cancel()
    for run in (worked_run, queued_run):
        outcome, at = answered[run.job_id]
        assert outcome.failure is JobFailure.TIMEOUT and outcome.response_status == 504
        assert swept_at <= at < run.deadline.trio  # woken by the sweep, not by its deadline
        assert run.settled_by is Party.SWEEPER and run.recorded.is_set() and run.won is None
    assert db.finalize_job_calls == []  # already in the database: written once, by the sweep
    assert service.runs == {} and service.in_progress == 0


async def test_stale_runs_nobody_holds_are_forgotten(autojump_clock: object) -> None:
    service, _, _ = _service()
    _, stale = _live_run(service, "stale", trio.current_time())  # finished elsewhere
    _, fresh = _live_run(service, "fresh", trio.current_time() + 48)
    await trio.sleep(GRACE + 1)
    assert await service.sweep(GRACE) == 0
    assert service.runs == {"fresh": fresh}
    assert stale.outcome is None  # forgotten, not settled: its outcome is someone else's


async def test_run_sweeper_sweeps_every_interval_and_survives_an_outage(
    autojump_clock: object,
) -> None:
    service, db, _ = _service()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_sweeper, service, 30.0, GRACE)
        await trio.sleep(65)  # sweeps at about t=0, 30, 60
        assert [round(t) for t in db.sweeps] == [0, 30, 60]
        db.unavailable = True  # the sweep of t=90 fails; the loop goes on
        await trio.sleep(30)
        db.unavailable = False
        _row(db, "overdue", service.clock.now() - GRACE - 1)
        await trio.sleep(30)
        nursery.cancel_scope.cancel()
    assert [round(t) for t in db.sweeps] == [0, 30, 60, 120]
    assert db.rows["overdue"].is_finalized


async def test_a_swept_jobs_attempts_are_kept(autojump_clock: object) -> None:
    """The sweeper's timeout is the row's outcome, and the steps the worker tried are kept."""
    service, db, _ = _service()
    service.producer = cast(Any, HangingStep())
    job, _ = _live_run(service, "stuck", trio.current_time() + 48)
    _row(db, "stuck", service.clock.now() - GRACE - 1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(service.process, job)
        await trio.sleep(5)
        assert await service.sweep(GRACE) == 1
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert db.finalize_job_calls == []
    kept = db.kept_attempts["stuck"]
    assert [(a["provider"], a["outcome"]) for a in kept] == [
        ("gemini", "provider_error"),
        ("local", "timeout"),
    ]
    assert 5.0 <= kept[1]["duration_seconds"] <= 5.1  # cut by the sweep at 5 s
