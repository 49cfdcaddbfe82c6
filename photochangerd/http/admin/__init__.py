"""The admin REST API (api.md §3): one blueprint under ``/api``, every route behind a JWT
except ``POST /api/login``.  Route groups live in their own modules and register on ``bp``."""

from __future__ import annotations

from quart import Blueprint, g, request

from photochangerd.auth.tokens import InvalidToken
from photochangerd.http.context import ctx
from photochangerd.http.errors import ApiError
from shared.errors import FailureReason

bp = Blueprint("admin", __name__, url_prefix="/api")
PUBLIC_ENDPOINTS = {"admin.login"}


class Unauthorized(ApiError):
    status = 401
    reason = FailureReason.UNAUTHORIZED

    def __init__(self, details: str = "a valid admin token is required") -> None:
        super().__init__(details, headers={"WWW-Authenticate": 'Bearer realm="photochanger"'})


@bp.before_request
async def require_admin() -> None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    try:
        principal = ctx().tokens.verify(token.strip())
    except InvalidToken:
        raise Unauthorized("the token is invalid or expired") from None
    g.admin = principal.username


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
