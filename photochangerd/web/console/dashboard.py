"""``/admin/``: the 15 slots at a glance."""

from __future__ import annotations

from quart import Response

from photochangerd.db import repositories
from photochangerd.http.context import ctx
from photochangerd.web.console import bp, page


@bp.get("/")
async def dashboard() -> Response:
    slots = await ctx().db.read(repositories.list_slots)
    return await page("dashboard.html", slots=slots)
