"""Failure codes and the one JSON error shape used by every route.

Every error anywhere in the HTTP API is::

    {"status": "error", "failure_reason": "<code>", "details": "<optional text>"}

``status`` is ``"timeout"`` only for the 504 of an ingest whose deadline passed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class FailureReason(StrEnum):
    """Stable machine codes of error responses (docs/booth-contract.md, "Failure codes")."""

    INVALID_REQUEST = "invalid_request"
    INVALID_PASSWORD = "invalid_password"  # noqa: S105 - a code, not a password
    UNAUTHORIZED = "unauthorized"
    SLOT_NOT_FOUND = "slot_not_found"
    SLOT_DISABLED = "slot_disabled"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    RATE_LIMITED = "rate_limited"
    VALIDATION_ERROR = "validation_error"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    PROVIDER_TIMEOUT = "provider_timeout"
    PROVIDER_ERROR = "provider_error"
    RESULT_NOT_FOUND = "result_not_found"
    RESULT_EXPIRED = "result_expired"
    SERVICE_UNAVAILABLE = "service_unavailable"
    INTERNAL_ERROR = "internal_error"


class JobFailure(StrEnum):
    """``failure_reason`` stored on a finalized job (``None`` means success)."""

    TIMEOUT = "timeout"
    PROVIDER_ERROR = "provider_error"
    CANCELLED = "cancelled"
    INTERNAL_ERROR = "internal_error"


def error_body(reason: FailureReason, details: str | None = None) -> dict[str, Any]:
    """The JSON error body for ``reason``."""
    status = "timeout" if reason is FailureReason.PROVIDER_TIMEOUT else "error"
    body: dict[str, Any] = {"status": status, "failure_reason": reason.value}
    if details:
        body["details"] = details
    return body
