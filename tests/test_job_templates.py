"""A job's template bindings: as read with its slot at ingest, re-read only when they are gone.

The ingest context reads a slot's bindings with the slot (one cached read) and the job carries
them (``JobSettings.templates``), so a run does not read them again.  A job that waited in the
queue while an admin rebound the slot and deleted the old template must not fail for it: the
run then reads the slot's bindings as they are now (docs/jobs.md).
"""

from __future__ import annotations

from typing import Any, cast

import trio

from photochangerd.db import repositories
from photochangerd.db.engine import Database
from photochangerd.domain.models import TemplateBinding
from photochangerd.jobs.produce import Producer, chain_of
from photochangerd.jobs.run import Deadline, JobRun, JobSettings
from photochangerd.media.imaging import ImageWorkers
from photochangerd.media.store import MediaStore
from photochangerd.providers.registry import ProviderRegistry
from tests.support.jobs import claimed_job

OLD = TemplateBinding("frame", "tpl-old", "/templates/tpl-old.png", "image/png")
NEW = TemplateBinding("frame", "tpl-new", "/templates/tpl-new.png", "image/png")


class Bindings:
    """The database: the slot's bindings as they are now; it records what it is asked."""

    def __init__(self, *now: TemplateBinding) -> None:
        self.now = list(now)
        self.reads: list[Any] = []

    async def read(self, fn: Any, *args: Any) -> Any:
        self.reads.append(fn)
        assert fn is repositories.slot_templates
        return self.now


class Files:
    def __init__(self, *present: TemplateBinding) -> None:
        self.present = {b.path: f"bytes of {b.template_id}".encode() for b in present}

    async def read(self, reference: str) -> bytes:
        if reference not in self.present:
            raise FileNotFoundError(reference)
        return self.present[reference]


async def _templates(db: Bindings, files: Files, submitted: TemplateBinding) -> list[bytes]:
    producer = Producer(
        cast(Database, db),
        cast(MediaStore, files),
        ProviderRegistry({}),
        cast(ImageWorkers, None),
    )
    job = claimed_job("job-1", created_at=1_000.0, deadline=1_020.0, input_mime_type="image/jpeg")
    deadline = Deadline(job.deadline, trio.current_time() + 20)
    run = JobRun("job-1", deadline, JobSettings(templates=(submitted,)), data=b"photo")
    [step] = chain_of(job)
    inputs = await producer._templates(job, run, step)
    return [t.image.data for t in inputs]


async def test_the_bindings_read_at_ingest_are_used_without_a_database_read() -> None:
    db = Bindings(OLD)
    assert await _templates(db, Files(OLD), OLD) == [b"bytes of tpl-old"]
    assert db.reads == []


async def test_a_template_rebound_and_deleted_while_the_job_waited_is_read_again() -> None:
    db = Bindings(NEW)  # the admin bound tpl-new, then deleted tpl-old (file gone)
    assert await _templates(db, Files(NEW), OLD) == [b"bytes of tpl-new"]
    assert db.reads == [repositories.slot_templates]
