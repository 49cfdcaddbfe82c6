"""Back-pressure: bounded unfinished ingests, globally and per slot, checked before enqueueing.

Over a bound the request is answered 429 with ``Retry-After`` at once; under it the request
waits in the queue within its own deadline (a busy slot is not an error).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class Overloaded(Exception):
    """A bound is reached; ``scope`` says which (``global`` or the slot id)."""

    def __init__(self, scope: str) -> None:
        super().__init__(scope)
        self.scope = scope


class Admission:
    def __init__(self, max_in_flight: int, max_per_slot: int) -> None:
        self.max_in_flight = max_in_flight
        self.max_per_slot = max_per_slot
        self._per_slot: Counter[str] = Counter()
        self.in_flight = 0

    @contextmanager
    def admit(self, slot_id: str) -> Iterator[None]:
        """Hold one place for the duration of the ``with`` block, or raise :class:`Overloaded`."""
        if self.in_flight >= self.max_in_flight:
            raise Overloaded("global")
        if self._per_slot[slot_id] >= self.max_per_slot:
            raise Overloaded(slot_id)
        self.in_flight += 1
        self._per_slot[slot_id] += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._per_slot[slot_id] -= 1
            if not self._per_slot[slot_id]:
                del self._per_slot[slot_id]
