"""Ingest password pacing counted in the database (the ledger ``IngestPasswordChecker`` uses in
the daemon; ``MemoryPaceLedger`` is the in-process one of the unit tests).

An address that sent ``FREE_FAILURES`` new wrong passwords within 15 minutes gets one KDF run
per second: in the database, every instance sharing it counts the same failures and takes its
turns from the same queue (``ingest_pace.next_run``, row-locked on PostgreSQL), so N instances
do not give a guesser N runs per second.  Only new candidates reach it: a known password, right
or wrong, is answered from memory without a KDF or a query.  Wall-clock time: the clock every
instance shares.
"""

from __future__ import annotations

import trio

from photochangerd.auth.passwords import (
    FAILURE_WINDOW,
    FREE_FAILURES,
    MAX_PACED_WAIT,
    PACED_INTERVAL,
    PacedOut,
)
from photochangerd.clock import WallClock
from photochangerd.db import repositories
from photochangerd.db.engine import Database


class DatabasePaceLedger:
    def __init__(self, db: Database, clock: WallClock) -> None:
        self._db = db
        self._clock = clock

    async def paced(self, address: str, pending: int = 0) -> bool:
        since = self._clock.now() - FAILURE_WINDOW
        count = await self._db.read(repositories.ingest_failures_since, address, since)
        return count + pending >= FREE_FAILURES

    async def wait_turn(self, address: str) -> None:
        start = await self._db.write(
            repositories.reserve_ingest_turn,
            address,
            self._clock.now(),
            PACED_INTERVAL,
            MAX_PACED_WAIT,
        )
        if start is None:
            raise PacedOut(address)
        await trio.sleep(max(0.0, start - self._clock.now()))

    async def failed(self, address: str) -> None:
        await self._db.write(repositories.add_ingest_failure, address, self._clock.now())
