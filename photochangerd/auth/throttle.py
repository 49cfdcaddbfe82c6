"""Login throttling: 10 failures for a username, or from one address, lock it for 15 minutes.

In memory, per instance (a restart forgets; several instances each count their own — the
lock is a brake on guessing, not an audit log).  Bounded: old entries are pruned.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

MAX_FAILURES = 10
LOCK_SECONDS = 15 * 60
MAX_TRACKED = 10_000


@dataclass(slots=True)
class _Entry:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0


class LoginThrottle:
    def __init__(
        self, max_failures: int = MAX_FAILURES, lock_seconds: float = LOCK_SECONDS
    ) -> None:
        self.max_failures = max_failures
        self.lock_seconds = lock_seconds
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def _entry(self, key: str) -> _Entry:
        entry = self._entries.pop(key, None) or _Entry()
        self._entries[key] = entry
        while len(self._entries) > MAX_TRACKED:
            self._entries.popitem(last=False)
        return entry

    def retry_after(self, keys: list[str], now: float | None = None) -> int | None:
        """Seconds until any of ``keys`` unlocks, or None when none is locked."""
        now = time.monotonic() if now is None else now
        waits = [
            entry.locked_until - now
            for key in keys
            if (entry := self._entries.get(key)) is not None and entry.locked_until > now
        ]
        return int(max(waits)) + 1 if waits else None

    def failed(self, keys: list[str], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key in keys:
            entry = self._entry(key)
            entry.failures = [t for t in entry.failures if now - t < self.lock_seconds]
            entry.failures.append(now)
            if len(entry.failures) >= self.max_failures:
                entry.locked_until = now + self.lock_seconds
                entry.failures.clear()

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._entries.pop(key, None)
