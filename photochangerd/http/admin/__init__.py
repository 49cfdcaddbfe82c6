"""The admin REST API (README, "Admin API"): one blueprint under ``/api``, every route behind a
JWT except ``POST /api/login``.  Route groups live in their own modules and register on
``bp``."""

from __future__ import annotations

from quart import Blueprint, g, request

from photochangerd.auth.tokens import InvalidToken
from photochangerd.db import repositories
from photochangerd.db.engine import DatabaseUnavailable
from photochangerd.http.context import admin
from photochangerd.http.errors import ApiError, ServiceUnavailable
from photochangerd.web.sessions import COOKIE, CSRF_HEADER
from shared.errors import FailureReason

bp = Blueprint("admin", __name__, url_prefix="/api")
PUBLIC_ENDPOINTS = {"admin.login"}


class Unauthorized(ApiError):
    status = 401
    reason = FailureReason.UNAUTHORIZED

    def __init__(self, details: str = "a valid admin token is required") -> None:
        super().__init__(details, headers={"WWW-Authenticate": 'Bearer realm="photochanger"'})


class CsrfRefused(ApiError):
    status = 403
    reason = FailureReason.INVALID_REQUEST


@bp.before_request
async def require_admin() -> None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header and COOKIE in request.cookies:
        await _console_session()  # the console's pages calling the API with fetch()
        return
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    app = admin()
    try:
        principal = app.tokens.verify(token.strip())
    except InvalidToken:
        raise Unauthorized("the token is invalid or expired") from None
    try:  # signed out, or its password changed (on any instance: the tables are shared)
        refusal = await app.db.read(
            repositories.token_refusal,
            principal.token_id,
            principal.username,
            principal.issued_at,
            principal.password_version,
        )
    except DatabaseUnavailable:
        raise ServiceUnavailable("database unavailable") from None
    if refusal is not None:
        raise Unauthorized(refusal)
    g.admin = principal.username
    g.principal = principal


async def _console_session() -> None:
    """A console session cookie instead of a token; a state change also needs its CSRF token."""
    sessions = admin().sessions
    found = await sessions.lookup(request.cookies.get(COOKIE))
    if found is None:
        raise Unauthorized("the console session is invalid or expired")
    if request.method not in ("GET", "HEAD") and not sessions.csrf_ok(
        found, request.headers.get(CSRF_HEADER)
    ):
        raise CsrfRefused("missing or wrong CSRF token")
    g.admin = found.username


def admin_name() -> str:
    return str(g.admin)


# Route modules register themselves on ``bp`` when imported.
from photochangerd.http.admin import (  # noqa: E402
    auth,
    jobs,
    media,
    settings,
    slots,
)

__all__ = ["auth", "bp", "jobs", "media", "settings", "slots"]
