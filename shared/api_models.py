"""Request and response bodies of the admin API (README, "Admin API"): one source for the
daemon's validation, the generated OpenAPI document and pcctl's parsing."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.fallbacks import FallbackStep

PROVIDER_NAMES = ("gemini", "turbotext", "openai", "sdwebui")
# Providers that work without a key: the sdwebui key is the WebUI's optional HTTP Basic
# "user:pass" (--api-auth).
KEY_OPTIONAL = ("sdwebui",)
SELF_HOSTED = ("sdwebui", "comfyui")  # run by the operator: an address in the daemon's config


class _Model(BaseModel):
    """Request bodies: unknown fields are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    """Response bodies: unknown fields are ignored, so an older pcctl keeps working when the
    server adds one."""

    model_config = ConfigDict(extra="ignore")


class LoginRequest(_Model):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TokenResponse(_Out):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int


class TemplateBindingIn(_Model):
    role: Literal["style", "face", "frame", "reference"]
    template_id: str = Field(min_length=1, max_length=64)


class TemplateBindingOut(_Out):
    role: Literal["style", "face", "frame", "reference"]
    template_id: str
    mime_type: str
    width: int
    height: int


_JOB_STATUS = "pending, processing or finalized (then see failure_reason)"


class JobSummary(_Out):
    job_id: str
    status: str = Field(description=_JOB_STATUS)
    is_finalized: bool
    failure_reason: str | None
    created_at: float
    finalized_at: float | None


class RecentResult(_Out):
    job_id: str
    finalized_at: float | None
    public_url: str | None
    thumbnail_url: str | None
    size_bytes: int | None
    failure_reason: str | None


class SlotSummary(_Out):
    id: str
    display_name: str
    provider: str
    operation: str
    is_active: bool
    version: int
    updated_at: float | None
    updated_by: str | None
    ingest_url: str
    last_job: JobSummary | None


class SlotDetail(SlotSummary):
    settings: dict[str, Any]
    size_limit_mb: int
    template_media: list[TemplateBindingOut]
    fallbacks: list[FallbackStep] = Field(
        default=[], description="tried in order when the step before fails or runs out of time"
    )
    recent_results: list[RecentResult]


class SlotList(_Out):
    slots: list[SlotSummary]


class SlotUpdate(_Model):
    """A full or partial slot update; omitted fields keep their value."""

    display_name: str | None = Field(default=None, min_length=1, max_length=100)
    provider: str | None = None
    operation: str | None = None
    is_active: bool | None = None
    size_limit_mb: int | None = Field(default=None, ge=1, le=20)
    settings: dict[str, Any] | None = None
    template_media: list[TemplateBindingIn] | None = None
    fallbacks: list[FallbackStep] | None = Field(
        default=None,
        description="up to 3 steps tried in order when the step before fails (an empty list "
        "removes them)",
    )


class TemplateMedia(_Out):
    id: str
    mime: str
    size: int
    checksum: str
    width: int
    height: int
    created_at: float
    used_by: list[str] = []


class TemplateMediaList(_Out):
    template_media: list[TemplateMedia]


class TemporaryMedia(_Out):
    id: str
    public_url: str
    expires_at: float


class IngestPasswordState(_Out):
    configured: bool
    rotated_at: float | None
    rotated_by: str | None


class ProviderKeyState(_Out):
    configured: bool
    source: Literal["settings", "credentials", "environment", "none"] = Field(
        description="settings: stored through the API (editable); credentials: a systemd "
        "credential; environment: an environment variable; none: not configured"
    )
    updated_at: float | None


class BackendState(_Out):
    configured: bool = Field(
        description="whether the daemon's config names the backend's address "
        "(sdwebui_base_url, comfyui_base_url): without it every photo to the slot gets 502"
    )


class Limits(_Out):
    max_upload_mb: int
    max_image_pixels: int
    max_in_flight: int
    max_in_flight_per_slot: int


class SettingsOut(_Out):
    sync_response_seconds: float
    result_ttl_hours: float
    ingest_password: IngestPasswordState
    provider_keys: dict[str, ProviderKeyState]
    backends: dict[str, BackendState] = Field(
        default_factory=dict, description="self-hosted providers: sdwebui, comfyui"
    )
    limits: Limits


