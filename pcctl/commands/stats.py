"""``pcctl stats [--slot SLOT] [--window MIN] [--watch]``."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.text import Text

from pcctl.charts import bucket_bars, sparkline
from pcctl.client import ApiClient
from pcctl.output import Column, Mode, Output, age, iso, local_time
from pcctl.state import State, output_option, pass_state
from shared.api_models import SlotStatsList, Stats
from shared.slots import SLOT_IDS


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


def _secs(value: float | None) -> str:
    return "" if value is None else f"{value:.2f} s"


def summary_pairs(stats: Stats, plain: bool) -> list[tuple[str, Any, Any]]:
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(stats.rejected.items()))
    pairs: list[tuple[str, Any, Any]] = [
        ("window_minutes", stats.window_minutes, None),
        ("jobs", stats.jobs, None),
        ("successes", stats.successes, Text(str(stats.successes), style="green")),
        (
            "timeouts",
            stats.timeouts,
            Text(str(stats.timeouts), style="yellow" if stats.timeouts else ""),
        ),
        (
            "provider_errors",
            stats.provider_errors,
            Text(str(stats.provider_errors), style="red" if stats.provider_errors else ""),
        ),
        ("internal_errors", stats.internal_errors, None),
        ("cancelled", stats.cancelled, None),
        ("in_progress", stats.in_progress, None),
    ]
    if plain:
        pairs += [(f"rejected.{k}", v, None) for k, v in sorted(stats.rejected.items())]
    else:
        pairs.append(("rejected", sum(stats.rejected.values()), Text(rejected or "0")))
    pairs += [
        ("success_rate", stats.success_rate, Text(_pct(stats.success_rate) or "—")),
        ("timeout_rate", stats.timeout_rate, Text(_pct(stats.timeout_rate) or "—")),
        (
            "p50_duration_seconds",
            stats.p50_duration_seconds,
            Text(_secs(stats.p50_duration_seconds) or "—"),
        ),
        (
            "p95_duration_seconds",
            stats.p95_duration_seconds,
            Text(_secs(stats.p95_duration_seconds) or "—"),
        ),
        ("last_success_at", iso(stats.last_success_at), Text(age(stats.last_success_at) or "—")),
        ("last_error_reason", stats.last_error_reason, None),
        ("last_error_at", iso(stats.last_error_at), Text(age(stats.last_error_at) or "—")),
        ("storage_usage_mb", stats.storage_usage_mb, Text(f"{stats.storage_usage_mb:.1f} MB")),
    ]
    return pairs


SLOT_STATS_COLUMNS: list[Column[Stats]] = [
    Column("SLOT", lambda s: s.slot_id, no_wrap=True),
    Column("JOBS", lambda s: s.jobs, justify="right"),
    Column("OK", lambda s: s.success_rate, lambda s: Text(_pct(s.success_rate)), justify="right"),
    Column("TIMEOUTS", lambda s: s.timeouts, justify="right"),
    Column("ERRORS", lambda s: s.provider_errors + s.internal_errors, justify="right"),
    Column("REJECTED", lambda s: sum(s.rejected.values()), justify="right"),
    Column(
        "P50",
        lambda s: s.p50_duration_seconds,
        lambda s: Text(_secs(s.p50_duration_seconds)),
        justify="right",
    ),
    Column(
        "P95",
        lambda s: s.p95_duration_seconds,
        lambda s: Text(_secs(s.p95_duration_seconds)),
        justify="right",
    ),
    Column(
        "ACTIVITY",
        lambda s: ",".join(str(b.jobs + b.rejected) for b in s.buckets),
        lambda s: sparkline([b.jobs + b.rejected for b in s.buckets]),
        no_wrap=True,
    ),
    Column("LAST ERROR", lambda s: s.last_error_reason),
]


def fetch(
    client: ApiClient, slot_id: str | None, window: int
) -> tuple[Stats, SlotStatsList | None]:
    if slot_id is not None:
        return client.stats_slot(slot_id, window), None
    return client.stats_global(window), client.stats_slots(window)


def renderable(out: Output, stats: Stats, per_slot: SlotStatsList | None) -> RenderableType:
    scope = stats.slot_id or "all slots"
    title = f"Statistics — {scope}, last {stats.window_minutes} min (at {local_time(time.time())})"
    parts: list[RenderableType] = [
        out.rich_fields(summary_pairs(stats, plain=False), title),
        Text(),
        bucket_bars(stats.buckets),
    ]
    if per_slot is not None:
        busy = [s for s in per_slot.slots if s.jobs or s.rejected]
        parts += [
            Text(),
            out.rich_table(
                SLOT_STATS_COLUMNS, busy, title="Per slot", empty="no activity in any slot"
            ),
        ]
    return Group(*parts)


def print_plain(out: Output, stats: Stats, per_slot: SlotStatsList | None) -> None:
    for key, value, _ in summary_pairs(stats, plain=True):
        out.line(key, value)
    for b in stats.buckets:
        out.line(
            "bucket", iso(b.start), b.jobs, b.successes, b.timeouts, b.provider_errors, b.rejected
        )
    for s in per_slot.slots if per_slot else []:
        out.line("slot", *(column.plain(s) for column in SLOT_STATS_COLUMNS))
    sys.stdout.flush()


def json_body(stats: Stats, per_slot: SlotStatsList | None) -> Any:
    if per_slot is None:
        return stats.model_dump(mode="json")
    return {
        "global": stats.model_dump(mode="json"),
        "slots": per_slot.model_dump(mode="json")["slots"],
    }


@click.command("stats")
@click.option(
    "--slot",
    "slot_id",
    metavar="SLOT",
    shell_complete=lambda *_: list(SLOT_IDS),
    help="One slot (default: all, with a per-slot table).",
)
@click.option(
    "--window",
    type=click.IntRange(1, 44640),
    default=60,
    show_default=True,
    help="Minutes to look back.",
)
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(0.05),
    default=2.0,
    show_default=True,
    help="Seconds between refreshes with --watch.",
)
@click.option("--iterations", type=click.IntRange(1), default=None, hidden=True)
@output_option
@pass_state
def stats(
    state: State,
    slot_id: str | None,
    window: int,
    watch: bool,
    interval: float,
    iterations: int | None,
) -> None:
    """Jobs, success and timeout rates, durations, rejections; time buckets as a chart.

    \b
    --output json: the slot's Stats (with --slot), else {"global": Stats, "slots": [Stats…]};
    with --watch one JSON document per line.
    """
    out = state.out
    client = state.client()
    if not watch:
        iterations = 1
    if watch and out.mode is Mode.TABLE and out.stdout_tty:
        _watch_live(out, client, slot_id, window, interval, iterations)
        return
    count = 0
    try:
        while True:
            data = fetch(client, slot_id, window)
            if out.is_json:
                # one document per line when watching (JSON Lines), pretty otherwise
                if watch:
                    out.json_line(json_body(*data))
                else:
                    out.json(json_body(*data))
            elif out.mode is Mode.PLAIN:
                print_plain(out, *data)
            else:
                out.console.print(renderable(out, *data))
            count += 1
            if iterations is not None and count >= iterations:
                return
            time.sleep(interval)
    except KeyboardInterrupt:
        return


def _watch_live(
    out: Output,
    client: ApiClient,
    slot_id: str | None,
    window: int,
    interval: float,
    iterations: int | None,
) -> None:
    from rich.live import Live

    count = 0
    with Live(console=out.console, auto_refresh=False, transient=False) as live:
        try:
            while True:
                live.update(renderable(out, *fetch(client, slot_id, window)), refresh=True)
                count += 1
                if iterations is not None and count >= iterations:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            return
