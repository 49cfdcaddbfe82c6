"""The guest page ``/r/<job_id>`` in a real browser (Playwright + Debian chromium) and over
plain HTTP, with jobs made by the real booth endpoint of the daemon in a subprocess.

The browser's sync API runs its own event loop, so everything here is synchronous: uploads go
through httpx's sync client (the same multipart form a booth sends)."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from PIL import Image

from pcctl.cli import cli
from tests.conftest import ADMIN_PASSWORD, INGEST_PASSWORD
from tests.support.browser import decode_qr, screenshot_path
from tests.support.images import make_jpeg

PHOTO = make_jpeg(640, 480)
BIG_PHOTO = make_jpeg(3000, 2000, grain=0.3)
MOBILE = {"width": 375, "height": 812}
SCRIPT = "<script>alert('pwned')</script>"


def _url(daemon: Any, path: str) -> str:
    return f"http://127.0.0.1:{daemon.port}{path}"


def _shoot(
    daemon: Any, slot: str = "slot-001", photo: bytes = PHOTO, **fields: str
) -> httpx.Response:
    """One booth upload (``password`` first, then the photo, like DSLR Remote Pro)."""
    return httpx.post(
        _url(daemon, f"/ingest/{slot}"),
        data={"password": INGEST_PASSWORD, **fields},
        files={"fileToUpload": ("IMG_0001.JPG", photo, "image/jpeg")},
        timeout=60,
    )


def _job(daemon: Any, slot: str = "slot-001", photo: bytes = PHOTO, **fields: str) -> str:
    response = _shoot(daemon, slot, photo, **fields)
    assert response.status_code == 200, response.text[:300]
    return response.headers["x-job-id"]


def _expire(daemon: Any, job_id: str, at: float | None = None) -> None:
    daemon.sql(
        "UPDATE job SET result_expires_at = ? WHERE id = ?",
        time.time() - 60 if at is None else at,
        job_id,
    )


def _token(daemon: Any) -> str:
    login = httpx.post(
        _url(daemon, "/api/login"), json={"username": "serg", "password": ADMIN_PASSWORD}
    )
    return str(login.json()["access_token"])


def _decode_png(data: bytes, where: Path) -> list[str]:
    where.write_bytes(data)
    return decode_qr(where)


# -- in the browser ---------------------------------------------------------------------------


@pytest.mark.slow
def test_guest_page_on_a_phone_without_javascript(
    browser: Any, web_daemon: Any, tmp_path: Path
) -> None:
    job_id = _job(web_daemon)
    page_url = _url(web_daemon, f"/r/{job_id}")
    context = browser.new_context(java_script_enabled=False, viewport=MOBILE)
    page = context.new_page()
    response = page.goto(page_url)
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    assert page.locator("h1").count() == 1 and page.locator("h1").inner_text() == "Your photo"

    image = page.locator(".guest-photo img")
    image.wait_for()
    page.wait_for_load_state("load")
    assert image.evaluate("img => img.complete && img.naturalWidth") == 640
    box = image.bounding_box()
    assert box is not None and 300 < box["width"] <= 375
    # Nothing wider than the phone: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= MOBILE["width"]
    assert page.get_by_role("button", name="Share").count() == 0  # hidden without JS

    expiry = page.locator("time")
    stored = web_daemon.sql("SELECT result_expires_at FROM job WHERE id = ?", job_id)[0][0]
    assert expiry.get_attribute("datetime") == time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(stored)
    )
    assert expiry.inner_text().endswith("UTC")  # written by the server; no script ran

    download = page.get_by_role("link", name="Download")
    assert download.get_attribute("href") == f"/public/results/{job_id}"
    with page.expect_download() as started:
        download.click()
    saved = tmp_path / "download.jpg"
    started.value.save_as(saved)
    assert saved.read_bytes() == PHOTO
    fetched = httpx.get(_url(web_daemon, f"/public/results/{job_id}"))
    assert fetched.status_code == 200 and fetched.content == PHOTO

    qr_shot = screenshot_path("guest-qr-375")
    page.locator("svg.qr").screenshot(path=qr_shot)
    assert decode_qr(qr_shot) == [page_url]
    page.screenshot(path=screenshot_path("guest-page-375-no-js"), full_page=True)
    context.close()


@pytest.mark.slow
def test_guest_page_with_javascript_local_time_and_share(browser: Any, web_daemon: Any) -> None:
    job_id = _job(web_daemon, photo=BIG_PHOTO)
    page_url = _url(web_daemon, f"/r/{job_id}")
    context = browser.new_context(viewport=MOBILE, timezone_id="Asia/Tokyo", locale="en-GB")
    # Headless chromium on Linux has no Web Share: stand in for the phone's share sheet.
    context.add_init_script(
        "navigator.share = (data) => { window.shared = data; return Promise.resolve(); };"
        "navigator.canShare = () => true;"
    )
    page = context.new_page()
    assert page.goto(page_url).status == 200
    page.wait_for_load_state("load")
    # The 3000x2000 result is shown as a 1600 px rendition; Download keeps the full file.
    assert page.locator(".guest-photo img").evaluate("img => img.naturalWidth") == 1600
    expiry = page.locator("time")
    assert "UTC" not in expiry.inner_text()
    stored = web_daemon.sql("SELECT result_expires_at FROM job WHERE id = ?", job_id)[0][0]
    tokyo = time.gmtime(stored + 9 * 3600)
    assert f"{tokyo.tm_hour:02d}:{tokyo.tm_min:02d}" in expiry.inner_text()

    share = page.get_by_role("button", name="Share")
    assert share.is_visible()
    page.wait_for_selector("[data-photo-ready]", state="attached")  # fetched ahead (cache)
    share.click()
    page.wait_for_function("() => window.shared !== undefined")
    assert page.evaluate("window.shared.url") == page_url
    assert page.evaluate("window.shared.files.map(f => [f.name, f.type])") == [
        ["photo.webp", "image/webp"]
    ]
    page.screenshot(path=screenshot_path("guest-page-375-js"), full_page=True)
    context.close()


def test_expired_and_unknown_pages(browser: Any, web_daemon: Any) -> None:
    job_id = _job(web_daemon)
    _expire(web_daemon, job_id)
    context = browser.new_context(java_script_enabled=False, viewport=MOBILE)
    page = context.new_page()
    expired = page.goto(_url(web_daemon, f"/r/{job_id}"))
    assert expired.status == 410
    assert page.locator("h1").inner_text() == "This photo has expired"
    page.screenshot(path=screenshot_path("guest-page-410"), full_page=True)

    unknown = page.goto(_url(web_daemon, "/r/" + "A" * 22))
    assert unknown.status == 404
    assert page.locator("h1").inner_text() == "Photo not found"
    assert page.locator("h1").count() == 1
    page.screenshot(path=screenshot_path("guest-page-404"), full_page=True)
    context.close()


# -- over HTTP --------------------------------------------------------------------------------


@pytest.mark.slow
def test_problem_pages_are_short_html_without_the_id(web_daemon: Any) -> None:
    # A failed job: slot-009 runs the scripted provider's refusal (set before its first use).
    web_daemon.sql(
        "UPDATE slot SET provider = 'script', operation = 'reject' WHERE id = ?", "slot-009"
    )
    failed = _shoot(web_daemon, "slot-009")
    assert failed.status_code == 502
    failed_id = failed.headers["x-job-id"]
    expired_id = _job(web_daemon)
    _expire(web_daemon, expired_id)

    cases = [
        ("A" * 22, 404),  # well formed, unknown
        ("B" * 21 + "<", 404),
        ("%2e%2e", 404),  # a literal ".." is resolved by the client before it is sent
        ("abc%00def", 404),
        ("x" * 300, 404),
        (failed_id, 404),
        (expired_id, 410),
    ]
    for job_path, status in cases:
        for suffix in ("", "/photo", "/qr.svg", "/qr.png"):
            response = httpx.get(_url(web_daemon, f"/r/{job_path}{suffix}"))
            assert response.status_code == status, (job_path, suffix)
            assert response.headers["content-type"].startswith("text/html")
            assert response.headers["cache-control"] == "no-store"
            body = response.text
            assert "<h1>" in body and "Traceback" not in body and 'File "' not in body
            assert job_path not in body and job_path.replace("%2e", ".") not in body
            assert "default-src 'none'" in response.headers["content-security-policy"]
    # The public link keeps its JSON contract.
    public = httpx.get(_url(web_daemon, f"/public/results/{expired_id}"))
    assert public.status_code == 410 and public.json()["failure_reason"] == "result_expired"


def test_nothing_the_booth_or_admin_wrote_reaches_the_page(web_daemon: Any) -> None:
    headers = {"Authorization": f"Bearer {_token(web_daemon)}"}
    renamed = httpx.put(
        _url(web_daemon, "/api/slots/slot-002"), json={"display_name": SCRIPT}, headers=headers
    )
    assert renamed.status_code == 200, renamed.text
    job_id = _job(web_daemon, "slot-002", user_id=SCRIPT, profile=SCRIPT, id="<b>x</b>")
    stored = httpx.get(_url(web_daemon, f"/api/jobs/{job_id}"), headers=headers).json()
    assert stored["client_metadata"]["fields"]["user_id"] == SCRIPT  # it was kept...
    page = httpx.get(_url(web_daemon, f"/r/{job_id}"))
    assert page.status_code == 200
    # ...and the page shows no booth metadata and no slot name at all, escaped or not.
    for shown in ("pwned", "&lt;script", "<b>", "&lt;b&gt;"):
        assert shown not in page.text
    assert re.findall(r"<script[^>]*>", page.text) == ['<script src="/assets/guest.js" defer>']


def test_guest_routes_headers_and_images(web_daemon: Any, tmp_path: Path) -> None:
    booth = _shoot(web_daemon)
    job_id = booth.headers["x-job-id"]
    page_url = _url(web_daemon, f"/r/{job_id}")
    assert booth.headers["link"] == (
        f'</public/results/{job_id}>; rel="alternate", <{page_url}>; rel="alternate"; '
        'type="text/html"'
    )

    page = httpx.get(page_url)
    assert page.status_code == 200
    max_age = int(re.fullmatch(r"private, max-age=(\d+)", page.headers["cache-control"])[1])  # type: ignore[index]
    assert 3500 < max_age <= 3600  # capped: the result lives 72 h
    assert page.headers["x-robots-tag"] == "noindex, nofollow"
    assert page.headers["x-frame-options"] == "DENY"

    svg = httpx.get(f"{page_url}/qr.svg")
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml; charset=utf-8"
    assert svg.text.startswith("<?xml") and "<script" not in svg.text
    assert svg.headers["content-security-policy"].startswith("default-src 'none'")
    assert svg.headers["cache-control"].startswith("private, max-age=")
    png = httpx.get(f"{page_url}/qr.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert _decode_png(png.content, tmp_path / "qr.png") == [page_url]

    # A small result is shown as it is (inline); conditional requests work.
    photo = httpx.get(f"{page_url}/photo")
    assert photo.status_code == 200 and photo.content == PHOTO
    assert photo.headers["content-type"] == "image/jpeg"
    assert "attachment" not in photo.headers.get("content-disposition", "")
    again = httpx.get(f"{page_url}/photo", headers={"If-None-Match": photo.headers["etag"]})
    assert again.status_code == 304

    # Ten minutes before expiry, nothing is cached past it.
    _expire(web_daemon, job_id, at=time.time() + 600)
    soon = httpx.get(page_url).headers["cache-control"]
    assert 590 <= int(soon.removeprefix("private, max-age=")) <= 600


@pytest.mark.slow
def test_large_result_is_shown_as_a_rendition(web_daemon: Any) -> None:
    job_id = _job(web_daemon, photo=BIG_PHOTO)
    photo = httpx.get(_url(web_daemon, f"/r/{job_id}/photo"))
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/webp"
    assert len(photo.content) < len(BIG_PHOTO) / 3
    with Image.open(io.BytesIO(photo.content)) as shown:
        assert shown.size == (1600, 1067)
    cached = httpx.get(
        _url(web_daemon, f"/r/{job_id}/photo"), headers={"If-None-Match": photo.headers["etag"]}
    )
    assert cached.status_code == 304 and cached.content == b""
    download = httpx.get(_url(web_daemon, f"/public/results/{job_id}"))
    assert download.content == BIG_PHOTO


def test_api_and_test_run_carry_the_guest_url(web_daemon: Any) -> None:
    headers = {"Authorization": f"Bearer {_token(web_daemon)}"}
    run = httpx.post(
        _url(web_daemon, "/api/slots/slot-003/test-run"),
        files={"test_image": ("t.jpg", PHOTO, "image/jpeg")},
        headers=headers,
        timeout=60,
    )
    assert run.status_code == 200, run.text
    job_id = run.json()["job_id"]
    assert run.json()["guest_url"] == _url(web_daemon, f"/r/{job_id}")
    detail = httpx.get(_url(web_daemon, f"/api/jobs/{job_id}"), headers=headers).json()
    assert detail["guest_url"] == _url(web_daemon, f"/r/{job_id}")
    assert httpx.get(detail["guest_url"]).status_code == 200


# -- pcctl result qr --------------------------------------------------------------------------


def _terminal_qr_to_png(drawing: str, where: Path) -> Path:
    """Turn segno's compact terminal drawing (half blocks, light modules drawn) into a PNG."""
    halves = {" ": (0, 0), "\u2580": (1, 0), "\u2584": (0, 1), "\u2588": (1, 1)}
    rows: list[list[int]] = []
    for line in drawing.splitlines():
        pairs = [halves[char] for char in line]
        rows.append([top for top, _ in pairs])
        rows.append([bottom for _, bottom in pairs])
    image = Image.new("L", (len(rows[0]), len(rows)))
    image.putdata([255 if light else 0 for row in rows for light in row])
    image.resize((image.width * 8, image.height * 8), Image.Resampling.NEAREST).save(where)
    return where


