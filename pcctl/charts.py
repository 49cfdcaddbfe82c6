"""Small terminal charts of the statistics' time buckets."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich.table import Table
from rich.text import Text

from shared.api_models import StatsBucket

SPARKS = "▁▂▃▄▅▆▇█"
BAR_WIDTH = 40


def sparkline(values: Sequence[int]) -> Text:
    """One character per value, scaled to the largest; ``·`` for zero."""
    top = max(values, default=0)
    text = Text()
    for value in values:
        if value <= 0 or top <= 0:
            text.append("·", style="dim")
        else:
            index = min(len(SPARKS) - 1, (value * len(SPARKS) - 1) // top)
            text.append(SPARKS[index], style="cyan")
    return text


def bucket_bars(buckets: Sequence[StatsBucket], width: int = BAR_WIDTH) -> Table:
    """A horizontal stacked bar per bucket: successes, timeouts, provider errors, rejected
    (other outcomes — internal errors, cancelled, in progress — are the uncoloured rest)."""
    top = max((max(b.jobs, 1) + b.rejected for b in buckets), default=1)
    table = Table(
        title="Activity  [green]█ ok[/] [yellow]█ timeout[/] [red]█ provider error[/] "
        "[magenta]█ rejected[/] [white]█ other[/]",
        title_justify="left",
        show_header=True,
        header_style="bold",
        box=None,
        pad_edge=False,
    )
    table.add_column("FROM", no_wrap=True)
    table.add_column("JOBS", justify="right")
    table.add_column("", no_wrap=True)
    for bucket in buckets:
        other = max(0, bucket.jobs - bucket.successes - bucket.timeouts - bucket.provider_errors)
        bar = Text()
        for count, style in (
            (bucket.successes, "green"),
            (bucket.timeouts, "yellow"),
            (bucket.provider_errors, "red"),
            (bucket.rejected, "magenta"),
            (other, "white"),
        ):
            if count:
                bar.append("█" * max(1, round(count * width / top)), style=style)
        total = bucket.jobs + bucket.rejected
        table.add_row(
            datetime.fromtimestamp(bucket.start).strftime("%H:%M"),
            str(total) if total else Text("·", style="dim"),
            bar,
        )
    return table