class SettingsUpdate(_Model):
    sync_response_seconds: float | None = Field(default=None, ge=10, le=60)
    result_ttl_hours: float | None = Field(default=None, gt=0, le=24 * 30)
    # A rotation needs 8+ characters.  The first-start password (from the environment) does not
    # pass through here and may be weaker, like the ones booths already use.
    ingest_password: str | None = Field(default=None, min_length=8, max_length=256)
    # provider → new key; an empty string removes the stored key
    provider_keys: dict[Literal["gemini", "turbotext", "openai", "sdwebui"], str] | None = None


_GUEST_URL = "the result's guest page (what its QR codes open): {public_base_url}/r/{job_id}"


class TestRunResult(_Out):
    __test__ = False  # not a pytest class

    status: Literal["ok"] = "ok"
    job_id: str
    public_result_url: str
    guest_url: str | None = Field(default=None, description=_GUEST_URL)
    completed_in_seconds: float


class ClientMetadata(_Out):
    """What came with the photo, as kept with the job (bounded at ingest)."""

    # Bounds: 64 text parts, 4 KiB each and 64 KiB in all, names cut at 100 characters.
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="the form's text parts but the password (time, user_id, id, profile, hash)",
    )
    hash_check: str | None = Field(
        default=None,
        description="how `hash` matched the photo: absent, verified_sha1, verified_sha256, "
        "verified_md5 or unverified (never a reason to reject)",
    )
    query: str = Field(default="", description="the request's query string (512 characters)")
    width: int | None = None
    height: int | None = None
    size_bytes: int | None = Field(default=None, description="the uploaded photo's size")
    dropped_fields: int = Field(default=0, description="text parts past the bounds, not kept")


class JobAttempt(_Out):
    """One step of a job's chain: the slot's provider, then its fallbacks."""

    step: int = Field(description="0: the slot's own provider; 1–3: its fallbacks in order")
    provider: str
    operation: str
    outcome: Literal[
        "success", "provider_error", "timeout", "skipped", "cancelled", "internal_error"
    ] = Field(
        description="skipped: the step's share of the deadline was already used up; "
        "timeout: it ran out of its share (or the whole deadline)"
    )
    details: str | None = None
    status: int | None = Field(default=None, description="the HTTP status its failure maps to")
    duration_seconds: float


class JobOut(_Out):
    job_id: str
    slot_id: str
    source: str
    status: str = Field(description=_JOB_STATUS)
    is_finalized: bool
    failure_reason: str | None
    failure_details: str | None
    provider: str
    operation: str
    created_at: float
    started_at: float | None
    finalized_at: float | None
    deadline: float
    duration_seconds: float | None
    provider_job_reference: str | None
    claimed_by: str | None = Field(
        default=None, description="the instance that ran it (its `instance_id`)"
    )
    result: dict[str, Any] | None
    public_result_url: str | None
    guest_url: str | None = Field(default=None, description=_GUEST_URL)
    served_by: str | None = Field(
        default=None,
        description="provider/operation that made the result (the slot's own or a fallback's)",
    )
    attempts: list[JobAttempt] = Field(
        default=[], description="every step tried, in order (GET /api/jobs/{job_id})"
    )
    client_metadata: ClientMetadata | None = Field(
        default=None, description="GET /api/jobs/{job_id} only (null in lists)"
    )


class JobList(_Out):
    jobs: list[JobOut]


class StatsBucket(_Out):
    start: float
    jobs: int
    successes: int
    timeouts: int
    provider_errors: int
    rejected: int


class Stats(_Out):
    slot_id: str | None
    window_minutes: int
    jobs: int
    successes: int
    timeouts: int
    provider_errors: int
    internal_errors: int
    cancelled: int
    in_progress: int
    rejected: dict[str, int]
    fallbacks_served: int = Field(
        default=0, description="successes answered with a fallback's result (in `successes`)"
    )
    fallbacks_by_provider: dict[str, int] = Field(
        default={}, description="those, by the provider/operation that made them"
    )
    success_rate: float | None
    timeout_rate: float | None
    p50_duration_seconds: float | None
    p95_duration_seconds: float | None
    last_success_at: float | None
    last_error_reason: str | None
    last_error_at: float | None
    storage_usage_mb: float
    buckets: list[StatsBucket]


class SlotStatsList(_Out):
    window_minutes: int
    slots: list[Stats]


class CleanupResult(_Out):
    status: Literal["ok"] = "ok"
    deleted_results: int


class Accepted(_Out):
    status: Literal["accepted"] = "accepted"