@pytest.fixture
def pcctl_env(web_daemon: Any, tmp_path: Path) -> dict[str, str]:
    return {
        "PCCTL_SERVER": _url(web_daemon, ""),
        "PCCTL_TOKEN": _token(web_daemon),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }


@pytest.mark.slow
def test_pcctl_result_qr(web_daemon: Any, pcctl_env: dict[str, str], tmp_path: Path) -> None:
    job_id = _job(web_daemon)
    page_url = _url(web_daemon, f"/r/{job_id}")
    runner = CliRunner()
    drawn = runner.invoke(cli, ["result", "qr", job_id], env=pcctl_env)
    assert drawn.exit_code == 0, drawn.output
    *drawing, address = drawn.stdout.rstrip("\n").split("\n")
    assert address == page_url
    png = _terminal_qr_to_png("\n".join(drawing), tmp_path / "terminal.png")
    assert decode_qr(png) == [page_url]

    as_json = runner.invoke(cli, ["--output", "json", "result", "qr", job_id], env=pcctl_env)
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == {"guest_url": page_url}

    unknown = runner.invoke(cli, ["result", "qr", "A" * 22], env=pcctl_env)
    assert unknown.exit_code == 4 and unknown.stdout == ""
    web_daemon.sql(
        "UPDATE slot SET provider = 'script', operation = 'reject' WHERE id = ?", "slot-010"
    )
    failed = _shoot(web_daemon, "slot-010").headers["x-job-id"]
    no_result = runner.invoke(cli, ["result", "qr", failed], env=pcctl_env)
    assert no_result.exit_code == 4 and "has no result" in no_result.stderr


@pytest.mark.slow
def test_pcctl_turns_the_stamp_on_and_the_print_carries_the_code(
    web_daemon: Any, pcctl_env: dict[str, str], tmp_path: Path
) -> None:
    """The README's example, end to end: the setting through pcctl, the booth's stamped answer
    opening the guest page, whose own QR code says the same."""
    edit = ["slot", "edit", "slot-004", "--set", 'qr_stamp={enabled=true, position="top-left"}']
    edited = CliRunner().invoke(cli, edit, env=pcctl_env)
    assert edited.exit_code == 0, (edited.stdout, edited.stderr)
    booth = _shoot(web_daemon, "slot-004", photo=make_jpeg(1200, 900))
    assert booth.status_code == 200
    page_url = _url(web_daemon, f"/r/{booth.headers['x-job-id']}")
    assert _decode_png(booth.content, tmp_path / "print.jpg") == [page_url]
    assert httpx.get(page_url).status_code == 200
    stored = httpx.get(_url(web_daemon, f"/public/results/{booth.headers['x-job-id']}"))
    assert _decode_png(stored.content, tmp_path / "stored.jpg") == []
