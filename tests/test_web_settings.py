"""The console's settings page in a real browser and over plain HTTP: deadline and TTL, the
ingest password (shown once, then the booths' old one is refused), provider keys (never shown
back), the purge button, CSRF on every POST."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from photochangerd.providers.keys import ENV_VARIABLES
from tests.conftest import ADMIN_PASSWORD, INGEST_PASSWORD
from tests.support.browser import screenshot_path
from tests.support.daemon_process import DaemonProcess
from tests.support.images import make_jpeg
from tests.test_web_console import sign_in

ENV_KEY = "sk-from-the-environment-0123456789"
GENERATED = re.compile(r"([a-z2-9]{5}-){3}[a-z2-9]{5}")
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    """The daemon with no provider key but OpenAI's in its environment (whatever the caller's
    environment holds)."""
    process = DaemonProcess(tmp_path / "data")
    process.env["PHOTOCHANGER_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{process.port}"
    for variable in ENV_VARIABLES.values():
        process.env.pop(variable, None)
    process.env[ENV_VARIABLES["openai"]] = ENV_KEY
    try:
        process.start()
        yield process
    finally:
        process.stop()


def _url(daemon: DaemonProcess, path: str) -> str:
    return f"http://127.0.0.1:{daemon.port}{path}"


def _ingest(daemon: DaemonProcess, password: str, **fields: str) -> httpx.Response:
    return httpx.post(
        _url(daemon, "/ingest/slot-001"),
        data={"password": password, **fields},
        files={"fileToUpload": ("p.jpg", make_jpeg(320, 240), "image/jpeg")},
        timeout=30,
    )


@contextmanager
def _signed_in(daemon: DaemonProcess) -> Iterator[tuple[httpx.Client, str]]:
    """An HTTP client with a console session, and its CSRF token."""
    with httpx.Client(base_url=_url(daemon, ""), timeout=30) as http:
        signed = http.post("/admin/login", data={"username": "igor", "password": ADMIN_PASSWORD})
        assert signed.status_code == 303
        page = http.get("/admin/settings")
        assert page.status_code == 200
        match = CSRF.search(page.text)
        assert match is not None
        yield http, match.group(1)


def _field_error(html: str, field: str) -> str:
    match = re.search(rf'<p class="field-error" id="{field}-error" role="alert">([^<]*)</p>', html)
    assert match is not None, f"no error shown at {field}"
    return match.group(1)


# -- in the browser ----------------------------------------------------------------------------


@pytest.mark.slow
def test_rotate_the_ingest_password_shown_once(browser: Any, daemon: DaemonProcess) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, daemon)
    page.get_by_role("link", name="Settings").click()
    page.wait_for_url(_url(daemon, "/admin/settings"))
    assert page.locator("h1").count() == 1 and page.locator("h1").inner_text() == "Settings"
    page.screenshot(path=screenshot_path("console-settings"), full_page=True)
    assert _ingest(daemon, INGEST_PASSWORD).status_code == 200

    with page.expect_response(_url(daemon, "/admin/settings/ingest-password")) as answer:
        page.get_by_role("button", name="Generate a new password").click()
    assert answer.value.status == 200  # the POST answers with the page itself: no redirect
    assert answer.value.headers["cache-control"] == "no-store"
    password = page.locator("#new-password").inner_text()
    assert GENERATED.fullmatch(password), password
    assert page.url == _url(daemon, "/admin/settings/ingest-password")
    assert "Shown only this once" in page.locator("main").inner_text()
    page.screenshot(path=screenshot_path("console-settings-new-password"), full_page=True)

    assert _ingest(daemon, INGEST_PASSWORD).status_code == 401
    accepted = _ingest(daemon, password)
    assert accepted.status_code == 200 and accepted.headers["content-type"] == "image/jpeg"

    page.get_by_role("link", name="Done: back to the settings").click()
    page.wait_for_url(_url(daemon, "/admin/settings"))
    assert password not in page.content()  # once: never again
    assert "by serg" in page.locator("#password-heading + p").inner_text()

    # a typed one: too short is refused at its field, 8+ characters works
    page.get_by_label("Or type a new password").fill("short")
    page.get_by_role("button", name="Set this password").click()
    error = page.locator("#ingest_password-error")
    assert error.inner_text() == "String should have at least 8 characters"
    assert page.get_by_label("Or type a new password").get_attribute("aria-invalid") == "true"
    assert _ingest(daemon, password).status_code == 200  # nothing changed
    page.get_by_label("Or type a new password").fill("booth-typed-1")
    page.get_by_role("button", name="Set this password").click()
    assert page.locator("#new-password").inner_text() == "booth-typed-1"
    assert _ingest(daemon, password).status_code == 401
    assert _ingest(daemon, "booth-typed-1").status_code == 200
    assert password not in daemon.log.read_text() and "booth-typed-1" not in daemon.log.read_text()


@pytest.mark.slow
def test_provider_keys_are_never_shown(browser: Any, daemon: DaemonProcess) -> None:
    secret, replacement = "AIza-console-secret-0123456789", "AIza-console-second-9876543210"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, daemon)
    page.goto(_url(daemon, "/admin/settings"))
    gemini, openai = page.locator("#key-gemini"), page.locator("#key-openai")
    assert gemini.locator(".key-state").inner_text().strip() == "not configured"
    assert openai.locator(".key-state").inner_text().strip() == (
        "configured from the environment (OPENAI_API_KEY)"
    )
    # an empty key is an error at the field, not a silent removal
    gemini.get_by_role("button", name="Save key").click()
    assert page.locator("#provider_key_gemini-error").inner_text().startswith("paste the key")

    page.get_by_label("New Gemini key").fill(secret)
    page.locator("#key-gemini").get_by_role("button", name="Save key").click()
    page.wait_for_url(re.compile(r".*/admin/settings\?notice=Gemini.*"))
    assert page.get_by_role("status").inner_text() == "Gemini key stored"
    state = page.locator("#key-gemini .key-state").inner_text()
    assert re.fullmatch(r"configured since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d by serg", state.strip())
    page.screenshot(path=screenshot_path("console-settings-key-stored"), full_page=True)
    html = page.content()
    assert secret not in html and ENV_KEY not in html
    assert page.get_by_label("Replace the Gemini key").input_value() == ""

    page.get_by_label("Replace the Gemini key").fill(replacement)
    with page.expect_navigation(url=re.compile(r".*notice=Gemini.*")):
        page.locator("#key-gemini").get_by_role("button", name="Save key").click()
    assert secret not in page.content() and replacement not in page.content()

    with page.expect_navigation(url=re.compile(r".*notice=Gemini.*")):
        page.locator("#key-gemini").get_by_role("button", name="Clear stored key").click()
    assert page.get_by_role("status").inner_text() == "Gemini key removed (now: not configured)"
    assert page.locator("#key-gemini .key-state").inner_text().strip() == "not configured"

    # the stored key is the one the providers get (checked through the API: configured / not)
    token = httpx.post(
        _url(daemon, "/api/login"), json={"username": "serg", "password": ADMIN_PASSWORD}
    ).json()["access_token"]
    state_api = httpx.get(
        _url(daemon, "/api/settings"), headers={"Authorization": f"Bearer {token}"}
    ).json()["provider_keys"]
    assert state_api["gemini"]["configured"] is False
    assert state_api["openai"]["source"] == "environment"
    log = daemon.log.read_text()
    assert secret not in log and replacement not in log


@pytest.mark.slow
def test_deadline_and_ttl_with_errors_at_their_fields(browser: Any, daemon: DaemonProcess) -> None:
    page = browser.new_page(viewport={"width": 375, "height": 800})
    sign_in(page, daemon)
    page.goto(_url(daemon, "/admin/settings"))
    deadline = page.get_by_role("spinbutton", name=re.compile(r"^Deadline"))
    assert deadline.input_value() == "48"
    deadline.fill("5")
    page.get_by_label("Keep results for (hours)").fill("24")
    with page.expect_navigation(url=_url(daemon, "/admin/settings")):
        page.get_by_role("button", name="Save", exact=True).click()
    assert _field_error(page.content(), "sync_response_seconds") == (
        "Input should be greater than or equal to 10"
    )
    assert deadline.input_value() == "5"  # what was typed stays
    assert page.get_by_label("Keep results for (hours)").input_value() == "24"
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(path=screenshot_path("console-settings-375-error"), full_page=True)
    deadline.fill("30")
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(re.compile(r".*/admin/settings\?notice=saved.*"))
    assert page.get_by_role("status").inner_text() == "saved: deadline 30 s, results kept 24 h"
    assert deadline.input_value() == "30"
    assert page.get_by_label("Keep results for (hours)").input_value() == "24"

    page.get_by_role("button", name="Purge expired media now").click()
    page.wait_for_url(re.compile(r".*notice=purge.*"))
    assert "purge of expired media and results started" in page.get_by_role("status").inner_text()


# -- over HTTP ---------------------------------------------------------------------------------

POST_ROUTES = [
    ("/admin/settings", {"sync_response_seconds": "20", "result_ttl_hours": "10"}),
    ("/admin/settings/ingest-password", {"mode": "generate"}),
    ("/admin/settings/ingest-password", {"mode": "typed", "ingest_password": "new-pass-1"}),
    ("/admin/settings/provider-keys/gemini", {"key": "AIza-csrf-key-0123"}),
    ("/admin/settings/provider-keys/openai", {"action": "clear"}),
    ("/admin/settings/purge", {}),
]


@pytest.mark.slow
def test_every_post_needs_the_csrf_token(daemon: DaemonProcess) -> None:
    with _signed_in(daemon) as (http, token):
        for path, form in POST_ROUTES:
            for presented in ({}, {"csrf_token": "0" * 64}):
                refused = http.post(path, data={**form, **presented})
                assert refused.status_code == 403, (path, presented)
                assert refused.json()["details"] == "missing or wrong CSRF token"
        # nothing was changed
        settings = http.get("/api/settings").json()
        assert settings["sync_response_seconds"] == 48
        assert settings["provider_keys"]["gemini"]["configured"] is False
        assert settings["ingest_password"]["rotated_by"] == "initial"
        assert _ingest(daemon, INGEST_PASSWORD).status_code == 200
        # and with it, the same requests work
        ok = http.post("/admin/settings", data={**POST_ROUTES[0][1], "csrf_token": token})
        assert ok.status_code == 303 and ok.headers["location"].startswith("/admin/settings?")
        assert http.get("/api/settings").json()["sync_response_seconds"] == 20
    anonymous = httpx.post(_url(daemon, "/admin/settings/purge"), data={"csrf_token": token})
    assert anonymous.status_code == 401  # no session: the token alone is worth nothing


def test_the_new_password_page_is_not_cached_nor_in_a_url(daemon: DaemonProcess) -> None:
    with _signed_in(daemon) as (http, token):
        answer = http.post(
            "/admin/settings/ingest-password", data={"mode": "generate", "csrf_token": token}
        )
        assert answer.status_code == 200 and "location" not in answer.headers
        assert answer.headers["cache-control"] == "no-store"
        assert "default-src 'none'" in answer.headers["content-security-policy"]
        match = re.search(r'<code class="secret" id="new-password">([^<]+)</code>', answer.text)
        assert match is not None and GENERATED.fullmatch(match.group(1))
        password = match.group(1)
        assert password not in str(answer.url)
        assert password not in http.get("/admin/settings").text
        again = http.get("/admin/settings/ingest-password")  # e.g. from the history
        assert again.status_code == 303 and password not in again.text
        assert "only%20shown%20once" in again.headers["location"]
        assert password not in http.get("/api/settings").text
        assert _ingest(daemon, password).status_code == 200
        rotated = http.get("/api/settings").json()["ingest_password"]
        assert rotated["rotated_by"] == "igor"
    assert password not in daemon.log.read_text()


INVALID = [
    ({"sync_response_seconds": "61"}, "sync_response_seconds", "less than or equal to 60"),
    ({"sync_response_seconds": "soon"}, "sync_response_seconds", "a valid number"),
    ({"sync_response_seconds": ""}, "sync_response_seconds", "required"),
    ({"result_ttl_hours": "0"}, "result_ttl_hours", "greater than 0"),
    ({"result_ttl_hours": "721"}, "result_ttl_hours", "less than or equal to 720"),
]


def test_settings_validation_is_the_apis(daemon: DaemonProcess) -> None:
    with _signed_in(daemon) as (http, token):
        for form, field, message in INVALID:
            full = {"sync_response_seconds": "30", "result_ttl_hours": "12", **form}
            answer = http.post("/admin/settings", data={**full, "csrf_token": token})
            assert answer.status_code == 422, form
            assert message in _field_error(answer.text, field)
            # the API says the same about the same value (when JSON can carry it)
            if form[field] not in ("", "soon"):
                api = http.put(
                    "/api/settings",
                    json={field: float(form[field])},
                    headers={"X-CSRF-Token": token},
                )
                assert api.status_code == 422 and message in api.json()["errors"][field]
            assert http.get("/api/settings").json()["sync_response_seconds"] == 48


def test_the_settings_page_never_contains_a_stored_key(daemon: DaemonProcess) -> None:
    secret = "AIza-set-through-the-api-0123456789"
    with _signed_in(daemon) as (http, token):
        stored = http.put(
            "/api/settings",
            json={"provider_keys": {"gemini": secret, "turbotext": secret + "-tt"}},
            headers={"X-CSRF-Token": token},
        )
        assert stored.status_code == 200
        html = http.get("/admin/settings").text
        assert secret not in html and ENV_KEY not in html
        assert html.count("configured</span> since") == 2
        assert 'name="key" type="password"' in html and 'name="key" value' not in html
        short = http.post(
            "/admin/settings/ingest-password",
            data={"mode": "typed", "ingest_password": "1234567", "csrf_token": token},
        )
        assert short.status_code == 422 and "1234567" not in short.text
        unknown = http.post(
            "/admin/settings/provider-keys/midjourney", data={"key": "x", "csrf_token": token}
        )
        assert unknown.status_code == 404 and "unknown provider" in unknown.text


@pytest.mark.slow
def test_purge_runs_the_cleaner(daemon: DaemonProcess) -> None:
    job_id = _ingest(daemon, INGEST_PASSWORD).headers["x-job-id"]
    assert httpx.get(_url(daemon, f"/public/results/{job_id}")).status_code == 200
    daemon.sql("UPDATE job SET result_expires_at = 1 WHERE id = ?", job_id)
    with _signed_in(daemon) as (http, token):
        answer = http.post("/admin/settings/purge", data={"csrf_token": token})
        assert answer.status_code == 303
        assert answer.headers["location"] == (
            "/admin/settings?notice=purge%20of%20expired%20media%20and%20results%20started"
        )
    deadline = time.monotonic() + 10
    while "expired_results=1" not in daemon.log.read_text():
        assert time.monotonic() < deadline, "the purge did not run"
        time.sleep(0.05)
    assert httpx.get(_url(daemon, f"/public/results/{job_id}")).status_code in (404, 410)
