"""Sign-in and sign-out: the API's accounts, password check and throttle; a session cookie."""

from __future__ import annotations

from urllib.parse import urlsplit

from quart import Response, redirect, request

from photochangerd.http.admin.auth import authenticate
from photochangerd.http.context import admin
from photochangerd.http.errors import ApiError
from photochangerd.web.console import back, bp, page, session
from photochangerd.web.sessions import COOKIE


def _safe_next(target: str | None) -> str:
    """Only a path inside the console: never an open redirect to another site."""
    if not target:
        return "/admin/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin"):
        return "/admin/"
    return target


def _secure_cookie() -> bool:
    """https as the browser used it: the public URL, or a trusted proxy's X-Forwarded-Proto."""
    return request.scheme == "https" or admin().config.effective_public_base_url.startswith(
        "https://"
    )


@bp.get("/login")
async def login_form() -> Response:
    return await page("login.html", next=_safe_next(request.args.get("next")), error="")


@bp.post("/login")
async def login() -> Response:
    app = admin()
    form = await request.form
    username = str(form.get("username", ""))[:64]
    password = str(form.get("password", ""))[:1024]
    target = _safe_next(form.get("next"))
    try:
        await authenticate(app, username, password, request.remote_addr or "unknown")
    except ApiError as error:
        return await page(
            "login.html", status=error.status, next=target, error=error.details, username=username
        )
    opened = await app.sessions.open(username)
    response: Response = redirect(target, 303)  # type: ignore[assignment]
    response.set_cookie(
        COOKIE,
        opened.session_id,
        max_age=int(app.sessions.ttl_seconds),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_secure_cookie(),
    )
    return response


@bp.post("/logout")
async def logout() -> Response:
    await admin().sessions.close(session().session_id)
    response = back("/admin/login", "signed out")
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="Strict")
    return response
