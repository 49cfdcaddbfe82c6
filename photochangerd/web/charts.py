"""Charts as inline SVG, rendered on the server (no JavaScript, no inline styles).

The Content-Security-Policy (``style-src 'self'``) forbids ``style`` attributes, so shapes
carry SVG presentation attributes (``fill``, ``stroke``) for their colours and a class the
stylesheet may refine (dark mode).  Every chart has a ``<title>`` and ``<desc>`` named by
``aria-labelledby``, one ``<title>`` per bar or point (a tooltip with its value), and the page
shows the same numbers in a table (:meth:`Chart.rows`).  Every text — labels, names, titles — is
escaped here; the result is :class:`markupsafe.Markup` so the template inserts it as is.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 10, 12, 30  # room for the axes' labels
MAX_X_LABELS = 6
_KEY = re.compile(r"[a-z0-9-]{1,32}")


@dataclass(frozen=True, slots=True)
class Series:
    """One named row of values, one per label.  ``key`` names its CSS class (``bar-<key>``,
    ``line-<key>``); ``colour`` is its presentation attribute (the default look)."""

    key: str
    name: str
    values: tuple[float, ...]
    colour: str

    def __post_init__(self) -> None:
        if not _KEY.fullmatch(self.key):
            raise ValueError(f"series key must match {_KEY.pattern}: {self.key!r}")


@dataclass(frozen=True, slots=True)
class Chart:
    """``series`` over ``labels`` (time buckets): stacked bars or lines."""

    chart_id: str
    title: str
    labels: tuple[str, ...]
    series: tuple[Series, ...]
    kind: Literal["bars", "lines"] = "bars"
    description: str = ""
    empty_text: str = "No data in this window"

    def __post_init__(self) -> None:
        if not _KEY.fullmatch(self.chart_id):
            raise ValueError(f"chart id must match {_KEY.pattern}: {self.chart_id!r}")
        for series in self.series:
            if len(series.values) != len(self.labels):
                raise ValueError(f"series {series.key!r}: one value per label")

    @property
    def is_empty(self) -> bool:
        return not any(value for series in self.series for value in series.values)

    def rows(self) -> list[tuple[str, list[float]]]:
        """The data table: one row per label, one column per series."""
        return [
            (label, [series.values[i] for series in self.series])
            for i, label in enumerate(self.labels)
        ]

    def top(self) -> float:
        """The largest value the y axis must reach (stacked bars: the largest sum)."""
        if not self.labels:
            return 0.0
        if self.kind == "bars":
            return max(sum(s.values[i] for s in self.series) for i in range(len(self.labels)))
        return max((v for s in self.series for v in s.values), default=0.0)


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round y-axis ticks from 0 to at least ``top``: steps of 1, 2 or 5 × 10ⁿ (whole numbers
    for counts of at most a few), about ``count`` of them.  ``top`` ≤ 0 gives ``[0, 1]``."""
    if not math.isfinite(top) or top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    if top >= 1:
        step = max(step, 1.0)
    ticks = [0.0]
    while ticks[-1] < top - 1e-9:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def number(value: float) -> str:
    """``3`` for whole numbers, ``2.5`` otherwise."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _label_step(count: int) -> int:
    return max(1, math.ceil(count / MAX_X_LABELS))


def render(chart: Chart) -> Markup:
    """The chart as one ``<svg>`` element (responsive: a ``viewBox``, no fixed size)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    ticks = nice_ticks(chart.top())
    scale = plot_h / ticks[-1]
    base_y = TOP + plot_h
    cid = chart.chart_id
    description = chart.description or _describe(chart)
    parts = [
        f'<svg class="chart chart-{chart.kind}" id="{cid}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-labelledby="{cid}-title {cid}-desc" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{cid}-title">{escape(chart.title)}</title>',
        f'<desc id="{cid}-desc">{escape(description)}</desc>',
        '<g class="axis y-axis">',
    ]
    for tick in ticks:
        y = _fmt(base_y - tick * scale)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" '
            f'stroke="#d9dde3" stroke-width="1"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{y}" text-anchor="end" '
            f'dominant-baseline="middle" font-size="12" fill="#5b6470">{number(tick)}</text>'
        )
    parts.append("</g>")
    count = len(chart.labels)
    band = plot_w / count if count else plot_w
    parts.append('<g class="axis x-axis">')
    step = _label_step(count)
    for i, label in enumerate(chart.labels):
        if i % step:
            continue
        x = _fmt(LEFT + band * i + (band / 2 if chart.kind == "bars" else 0))
        anchor = "start" if chart.kind == "lines" and i == 0 else "middle"
        parts.append(
            f'<text class="tick" x="{x}" y="{HEIGHT - 10}" text-anchor="{anchor}" '
            f'font-size="12" fill="#5b6470">{escape(label)}</text>'
        )
    parts.append(
        f'<line class="baseline" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base_y}" y2="{base_y}" '
        f'stroke="#5b6470" stroke-width="1"/></g>'
    )
    if chart.is_empty:
        parts.append(
            f'<text class="empty" x="{_fmt(LEFT + plot_w / 2)}" y="{_fmt(TOP + plot_h / 2)}" '
            f'text-anchor="middle" font-size="14" fill="#5b6470">'
            f"{escape(chart.empty_text)}</text>"
        )
    elif chart.kind == "bars":
        parts += _bars(chart, band, scale, base_y)
    else:
        parts += _lines(chart, plot_w, scale, base_y)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above went through escape()


def _bars(chart: Chart, band: float, scale: float, base_y: float) -> list[str]:
    parts: list[str] = []
    bar_w = _fmt(max(1.0, band * 0.7))
    for i, label in enumerate(chart.labels):
        x = _fmt(LEFT + band * i + band * 0.15)
        y = base_y
        for series in chart.series:
            value = series.values[i]
            if value <= 0:
                continue
            height = value * scale
            y -= height
            tip = f"{label}: {number(value)} {series.name}"
            parts.append(
                f'<rect class="bar bar-{series.key}" x="{x}" y="{_fmt(y)}" width="{bar_w}" '
                f'height="{_fmt(height)}" fill="{escape(series.colour)}">'
                f"<title>{escape(tip)}</title></rect>"
            )
    return parts


def _lines(chart: Chart, plot_w: float, scale: float, base_y: float) -> list[str]:
    count = len(chart.labels)
    gap = plot_w / (count - 1) if count > 1 else 0.0
    parts: list[str] = []
    for series in chart.series:
        points = [
            (LEFT + gap * i if count > 1 else LEFT + plot_w / 2, base_y - value * scale)
            for i, value in enumerate(series.values)
        ]
        colour = escape(series.colour)
        coords = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in points)
        parts.append(
            f'<g class="line line-{series.key}">'
            f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2" '
            f'stroke-linejoin="round"/>'
        )
        for (x, y), label, value in zip(points, chart.labels, series.values, strict=True):
            tip = f"{label}: {number(value)} {series.name}"
            parts.append(
                f'<circle class="point" cx="{_fmt(x)}" cy="{_fmt(y)}" r="3" fill="{colour}">'
                f"<title>{escape(tip)}</title></circle>"
            )
        parts.append("</g>")
    return parts


def _describe(chart: Chart) -> str:
    totals = ", ".join(f"{s.name}: {number(sum(s.values))}" for s in chart.series)
    if not chart.labels:
        return chart.empty_text
    span = f"from {chart.labels[0]} to {chart.labels[-1]}"
    return f"{len(chart.labels)} intervals {span}; totals — {totals or 'none'}."


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")
