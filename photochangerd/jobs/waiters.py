"""In-process completion waiters: the worker wakes the waiting request the moment it finalizes.

No polling in the single-instance path: :meth:`WaiterRegistry.resolve` sets a ``trio.Event``.
Jobs finished by another instance (shared PostgreSQL) are detected by the waiter's slow DB poll.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from photochangerd.domain.models import Outcome


@dataclass(slots=True)
class Waiter:
    event: trio.Event = field(default_factory=trio.Event)
    outcome: Outcome | None = None


class WaiterRegistry:
    def __init__(self) -> None:
        self._waiters: dict[str, Waiter] = {}

    def register(self, job_id: str) -> Waiter:
        waiter = Waiter()
        self._waiters[job_id] = waiter
        return waiter

    def discard(self, job_id: str) -> None:
        self._waiters.pop(job_id, None)

    def resolve(self, job_id: str, outcome: Outcome) -> None:
        """Hand ``outcome`` to the request waiting for ``job_id``, if it is in this process."""
        waiter = self._waiters.pop(job_id, None)
        if waiter is not None:
            waiter.outcome = outcome
            waiter.event.set()

    def __len__(self) -> int:
        return len(self._waiters)
