"""Records the rest of the daemon passes around (immutable snapshots of rows)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from shared.errors import JobFailure

JOB_ID_BYTES = 16  # 128 random bits: the public link is the capability
JOB_ID_PATTERN = r"[A-Za-z0-9_-]{22}"
MEDIA_ID_PATTERN = r"[A-Za-z0-9_-]{22}"


def new_public_id(nbytes: int = JOB_ID_BYTES) -> str:
    """A URL-safe, unguessable id that starts with a letter or digit.

    A leading ``-`` would be read as an option by command-line tools (``pcctl job show -x…``);
    the first character is drawn again in that case (about 1 id in 32).
    """
    while True:
        value = secrets.token_urlsafe(nbytes)
        if value[0].isalnum():
            return value


def new_job_id() -> str:
    """A URL-safe, unguessable id (22 characters, ~128 bits)."""
    return new_public_id(JOB_ID_BYTES)


@dataclass(frozen=True, slots=True)
class Slot:
    id: str
    display_name: str
    provider: str
    operation: str
    is_active: bool
    size_limit_mb: int
    settings: dict[str, Any]
    version: int
    updated_at: float | None
    updated_by: str | None
    fallbacks: list[dict[str, Any]] = field(default_factory=list)  # shared/fallbacks.py


@dataclass(frozen=True, slots=True)
class TemplateBinding:
    role: str
    template_id: str
    path: str
    mime_type: str


@dataclass(frozen=True, slots=True)
class StoredResult:
    path: str
    mime_type: str
    size_bytes: int
    checksum: str


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    slot_id: str
    source: str
    status: str
    is_finalized: bool
    failure_reason: str | None
    failure_details: str | None
    response_status: int | None
    provider: str
    operation: str
    settings: dict[str, Any]
    created_at: float
    started_at: float | None
    finalized_at: float | None
    deadline: float
    claimed_by: str | None
    attempts: int
    provider_job_reference: str | None
    client_metadata: dict[str, Any]
    input_path: str | None
    input_mime_type: str | None
    result_file_path: str | None
    result_mime_type: str | None
    result_size_bytes: int | None
    result_checksum: str | None
    result_expires_at: float | None
    fallbacks: list[dict[str, Any]] = field(default_factory=list)  # the slot's, as submitted
    attempt_log: list[dict[str, Any]] = field(default_factory=list)  # see JobAttempt
    served_by: str | None = None  # "provider/operation" of the step that made the result
    fallback_step: int | None = None  # 0: the slot's own provider; 1–3: a fallback


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a job ended: what its finalization recorded and what its requester is answered.

    ``failure`` None is success.  ``response_status`` is the HTTP status of the ingest answer
    (200, 502, 503, 504, 500).  ``result`` carries the stored file's metadata on success and
    ``data`` the bytes themselves when the outcome was produced in this process (saves a read).
    """

    failure: JobFailure | None
    response_status: int
    details: str | None = None
    result: StoredResult | None = None
    data: bytes | None = field(default=None, repr=False)
    provider_seconds: float | None = None  # time spent inside the provider (this process)
    served_by: str | None = None  # "provider/operation" of the step that made the result
    fallback_step: int | None = None  # which step made it (0: the slot's own provider)

    @property
    def ok(self) -> bool:
        return self.failure is None


def timeout_outcome(details: str | None = None) -> Outcome:
    return Outcome(JobFailure.TIMEOUT, 504, details or "deadline reached")
