"""``/admin/stats``: the numbers of ``GET /api/stats/…`` for a window and one or all slots, the
time buckets as server-rendered SVG charts (:mod:`photochangerd.web.charts`), rejected uploads
by reason, and (all slots) a per-slot table."""

from __future__ import annotations

from datetime import datetime

from quart import Response, request

from photochangerd.domain.stats import bucket_seconds
from photochangerd.http.admin.jobs import _stats
from photochangerd.http.context import admin
from photochangerd.web import formatting
from photochangerd.web.charts import Chart, Series, number, render
from photochangerd.web.console import bp, page
from shared.api_models import Stats
from shared.slots import SLOT_IDS, is_slot_id

WINDOWS = (60, 360, 1440, 10080)  # minutes: 1 h, 6 h, 24 h, 7 d
DEFAULT_WINDOW = 60

COLOURS = {
    "ok": "#1a7f37",
    "timeout": "#bf8700",
    "error": "#cf222e",
    "other": "#8c959f",
    "rejected": "#8250df",
}


def bucket_label(start: float, window_minutes: int) -> str:
    """``14:05`` within a day, ``Mon 14:00`` for longer windows (server local time)."""
    moment = datetime.fromtimestamp(start)
    return moment.strftime("%H:%M" if window_minutes <= 1440 else "%a %H:%M")


def charts(stats: Stats) -> list[Chart]:
    """Outcomes per bucket (stacked bars) and the problems over time (lines)."""
    window = stats.window_minutes
    buckets = stats.buckets
    labels = tuple(bucket_label(b.start, window) for b in buckets)
    per = formatting.window(round(bucket_seconds(window) / 60))
    scope = stats.slot_id or "all slots"

    def values(name: str) -> tuple[float, ...]:
        return tuple(float(getattr(b, name)) for b in buckets)

    other = tuple(
        float(max(0, b.jobs - b.successes - b.timeouts - b.provider_errors)) for b in buckets
    )
    outcomes = Chart(
        chart_id="chart-outcomes",
        title=f"Jobs per {per}, {scope}",
        labels=labels,
        series=(
            Series("ok", "successes", values("successes"), COLOURS["ok"]),
            Series("timeout", "timeouts", values("timeouts"), COLOURS["timeout"]),
            Series("error", "provider errors", values("provider_errors"), COLOURS["error"]),
            Series("other", "other (internal errors, cancelled, running)", other, COLOURS["other"]),
        ),
        kind="bars",
        empty_text="No jobs in this window",
    )
    problems = Chart(
        chart_id="chart-problems",
        title=f"Timeouts, provider errors and rejected uploads per {per}, {scope}",
        labels=labels,
        series=(
            Series("timeout", "timeouts", values("timeouts"), COLOURS["timeout"]),
            Series("error", "provider errors", values("provider_errors"), COLOURS["error"]),
            Series("rejected", "rejected uploads", values("rejected"), COLOURS["rejected"]),
        ),
        kind="lines",
        empty_text="No timeouts, errors or rejections in this window",
    )
    return [outcomes, problems]


@bp.get("/stats")
async def stats_page() -> Response:
    errors: dict[str, str] = {}
    raw_window = request.args.get("window", str(DEFAULT_WINDOW))
    window = int(raw_window) if raw_window.isdigit() else -1
    if window not in WINDOWS:
        errors["window"] = "choose one of " + ", ".join(formatting.window(w) for w in WINDOWS)
        window = DEFAULT_WINDOW
    slot_id: str | None = request.args.get("slot", "") or None
    if slot_id is not None and not is_slot_id(slot_id):
        errors["slot"] = f"no such slot: choose all or one of {SLOT_IDS[0]} … {SLOT_IDS[-1]}"
        slot_id = None
    everything = await _stats(window)  # what GET /api/stats/global, /slots and /<slot> answer
    stats = everything[slot_id]
    per_slot = [everything[s] for s in SLOT_IDS] if slot_id is None else []
    return await page(
        "stats.html",
        status=400 if errors else 200,
        errors=errors,
        stats=stats,
        charts=charts(stats),
        per_slot=per_slot,
        windows=[(w, formatting.window(w)) for w in WINDOWS],
        window=window,
        slot_id=slot_id,
        slot_ids=SLOT_IDS,
        render_chart=render,
        number=number,
        fmt=formatting,
        now=admin().clock.now(),
    )
