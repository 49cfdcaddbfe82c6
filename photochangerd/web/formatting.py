"""Small text formatters for the console's templates (passed to them as ``fmt``).

Times are epoch seconds from the API's models, shown in the server's local time (the booths,
the server and the people running an event are in one place) with a UTC ISO-8601 value for
``<time datetime=…>``.  Every function returns plain text: Jinja2 escapes it like any value.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

NOTHING = "—"


def iso(ts: float | None) -> str:
    """``2025-09-18T17:45:12Z`` (for ``datetime`` attributes); empty for None."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local(ts: float | None) -> str:
    """``2025-09-18 19:45:12`` in the server's time zone; ``—`` for None."""
    if ts is None:
        return NOTHING
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def clock(ts: float | None) -> str:
    """``19:45:12`` in the server's time zone; ``—`` for None."""
    if ts is None:
        return NOTHING
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def ago(ts: float | None, now: float | None = None) -> str:
    """``just now``, ``5 min ago``, ``3 h ago``, ``2 d ago``; ``in 4 h`` for the future."""
    if ts is None:
        return NOTHING
    delta = (time.time() if now is None else now) - ts
    future = delta < 0
    delta = abs(delta)
    if delta < 45:
        return "just now" if not future else "in a few seconds"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if delta >= size or unit == "min":
            amount = max(1, round(delta / size))
            return f"in {amount} {unit}" if future else f"{amount} {unit} ago"
    return NOTHING  # pragma: no cover - the loop always returns


def seconds(value: float | None) -> str:
    """``1.23 s``; ``—`` for None."""
    return NOTHING if value is None else f"{value:.2f} s"


def percent(value: float | None) -> str:
    """A 0–1 ratio as ``97.5 %``; ``—`` for None."""
    return NOTHING if value is None else f"{value * 100:.1f} %"


def size(value: float | None) -> str:
    """Bytes as ``512 B``, ``1.5 KiB``, ``3.2 MiB``; ``—`` for None."""
    if value is None:
        return NOTHING
    amount = float(value)
    for unit in ("B", "KiB", "MiB"):
        if amount < 1024 or unit == "MiB":
            return f"{int(amount)} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return NOTHING  # pragma: no cover


def window(minutes: int) -> str:
    """``60`` → ``1 h``, ``1440`` → ``24 h``, ``10080`` → ``7 d``, ``5`` → ``5 min``."""
    if minutes % 1440 == 0 and minutes > 1440:
        return f"{minutes // 1440} d"
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"
