"""What an ingest reads before it takes a photo: its slot, its template bindings and the global
settings.

Every upload needs both (the slot's provider and size limit, the deadline, the ingest password
hash).  Read from the database each time they cost a transaction and a thread hop on the
critical path — measured ≈ 2.5 ms of a 52 KB ingest under load.

With SQLite this daemon is the only writer, so an in-memory copy is exact: every repository
operation that changes slots or settings is marked ``@config_write`` and bumps
:attr:`Database.config_generation` when it commits, and an entry read under an older
generation is not used.  Whoever edits the database by hand sends SIGHUP (``systemctl
reload``), which bumps it too.  With PostgreSQL other instances write too (an ingest password
rotated on one must hold on the very next upload to any of them): their changes are announced
by a notification sent at commit (:mod:`photochangerd.db.notify`) that bumps the generation,
and the copy is used only while that notification channel is up
(:attr:`Database.config_trusted`); otherwise each ingest reads the rows.  The one window left
is the notification's own delivery (about a millisecond after the other instance's commit).
"""

from __future__ import annotations

from typing import Any

from photochangerd.db import repositories
from photochangerd.db.engine import Database
from photochangerd.domain.models import Slot, TemplateBinding

MAX_ENTRIES = 64  # slot ids are validated before; this only bounds a surprise


Context = tuple[Slot | None, dict[str, Any], tuple[TemplateBinding, ...]]


class IngestContext:
    def __init__(self, db: Database, *, cached: bool) -> None:
        self._db = db
        self._cached = cached
        self._entries: dict[str, tuple[int, Context]] = {}

    async def load(self, slot_id: str) -> Context:
        """The slot (None when unknown), the settings and the slot's template bindings; callers
        must not modify them."""
        if not self._cached or not self._db.config_trusted:
            return await self._db.read(repositories.load_ingest_context, slot_id)
        generation = self._db.config_generation
        entry = self._entries.get(slot_id)
        if entry is not None and entry[0] == generation:
            return entry[1]
        context = await self._db.read(repositories.load_ingest_context, slot_id)
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        # Stored under the generation seen *before* the read: a change committed meanwhile
        # makes the entry stale at once.
        self._entries[slot_id] = (generation, context)
        return context
