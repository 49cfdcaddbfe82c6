"""Web console sessions: a random id in an ``HttpOnly; SameSite=Strict`` cookie, its SHA-256 in
the database (signing out ends it; a restart or another instance keeps it), and an anti-CSRF
token derived from it with HMAC, so there is nothing more to store.  See docs/web.md.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from photochangerd.clock import WallClock
from photochangerd.db import repositories
from photochangerd.db.engine import Database

COOKIE = "photochanger_session"
CSRF_FIELD = "csrf_token"  # form field
CSRF_HEADER = "X-CSRF-Token"  # fetch()


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    session_id: str
    username: str
    expires_at: float
    csrf_token: str


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii", "replace")).hexdigest()


class ConsoleSessions:
    def __init__(self, db: Database, key: bytes, ttl_seconds: float, clock: WallClock) -> None:
        self._db = db
        self._key = key
        self.ttl_seconds = ttl_seconds
        self._clock = clock

    def csrf_token(self, session_id: str) -> str:
        return hmac.new(self._key, b"csrf:" + session_id.encode(), hashlib.sha256).hexdigest()

    async def open(self, username: str) -> ConsoleSession:
        session_id = secrets.token_urlsafe(32)
        now = self._clock.now()
        expires_at = now + self.ttl_seconds
        await self._db.write(
            repositories.open_admin_session, _digest(session_id), username, now, expires_at
        )
        return ConsoleSession(session_id, username, expires_at, self.csrf_token(session_id))

    async def lookup(self, session_id: str | None) -> ConsoleSession | None:
        if not session_id or len(session_id) > 128:
            return None
        found = await self._db.read(
            repositories.admin_session_user, _digest(session_id), self._clock.now()
        )
        if found is None:
            return None
        username, expires_at = found
        return ConsoleSession(session_id, username, expires_at, self.csrf_token(session_id))

    async def close(self, session_id: str) -> None:
        await self._db.write(repositories.close_admin_session, _digest(session_id))

    def csrf_ok(self, session: ConsoleSession, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(session.csrf_token, str(presented))
