"""The worker's productive step: input → provider → checked, converted output → result file.

Runs inside the job's cancel scope (its :class:`~photochangerd.jobs.run.JobRun`), so provider
work stops structurally at the job's deadline or when another party settles the job first
(docs/jobs.md).  It returns an outcome and settles nothing itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import trio

from photochangerd.db import repositories
from photochangerd.db.engine import Database
from photochangerd.domain.models import Job, Outcome, TemplateBinding
from photochangerd.jobs.run import JobRun
from photochangerd.media.encode import convert, target_format
from photochangerd.media.images import (
    DECODE_ERRORS,
    EXT_BY_MIME,
    MIME_BY_FORMAT,
    UnsupportedImage,
    inspect_image,
    sniff,
)
from photochangerd.media.imaging import ImageWorkers
from photochangerd.media.provider_media import ProviderMedia
from photochangerd.media.store import MediaStore
from photochangerd.media.structure import check_structure
from photochangerd.providers.base import (
    ImageInput,
    ProviderError,
    ProviderRejected,
    ProviderRequest,
    ProviderResult,
    TemplateInput,
)
from photochangerd.providers.gate import GateWait
from photochangerd.providers.registry import ProviderRegistry
from shared.fallbacks import parse_fallbacks


class InputGone(Exception):
    """The job's photo is not stored where this instance can read it.

    What leaves a job so: an ingest that answered 503 because the database did not answer in
    time removes the photo it had written, and a row the database still commits afterwards is
    a queued job without its photo (docs/jobs.md, "The JobRun").  Ended 503: the booth of that
    case was answered so, and a booth still waiting may send the photo again.
    """

    def __init__(self, job: Job) -> None:
        where = job.input_path or "nowhere"
        super().__init__(f"the job's photo is not stored where this instance can read it ({where})")


OUTPUT_MAX_PIXELS = 200_000_000  # a provider's output: generous, but not a decompression bomb


def _final_image(data: bytes, output_format: str, passthrough: bool) -> tuple[bytes, str]:
    """Check a provider's output and convert it to the slot's output format (sync, thread).

    Output kept as it is gets a structural check (PNG: every chunk's CRC, IHDR, IEND; WebP:
    the RIFF chunks; JPEG: header and EOI; see :mod:`photochangerd.media.structure`) instead
    of a full decode: ≈ 0.5 ms instead of ≈ 10–25 ms for a 1.5 MB PNG.  A conversion decodes
    every pixel, which is the check (after the header and pixel cap, before any allocation).
    """
    fmt = sniff(data[:16])
    if fmt is None:
        raise UnsupportedImage("not a JPEG, PNG or WebP image")
    mime = MIME_BY_FORMAT[fmt]
    if passthrough or MIME_BY_FORMAT[target_format(output_format, mime)] == mime:
        return data, check_structure(data, OUTPUT_MAX_PIXELS).mime_type
    info = inspect_image(data, OUTPUT_MAX_PIXELS, decode_pixels=False)
    try:
        return convert(data, info.mime_type, output_format)
    except DECODE_ERRORS as exc:
        raise UnsupportedImage(f"image does not decode ({type(exc).__name__})") from None


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """One provider call of a job's chain: the slot's own (index 0) or a fallback."""

    index: int
    provider: str
    operation: str
    settings: dict[str, Any]
    templates: tuple[tuple[str, str], ...] | None  # (role, template_id); None: the slot's own
    ends_before_deadline: float  # seconds the steps after this one keep for themselves

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.operation}"


def chain_of(job: Job) -> list[Step]:
    """The job's steps, each with the reserve of the steps after it (docs/jobs.md)."""
    fallbacks = parse_fallbacks(job.fallbacks)
    reserves = [step.reserve for step in fallbacks]
    steps = [Step(0, job.provider, job.operation, job.settings, None, sum(reserves))]
    for number, step in enumerate(fallbacks, start=1):
        templates = tuple((t.role, t.template_id) for t in step.templates)
        after = sum(reserves[number:])
        steps.append(
            Step(number, step.provider, step.operation, dict(step.settings), templates, after)
        )
    return steps


