"""How many calls to one vendor may be in flight: the operator's optional cap.

By default there is no cap of a provider's own: admission (``max_in_flight``) already bounds the
jobs this instance runs, and a vendor that takes 20 s per photo must not turn 30 booths into
waves of 10 with the last wave answered 504 (measured with the former default of 10).  An
operator who has to respect a vendor's rate limit sets ``provider_concurrency``; jobs over it
wait here, within their own deadline, and a job whose deadline passes while it waits records
that (:class:`GateWait`), so an admin can tell a capped provider from a slow one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio


@dataclass(slots=True)
class GateWait:
    """How long a job waited for a provider slot (``since`` None: it never had to wait)."""

    provider: str = ""
    since: float | None = None  # Trio clock: when it started waiting
    until: float | None = None  # when it got the slot (None: still waiting)
    in_flight: int = 0
    capacity: int = 0
    setting: str = "provider_concurrency"  # the setting that sets ``capacity``

    def describe(self, now: float) -> str | None:
        """The timeout's details when the job had to wait for a slot, else None.

        A job that waited most of its deadline for a slot and then ran out of time in the
        vendor's call timed out because of the cap as much as one still waiting.
        """
        if self.since is None:
            return None
        calls = "call" if self.in_flight == 1 else "calls"
        why = f"({self.in_flight} {calls} in flight, {self.setting} = {self.capacity})"
        if self.until is None:
            return f"waited {now - self.since:.1f} s for a {self.provider} slot {why}"
        return (
            f"deadline reached after waiting {self.until - self.since:.1f} s "
            f"for a {self.provider} slot {why}"
        )


class ProviderGate:
    """A :class:`trio.CapacityLimiter` per provider that says who waited for it."""

    def __init__(self, provider: str, capacity: int, setting: str = "provider_concurrency") -> None:
        self.provider = provider
        self.setting = setting
        self._limiter = trio.CapacityLimiter(capacity)

    @property
    def in_flight(self) -> int:
        return int(self._limiter.borrowed_tokens)

    @asynccontextmanager
    async def slot(self, wait: GateWait) -> AsyncIterator[None]:
        """Hold one of the provider's slots; ``wait`` records how long this job waited for it
        (read for the job's failure details when its deadline passes)."""
        if self._limiter.available_tokens == 0:
            wait.provider = self.provider
            wait.since = trio.current_time()
            wait.in_flight = self.in_flight
            wait.capacity = int(self._limiter.total_tokens)
            wait.setting = self.setting
        await self._limiter.acquire()
        if wait.since is not None:
            wait.until = trio.current_time()
        try:
            yield
        finally:
            self._limiter.release()
