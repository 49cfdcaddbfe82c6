"""The console's server-rendered SVG charts (photochangerd/web/charts.py) and text formatters."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from photochangerd.web import formatting
from photochangerd.web.charts import HEIGHT, TOP, Chart, Series, nice_ticks, render

SVG = "{http://www.w3.org/2000/svg}"


def _parse(chart: Chart) -> ET.Element:
    """The chart's markup as XML: it must be well-formed on its own."""
    return ET.fromstring(str(render(chart)))


def _chart(kind: str = "bars", **overrides: object) -> Chart:
    values: dict[str, object] = {
        "chart_id": "chart-test",
        "title": "Jobs per 5 min",
        "labels": ("14:00", "14:05", "14:10"),
        "series": (
            Series("ok", "successes", (2.0, 0.0, 4.0), "#1a7f37"),
            Series("error", "provider errors", (1.0, 0.0, 0.0), "#cf222e"),
        ),
        "kind": kind,
    }
    values.update(overrides)
    return Chart(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("top", "ticks"),
    [
        (0, [0, 1]),
        (-3, [0, 1]),
        (float("nan"), [0, 1]),
        (1, [0, 1]),
        (3, [0, 1, 2, 3]),
        (4, [0, 1, 2, 3, 4]),
        (7, [0, 2, 4, 6, 8]),
        (10, [0, 5, 10]),
        (37, [0, 10, 20, 30, 40]),
        (120, [0, 50, 100, 150]),
        (0.5, [0, 0.2, 0.4, 0.6]),
    ],
)
def test_nice_ticks_reach_the_top_in_round_steps(top: float, ticks: list[float]) -> None:
    assert nice_ticks(top) == ticks


def test_accessible_name_and_description() -> None:
    svg = _parse(_chart())
    assert svg.tag == f"{SVG}svg"
    assert svg.get("role") == "img" and svg.get("viewBox") == f"0 0 640 {HEIGHT}"
    assert svg.get("aria-labelledby") == "chart-test-title chart-test-desc"
    title = svg.find(f"{SVG}title")
    desc = svg.find(f"{SVG}desc")
    assert title is not None and title.get("id") == "chart-test-title"
    assert title.text == "Jobs per 5 min"
    assert desc is not None and desc.get("id") == "chart-test-desc"
    assert (
        desc.text == "3 intervals from 14:00 to 14:10; totals — successes: 6, provider errors: 1."
    )
    assert "style=" not in str(render(_chart()))  # the CSP forbids inline styles


def test_stacked_bars_are_proportional_and_carry_their_values() -> None:
    svg = _parse(_chart())
    bars = svg.findall(f".//{SVG}rect")
    # zero values draw nothing: 2 bars in the first bucket, 1 in the third
    assert [b.get("class") for b in bars] == ["bar bar-ok", "bar bar-error", "bar bar-ok"]
    assert [b.findtext(f"{SVG}title") for b in bars] == [
        "14:00: 2 successes",
        "14:00: 1 provider errors",
        "14:10: 4 successes",
    ]
    heights = [float(b.get("height", "0")) for b in bars]
    assert heights[0] == pytest.approx(2 * heights[1], abs=0.2)
    assert heights[2] == pytest.approx(4 * heights[1], abs=0.2)
    # stacked: the error bar sits on top of the success bar of the same bucket
    assert float(bars[1].get("y", "0")) + heights[1] == pytest.approx(float(bars[0].get("y", "0")))
    assert bars[0].get("x") == bars[1].get("x") != bars[2].get("x")
    assert bars[0].get("fill") == "#1a7f37" and bars[1].get("fill") == "#cf222e"
    # the tallest stack (4) reaches the top tick (4) at the top of the plot
    assert float(bars[2].get("y", "0")) == pytest.approx(TOP, abs=0.1)
    ticks = [t.text for t in svg.findall(f".//{SVG}g[@class='axis y-axis']/{SVG}text")]
    assert ticks == ["0", "1", "2", "3", "4"]
    labels = [t.text for t in svg.findall(f".//{SVG}g[@class='axis x-axis']/{SVG}text")]
    assert labels == ["14:00", "14:05", "14:10"]


def test_lines_have_one_point_per_label() -> None:
    svg = _parse(_chart("lines"))
    groups = svg.findall(f".//{SVG}g[@class='line line-ok']") + svg.findall(
        f".//{SVG}g[@class='line line-error']"
    )
    assert len(groups) == 2
    ok_points = groups[0].findall(f"{SVG}circle")
    assert [p.findtext(f"{SVG}title") for p in ok_points] == [
        "14:00: 2 successes",
        "14:05: 0 successes",
        "14:10: 4 successes",
    ]
    polyline = groups[0].find(f"{SVG}polyline")
    assert polyline is not None and polyline.get("fill") == "none"
    coords = [tuple(map(float, p.split(","))) for p in polyline.get("points", "").split()]
    assert len(coords) == 3 and coords[0][0] < coords[1][0] < coords[2][0]
    assert coords[1][1] > coords[0][1] > coords[2][1]  # 0 lowest, 4 highest (y grows down)
    assert svg.findall(f".//{SVG}rect") == []


