"""The admin console under ``/admin/`` (docs/web.md).

Every page but the sign-in page needs a console session (:mod:`photochangerd.web.sessions`):
without one a page request is redirected to ``/admin/login?next=…`` and a ``fetch`` request
(``Accept: application/json``) gets the API's 401 JSON.  Every state-changing request carries
the session's anti-CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``), else 403.

The pages are plain HTML forms posting to these routes, which call the same code as the JSON
API (validation included), then redirect (POST → redirect → GET) with a one-line notice.
Page modules register their routes on :data:`bp` when imported.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from quart import Blueprint, Response, g, redirect, render_template, request

from photochangerd.http.context import admin
from photochangerd.http.errors import error_response
from photochangerd.web.sessions import COOKIE, CSRF_FIELD, CSRF_HEADER, ConsoleSession
from shared.errors import FailureReason

bp = Blueprint("console", __name__, url_prefix="/admin")
PUBLIC_ENDPOINTS = {"console.login", "console.login_form"}
NOTICE_PARAM = "notice"


def wants_json() -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def session() -> ConsoleSession:
    value: ConsoleSession = g.console_session
    return value


@bp.before_request
async def require_session() -> Response | None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    found = await admin().sessions.lookup(request.cookies.get(COOKIE))
    if found is None:
        if wants_json() or request.method != "GET":
            return error_response(401, FailureReason.UNAUTHORIZED, "sign in to the console")
        target = request.full_path.rstrip("?")
        return redirect(f"/admin/login?next={quote(target, safe='/')}")  # type: ignore[return-value]
    g.console_session = found
    g.admin = found.username  # what the API's admin_name() reads (updated_by, rotated_by)
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        presented = request.headers.get(CSRF_HEADER) or request.args.get(CSRF_FIELD)
        if presented is None and request.mimetype == "application/x-www-form-urlencoded":
            presented = (await request.form).get(CSRF_FIELD)
        # Multipart forms (uploads) carry it in their action URL: their body is streamed
        # into the upload reader with the API's limits, not parsed here.
        if not admin().sessions.csrf_ok(found, presented):
            return error_response(403, FailureReason.INVALID_REQUEST, "missing or wrong CSRF token")
    return None


async def page(template: str, status: int = 200, **values: Any) -> Response:
    """Render a console page with the layout's values (user, CSRF token, notice)."""
    current: ConsoleSession | None = g.get("console_session")
    html = await render_template(
        f"console/{template}",
        admin=current.username if current else None,
        csrf_token=current.csrf_token if current else "",
        notice=request.args.get(NOTICE_PARAM, "")[:200],
        path=request.path,
        **values,
    )
    return Response(html, status=status, mimetype="text/html")


def back(to: str, notice: str = "") -> Response:
    """Redirect after a POST, with a one-line notice shown on the next page."""
    target = to + (f"?{NOTICE_PARAM}={quote(notice)}" if notice else "")
    return redirect(target, 303)  # type: ignore[return-value]


# Page modules register their routes on ``bp`` when imported.
from photochangerd.web.console import (  # noqa: E402
    dashboard,
    fallbacks,
    jobs,
    login,
    settings,
    slots,
    stats,
)

__all__ = [
    "bp",
    "dashboard",
    "fallbacks",
    "jobs",
    "login",
    "page",
    "session",
    "settings",
    "slots",
    "stats",
]
