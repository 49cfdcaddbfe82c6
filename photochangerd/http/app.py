"""The Quart application: blueprints, the one error mapping, and the ASGI wrapper."""

from __future__ import annotations

import logging
from typing import Any

from quart import Response, jsonify, request
from quart_schema import QuartSchema, RequestSchemaValidationError
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from photochangerd import __version__
from photochangerd.config import Config
from photochangerd.http import admin, docs, health, ingest, public
from photochangerd.http.asgi import ShieldedSend
from photochangerd.http.bodies import BoundedRequest
from photochangerd.http.booth import BoothRouter
from photochangerd.http.context import EXTENSION_KEY, AppContext, Handles
from photochangerd.http.errors import (
    ApiError,
    ServiceUnavailable,
    UnsupportedMediaType,
    api_error_response,
    error_response,
)
from photochangerd.http.proxy import ProxyHeaders, parse_networks
from photochangerd.http.validation import (
    ValidationFailed,
    errors_from_pydantic,
    validation_response,
)
from photochangerd.media.objects import ObjectStoreUnavailable
from photochangerd.web import register_web
from photochangerd.web.guest import OPENAPI_RESPONSES as GUEST_RESPONSES
from shared.errors import FailureReason

log = logging.getLogger("photochangerd.http")

_HTTP_REASONS = {
    400: FailureReason.INVALID_REQUEST,
    404: FailureReason.NOT_FOUND,
    405: FailureReason.INVALID_REQUEST,
    408: FailureReason.INVALID_REQUEST,
    413: FailureReason.PAYLOAD_TOO_LARGE,
}


def create_quart_app(context: AppContext | None) -> QuartTrio:
    """The application; ``context`` None builds it only for its routes (OpenAPI document).

    The routes get the context's narrow handles (:mod:`photochangerd.http.context`), never the
    context itself."""
    if context is None:
        return _quart_app(None, Config())
    return _quart_app(context.handles(), context.config)


def _quart_app(handles: Handles | None, config: Config) -> QuartTrio:
    app = QuartTrio("photochangerd", static_folder=None)  # no static files: no /static route
    app.request_class = BoundedRequest  # small bodies everywhere but the upload routes
    app.extensions[EXTENSION_KEY] = handles
    max_upload_bytes = config.max_upload_bytes
    # The upload routes enforce their own limits and deadlines (docs/stack-traps.md, "Chunked
    # uploads past the size limit" and "Quart's BODY_TIMEOUT and RESPONSE_TIMEOUT"); Quart's
    # MAX_CONTENT_LENGTH stays as a backstop bounding their unread buffer.  The sign-in forms
    # get a small cap, and every route but the uploads a read deadline (http/bodies.py).
    app.config.update(
        MAX_CONTENT_LENGTH=max_upload_bytes + 1024 * 1024,
        BODY_TIMEOUT=None,
        RESPONSE_TIMEOUT=None,
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    QuartSchema(
        app,
        openapi_path=None,  # served below, completed with the common error shape
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path=None,  # its page loads Swagger UI from a CDN; docs.bp serves it offline
        info={"title": "PhotoChanger", "version": __version__},
        security_schemes={"bearer": {"type": "http", "scheme": "bearer", "bearer_format": "JWT"}},
        security=[{"bearer": []}],
    )
    for blueprint in (ingest.bp, public.bp, health.bp, admin.bp, docs.bp):
        app.register_blueprint(blueprint)
    register_web(app)

    @app.get("/api/openapi.json")
    async def openapi() -> Response:
        return jsonify(openapi_document(app))

    @app.errorhandler(RequestSchemaValidationError)
    async def on_schema_error(error: RequestSchemaValidationError) -> Response:
        if request.mimetype and not request.is_json:  # a form, text: not a document
            wanted = (
                f"the body must be JSON (Content-Type: application/json), not {request.mimetype}"
            )
            return api_error_response(UnsupportedMediaType(wanted))
        return validation_response(ValidationFailed(errors_from_pydantic(error)))

    @app.errorhandler(ValidationFailed)
    async def on_validation_failed(error: ValidationFailed) -> Response:
        return validation_response(error)

    @app.errorhandler(ApiError)
    async def on_api_error(error: ApiError) -> Response:
        return api_error_response(error)

    @app.errorhandler(ObjectStoreUnavailable)
    async def on_object_store_unavailable(error: ObjectStoreUnavailable) -> Response:
        return api_error_response(
            ServiceUnavailable("object store unavailable", headers={"Retry-After": "5"})
        )

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
    trusted = parse_networks(context.config.trusted_proxies)
    handles = context.handles()
    quart = _quart_app(handles, context.config)
    return ShieldedSend(ProxyHeaders(BoothRouter(quart, handles.booth), trusted))


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["status", "failure_reason"],
    "properties": {
        "status": {"type": "string", "enum": ["error", "timeout"]},
        "failure_reason": {"type": "string", "enum": [r.value for r in FailureReason]},
        "details": {"type": "string"},
        "errors": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "422 only: field path -> message",
        },
    },
}


def openapi_document(app: QuartTrio | None = None) -> dict[str, Any]:
    """The OpenAPI document generated from the routes and models (``photochangerd openapi``),
    with the one error shape every route can answer (docs/booth-contract.md, "The error body")
    added to each operation."""
    app = app or create_quart_app(None)
    document: dict[str, Any] = app.extensions["QUART_SCHEMA"].openapi_provider.schema()
    document.setdefault("components", {}).setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
    error = {
        "description": "the common JSON error shape",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    # The console's HTML pages and their assets are not part of the HTTP contract.
    document["paths"] = {
        path: operations
        for path, operations in document.get("paths", {}).items()
        if not path.startswith(("/admin", "/assets"))
    }
    seen_ids: set[str] = set()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            # Aliases share a handler; OpenAPI wants one operationId per operation.
            operation_id = operation.get("operationId") or f"{method}_{path}"
            if operation_id in seen_ids:
                operation_id = f"{method}_" + path.strip("/").replace("/", "_").replace(
                    "{", ""
                ).replace("}", "").replace("-", "_")
            seen_ids.add(operation_id)
            operation["operationId"] = operation_id
            # Status codes are strings in OpenAPI (quart-schema emits ints).
            responses = {str(code): value for code, value in operation.get("responses", {}).items()}
            responses.update(GUEST_RESPONSES.get(path, {}))  # HTML pages and images
            operation["responses"] = responses
            if not responses:
                responses["200"] = {"description": "see the README for the body (images/text)"}
            responses.setdefault("default", error)
            if path in ("/api/login", "/api/openapi.json") or not path.startswith("/api/"):
                operation["security"] = []  # no token needed
    return document
