"""The processing log: one row per ingest attempt (rejections included), written in batches.

Request handlers call :meth:`ActivityLog.record` (never blocks, never fails the request); a
task in the root nursery flushes batches to the database, a quarter of a second after the first
entry of a batch arrived (idle, it sleeps: no timer ticks).  The buffer is bounded: when the
database is down and it fills, new entries are dropped and counted rather than growing memory.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from photochangerd.db import repositories
from photochangerd.db.engine import Database, DatabaseUnavailable
from photochangerd.logs import event
from photochangerd.metrics import Metrics

log = logging.getLogger("photochangerd.activity")

BUFFER = 10_000
BATCH = 500


class ActivityLog:
    def __init__(self, db: Database, metrics: Metrics | None = None) -> None:
        self._db = db
        self._metrics = metrics
        self._send, self._receive = trio.open_memory_channel[dict[str, Any]](BUFFER)
        self._arrived = trio.Event()
        self.dropped = 0

    def record(
        self,
        *,
        created_at: float,
        slot_id: str | None,
        job_id: str | None,
        source: str,
        status_code: int,
        failure_reason: str | None,
        duration_ms: float,
    ) -> None:
        entry = {
            "created_at": created_at,
            "slot_id": slot_id,
            "job_id": job_id,
            "source": source,
            "status_code": status_code,
            "failure_reason": failure_reason,
            "duration_ms": round(duration_ms, 3),
        }
        if self._metrics is not None:
            self._metrics.ingests.labels(
                slot=slot_id or "unknown", status=str(status_code), reason=failure_reason or ""
            ).inc()
        try:
            self._send.send_nowait(entry)
        except trio.WouldBlock:
            self.dropped += 1
        self._arrived.set()

    async def run(self, flush_interval: float = 0.25) -> None:
        """Flush forever; on cancellation the caller runs :meth:`flush` under a shield."""
        while True:
            await self._arrived.wait()
            await trio.sleep(flush_interval)
            self._arrived = trio.Event()
            await self.flush()
            if self._receive.statistics().current_buffer_used:  # more than one batch
                self._arrived.set()

    async def flush(self) -> None:
        batch: list[dict[str, Any]] = []
        while len(batch) < BATCH:
            try:
                batch.append(self._receive.receive_nowait())
            except trio.WouldBlock:
                break
        if not batch:
            return
        try:
            await self._db.write(repositories.insert_processing_log, batch)
        except Exception as exc:  # statistics must never fail or block the ingest path
            self.dropped += len(batch)
            if isinstance(exc, DatabaseUnavailable):
                event(
                    log,
                    logging.WARNING,
                    "activity.dropped",
                    count=len(batch),
                    reason="database_unavailable",
                )
            else:
                log.exception("activity.flush_failed")
