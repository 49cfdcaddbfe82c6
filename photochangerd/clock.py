"""Wall-clock time and its bridge to Trio's clock.

Stored timestamps (created_at, deadline, result_expires_at) are Unix epoch seconds; deadlines
*enforced* in-process are Trio times.  :meth:`WallClock.to_trio` is the one place converting
between them.  Tests shift :attr:`WallClock.offset` to simulate days passing (result expiry)
without touching the Trio clock.
"""

from __future__ import annotations

import time

import trio


class WallClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def to_trio(self, wall: float) -> float:
        """The Trio time at which wall-clock ``wall`` happens (for ``trio.move_on_at``)."""
        return trio.current_time() + (wall - self.now())
