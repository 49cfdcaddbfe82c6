"""Turn the grouped statistics rows into per-slot and global figures (pure, no I/O)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from shared.api_models import Stats, StatsBucket
from shared.slots import SLOT_IDS

BUCKETS = 12


def bucket_seconds(window_minutes: int) -> float:
    return max(60.0, window_minutes * 60 / BUCKETS)


def percentile(values: Sequence[float], point: float) -> float | None:
    """Nearest-rank percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(point / 100 * len(ordered)))
    return round(ordered[rank - 1], 4)


def build_stats(
    rows: dict[str, Any], *, since: float, window_minutes: int, slot_ids: Iterable[str | None]
) -> dict[str | None, Stats]:
    """Stats for each requested slot id; ``None`` is the global (all slots) view."""
    size = bucket_seconds(window_minutes)
    count_buckets = math.ceil(window_minutes * 60 / size)
    result: dict[str | None, Stats] = {}
    for slot_id in slot_ids:

        def mine(row_slot: str | None, wanted: str | None = slot_id) -> bool:
            return wanted is None or row_slot == wanted

        totals: dict[str, int] = defaultdict(int)
        for row in rows["counts"]:
            if mine(row.slot_id):
                for name in (
                    "jobs",
                    "successes",
                    "timeouts",
                    "provider_errors",
                    "internal_errors",
                    "cancelled",
                    "in_progress",
                ):
                    totals[name] += int(getattr(row, name) or 0)
        durations = [float(row.seconds) for row in rows["durations"] if mine(row.slot_id)]
        fallbacks: dict[str, int] = defaultdict(int)
        for row_slot, served_by, count in rows["fallbacks"]:
            if mine(row_slot):
                fallbacks[served_by or "unknown"] += int(count)
        rejected: dict[str, int] = defaultdict(int)
        for row_slot, reason, count in rows["rejected"]:
            if mine(row_slot):
                rejected[reason or "unknown"] += int(count)
        buckets = [
            StatsBucket(
                start=since + i * size,
                jobs=0,
                successes=0,
                timeouts=0,
                provider_errors=0,
                rejected=0,
            )
            for i in range(count_buckets)
        ]
        for row in rows["buckets"]:
            index = min(int(row.bucket), count_buckets - 1)  # "now" itself: the last bucket
            if mine(row.slot_id) and index >= 0:
                bucket = buckets[index]
                bucket.jobs += int(row.jobs)
                bucket.successes += int(row.successes or 0)
                bucket.timeouts += int(row.timeouts or 0)
                bucket.provider_errors += int(row.provider_errors or 0)
        for row_slot, raw_index, count in rows["rejected_buckets"]:
            index = min(int(raw_index), count_buckets - 1)
            if mine(row_slot) and index >= 0:
                buckets[index].rejected += int(count)
        successes = [at for row_slot, at in rows["last_success"] if mine(row_slot) and at]
        errors = sorted(
            ((at, reason) for row_slot, reason, at in rows["last_error"] if mine(row_slot) and at),
            reverse=True,
        )
        storage = sum(int(total or 0) for row_slot, total in rows["storage"] if mine(row_slot))
        finished = totals["jobs"] - totals["in_progress"]
        result[slot_id] = Stats(
            slot_id=slot_id,
            window_minutes=window_minutes,
            jobs=totals["jobs"],
            successes=totals["successes"],
            timeouts=totals["timeouts"],
            provider_errors=totals["provider_errors"],
            internal_errors=totals["internal_errors"],
            cancelled=totals["cancelled"],
            in_progress=totals["in_progress"],
            rejected=dict(sorted(rejected.items())),
            fallbacks_served=sum(fallbacks.values()),
            fallbacks_by_provider=dict(sorted(fallbacks.items())),
            success_rate=round(totals["successes"] / finished, 4) if finished else None,
            timeout_rate=round(totals["timeouts"] / finished, 4) if finished else None,
            p50_duration_seconds=percentile(durations, 50),
            p95_duration_seconds=percentile(durations, 95),
            last_success_at=max(successes) if successes else None,
            last_error_reason=errors[0][1] if errors else None,
            last_error_at=errors[0][0] if errors else None,
            storage_usage_mb=round(storage / (1024 * 1024), 3),
            buckets=buckets,
        )
    return result


ALL_SLOTS: tuple[str | None, ...] = (None, *SLOT_IDS)
