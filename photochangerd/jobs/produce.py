"""The worker's productive step: input → provider → checked, converted output → result file.

Runs inside the job's cancel scope (its :class:`~photochangerd.jobs.run.JobRun`), so provider
work stops structurally at the job's deadline or when another party settles the job first
(docs/jobs.md).  It returns an outcome and settles nothing itself.
"""

from __future__ import annotations

import dataclasses

import trio

from photochangerd.db import repositories
from photochangerd.db.engine import Database
from photochangerd.domain.models import Job, Outcome
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
    ProviderRejected,
    ProviderRequest,
    TemplateInput,
)
from photochangerd.providers.registry import ProviderRegistry

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


@dataclasses.dataclass(slots=True)
class Producer:
    db: Database
    store: MediaStore
    providers: ProviderRegistry
    images: ImageWorkers
    provider_media: ProviderMedia | None = None

    async def produce(self, job: Job, run: JobRun) -> Outcome:
        """Run the provider for ``job`` and store its checked result (raises on failure)."""
        photo = await self._input(job, run)

        async def report_reference(reference: str) -> None:
            await self.db.write(repositories.set_provider_reference, job.id, reference)

        request = ProviderRequest(
            job.id,
            job.slot_id,
            job.operation,
            job.settings,
            photo,
            await self._templates(job),
            report_reference=report_reference,
            wait=run.gate_wait,
        )
        if self.provider_media is not None:
            request = dataclasses.replace(
                request, publish=self.provider_media.publisher(job.id, run.deadline.wall)
            )
        provider_started = trio.current_time()
        result = await self.providers.get(job.provider).process(request)
        provider_seconds = trio.current_time() - provider_started
        if result.data is photo.data:  # handed back untouched: the input was checked at ingest
            data, mime = photo.data, photo.mime_type
        else:
            try:
                data, mime = await self.images.run(
                    _final_image,
                    result.data,
                    run.settings.output_format,
                    job.operation == "passthrough",
                )
            except UnsupportedImage as exc:
                raise ProviderRejected(
                    f"the provider's output is not a usable image: {exc}"
                ) from None
        stored = await self.store.write_result(job.id, data, EXT_BY_MIME[mime], mime)
        return Outcome(None, 200, result=stored, data=data, provider_seconds=provider_seconds)

    async def _input(self, job: Job, run: JobRun) -> ImageInput:
        photo_bytes = run.data
        run.data = None  # the run may outlive this step (a requester waiting for the write)
        if photo_bytes is None and job.input_path:
            photo_bytes = await self.store.read(job.input_path)
        if photo_bytes is None or job.input_mime_type is None:
            raise RuntimeError("job has no input")
        return ImageInput(photo_bytes, job.input_mime_type)

    async def _templates(self, job: Job) -> list[TemplateInput]:
        if job.provider == "local" and job.operation != "frame":  # the others use no templates
            return []
        bindings = await self.db.read(repositories.slot_templates, job.slot_id)
        return [
            TemplateInput(b.role, ImageInput(await self.store.read(b.path), b.mime_type))
            for b in bindings
        ]
