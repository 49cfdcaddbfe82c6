"""The console's statistics and jobs pages in a real browser and over plain HTTP: the numbers
are the API's, the charts are server-rendered SVG, booth metadata is escaped."""

from __future__ import annotations

import hashlib
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD, INGEST_PASSWORD
from tests.support.browser import screenshot_path
from tests.support.daemon_process import DaemonProcess
from tests.support.images import make_jpeg
from tests.test_web_console import sign_in

PHOTO = make_jpeg(640, 480)
HOSTILE = "<script>alert(1)</script>"
HOSTILE_NAME = "x<img src=x onerror=alert(2)>"


def _url(daemon: DaemonProcess, path: str) -> str:
    return f"http://127.0.0.1:{daemon.port}{path}"


def _ingest(
    daemon: DaemonProcess, slot_id: str, password: str = INGEST_PASSWORD, **fields: str
) -> httpx.Response:
    return httpx.post(
        _url(daemon, f"/ingest/{slot_id}?session=42"),
        data={"password": password, **fields},
        files={"fileToUpload": ("IMG_0003.JPG", PHOTO, "image/jpeg")},
        timeout=30,
    )


def _reload(daemon: DaemonProcess, *statements: str) -> None:
    """Edit slots or settings in the database by hand, then SIGHUP (as an operator would)."""
    for statement in statements:
        daemon.sql(statement)
    before = daemon.log.read_text().count("config.reloaded")
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while daemon.log.read_text().count("config.reloaded") == before:
        assert time.monotonic() < deadline, "no reload"
        time.sleep(0.05)


def _traffic(daemon: DaemonProcess) -> dict[str, list[str]]:
    """3 successes (slot-001, with booth metadata), 2 provider errors (slot-002), 1 timeout
    (slot-003), 2 uploads rejected for a wrong password: the job ids by outcome."""
    _reload(
        daemon,
        "UPDATE slot SET provider='script', operation='reject' WHERE id='slot-002'",
        "UPDATE slot SET provider='script', operation='hang' WHERE id='slot-003'",
    )
    jobs: dict[str, list[str]] = {"ok": [], "provider_error": [], "timeout": []}
    for n in range(3):
        done = _ingest(
            daemon,
            "slot-001",
            user_id=HOSTILE,
            time="1758217512",
            profile=r"C:\Users\Acer\Documents\PhotoboothImages\setup.xml",
            id=str(n),
            hash=hashlib.sha1(PHOTO).hexdigest(),  # what the booth sends
            **{HOSTILE_NAME: "field name"},
        )
        assert done.status_code == 200
        jobs["ok"].append(done.headers["x-job-id"])
    for _ in range(2):
        failed = _ingest(daemon, "slot-002")
        assert failed.status_code == 502
        jobs["provider_error"].append(failed.headers["x-job-id"])
    for _ in range(2):
        assert _ingest(daemon, "slot-001", password="wrong-password").status_code == 401
    # a deadline of 1 s (below what the API allows: set by hand) for one timeout
    _reload(
        daemon,
        "INSERT OR REPLACE INTO app_settings (key, value, updated_at, updated_by) "
        "VALUES ('sync_response_seconds', '1', 0, 'test')",
    )
    late = _ingest(daemon, "slot-003")
    assert late.status_code == 504
    jobs["timeout"].append(late.headers["x-job-id"])
    return jobs


@contextmanager
def _console(daemon: DaemonProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=_url(daemon, ""), timeout=30) as http:
        signed = http.post("/admin/login", data={"username": "serg", "password": ADMIN_PASSWORD})
        assert signed.status_code == 303
        yield http


def _figure(page: Any, name: str) -> str:
    """The value shown under a figure's name on the statistics page."""
    return str(page.locator(".figures > div").filter(has_text=name).locator("dd").inner_text())


# -- in the browser ----------------------------------------------------------------------------


