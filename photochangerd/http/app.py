"""The Quart application: blueprints, the one error mapping, and the ASGI wrapper."""

from __future__ import annotations

import logging

from quart import Response
from quart_schema import QuartSchema, RequestSchemaValidationError
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from photochangerd import __version__
from photochangerd.http import admin, health, ingest, public
from photochangerd.http.asgi import ShieldedSend
from photochangerd.http.context import EXTENSION_KEY, AppContext
from photochangerd.http.errors import ApiError, api_error_response, error_response
from photochangerd.http.validation import (
    ValidationFailed,
    errors_from_pydantic,
    validation_response,
)
from shared.errors import FailureReason

log = logging.getLogger("photochangerd.http")

_HTTP_REASONS = {
    400: FailureReason.INVALID_REQUEST,
    404: FailureReason.NOT_FOUND,
    405: FailureReason.INVALID_REQUEST,
    408: FailureReason.INVALID_REQUEST,
    413: FailureReason.PAYLOAD_TOO_LARGE,
}


def create_quart_app(context: AppContext) -> QuartTrio:
    app = QuartTrio("photochangerd")
    app.extensions[EXTENSION_KEY] = context
    # Our handlers enforce their own limits and deadlines (pitfalls.md #2, #3); Quart's
    # MAX_CONTENT_LENGTH stays as a backstop bounding the unread buffer of any request.
    app.config.update(
        MAX_CONTENT_LENGTH=context.config.max_upload_bytes + 1024 * 1024,
        BODY_TIMEOUT=None,
        RESPONSE_TIMEOUT=None,
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    QuartSchema(
        app,
        openapi_path="/api/openapi.json",
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path="/api/docs",
        info={"title": "PhotoChanger", "version": __version__},
        security_schemes={"bearer": {"type": "http", "scheme": "bearer", "bearer_format": "JWT"}},
        security=[{"bearer": []}],
    )
    for blueprint in (ingest.bp, public.bp, health.bp, admin.bp):
        app.register_blueprint(blueprint)

    @app.errorhandler(RequestSchemaValidationError)
    async def on_schema_error(error: RequestSchemaValidationError) -> Response:
        return validation_response(ValidationFailed(errors_from_pydantic(error)))

    @app.errorhandler(ValidationFailed)
    async def on_validation_failed(error: ValidationFailed) -> Response:
        return validation_response(error)

    @app.errorhandler(ApiError)
    async def on_api_error(error: ApiError) -> Response:
        return api_error_response(error)

    @app.errorhandler(HTTPException)
    async def on_http_error(error: HTTPException) -> Response:
        status = error.code or 500
        reason = _HTTP_REASONS.get(status, FailureReason.INTERNAL_ERROR)
        return error_response(status, reason, error.name)

    @app.errorhandler(Exception)
    async def on_unexpected(error: Exception) -> Response:
        log.exception("http.internal_error", exc_info=error)
        return error_response(500, FailureReason.INTERNAL_ERROR)

    return app


def create_asgi_app(context: AppContext) -> ShieldedSend:
    return ShieldedSend(create_quart_app(context))
