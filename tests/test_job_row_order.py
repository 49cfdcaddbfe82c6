"""What refers to a job's row waits for it: a job handed to an idle worker has its row inserted
while the provider works (docs/jobs.md, "The JobRun").  A provider's job reference (an UPDATE
of the row) and a published image (a ``media_object`` row whose ``job_id`` references the job)
must not reach the database before the row does; after a failed insert, neither happens.

MockClock (``autojump_clock``): the insert "takes" :data:`INSERT_SECONDS`.
"""

from __future__ import annotations

from typing import Any, cast

import trio

from photochangerd.db import repositories
from photochangerd.domain.images import ImageInput
from photochangerd.jobs.produce import Producer, chain_of
from photochangerd.jobs.run import Deadline, JobRun, JobSettings
from photochangerd.providers.base import ProviderRejected, ProviderRequest, ProviderResult
from photochangerd.providers.registry import ProviderRegistry
from tests.support.jobs import claimed_job

INSERT_SECONDS = 2.0
PHOTO = ImageInput(b"photo", "image/jpeg", 12)


class PublishingProvider:
    """Publishes the photo for the vendor to fetch and reports the vendor's job id (as the
    Turbotext driver does), then answers."""

    async def process(self, request: ProviderRequest) -> ProviderResult:
        await request.publish(request.photo)
        await request.report_reference("queue-1")
        return ProviderResult(b"result", "image/png")


class Recording:
    """The database and the provider-media publisher: when each write reached them."""

    def __init__(self) -> None:
        self.writes: list[tuple[str, float]] = []

    async def write(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        assert fn is repositories.set_provider_reference
        self.writes.append(("reference", trio.current_time()))

    def publisher(self, job_id: str, expires_at: float) -> Any:
        async def publish(image: ImageInput) -> str:
            self.writes.append(("media_object", trio.current_time()))
            return f"http://booth.example/public/provider-media/{job_id}"

        return publish


def _producer(recording: Recording) -> Producer:
    providers = ProviderRegistry({"turbotext": cast(Any, PublishingProvider())})
    return Producer(
        cast(Any, recording), cast(Any, None), providers, cast(Any, None), cast(Any, recording)
    )


async def _call_while_inserting(
    insert_fails: bool,
) -> tuple[Recording, float, BaseException | None]:
    recording = Recording()
    now = trio.current_time()
    job = claimed_job("job-1", created_at=0.0, deadline=48.0, provider="turbotext")
    run = JobRun("job-1", Deadline(48.0, now + 48), JobSettings(templates=()), row_pending=True)
    failure: list[BaseException] = []

    async def call() -> None:
        try:
            await _producer(recording)._call(job, run, chain_of(job)[0], PHOTO)
        except ProviderRejected as exc:
            failure.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        await trio.sleep(INSERT_SECONDS)  # the requester's insert ends now
        run.row_missing = insert_fails
        run.row_written.set()
    return recording, now + INSERT_SECONDS, failure[0] if failure else None


async def test_the_reference_and_the_published_image_wait_for_the_row(
    autojump_clock: object,
) -> None:
    recording, inserted_at, failure = await _call_while_inserting(insert_fails=False)
    assert failure is None
    assert recording.writes == [("media_object", inserted_at), ("reference", inserted_at)]


async def test_after_a_failed_insert_nothing_refers_to_the_job(autojump_clock: object) -> None:
    recording, _, failure = await _call_while_inserting(insert_fails=True)
    assert recording.writes == []  # no media row for a job that does not exist
    assert isinstance(failure, ProviderRejected)


async def test_a_run_whose_row_exists_publishes_at_once(autojump_clock: object) -> None:
    """A job claimed from the database (its row long committed) does not wait."""
    recording = Recording()
    job = claimed_job("job-1", created_at=0.0, deadline=48.0, provider="turbotext")
    run = JobRun("job-1", Deadline(48.0, trio.current_time() + 48), JobSettings(templates=()))
    started = trio.current_time()
    await _producer(recording)._call(job, run, chain_of(job)[0], PHOTO)
    assert recording.writes == [("media_object", started), ("reference", started)]
