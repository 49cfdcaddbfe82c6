"""``POST /api/login``: built-in admins, argon2id hashes, throttled, HS256 token out;
``POST /api/logout``: the token (or the console session) signed out on every instance."""

from __future__ import annotations

import contextlib
import logging

import trio
from quart import g, request
from quart_schema import validate_request, validate_response

from photochangerd.auth.passwords import hash_password, needs_rehash, verify_password
from photochangerd.auth.tokens import LEEWAY_SECONDS
from photochangerd.db import repositories
from photochangerd.db.engine import DatabaseUnavailable
from photochangerd.http.admin import Unauthorized, admin_name, bp
from photochangerd.http.context import AdminHandles, admin
from photochangerd.http.errors import RateLimited, ServiceUnavailable
from photochangerd.logs import event
from photochangerd.web.sessions import COOKIE
from shared.api_models import LoginRequest, TokenResponse

log = logging.getLogger("photochangerd.admin")

# Unknown usernames are checked against this hash, so they cost the same as known ones and a
# timing difference does not reveal which accounts exist. A constant, not computed at import
# (tests/test_passwords.py keeps its parameters equal to the hasher's).
DUMMY_HASH = (
    "$argon2id$v=19$m=19456,t=2,p=1$n4CFmoh+l0VEmr7ydYL4Wg"
    "$hRvpRxEQm+mp96nCELIHyZEcvcMmc6WVjGz9KeT1a5w"
)
_KDF = trio.CapacityLimiter(2)


async def authenticate(app: AdminHandles, username: str, password: str, address: str) -> float:
    """Check an admin's password, throttled (API and console sign-in alike); returns the
    password's version (when it was set: a token carries it).

    Raises :class:`RateLimited` (locked), :class:`Unauthorized` (wrong) or
    :class:`ServiceUnavailable` (database down).
    """
    keys = [f"user:{username.lower()[:100]}", f"addr:{address}"]
    # The lock is read, the guess checked and its failure written while holding one of the KDF
    # slots: a burst of parallel guesses queued behind the slots used to pass the lock check
    # on arrival, all of them, and 40 wrong passwords sent at once were all tried (review,
    # 2026-12-02).  Now at most one guess per slot goes past the limit.
    async with _KDF:
        try:
            wait = await app.throttle.retry_after(keys)
            if wait is not None:
                raise RateLimited(
                    "too many failed logins; try again later", headers={"Retry-After": str(wait)}
                )
            found = await app.db.read(repositories.admin_credentials, username)
            stored, version = found if found is not None else (None, 0.0)
            ok = await trio.to_thread.run_sync(verify_password, stored or DUMMY_HASH, password)
            if not ok or stored is None:
                await app.throttle.failed(keys)
                raise Unauthorized("wrong username or password")
            await app.throttle.succeeded(keys)
        except DatabaseUnavailable:
            raise ServiceUnavailable("database unavailable") from None
    if needs_rehash(stored):  # made with older parameters: renewed while we know the password
        renewed = await trio.to_thread.run_sync(hash_password, password, limiter=_KDF)
        with contextlib.suppress(DatabaseUnavailable):
            await app.db.write(repositories.renew_admin_password_hash, username, renewed)
    return version


@bp.post("/login")
@validate_request(LoginRequest)
@validate_response(TokenResponse, 200)
async def login(data: LoginRequest) -> tuple[TokenResponse, int]:
    app = admin()
    version = await authenticate(
        app, data.username, data.password, request.remote_addr or "unknown"
    )
    token = app.tokens.issue(data.username, password_version=version)
    return TokenResponse(access_token=token, expires_in=app.tokens.ttl_seconds), 200


@bp.post("/logout")
async def logout() -> tuple[str, int]:
    """Sign this token out: refused from now on by every instance, until it would have expired
    anyway (a console session calling the API signs its session out instead)."""
    app = admin()
    principal = g.get("principal")
    try:
        if principal is not None:
            # Kept until the token could no longer pass verification at all (exp + leeway).
            await app.db.write(
                repositories.revoke_token,
                principal.token_id,
                float(principal.expires_at + LEEWAY_SECONDS),
            )
        else:
            await app.sessions.close(request.cookies.get(COOKIE, ""))
    except DatabaseUnavailable:
        raise ServiceUnavailable("database unavailable") from None
    event(log, logging.INFO, "admin.logout", user=admin_name())
    return "", 204
