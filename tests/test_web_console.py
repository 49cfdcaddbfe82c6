"""The admin console in a real browser (Playwright + Debian chromium) and over plain HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD
from tests.support.browser import screenshot_path


def _url(daemon: Any, path: str) -> str:
    return f"http://127.0.0.1:{daemon.port}{path}"


def sign_in(page: Any, daemon: Any, username: str = "serg") -> None:
    page.goto(_url(daemon, "/admin/"))
    assert "/admin/login" in page.url
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(_url(daemon, "/admin/"))


@pytest.mark.slow
def test_sign_in_dashboard_sign_out(browser: Any, web_daemon: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(_url(web_daemon, "/admin/login"))
    page.screenshot(path=screenshot_path("console-login"), full_page=True)
    sign_in(page, web_daemon)
    assert page.locator("h1").count() == 1
    assert page.get_by_role("link", name="slot-015", exact=False).count() >= 1
    page.screenshot(path=screenshot_path("console-dashboard"), full_page=True)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(_url(web_daemon, "/admin/login?notice=signed%20out"))
    page.goto(_url(web_daemon, "/admin/"))
    assert "/admin/login" in page.url  # the session ended on the server too


@pytest.mark.slow
def test_wrong_password_stays_on_the_sign_in_page(browser: Any, web_daemon: Any) -> None:
    page = browser.new_page()
    page.goto(_url(web_daemon, "/admin/login"))
    page.get_by_label("Username").fill("serg")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "wrong username or password"


def test_session_cookie_flags_and_csrf(web_daemon: Any) -> None:
    with httpx.Client(base_url=_url(web_daemon, "")) as http:
        signed = http.post("/admin/login", data={"username": "serg", "password": ADMIN_PASSWORD})
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert "secure" not in cookie  # plain http here; https public_base_url sets it
        refused = http.post("/admin/logout")
        assert refused.status_code == 403
        assert refused.json()["details"] == "missing or wrong CSRF token"
        page = http.get("/admin/")
        assert page.status_code == 200
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert "unsafe-inline" not in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        fetch = httpx.get(_url(web_daemon, "/admin/"), headers={"Accept": "application/json"})
        assert fetch.status_code == 401 and fetch.json()["failure_reason"] == "unauthorized"
        anonymous = httpx.get(_url(web_daemon, "/admin/?slot=slot-003"))
        assert anonymous.status_code == 302
        assert anonymous.headers["location"] == "/admin/login?next=/admin/%3Fslot%3Dslot-003"


def test_the_api_documentation_renders_under_the_content_security_policy(
    browser: Any, web_daemon: Any
) -> None:
    """Swagger UI was started by an inline script that the daemon's CSP (script-src 'self')
    blocks: the page stayed blank."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    blocked: list[str] = []
    page.on(
        "console", lambda message: blocked.append(message.text) if message.type == "error" else None
    )
    response = page.goto(_url(web_daemon, "/api/docs"))
    assert (
        response is not None and "script-src 'self'" in response.headers["content-security-policy"]
    )
    page.get_by_text("/api/slots", exact=True).first.wait_for(timeout=15_000)
    assert page.locator(".opblock").count() > 10  # the operations, rendered from the document
    assert not [text for text in blocked if "Content Security Policy" in text], blocked
    page.screenshot(path=screenshot_path("api-docs"), full_page=False)