@pytest.mark.slow
def test_stats_page_numbers_and_charts(browser: Any, web_daemon: DaemonProcess) -> None:
    _traffic(web_daemon)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, web_daemon)
    page.get_by_role("link", name="Stats").click()
    page.wait_for_url(_url(web_daemon, "/admin/stats"))
    assert page.locator("h1").count() == 1
    assert _figure(page, "Jobs") == "6"
    assert _figure(page, "Successes") == "3"
    assert _figure(page, "Timeouts") == "1"
    assert _figure(page, "Provider errors") == "2"
    assert _figure(page, "Success rate") == "50.0 %"
    assert _figure(page, "Timeout rate") == "16.7 %"
    assert _figure(page, "Last error").startswith("timeout · ")
    assert re.fullmatch(r"\d+\.\d\d s", _figure(page, "p95 duration"))

    outcomes = page.locator("svg#chart-outcomes")
    assert outcomes.get_attribute("role") == "img"
    assert outcomes.get_attribute("aria-labelledby") == "chart-outcomes-title chart-outcomes-desc"
    assert outcomes.locator("title").first.text_content() == "Jobs per 5 min, all slots"
    bars = outcomes.locator("rect.bar")
    assert bars.count() >= 3  # ok, timeout, provider error (one bucket or a few)
    assert outcomes.locator("rect.bar-ok").count() >= 1
    assert outcomes.locator("rect.bar-error").count() >= 1
    problems = page.locator("svg#chart-problems")
    assert problems.locator("circle.point").count() == 3 * 12  # 3 series × 12 buckets
    assert problems.locator("polyline").count() == 3
    # the data-table fallback has the same numbers
    page.locator(".chart-card").first.locator("summary").click()
    table = page.locator(".chart-card").first.locator("table")
    assert table.locator("tbody tr").count() == 12
    sums = page.evaluate(
        """() => [...document.querySelectorAll('.chart-card')[0].querySelectorAll('tbody tr')]
                 .map(r => [...r.querySelectorAll('td')].map(td => Number(td.textContent)))
                 .reduce((a, r) => a.map((v, i) => v + r[i]), [0, 0, 0, 0])"""
    )
    assert sums == [3, 1, 2, 0]
    rejected = page.locator("#rejected-heading + .table-wrap tbody tr")
    assert rejected.count() == 1 and rejected.inner_text().split() == ["invalid_password", "2"]
    assert page.locator("table.per-slot tbody tr").count() == 15
    page.screenshot(path=screenshot_path("console-stats"), full_page=True)

    # the selectors: JavaScript submits on change (the Show button does without it)
    page.get_by_label("Window").select_option("1440")
    page.wait_for_url(re.compile(r".*window=1440.*"))
    assert page.locator("svg#chart-outcomes title").first.text_content() == (
        "Jobs per 2 h, all slots"
    )
    page.get_by_label("Slot", exact=True).select_option("slot-002")
    page.wait_for_url(re.compile(r".*slot=slot-002.*"))
    assert _figure(page, "Jobs") == "2" and _figure(page, "Successes") == "0"
    assert _figure(page, "Provider errors") == "2"
    assert page.locator("table.per-slot").count() == 0
    assert page.locator("svg#chart-outcomes rect.bar-error").count() >= 1
    assert page.locator("svg#chart-outcomes rect.bar-ok").count() == 0

    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(_url(web_daemon, "/admin/stats"))
    assert page.locator("svg#chart-outcomes rect.bar").count() >= 3
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    width = page.locator("svg#chart-outcomes").bounding_box()["width"]
    assert 250 < width <= 375
    page.screenshot(path=screenshot_path("console-stats-375"), full_page=True)


@pytest.mark.slow
def test_jobs_list_to_job_detail_with_booth_metadata(
    browser: Any, web_daemon: DaemonProcess
) -> None:
    jobs = _traffic(web_daemon)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, web_daemon)
    page.get_by_role("link", name="Jobs").click()
    page.wait_for_url(_url(web_daemon, "/admin/jobs"))
    rows = page.locator("table.jobs tbody tr")
    assert rows.count() == 6
    assert rows.first.locator("a").inner_text() == jobs["timeout"][0]  # newest first
    assert rows.first.locator(".outcome").inner_text() == "timeout"
    page.screenshot(path=screenshot_path("console-jobs"), full_page=True)

    page.get_by_label("Status").select_option("provider_error")
    page.wait_for_url(re.compile(r".*status=provider_error.*"))
    assert sorted(rows.locator("a").all_inner_texts()) == sorted(jobs["provider_error"])
    page.get_by_label("Slot", exact=True).select_option("slot-001")
    page.wait_for_url(re.compile(r".*/admin/jobs\?slot=slot-001&status=provider_error&.*"))
    assert rows.count() == 0
    page.get_by_label("Status").select_option("")
    page.wait_for_url(re.compile(r".*/admin/jobs\?slot=slot-001&status=&limit=50$"))
    assert rows.count() == 3

    job_id = jobs["ok"][-1]
    page.get_by_role("link", name=job_id).click()
    page.wait_for_url(_url(web_daemon, f"/admin/jobs/{job_id}"))
    assert page.locator("h1").inner_text() == f"Job {job_id}"
    assert page.locator(".outcome").inner_text() == "ok"
    metadata = {
        row.locator("th").inner_text(): row.locator("td").inner_text()
        for row in page.locator("table.metadata tbody tr").all()
    }
    assert metadata["user_id"] == HOSTILE  # shown as text, not run
    assert metadata["profile"] == r"C:\Users\Acer\Documents\PhotoboothImages\setup.xml"
    assert metadata[HOSTILE_NAME] == "field name"
    assert "password" not in metadata
    booth = page.locator("#booth-heading + dl").inner_text()
    assert "640 × 480 px" in booth and "verified sha1" in booth and "session=42" in booth
    assert page.locator("script").count() == 1  # the console's own, nothing from the booth
    thumb = page.get_by_role("img", name=f"Result of job {job_id}")
    assert page.evaluate("(img) => img.complete && img.naturalWidth > 0", thumb.element_handle())
    assert page.get_by_role("link", name="Guest page").get_attribute("href") == f"/r/{job_id}"
    download = page.get_by_role("link", name="Download")
    assert download.get_attribute("href") == f"/public/results/{job_id}"
    page.screenshot(path=screenshot_path("console-job"), full_page=True)

    page.goto(_url(web_daemon, f"/admin/jobs/{jobs['timeout'][0]}"))
    assert page.locator(".outcome").inner_text() == "timeout"
    assert "No result." in page.locator("#result-heading + p").inner_text()
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 375

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(_url(web_daemon, "/admin/login?notice=signed%20out"))
    page.goto(_url(web_daemon, f"/admin/jobs/{job_id}"))
    assert "/admin/login?next=" in page.url


