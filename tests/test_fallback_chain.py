"""The fallback chain's time rules, on Trio's ``MockClock``: each step ends by the deadline minus
the reserves of the steps after it, a provider error moves on at once, the last step runs to the
deadline, and the attempts say what every step did (docs/jobs.md, "Fallbacks").

The producer is the real one; its providers are scripted stand-ins (outside world), its
database and store record what they are asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import trio

from photochangerd.db.engine import Database
from photochangerd.domain.models import Outcome, StoredResult
from photochangerd.jobs.produce import Producer, chain_of
from photochangerd.jobs.run import Deadline, JobRun, JobSettings
from photochangerd.media.imaging import ImageWorkers
from photochangerd.media.store import MediaStore
from photochangerd.providers.base import (
    ProviderRejected,
    ProviderRequest,
    ProviderResult,
    ProviderUnavailable,
)
from photochangerd.providers.registry import ProviderRegistry
from shared.errors import JobFailure
from shared.fallbacks import validate_fallbacks
from shared.slot_settings import SlotSettingsError
from tests.support.jobs import claimed_job

PHOTO = b"\xff\xd8\xff photo"
DEADLINE = 20.0


@dataclass
class Behaving:
    """A provider whose operation picks what it does: ``hang``, ``reject``, ``unavailable``
    or ``echo`` (after ``seconds``); it records when each call started and ended."""

    name: str
    calls: list[tuple[str, float, float | None]] = field(default_factory=list)

    async def process(self, request: ProviderRequest) -> ProviderResult:
        index = len(self.calls)
        self.calls.append((request.operation, trio.current_time(), None))
        try:
            await trio.sleep(float(request.settings.get("seconds", 0)))
            if request.operation == "hang":
                await trio.sleep_forever()
            if request.operation == "reject":
                raise ProviderRejected("NO_IMAGE after 3 attempts")
            if request.operation == "unavailable":
                raise ProviderUnavailable("backend down")
            return ProviderResult(request.photo.data, request.photo.mime_type)
        finally:
            operation, started, _ = self.calls[index]
            self.calls[index] = (operation, started, trio.current_time())


class NoDatabase:
    async def read(self, fn: Any, *args: Any) -> Any:
        return []

    async def write(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        return None


class RecordingStore:
    def __init__(self) -> None:
        self.written: list[str] = []

    async def write_result(
        self, job_id: str, data: bytes, extension: str, mime_type: str
    ) -> StoredResult:
        self.written.append(job_id)
        return StoredResult(f"/results/{job_id}.{extension}", mime_type, len(data), "c0ffee")


def _producer(*providers: Behaving) -> tuple[Producer, RecordingStore]:
    store = RecordingStore()
    producer = Producer(
        cast(Database, NoDatabase()),
        cast(MediaStore, store),
        ProviderRegistry({p.name: p for p in providers}),
        cast(ImageWorkers, None),
    )
    return producer, store


async def _run(
    producer: Producer,
    primary: tuple[str, str],
    fallbacks: list[dict[str, Any]],
    *,
    created_at: float = 0.0,
) -> tuple[Outcome | None, JobRun]:
    """Run one job through the producer inside its run's scope, as the worker does."""
    now = trio.current_time()
    deadline = Deadline(1_000.0 + DEADLINE, created_at + DEADLINE)
    job = claimed_job(
        "job-1",
        created_at=1_000.0,
        deadline=deadline.wall,
        provider=primary[0],
        operation=primary[1],
        fallbacks=fallbacks,
        input_mime_type="image/jpeg",
    )
    run = JobRun("job-1", deadline, JobSettings(), data=PHOTO, now=now)
    outcome: Outcome | None = None
    with run.scope:
        outcome = await producer.produce(job, run)
    return outcome, run


def _step(provider: str, operation: str, reserve: float, **settings: Any) -> dict[str, Any]:
    return {
        "provider": provider,
        "operation": operation,
        "settings": settings,
        "templates": [],
        "reserve_seconds": reserve,
    }


async def test_a_hanging_primary_hands_over_at_deadline_minus_the_reserves(
    autojump_clock: object,
) -> None:
    vendor, backup = Behaving("vendor"), Behaving("backup")
    producer, store = _producer(vendor, backup)
    outcome, run = await _run(
        producer,
        ("vendor", "hang"),
        [_step("vendor", "hang", 3), _step("backup", "echo", 2, seconds=0.5)],
    )
    assert outcome is not None and outcome.ok
    assert outcome.served_by == "backup/echo" and outcome.fallback_step == 2
    # 20 s deadline: the primary keeps 20 - 3 - 2 = 15 s, the first fallback 3 s, the last 2 s.
    assert [(op, start, end) for op, start, end in vendor.calls] == [
        ("hang", 0.0, 15.0),
        ("hang", 15.0, 18.0),
    ]
    assert backup.calls == [("echo", 18.0, 18.5)]
    entries = run.attempts.entries(outcome)
    assert [(e["step"], e["provider"], e["outcome"]) for e in entries] == [
        (0, "vendor", "timeout"),
        (1, "vendor", "timeout"),
        (2, "backup", "success"),
    ]
    assert [e["duration_seconds"] for e in entries] == [15.0, 3.0, 0.5]
    assert "(5 s kept for the next steps)" in (entries[0]["details"] or "")
    assert "(2 s kept for the next steps)" in (entries[1]["details"] or "")
    assert store.written == ["job-1"]


