"""422 ``validation_error`` with per-field messages, for schema and domain validation alike."""

from __future__ import annotations

from quart import Response

from photochangerd.http.errors import ApiError, api_error_response
from shared.errors import FailureReason


class ValidationFailed(ApiError):
    status = 422
    reason = FailureReason.VALIDATION_ERROR

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in errors.items()))
        self.errors = errors


def validation_response(error: ValidationFailed) -> Response:
    return api_error_response(error)


def errors_from_pydantic(exc: BaseException) -> dict[str, str]:
    """Field path → message, from a pydantic ValidationError (or the schema wrapper's cause)."""
    from pydantic import ValidationError

    cause = exc
    while cause is not None and not isinstance(cause, ValidationError):
        cause = getattr(cause, "validation_error", None) or cause.__cause__  # type: ignore[assignment]
    if not isinstance(cause, ValidationError):
        return {"body": "invalid request body"}
    errors: dict[str, str] = {}
    for error in cause.errors():
        path = ".".join(str(part) for part in error["loc"]) or "body"
        errors[path] = error["msg"]
    return errors
