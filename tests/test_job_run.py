"""A job's run settles exactly once, wakes its requester at that instant, and writes later.

Everything here runs on Trio's ``MockClock`` (``autojump_clock``): a 48 s deadline passes
without any real time passing.  The job service is given an in-memory database and media store
that record what they were asked to do, and a producer that stands in for the provider step.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
import trio
import trio.testing

from photochangerd.clock import WallClock
from photochangerd.db import repositories
from photochangerd.db.engine import DatabaseUnavailable
from photochangerd.domain.models import Job, Outcome, Slot, StoredResult, timeout_outcome
from photochangerd.jobs.produce import InputGone, Producer
from photochangerd.jobs.queue import LOOK, WorkQueue
from photochangerd.jobs.record import ANSWERS_FIRST_PASSES, _after_the_answers, finalize_jobs
from photochangerd.jobs.run import Deadline, JobRun, JobSettings, Party
from photochangerd.jobs.service import JobService
from photochangerd.media.images import ImageInfo
from shared.errors import JobFailure
from tests.support.jobs import claimed_job

DEADLINE = 48.0
WRITE_SECONDS = 5.0  # how long the (fake) database takes for the final write
RESULT = StoredResult("/results/job-1.jpg", "image/jpeg", 3, "c0ffee")


class FakeDatabase:
    """Records every finalize; each write takes :data:`WRITE_SECONDS` of (mock) time."""

    dialect = "sqlite"

    def __init__(self) -> None:
        self.finalized: list[tuple[str, dict[str, Any], float]] = []
        self.transactions = 0  # finalizing transactions (a batch of timeouts is one)
        self.overdue: list[tuple[str, str | None]] = []  # what finalize_overdue ends

    def _finalize(self, job_id: str, fields: dict[str, Any]) -> bool:
        won = job_id not in {f[0] for f in self.finalized}  # the conditional update
        self.finalized.append((job_id, fields, trio.current_time()))
        return won

    async def write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if fn is repositories.finalize_job:
            await trio.sleep(WRITE_SECONDS)
            self.transactions += 1
            return self._finalize(args[0], kwargs)
        if fn is finalize_jobs:
            await trio.sleep(WRITE_SECONDS)
            self.transactions += 1
            return [self._finalize(job_id, fields) for job_id, fields in args[0]]
        if fn is repositories.finalize_overdue:
            return self.overdue
        return None

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        return None


class FakeStore:
    def __init__(self) -> None:
        self.removed: list[str] = []

    async def remove(self, *paths: str | None) -> None:
        self.removed.extend(p for p in paths if p)


class FakeProducer:
    def __init__(self, step: Callable[[], Awaitable[Outcome]]) -> None:
        self.step = step

    async def produce(self, job: Job, run: JobRun) -> Outcome:
        return await self.step()


def _service(step: Callable[[], Awaitable[Outcome]]) -> tuple[JobService, FakeDatabase, FakeStore]:
    db, store = FakeDatabase(), FakeStore()
    service = JobService(
        db=cast(Any, db),
        store=cast(Any, store),
        providers=cast(Any, None),
        images=cast(Any, None),
        clock=WallClock(),
        instance_id="test",
    )
    service.producer = cast(Any, FakeProducer(step))
    return service, db, store


def _job(
    service: JobService, settings: JobSettings | None = None, job_id: str = "job-1"
) -> tuple[Job, JobRun]:
    now = service.clock.now()
    deadline = Deadline.after_arrival(trio.current_time(), now, DEADLINE)
    run = JobRun(
        job_id, deadline, settings or JobSettings(), data=b"photo", input_path=f"/in/{job_id}"
    )
    service.runs[run.job_id] = run
    job = claimed_job(job_id, created_at=now, deadline=deadline.wall, input_mime_type="image/jpeg")
    return job, run


async def _forever() -> Outcome:
    await trio.sleep_forever()
    raise AssertionError("unreachable")


async def test_settle_exactly_once_among_concurrent_parties(autojump_clock: object) -> None:
    run = JobRun("job-1", Deadline(0.0, trio.current_time() + DEADLINE), JobSettings())
    wins: list[Party] = []

    async def party(by: Party, outcome: Outcome) -> None:
        await trio.sleep_until(run.deadline.trio)  # all of them at the very same instant
        if run.settle(outcome, by):
            wins.append(by)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(party, Party.WORKER, Outcome(None, 200, result=RESULT))
        nursery.start_soon(party, Party.WAITER, timeout_outcome())
        nursery.start_soon(party, Party.SWEEPER, timeout_outcome("deadline passed (swept)"))
        nursery.start_soon(party, Party.SHUTDOWN, Outcome(JobFailure.CANCELLED, 503))
    assert len(wins) == 1 and run.settled_by is wins[0]
    assert run.settled.is_set() and run.scope.cancel_called
    assert not run.settle(timeout_outcome(), Party.WAITER)  # and never again


async def test_requester_answered_at_the_deadline_before_the_write(autojump_clock: object) -> None:
    service, db, _ = _service(_forever)
    job, run = _job(service)
    started_real = time.monotonic()
    answered: list[tuple[Outcome, float]] = []

    async def requester() -> None:
        answered.append((await service.wait(run), trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(service.process, job)
        nursery.start_soon(requester)
    [(outcome, at)] = answered
    assert outcome.failure is JobFailure.TIMEOUT and outcome.response_status == 504
    assert at == run.deadline.trio  # at the deadline, to the tick
    # The durable write came later, in the worker's task, and recorded the job's end.
    [(job_id, written, written_at)] = db.finalized
    assert job_id == "job-1" and written["failure_reason"] == "timeout"
    assert written_at == run.deadline.trio + WRITE_SECONDS
    assert written["now"] == run.settled_at
    assert run.recorded.is_set() and run.won is True and service.runs == {}
    assert time.monotonic() - started_real < 5  # no real time passed for the 48 s deadline


async def test_a_queued_job_times_out_and_is_written_in_the_background(
    autojump_clock: object,
) -> None:
    service, db, _ = _service(_forever)
    _, run = _job(service)  # no worker ever picks it up
    async with trio.open_nursery() as nursery:
        nursery.start_soon(service.recorder.run)
        outcome = await service.wait(run)
        assert trio.current_time() == run.deadline.trio and not db.finalized
        assert outcome.failure is JobFailure.TIMEOUT and run.settled_by is Party.WAITER
        await run.recorded.wait()
        nursery.cancel_scope.cancel()
    assert [f[1]["failure_reason"] for f in db.finalized] == ["timeout"]


async def test_late_success_after_the_timeout_is_discarded(autojump_clock: object) -> None:
    async def slow_success() -> Outcome:
        with trio.CancelScope(shield=True):  # deaf to its scope: finishes 1 s too late
            await trio.sleep(DEADLINE + 1)
        return Outcome(None, 200, result=RESULT)

    service, db, store = _service(slow_success)
    job, run = _job(service)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(service.process, job)
        outcome = await service.wait(run)
    assert outcome.failure is JobFailure.TIMEOUT and run.settled_by is Party.WAITER
    assert RESULT.path in store.removed  # the late result file is gone
    [(_, written, _)] = db.finalized
    assert written["failure_reason"] == "timeout" and written["result"] is None


async def test_success_uses_the_jobs_own_result_ttl(autojump_clock: object) -> None:
    async def success() -> Outcome:
        await trio.sleep(3)
        return Outcome(None, 200, result=RESULT)

    service, db, store = _service(success)
    service.runtime.result_ttl_seconds = 1.0  # what another request stored last: not this job's
    job, run = _job(service, JobSettings(result_ttl_seconds=7200.0))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(service.process, job)
        outcome = await service.wait(run)
        assert run.recorded.is_set()  # a success is answered once durable
    assert outcome.ok and outcome.result == RESULT and run.settled_by is Party.WORKER
    [(_, written, _)] = db.finalized
    assert written["result_ttl_seconds"] == 7200.0 and written["result"] == RESULT
    assert store.removed == ["/in/job-1"]  # the winner drops the input copy


class GoneInputStore(FakeStore):
    async def read(self, reference: str) -> bytes:
        raise FileNotFoundError(reference)


async def test_a_queued_job_whose_photo_is_gone_ends_as_its_booth_was_answered(
    autojump_clock: object,
) -> None:
    """A row the database committed after its ingest had answered 503 and removed the photo:
    claimed later, it ends 503 saying where the photo is missing, not 500 with a traceback."""
    service, db, _ = _service(_forever)
    store = GoneInputStore()
    service.producer = Producer(cast(Any, db), cast(Any, store), cast(Any, None), cast(Any, None))
    job, run = _job(service)
    run.data = None  # queued: its photo was only on disk, at job.input_path
    await service.process(job)
    [(_, written, _)] = db.finalized
    assert written["failure_reason"] == "internal_error" and written["response_status"] == 503
    assert written["details"] == str(InputGone(job))
    assert "/in/job-1" in written["details"]


async def test_shutdown_settles_cancelled(autojump_clock: object) -> None:
    service, db, _ = _service(_forever)
    job, run = _job(service)
    answered: list[Outcome] = []

    async def requester() -> None:
        answered.append(await service.wait(run))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(requester)
        async with trio.open_nursery() as workers:
            workers.start_soon(service.process, job)
            await trio.sleep(10)
            workers.cancel_scope.cancel()  # shutdown past its grace period
    [outcome] = answered
    assert outcome.failure is JobFailure.CANCELLED and outcome.response_status == 503
    assert run.settled_by is Party.SHUTDOWN
    [(_, written, _)] = db.finalized
    assert written["failure_reason"] == "cancelled"
    assert service.in_progress == 0


async def test_the_sweeper_settles_a_live_run_it_finalized(autojump_clock: object) -> None:
    service, db, _ = _service(_forever)
    job, run = _job(service)
    answered: list[Outcome] = []

    async def requester() -> None:
        answered.append(await service.wait(run))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(requester)
        nursery.start_soon(service.process, job)
        await trio.sleep(10)
        db.overdue = [("job-1", None)]  # say the row was past its lease: the sweeper ends it
        assert await service.sweep(grace=0) == 1
    assert trio.current_time() < run.deadline.trio  # answered and stopped at once
    assert [o.failure for o in answered] == [JobFailure.TIMEOUT]
    assert run.settled_by is Party.SWEEPER and run.recorded.is_set()
    assert db.finalized == []  # already in the database: nobody writes it again
    assert service.runs == {} and service.in_progress == 0


async def test_a_deadline_burst_answers_everybody_first_then_writes_once(
    autojump_clock: object,
) -> None:
    service, db, store = _service(_forever)
    answered: dict[str, tuple[Outcome, float, int]] = {}
    jobs = [_job(service, job_id=f"job-{n}") for n in range(30)]

    async def requester(run: JobRun) -> None:
        outcome = await service.wait(run)
        await trio.sleep(0)  # the answer takes a few more passes of the loop to go out
        await trio.sleep(0)
        answered[run.job_id] = (outcome, trio.current_time(), db.transactions)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(service.recorder.run)
        for n, (job, run) in enumerate(jobs):
            nursery.start_soon(requester, run)
            if n % 2:  # half held by a worker, half still queued (written in the background)
                nursery.start_soon(service.process, job)
        with trio.fail_after(DEADLINE + 2 * WRITE_SECONDS):
            for _, run in jobs:
                await run.recorded.wait()
        nursery.cancel_scope.cancel()
    deadline = jobs[0][1].deadline.trio
    assert len(answered) == 30
    for outcome, at, writes_before in answered.values():
        assert outcome.response_status == 504 and at == deadline and writes_before == 0
    # ONE transaction for the 30 timeouts, each job written exactly once, after the answers.
    assert db.transactions == 1
    assert sorted(f[0] for f in db.finalized) == sorted(run.job_id for _, run in jobs)
    assert {f[2] for f in db.finalized} == {deadline + WRITE_SECONDS}
    assert all(run.won is True for _, run in jobs) and service.runs == {}
    assert sorted(store.removed) == sorted(f"/in/{run.job_id}" for _, run in jobs)


async def test_waiting_for_the_answers_is_bounded_on_a_busy_loop(autojump_clock: object) -> None:
    passes = 0

    async def spinner() -> None:  # never blocks: the loop is never quiet
        nonlocal passes
        while True:
            passes += 1
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(spinner)
        await trio.sleep(0)
        before = passes
        await _after_the_answers()
        spent = passes - before
        nursery.cancel_scope.cancel()
    assert ANSWERS_FIRST_PASSES - 2 <= spent <= ANSWERS_FIRST_PASSES + 2


async def test_waiting_for_the_answers_ends_once_the_loop_is_quiet(autojump_clock: object) -> None:
    passes = 0

    async def answer() -> None:  # a few passes of work, then blocked
        nonlocal passes
        for _ in range(5):
            passes += 1
            await trio.sleep(0)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer)
        await _after_the_answers()
        assert passes == 5  # the answer ran to its end before the write may start
        nursery.cancel_scope.cancel()


async def _one_idle_worker(queue: WorkQueue, nursery: trio.Nursery) -> list[object]:
    """Start one worker that takes one wake-up; returns what it took, once it is waiting."""
    taken: list[object] = []

    async def worker() -> None:
        taken.append(await queue.next())

    nursery.start_soon(worker)
    await trio.testing.wait_all_tasks_blocked()
    return taken


async def test_a_look_never_takes_the_worker_promised_to_a_hand_over() -> None:
    """One idle worker: a LOOK queued for it means no submission may count on it as well (the
    hand-over would wait behind another instance's job, past its deadline)."""
    queue = WorkQueue()
    async with trio.open_nursery() as nursery:
        taken = await _one_idle_worker(queue, nursery)
        queue.look()
        assert not queue.reserve()  # the only idle worker is about to take the LOOK
    assert taken == [LOOK]


async def test_one_idle_worker_is_promised_to_one_hand_over_only() -> None:
    """Two submissions in the same scheduler batch, one idle worker: the worker handed the
    first job still counts as idle until it runs, yet it is not free for the second (which
    would otherwise wait behind the first job's whole provider call)."""
    queue = WorkQueue()
    async with trio.open_nursery() as nursery:
        taken = await _one_idle_worker(queue, nursery)
        now = time.time()
        first = claimed_job("job-1", created_at=now, deadline=now + DEADLINE)
        assert queue.reserve()
        queue.hand_over(first)
        queue.release()
        assert not queue.reserve()  # no checkpoint since: the worker has not run yet
    assert taken == [first]
    assert queue.drain() == [] and not queue.reserve()  # nobody idle any more


# -- a job handed to an idle worker: its row is inserted while it runs ------------------------

INSERT_SECONDS = 2.0  # how long the (fake) database takes for the job's insert


class SlowInsertDatabase(FakeDatabase):
    """The job's insert takes :data:`INSERT_SECONDS`, then succeeds or raises ``failure``."""

    def __init__(self, failure: BaseException | None = None) -> None:
        super().__init__()
        self.failure = failure
        self.inserted_at: float | None = None

    async def write(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if fn is repositories.insert_job:
            await trio.sleep(INSERT_SECONDS)
            if self.failure is not None:
                raise self.failure
            self.inserted_at = trio.current_time()
            return None
        return await super().write(fn, *args, **kwargs)


async def _submit_to_idle_worker(service: JobService, nursery: trio.Nursery) -> JobRun:
    """Submit one job while a worker waits for work (the fast path: handed over at once)."""

    async def worker() -> None:
        with trio.fail_after(DEADLINE * 2):  # never handed a job: fail, do not hang
            job = await service.queue.next()
        assert isinstance(job, Job), "the job is handed over, not queued"
        await service.process(job)

    nursery.start_soon(worker)
    await trio.testing.wait_all_tasks_blocked()
    now = service.clock.now()
    slot = Slot("slot-001", "Booth", "gemini", "edit", True, 15, {}, 1, None, None)
    return await service.submit(
        job_id="job-1",
        slot=slot,
        source="ingest",
        spool=cast(Any, None),  # the input stays in memory on this path
        data=b"photo",
        image=ImageInfo("JPEG", 4, 3),
        metadata={},
        created_at=now,
        deadline=Deadline.after_arrival(trio.current_time(), now, DEADLINE),
        settings=JobSettings(),
    )


async def test_a_job_handed_to_an_idle_worker_runs_while_its_row_is_inserted(
    autojump_clock: object,
) -> None:
    started: list[float] = []

    async def success() -> Outcome:
        started.append(trio.current_time())
        await trio.sleep(0.5)  # the provider answers before the insert is done
        return Outcome(None, 200, result=RESULT)

    service, _, _ = _service(success)
    db = SlowInsertDatabase()
    service.db = service.recorder.db = cast(Any, db)
    async with trio.open_nursery() as nursery:
        t0 = trio.current_time()
        run = await _submit_to_idle_worker(service, nursery)
        outcome = await service.wait(run)
    assert started == [t0]  # the provider did not wait for the row
    assert db.inserted_at == t0 + INSERT_SECONDS
    [(job_id, written, written_at)] = db.finalized  # the outcome only once the row exists
    assert job_id == "job-1" and written["failure_reason"] is None
    assert written_at == db.inserted_at + WRITE_SECONDS
    assert outcome.ok and run.won is True and service.runs == {}


async def test_a_handed_over_job_whose_row_cannot_be_inserted_stops_and_keeps_nothing(
    autojump_clock: object,
) -> None:
    stopped: list[float] = []

    async def slow_provider() -> Outcome:
        try:
            await trio.sleep(10)
        finally:
            stopped.append(trio.current_time())
        return Outcome(None, 200, result=RESULT)

    service, _, store = _service(slow_provider)
    db = SlowInsertDatabase(DatabaseUnavailable("database unavailable: OSError"))
    service.db = service.recorder.db = cast(Any, db)
    async with trio.open_nursery() as nursery:
        t0 = trio.current_time()
        with pytest.raises(DatabaseUnavailable):  # the requester answers 503
            await _submit_to_idle_worker(service, nursery)
    assert stopped == [t0 + INSERT_SECONDS]  # the provider call ends with the failed insert
    assert db.finalized == [] and service.runs == {}  # nothing written about a job with no row
    assert store.removed == []  # the input was in memory; no result was made


async def test_a_result_made_before_the_failed_insert_is_removed(autojump_clock: object) -> None:
    async def fast_success() -> Outcome:
        return Outcome(None, 200, result=RESULT)

    service, _, store = _service(fast_success)
    db = SlowInsertDatabase(DatabaseUnavailable("database unavailable: OSError"))
    service.db = service.recorder.db = cast(Any, db)
    async with trio.open_nursery() as nursery:
        with pytest.raises(DatabaseUnavailable):  # the requester answers 503
            await _submit_to_idle_worker(service, nursery)
    assert db.finalized == [] and service.runs == {}
    assert store.removed == [RESULT.path]  # the result of a job that does not exist: gone