async def test_a_provider_error_moves_on_at_once(autojump_clock: object) -> None:
    vendor, backup = Behaving("vendor"), Behaving("backup")
    producer, _ = _producer(vendor, backup)
    outcome, run = await _run(
        producer, ("vendor", "reject"), [_step("backup", "echo", 2, seconds=1)]
    )
    assert outcome is not None and outcome.served_by == "backup/echo"
    assert vendor.calls == [("reject", 0.0, 0.0)]
    assert backup.calls == [("echo", 0.0, 1.0)]
    [first, second] = run.attempts.entries(outcome)
    assert first["outcome"] == "provider_error" and first["status"] == 502
    assert first["details"] == "NO_IMAGE after 3 attempts"
    assert second["outcome"] == "success"


async def test_every_step_failing_raises_the_last_error_with_every_attempt_kept(
    autojump_clock: object,
) -> None:
    vendor = Behaving("vendor")
    producer, store = _producer(vendor)
    with pytest.raises(ProviderRejected):
        await _run(
            producer,
            ("vendor", "reject"),
            [_step("vendor", "unavailable", 5), _step("vendor", "reject", 5)],
        )
    assert [call[0] for call in vendor.calls] == ["reject", "unavailable", "reject"]
    assert store.written == []


async def test_the_last_step_runs_until_the_deadline(autojump_clock: object) -> None:
    vendor, backup = Behaving("vendor"), Behaving("backup")
    producer, _ = _producer(vendor, backup)
    outcome, run = await _run(producer, ("vendor", "reject"), [_step("backup", "hang", 2)])
    assert outcome is None  # the run's scope ended it: the worker records a timeout
    assert backup.calls == [("hang", 0.0, DEADLINE)]
    timeout = Outcome(JobFailure.TIMEOUT, 504, "deadline reached")
    entries = run.attempts.entries(timeout)
    assert [(e["provider"], e["outcome"]) for e in entries] == [
        ("vendor", "provider_error"),
        ("backup", "timeout"),
    ]
    assert entries[1]["duration_seconds"] == DEADLINE


async def test_a_job_claimed_late_skips_the_steps_whose_share_is_gone(
    autojump_clock: object,
) -> None:
    """Another instance claimed it 16 s into its 20 s deadline: the primary's share (15 s)
    is gone, the fallback gets what is left."""
    vendor, backup = Behaving("vendor"), Behaving("backup")
    producer, _ = _producer(vendor, backup)
    await trio.sleep(16)
    outcome, run = await _run(
        producer, ("vendor", "echo"), [_step("backup", "echo", 5)], created_at=0.0
    )
    assert outcome is not None and outcome.served_by == "backup/echo"
    assert vendor.calls == []
    [skipped, served] = run.attempts.entries(outcome)
    assert skipped["outcome"] == "skipped" and skipped["details"] == "no time left"
    assert served["outcome"] == "success"


def test_chain_of_a_job_without_fallbacks_is_its_own_provider() -> None:
    job = claimed_job("j", created_at=0, deadline=48, fallbacks=[])
    [only] = chain_of(job)
    assert (only.provider, only.operation, only.ends_before_deadline) == ("gemini", "edit", 0)


@pytest.mark.parametrize(
    ("chain", "deadline", "field", "words"),
    [
        ([{"provider": "nope", "operation": "x"}], 48, "fallbacks.0.provider", "unknown"),
        ([{"provider": "local", "operation": "x"}], 48, "fallbacks.0.operation", "supports"),
        ([{"provider": "gemini", "operation": "edit"}], 48, "fallbacks.0.settings.prompt", ""),
        ([{"provider": "local", "operation": "frame"}], 48, "fallbacks.0.templates", "frame"),
        ([{"provider": "local", "operation": "enhance"}] * 4, 48, "fallbacks", "at most 3"),
        (
            [{"provider": "gemini", "operation": "edit", "settings": {"prompt": "p"}}] * 3,
            45,
            "fallbacks",
            "reserve 45 s",
        ),
        ([{"provider": "local", "operation": "enhance", "reserve_seconds": 9.5}], 10, "", "9.5"),
        ([{"provider": "local", "operation": "enhance", "bogus": 1}], 48, "fallbacks.0.bogus", ""),
    ],
)
def test_a_chain_is_validated_as_a_whole(
    chain: list[dict[str, Any]], deadline: float, field: str, words: str
) -> None:
    with pytest.raises(SlotSettingsError) as caught:
        validate_fallbacks(chain, deadline)
    errors = caught.value.errors
    key = field or "fallbacks"
    assert key in errors, errors
    assert words in errors[key]


def test_default_reserves_are_made_explicit_when_stored() -> None:
    steps = validate_fallbacks(
        [
            {"provider": "local", "operation": "enhance"},
            {"provider": "gemini", "operation": "edit", "settings": {"prompt": "p"}},
        ],
        48,
    )
    assert [s.stored()["reserve_seconds"] for s in steps] == [2.0, 15.0]
