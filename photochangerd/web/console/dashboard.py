"""``/admin/``: the 15 slots at a glance — what each runs, whether it is on, its last result,
today's figures, its ingest URL, and a missing provider key."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from quart import Response

from photochangerd.db import repositories
from photochangerd.domain.stats import bucket_seconds, build_stats
from photochangerd.http.context import AdminHandles, admin
from photochangerd.web.console import bp, page
from photochangerd.web.console.slots import key_states, missing_key, result_available, when
from shared.api_models import Stats
from shared.slots import SLOT_IDS


def start_of_today(now: float) -> float:
    """Local midnight (the server's time zone) before ``now``."""
    local = datetime.fromtimestamp(now).astimezone()
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


async def stats_today(app: AdminHandles) -> dict[str | None, Stats]:
    """Per-slot figures since local midnight: the statistics of ``GET /api/stats/slots``."""
    now = app.clock.now()
    since = start_of_today(now)
    window_minutes = max(1, math.ceil((now - since) / 60))
    rows = await app.db.read(repositories.stats_rows, since, bucket_seconds(window_minutes))
    return build_stats(rows, since=since, window_minutes=window_minutes, slot_ids=SLOT_IDS)


@bp.get("/")
async def dashboard() -> Response:
    app = admin()
    slots = await app.db.read(repositories.list_slots)
    last = await app.db.read(repositories.last_job_per_slot)
    stats = await stats_today(app)
    keys = await key_states(app)
    base = app.config.effective_public_base_url
    cards: list[dict[str, Any]] = []
    for slot in slots:
        job = last.get(slot.id)
        figures = stats.get(slot.id)
        cards.append(
            {
                "id": slot.id,
                "display_name": slot.display_name,
                "provider": slot.provider,
                "operation": slot.operation,
                "is_active": slot.is_active,
                "thumb": job.id if job is not None and result_available(app, job) else None,
                "last_status": (
                    None
                    if job is None
                    else (job.failure_reason or "done")
                    if job.is_finalized
                    else "processing"
                ),
                "last_when": when(job.created_at) if job is not None else "",
                "successes": figures.successes if figures else 0,
                "timeouts": figures.timeouts if figures else 0,
                "errors": (figures.provider_errors + figures.internal_errors) if figures else 0,
                "ingest_url": f"{base}/ingest/{slot.id}",
                "key_missing": missing_key(slot.provider, keys),
            }
        )
    return await page("dashboard.html", slots=cards)