# -- over HTTP ---------------------------------------------------------------------------------


def test_booth_metadata_is_escaped_on_the_job_page(web_daemon: DaemonProcess) -> None:
    done = _ingest(web_daemon, "slot-001", user_id=HOSTILE, **{HOSTILE_NAME: HOSTILE})
    assert done.status_code == 200
    with _console(web_daemon) as http:
        html = http.get(f"/admin/jobs/{done.headers['x-job-id']}").text
    assert HOSTILE not in html and "<img src=x" not in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2
    assert "x&lt;img src=x onerror=alert(2)&gt;" in html


def test_stats_numbers_are_the_apis(web_daemon: DaemonProcess) -> None:
    for _ in range(2):
        assert _ingest(web_daemon, "slot-004").status_code == 200
    with _console(web_daemon) as http:
        api = http.get("/api/stats/slot-004", params={"window_minutes": 360}).json()
        html = http.get("/admin/stats", params={"window": 360, "slot": "slot-004"}).text
        assert f"<dt>Jobs</dt><dd>{api['jobs']}</dd>" in html and api["jobs"] == 2
        assert f"<dt>p50 duration</dt><dd>{api['p50_duration_seconds']:.2f} s</dd>" in html
        assert html.count('class="bar bar-ok"') == sum(1 for b in api["buckets"] if b["successes"])
        for query, field in (({"window": "5"}, "window"), ({"slot": "slot-099"}, "slot")):
            bad = http.get("/admin/stats", params=query)
            assert bad.status_code == 400 and f'id="{field}-error"' in bad.text
    anonymous = httpx.get(_url(web_daemon, "/admin/stats?window=360"))
    assert anonymous.status_code == 302
    assert anonymous.headers["location"] == "/admin/login?next=/admin/stats%3Fwindow%3D360"


@pytest.mark.slow
def test_jobs_filters_limit_and_missing_jobs(web_daemon: DaemonProcess) -> None:
    ids = [_ingest(web_daemon, "slot-005").headers["x-job-id"] for _ in range(3)]
    with _console(web_daemon) as http:
        page = http.get("/admin/jobs", params={"limit": 2})
        assert page.status_code == 200
        assert re.findall(r'href="/admin/jobs/([^"]+)"', page.text) == ids[:0:-1]
        assert 'href="/admin/jobs?limit=25">Show more</a>' in page.text
        assert "Show more" not in http.get("/admin/jobs").text
        empty = http.get("/admin/jobs", params={"slot": "slot-009", "status": "timeout"})
        assert "No jobs match these filters" in empty.text
        for query, field in (
            ({"status": "bogus"}, "status"),
            ({"slot": "../etc"}, "slot"),
            ({"limit": "9999"}, "limit"),
        ):
            bad = http.get("/admin/jobs", params=query)
            assert bad.status_code == 400 and f'id="{field}-error"' in bad.text
        for missing in ("A" * 22, "not-a-job-id", "%3Cscript%3E"):
            gone = http.get(f"/admin/jobs/{missing}")
            assert gone.status_code == 404 and "<h1>Job not found</h1>" in gone.text
            assert "<script>" not in gone.text.split("</head>", 1)[1]
