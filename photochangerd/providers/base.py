"""The provider interface, and its error tree (defined in :mod:`photochangerd.errors`).

::

    ProviderError                 the provider could not produce an image for this job
    ├── ProviderRejected          said no / broke / returned no image   → job provider_error, 502
    └── ProviderUnavailable       temporarily unavailable (quota, 503)  → job provider_error, 503

The errors are part of the interface the drivers import from here; so is the input record
:class:`~photochangerd.domain.images.ImageInput` for the job pipeline (``jobs/produce.py``).

Deadlines are not a provider's business: the worker calls :meth:`Provider.process` inside
``trio.move_on_at(job.deadline)``; a provider that needs the remaining time (to size a retry
back-off or a poll interval) reads ``trio.current_effective_deadline()``.  On cancellation a
provider simply lets ``trio.Cancelled`` propagate (never catch it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from photochangerd.domain.images import ImageInput as ImageInput
from photochangerd.errors import ProviderError as ProviderError
from photochangerd.errors import ProviderRejected as ProviderRejected
from photochangerd.errors import ProviderUnavailable as ProviderUnavailable
from photochangerd.providers.gate import GateWait


@dataclass(frozen=True, slots=True)
class TemplateInput:
    role: str
    image: ImageInput


class MediaPublisher(Protocol):
    """Publishes an input at a short-lived public URL (for vendors that fetch by URL).

    The URL answers until the job's deadline, then 410.
    """

    async def __call__(self, image: ImageInput) -> str: ...


async def _no_publisher(image: ImageInput) -> str:
    raise ProviderRejected("this job cannot publish media for the provider")


async def _ignore_reference(reference: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    job_id: str
    slot_id: str
    operation: str
    settings: Mapping[str, Any]
    photo: ImageInput
    templates: Sequence[TemplateInput] = ()
    publish: MediaPublisher = _no_publisher
    # Records the vendor's id of the job (Turbotext's queueid) on the job row.
    report_reference: Callable[[str], Awaitable[None]] = _ignore_reference
    # Filled while the job waits for a slot of a capped provider (providers/gate.py).
    wait: GateWait = field(default_factory=GateWait)

    def templates_with_role(self, role: str) -> list[ImageInput]:
        return [template.image for template in self.templates if template.role == role]


@dataclass(frozen=True, slots=True)
class ProviderResult:
    data: bytes = field(repr=False)
    mime_type: str


class Provider(Protocol):
    """One AI backend.  Implementations must be safe to call concurrently."""

    name: str

    async def process(self, request: ProviderRequest) -> ProviderResult:
        """Produce the output image.  Cancellation (the job's deadline) aborts all work."""
        ...
