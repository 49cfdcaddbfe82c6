"""HTTP errors: one exception per failure code, one function turning any of them into JSON.

::

    ApiError(status, reason)          → {"status": "error", "failure_reason": reason, ...}
    │                                 500 internal_error unless the subclass or the call says
    ├── 400 InvalidRequest            invalid_request
    ├── 401 InvalidPassword           invalid_password
    ├── 401 Unauthorized              unauthorized (+ WWW-Authenticate)       http/admin
    ├── 403 CsrfRefused               invalid_request                         http/admin
    ├── 404 NotFound(reason)          slot_not_found / slot_disabled / result_not_found / not_found
    ├── 408 RequestTooSlow            invalid_request (the body did not arrive before the deadline)
    ├── 409 Conflict                  conflict                                http/admin/slots.py
    ├── 410 ResultExpired             result_expired
    ├── 413 PayloadTooLarge           payload_too_large
    ├── 415 UnsupportedMediaType      unsupported_media_type
    ├── 416 RangeNotSatisfiable       invalid_request                         http/files.py
    ├── 422 ValidationFailed(errors)  validation_error (+ per-field "errors")  http/validation.py
    ├── 429 RateLimited               rate_limited (+ Retry-After)
    └── 503 ServiceUnavailable        service_unavailable (database down, shutting down)

Classes without a module named are defined here.  :class:`ApiError` is the answering branch of
the daemon's one exception tree (:mod:`photochangerd.errors`).
"""

from __future__ import annotations

import json
from typing import Any

from quart import Response, jsonify

from photochangerd.errors import PhotoChangerError
from shared.errors import FailureReason, error_body


class ApiError(PhotoChangerError):
    status = 500
    reason = FailureReason.INTERNAL_ERROR

    def __init__(
        self,
        details: str | None = None,
        *,
        reason: FailureReason | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(details or "")
        self.details = details
        if reason is not None:
            self.reason = reason
        if status is not None:
            self.status = status
        self.headers = headers or {}


class InvalidRequest(ApiError):
    status = 400
    reason = FailureReason.INVALID_REQUEST


class InvalidPassword(ApiError):
    status = 401
    reason = FailureReason.INVALID_PASSWORD


class NotFound(ApiError):
    status = 404
    reason = FailureReason.NOT_FOUND


class RequestTooSlow(ApiError):
    status = 408
    reason = FailureReason.INVALID_REQUEST


class ResultExpired(ApiError):
    status = 410
    reason = FailureReason.RESULT_EXPIRED


class PayloadTooLarge(ApiError):
    status = 413
    reason = FailureReason.PAYLOAD_TOO_LARGE


class UnsupportedMediaType(ApiError):
    status = 415
    reason = FailureReason.UNSUPPORTED_MEDIA_TYPE


class RateLimited(ApiError):
    status = 429
    reason = FailureReason.RATE_LIMITED


class ServiceUnavailable(ApiError):
    status = 503
    reason = FailureReason.SERVICE_UNAVAILABLE


def error_response(
    status: int,
    reason: FailureReason,
    details: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    response = jsonify(error_body(reason, details))
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def api_error_body(error: ApiError) -> dict[str, Any]:
    """The JSON body for ``error`` (422: per-field messages beside the common shape)."""
    body = error_body(error.reason, error.details)
    field_errors = getattr(error, "errors", None)
    if field_errors:
        body["errors"] = field_errors
    return body


def api_error_response(error: ApiError) -> Response:
    response = error_response(error.status, error.reason, error.details, error.headers)
    if getattr(error, "errors", None):
        response.set_data(json.dumps(api_error_body(error)))
    return response
