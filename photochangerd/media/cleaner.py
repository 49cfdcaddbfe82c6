"""The cleaner: deletes expired results (their links then answer 410) and orphaned files.

Expired results, thumbnails and provider-media are deleted wherever they live (the media dir or
the bucket); a row is cleared only after its object is gone, so an unreachable bucket only
postpones the work to the next round.  The orphan scan covers the local directories; orphans in
a bucket (a crash between the PUT and the row) are left to the bucket's own lifecycle rule
(README, "PostgreSQL and scaling out").

Orphans are files no database row points at: a crash between writing a file and committing its
row, an interrupted atomic write (``.tmp``), an abandoned upload spool.  Only files older than
:data:`ORPHAN_AGE` are touched, so a write in progress (in this or another instance sharing the
media directory) is never removed under its writer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from photochangerd.auth.passwords import FAILURE_WINDOW
from photochangerd.auth.throttle import WINDOW_SECONDS as THROTTLE_WINDOW
from photochangerd.clock import WallClock
from photochangerd.db import repositories
from photochangerd.db.engine import Database, DatabaseUnavailable
from photochangerd.logs import event
from photochangerd.media.objects import ObjectStoreUnavailable
from photochangerd.media.store import TMP_SUFFIX, MediaStore
from photochangerd.metrics import Metrics

log = logging.getLogger("photochangerd.cleaner")

ORPHAN_AGE = 600.0
BATCH = 500


@dataclass(frozen=True, slots=True)
class CleanupReport:
    expired_results: int
    orphan_files: int
    expired_media: int = 0


class Cleaner:
    def __init__(
        self, db: Database, store: MediaStore, clock: WallClock, metrics: Metrics | None = None
    ) -> None:
        self.metrics = metrics
        self.db = db
        self.store = store
        self.clock = clock

    async def delete_expired_results(self, slot_id: str | None = None) -> int:
        total = 0
        while True:
            expired = await self.db.read(
                repositories.expired_results, self.clock.now(), BATCH, slot_id
            )
            if not expired:
                return total
            await self.store.delete(*(path for _, path in expired))
            await self.store.delete(*(self.store.thumbnail_ref(job_id) for job_id, _ in expired))
            await self.db.write(repositories.clear_result_paths, [job_id for job_id, _ in expired])
            total += len(expired)

    async def delete_expired_media(self) -> int:
        """Temporary provider media past its deadline: file deleted, row marked cleaned."""
        total = 0
        while True:
            expired = await self.db.read(
                repositories.expired_media_objects, self.clock.now(), BATCH
            )
            if not expired:
                return total
            await self.store.delete(*(path for _, path in expired))
            await self.db.write(
                repositories.mark_media_cleaned,
                [media_id for media_id, _ in expired],
                self.clock.now(),
            )
            total += len(expired)

    async def delete_orphans(self, min_age: float = ORPHAN_AGE) -> int:
        known = await self.db.read(repositories.known_media_paths)
        directories = (self.store.results, self.store.temp, self.store.spool)

        def work() -> int:
            cutoff = time.time() - min_age
            removed = 0
            for directory in directories:
                for path in directory.iterdir() if directory.is_dir() else ():
                    try:
                        if (
                            path.is_file()
                            and str(path) not in known
                            and path.stat().st_mtime < cutoff
                        ):
                            path.unlink()
                            removed += 1
                    except FileNotFoundError:
                        continue
            # Thumbnails are made on request and have no row: only their interrupted writes.
            thumbs = self.store.thumbs
            for path in thumbs.iterdir() if thumbs.is_dir() else ():
                try:
                    if path.name.endswith(TMP_SUFFIX) and path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
            return removed

        return await trio.to_thread.run_sync(work)

    async def run_once(self, slot_id: str | None = None) -> CleanupReport:
        expired = await self.delete_expired_results(slot_id)
        media = 0 if slot_id else await self.delete_expired_media()
        orphans = 0 if slot_id else await self.delete_orphans()
        if slot_id is None:  # signed-out tokens past their own expiry; old sign-in failures
            await self.db.write(repositories.delete_expired_revocations, self.clock.now())
            await self.db.write(
                repositories.prune_login_throttle, self.clock.now(), THROTTLE_WINDOW
            )
            await self.db.write(repositories.prune_ingest_pacing, self.clock.now(), FAILURE_WINDOW)
        if expired or orphans or media:
            event(
                log,
                logging.INFO,
                "cleanup.done",
                expired_results=expired,
                expired_media=media,
                orphan_files=orphans,
                slot_id=slot_id,
            )
        if self.metrics is not None:
            self.metrics.cleanup.labels(kind="expired_result").inc(expired)
            self.metrics.cleanup.labels(kind="expired_media").inc(media)
            self.metrics.cleanup.labels(kind="orphan").inc(orphans)
        return CleanupReport(expired, orphans, media)

    async def run(self, interval: float) -> None:
        """Clean now and then every ``interval`` seconds, forever."""
        while True:
            try:
                await self.run_once()
            except DatabaseUnavailable:
                event(log, logging.WARNING, "cleanup.db_unavailable")
            except ObjectStoreUnavailable as exc:  # rows kept: the next round deletes them
                event(log, logging.WARNING, "cleanup.object_store_unavailable", problem=str(exc))
            except Exception:  # maintenance must not take the daemon down; retried next round
                log.exception("cleanup.failed")
            await trio.sleep(interval)


def startup_leftovers(store: MediaStore) -> list[Path]:
    """Files a single instance finds at start-up that no live writer can own: upload spools
    and interrupted atomic writes (``.tmp``)."""
    found = [p for p in store.spool.iterdir() if p.is_file()]
    for directory in (store.results, store.temp, store.templates, store.thumbs):
        if directory.is_dir():
            found += [p for p in directory.iterdir() if p.name.endswith(TMP_SUFFIX)]
    return found