def test_a_single_bucket_line_chart_still_shows_its_point() -> None:
    chart = _chart(
        "lines", labels=("09:00",), series=(Series("ok", "successes", (3.0,), "#1a7f37"),)
    )
    points = _parse(chart).findall(f".//{SVG}circle")
    assert len(points) == 1 and points[0].findtext(f"{SVG}title") == "09:00: 3 successes"


@pytest.mark.parametrize("kind", ["bars", "lines"])
def test_empty_data_says_so(kind: str) -> None:
    zeros = (Series("ok", "successes", (0.0, 0.0, 0.0), "#1a7f37"),)
    for chart in (
        _chart(kind, series=zeros, empty_text="No jobs in this window"),
        _chart(kind, labels=(), series=(), empty_text="No jobs in this window"),
    ):
        svg = _parse(chart)
        assert chart.is_empty
        assert svg.findall(f".//{SVG}rect") == [] and svg.findall(f".//{SVG}circle") == []
        empty = svg.find(f".//{SVG}text[@class='empty']")
        assert empty is not None and empty.text == "No jobs in this window"
        ticks = [t.text for t in svg.findall(f".//{SVG}g[@class='axis y-axis']/{SVG}text")]
        assert ticks == ["0", "1"]


def test_every_text_is_escaped() -> None:
    hostile = '<script>alert("x")</script>&'
    chart = Chart(
        chart_id="chart-x",
        title=hostile,
        labels=(hostile, "b"),
        series=(Series("ok", hostile, (1.0, 2.0), '"><script>'),),
        kind="bars",
        empty_text=hostile,
    )
    for kind in ("bars", "lines"):
        markup = str(render(Chart(**{**_fields(chart), "kind": kind})))
        assert "<script" not in markup
        assert "&lt;script&gt;" in markup
        svg = ET.fromstring(markup)  # still well-formed
        assert svg.findtext(f"{SVG}title") == hostile
        labels = [t.text for t in svg.findall(f".//{SVG}g[@class='axis x-axis']/{SVG}text")]
        assert labels[0] == hostile
        tips = [t.text or "" for t in svg.iter(f"{SVG}title")]
        assert f"{hostile}: 1 {hostile}" in tips
        shapes = svg.findall(f".//{SVG}rect") or svg.findall(f".//{SVG}circle")
        assert shapes[0].get("fill") == '"><script>'  # an attribute value, not markup


def _fields(chart: Chart) -> dict[str, object]:
    return {name: getattr(chart, name) for name in Chart.__dataclass_fields__}


def test_ids_keys_and_lengths_are_checked() -> None:
    with pytest.raises(ValueError, match="chart id"):
        _chart(chart_id='x" onload="alert(1)')
    with pytest.raises(ValueError, match="series key"):
        Series("ok bad", "x", (1.0,), "#000")
    with pytest.raises(ValueError, match="one value per label"):
        _chart(labels=("a",))


def test_many_buckets_label_every_few() -> None:
    labels = tuple(f"{h:02d}:00" for h in range(12))
    chart = _chart(labels=labels, series=(Series("ok", "successes", (1.0,) * 12, "#1a7f37"),))
    svg = _parse(chart)
    shown = [t.text for t in svg.findall(f".//{SVG}g[@class='axis x-axis']/{SVG}text")]
    assert shown == ["00:00", "02:00", "04:00", "06:00", "08:00", "10:00"]
    assert len(svg.findall(f".//{SVG}rect")) == 12
    assert chart.rows()[3] == ("03:00", [1.0])


def test_formatters() -> None:
    now = 1_758_217_512.0
    assert formatting.ago(now - 10, now) == "just now"
    assert formatting.ago(now - 300, now) == "5 min ago"
    assert formatting.ago(now - 3 * 3600, now) == "3 h ago"
    assert formatting.ago(now - 2 * 86400, now) == "2 d ago"
    assert formatting.ago(now + 4 * 3600, now) == "in 4 h"
    assert formatting.ago(None, now) == "—"
    assert formatting.iso(now) == "2025-09-18T17:45:12Z"
    assert formatting.iso(None) == ""
    assert formatting.percent(0.975) == "97.5 %" and formatting.percent(None) == "—"
    assert formatting.seconds(1.234) == "1.23 s"
    assert formatting.size(512) == "512 B" and formatting.size(1536) == "1.5 KiB"
    assert formatting.size(3 * 1024 * 1024) == "3.0 MiB"
    assert [formatting.window(m) for m in (5, 60, 360, 1440, 10080, 90)] == [
        "5 min",
        "1 h",
        "6 h",
        "24 h",
        "7 d",
        "90 min",
    ]