@dataclasses.dataclass(slots=True)
class Producer:
    db: Database
    store: MediaStore
    providers: ProviderRegistry
    images: ImageWorkers
    provider_media: ProviderMedia | None = None

    async def produce(self, job: Job, run: JobRun) -> Outcome:
        """Run the job's chain and store the first checked result (raises on failure).

        Each step but the last runs in its own cancel scope that ends ``ends_before_deadline``
        before the job's deadline; a provider error or the end of its share moves on to the
        next step.  The last step runs until the deadline (the run's own scope).
        """
        photo = await self._input(job, run)
        steps = chain_of(job)
        for step in steps:
            last = step is steps[-1]  # runs until the deadline: the run's scope ends it
            ends_at = math.inf if last else run.deadline.trio - step.ends_before_deadline
            if trio.current_time() >= ends_at:
                run.attempts.skip(step.index, step.provider, step.operation, "no time left")
                continue
            run.attempts.begin(step.index, step.provider, step.operation)
            try:
                with trio.move_on_at(ends_at) as share:
                    result = await self._call(job, run, step, photo)
                if share.cancelled_caught:
                    kept = f"{step.ends_before_deadline:g} s kept for the next steps"
                    run.attempts.end("timeout", f"ran out of its share of the deadline ({kept})")
                    continue
                data, mime = await self._final(job, run, step, photo, result)
            except ProviderError as exc:
                run.attempts.end("provider_error", str(exc), exc.http_status)
                if last:
                    raise
                continue
            run.attempts.end("success")
            del photo, result  # only the result's bytes go on: the photo is freed here
            stored = await self.store.write_result(job.id, data, EXT_BY_MIME[mime], mime)
            return Outcome(
                None,
                200,
                result=stored,
                data=data,
                provider_seconds=run.attempts.done[-1]["duration_seconds"],
                served_by=step.label,
                fallback_step=step.index,
            )
        raise AssertionError("the last step returns or raises")  # pragma: no cover

    async def _call(self, job: Job, run: JobRun, step: Step, photo: ImageInput) -> ProviderResult:
        # A job handed over at once has its row inserted meanwhile: what refers to the row
        # (its provider reference, a published image's media row) waits for it.
        async def report_reference(reference: str) -> None:
            if await _row_exists(run):
                await self.db.write(repositories.set_provider_reference, job.id, reference)

        run.gate_wait = GateWait()  # this step's wait for a capped provider, if any
        request = ProviderRequest(
            job.id,
            job.slot_id,
            step.operation,
            step.settings,
            photo,
            await self._templates(job, run, step),
            report_reference=report_reference,
            wait=run.gate_wait,
        )
        if self.provider_media is not None:
            publisher = self.provider_media.publisher(job.id, run.deadline.wall)

            async def publish(image: ImageInput) -> str:
                if not await _row_exists(run):
                    raise ProviderRejected("the job's row could not be written")
                return await publisher(image)

            request = dataclasses.replace(request, publish=publish)
        return await self.providers.get(step.provider).process(request)

    async def _final(
        self, job: Job, run: JobRun, step: Step, photo: ImageInput, result: ProviderResult
    ) -> tuple[bytes, str]:
        """The provider's output checked and converted to the slot's output format."""
        if result.data is photo.data:  # handed back untouched: the input was checked at ingest
            return photo.data, photo.mime_type
        try:
            return await self.images.run(
                _final_image,
                result.data,
                str(step.settings.get("output_format", run.settings.output_format)),
                step.operation == "passthrough",
            )
        except UnsupportedImage as exc:
            raise ProviderRejected(f"the provider's output is not a usable image: {exc}") from None

    async def _input(self, job: Job, run: JobRun) -> ImageInput:
        photo_bytes = run.data
        run.data = None  # the run may outlive this step (a requester waiting for the write)
        if photo_bytes is None and job.input_path:
            with contextlib.suppress(FileNotFoundError):
                photo_bytes = await self.store.read(job.input_path)
        if photo_bytes is None or job.input_mime_type is None:
            raise InputGone(job)
        inspected = job.client_metadata  # our own width and height, read at ingest
        width, height = inspected.get("width"), inspected.get("height")
        pixels = width * height if isinstance(width, int) and isinstance(height, int) else None
        return ImageInput(photo_bytes, job.input_mime_type, pixels)

    async def _templates(self, job: Job, run: JobRun, step: Step) -> list[TemplateInput]:
        if step.provider == "local" and step.operation != "frame":  # the others use none
            return []
        if step.templates is not None:  # a fallback's own templates, by id
            pairs = []
            for role, template_id in step.templates:
                row = await self.db.read(repositories.get_template, template_id)
                if row is None:
                    raise ProviderRejected(f"template {template_id!r} no longer exists")
                pairs.append((role, row.path, row.mime_type))
            return await self._read_templates(pairs)
        submitted = run.settings.templates  # the slot's bindings as read at ingest, if here
        if submitted is not None:
            try:
                return await self._read_templates(_pairs(submitted))
            except ProviderRejected:  # rebound and deleted while the job waited: read them now
                pass
        bindings = await self.db.read(repositories.slot_templates, job.slot_id)
        return await self._read_templates(_pairs(bindings))

    async def _read_templates(self, pairs: list[tuple[str, str, str]]) -> list[TemplateInput]:
        return [
            TemplateInput(role, ImageInput(await _template(self.store, path), mime))
            for role, path, mime in pairs
        ]


async def _row_exists(run: JobRun) -> bool:
    """Wait for the job's row; False when its insert failed (the run is being stopped)."""
    await run.row_written.wait()
    return not run.row_missing


def _pairs(bindings: Iterable[TemplateBinding]) -> list[tuple[str, str, str]]:
    return [(b.role, b.path, b.mime_type) for b in bindings]


async def _template(store: MediaStore, reference: str) -> bytes:
    """A template's bytes; one gone from the store (deleted by hand, a bucket's lifecycle rule)
    is this step's failure, so the chain moves on to its next step."""
    try:
        return await store.read(reference)
    except FileNotFoundError:
        raise ProviderRejected(
            f"a template of this step is gone from the store ({reference})"
        ) from None
