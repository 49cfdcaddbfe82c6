"""Sign-in throttling: 10 failures for a username, or from one address, within 15 minutes lock
it for 15 minutes.

Counted in the database (``login_failure``, ``login_lock``): a restart does not forget, and
several instances sharing a PostgreSQL database share the count — N instances do not give a
guesser N times the attempts.  The lock is a brake on guessing, not an audit log; the cleaner
prunes old rows.  Wall-clock time, the one clock every instance agrees on.
"""

from __future__ import annotations

from photochangerd.clock import WallClock
from photochangerd.db import repositories
from photochangerd.db.engine import Database

MAX_FAILURES = 10
LOCK_SECONDS = 15 * 60
WINDOW_SECONDS = 15 * 60


class LoginThrottle:
    def __init__(
        self,
        db: Database,
        clock: WallClock,
        max_failures: int = MAX_FAILURES,
        lock_seconds: float = LOCK_SECONDS,
    ) -> None:
        self._db = db
        self._clock = clock
        self.max_failures = max_failures
        self.lock_seconds = lock_seconds

    async def retry_after(self, keys: list[str]) -> int | None:
        """Seconds until every one of ``keys`` is unlocked, or None when none is locked."""
        now = self._clock.now()
        until = await self._db.read(repositories.login_locked_until, keys, now)
        return None if until is None else int(until - now) + 1

    async def failed(self, keys: list[str]) -> None:
        await self._db.write(
            repositories.record_login_failure,
            keys,
            self._clock.now(),
            window=WINDOW_SECONDS,
            max_failures=self.max_failures,
            lock_seconds=self.lock_seconds,
        )

    async def succeeded(self, keys: list[str]) -> None:
        await self._db.write(repositories.clear_login_failures, keys)
