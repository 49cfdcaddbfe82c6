"""The console's slot pages: dashboard, slot settings, templates, test run, gallery.

In a real browser (Playwright + Debian chromium) against the daemon in a subprocess, and over
plain HTTP for CSRF, escaping and upload limits.  What a page saves is checked through the JSON
API (``GET /api/slots/{id}`` with a Bearer token), what it turns off through a booth upload.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ConfigDict, Field

from photochangerd.web.console.slot_form import (
    fields_for,
    fields_for_model,
    parse_settings,
    values_from_settings,
)
from shared.slot_settings import CommonSettings
from tests.conftest import ADMIN_PASSWORD, INGEST_PASSWORD
from tests.support.browser import screenshot_path
from tests.support.daemon_process import DaemonProcess
from tests.support.images import make_frame_png, make_jpeg
from tests.test_web_console import sign_in

PHOTO = make_jpeg(800, 533)
FRAME = make_frame_png(800, 533)
SCRIPT_TAG = "<script>alert(1)</script>"
ESCAPED_TAG = "&lt;script&gt;alert(1)&lt;/script&gt;"


def _url(daemon: Any, path: str) -> str:
    return f"http://127.0.0.1:{daemon.port}{path}"


def api(daemon: Any) -> httpx.Client:
    """The JSON API with a Bearer token (what pcctl and scripts use)."""
    login = httpx.post(
        _url(daemon, "/api/login"), json={"username": "serg", "password": ADMIN_PASSWORD}
    )
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    return httpx.Client(
        base_url=_url(daemon, ""), headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def console(daemon: Any) -> tuple[httpx.Client, str]:
    """A signed-in console session over plain HTTP, and its CSRF token (from a page)."""
    http = httpx.Client(base_url=_url(daemon, ""), timeout=30)
    assert (
        http.post("/admin/login", data={"username": "serg", "password": ADMIN_PASSWORD})
    ).status_code == 303
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', http.get("/admin/").text)
    assert found is not None
    return http, found.group(1)


def booth_upload(daemon: Any, slot_id: str = "slot-001", photo: bytes = PHOTO) -> httpx.Response:
    return httpx.post(
        _url(daemon, f"/ingest/{slot_id}"),
        data={"password": INGEST_PASSWORD},
        files={"fileToUpload": ("IMG_0001.JPG", photo, "image/jpeg")},
        timeout=30,
    )


def slot_json(daemon: Any, slot_id: str) -> dict[str, Any]:
    with api(daemon) as client:
        response = client.get(f"/api/slots/{slot_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def visible_settings(page: Any) -> Any:
    return page.locator("fieldset.settings:not([disabled])")


# -- the form generator (no daemon) -----------------------------------------------------------


class _Stamp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    position: str = "bottom-right"
    size_percent: int = Field(default=14, ge=8, le=30, description="Side in percent.")


class _WithNested(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1)
    stamp: _Stamp = Field(default=_Stamp(), description="A stamp.")
    optional_stamp: _Stamp | None = None
    note: str | None = None
    scale: float = Field(default=7.5, ge=0.1, le=20)


def test_form_fields_follow_the_schema() -> None:
    fields = {f.name: f for f in fields_for_model(_WithNested)}
    assert fields["prompt"].kind == "textarea" and fields["prompt"].required
    stamp = fields["stamp"]
    assert stamp.kind == "group" and stamp.help == "A stamp."
    children = {c.name: c for c in stamp.children}
    assert children["stamp.enabled"].kind == "checkbox"
    size = children["stamp.size_percent"]
    assert (size.kind, size.minimum, size.maximum, size.default) == ("number", 8, 30, 14)
    assert size.help == "Side in percent."
    assert fields["optional_stamp"].kind == "group"
    assert fields["scale"].step == "any" and size.step == "1"
    # Back from a submitted form: typed, nested, empty optional fields omitted (never "").
    form = {
        "prompt": "a\r\nb",
        "stamp.enabled": "true",
        "stamp.position": "top-left",
        "stamp.size_percent": "20",
        "optional_stamp.size_percent": "",
        "note": "   ",
        "scale": "2.5",
    }
    settings = parse_settings(tuple(fields.values()), form)
    assert settings == {
        "prompt": "a\nb",
        "stamp": {"enabled": True, "position": "top-left", "size_percent": 20},
        "optional_stamp": {"enabled": False},
        "scale": 2.5,
    }
    assert _WithNested.model_validate(settings).stamp.size_percent == 20
    # Not a number: passed on as typed, so the API's validation names the problem.
    assert parse_settings(tuple(fields.values()), {"scale": "big"})["scale"] == "big"
    shown = values_from_settings(tuple(fields.values()), {"stamp": {"enabled": True}})
    assert shown["stamp.enabled"] is True and shown["stamp.size_percent"] == "14"


def test_every_catalogue_choice_has_a_form() -> None:
    gemini = {f.name: f for f in fields_for("gemini", "edit")}
    assert (
        gemini["model"].kind == "select" and "gemini-3-pro-image-preview" in gemini["model"].options
    )
    assert gemini["aspect_ratio"].blank_option  # optional: "not set" is a choice
    assert gemini["output_format"].options == ("jpeg", "png", "webp", "original")
    assert fields_for("turbotext", "face_swap")[-1].kind in ("checkbox", "group")
    assert fields_for("nobody", "nothing") == ()


# -- in a real browser ------------------------------------------------------------------------


@pytest.mark.slow
def test_dashboard_lists_the_15_slots(browser: Any, web_daemon: Any) -> None:
    assert booth_upload(web_daemon, "slot-001").status_code == 200
    assert booth_upload(web_daemon, "slot-003").status_code == 200
    with api(web_daemon) as client:
        changed = client.put(
            "/api/slots/slot-002",
            json={"provider": "gemini", "operation": "edit", "settings": {"prompt": "Cartoon"}},
        )
        assert changed.status_code == 200, changed.text
        assert client.put("/api/slots/slot-005", json={"is_active": False}).status_code == 200
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, web_daemon)
    cards = page.locator(".slot-card")
    assert cards.count() == 15
    first = cards.nth(0)
    assert "slot-001" in first.inner_text() and "local/passthrough" in first.inner_text()
    assert "1 ok" in first.inner_text()
    thumb = first.locator("img")
    thumb.wait_for()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle()
    )
    ingest = f"http://127.0.0.1:{web_daemon.port}/ingest/slot-001"
    assert first.locator("button[data-copy]").get_attribute("data-copy") == ingest
    gemini = cards.nth(1)
    assert "gemini/edit" in gemini.inner_text()
    assert "No gemini API key configured" in gemini.inner_text()
    assert "API key" not in first.inner_text()
    assert "Off" in cards.nth(4).inner_text()
    assert page.get_by_role("button", name="Turn on slot-005").count() == 1
    page.screenshot(path=screenshot_path("console-slots-dashboard"), full_page=True)

    phone = browser.new_page(viewport={"width": 375, "height": 800})
    sign_in(phone, web_daemon)
    assert phone.locator(".slot-card").count() == 15
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the page is {width} px wide at 375 px"
    box = phone.locator(".slot-card").nth(0).bounding_box()
    assert box is not None and box["width"] <= 375  # one card per row
    phone.screenshot(path=screenshot_path("console-slots-dashboard-375"), full_page=True)


@pytest.mark.slow
def test_edit_provider_operation_and_prompt(browser: Any, web_daemon: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, web_daemon)
    page.get_by_role("link", name="slot-004").click()
    page.wait_for_url(_url(web_daemon, "/admin/slots/slot-004"))
    assert page.locator("h1").count() == 1
    page.get_by_label("Display name").fill("Wedding cartoon")
    page.get_by_label("Provider").select_option("gemini")  # JS shows its settings at once
    settings = visible_settings(page)
    assert settings.get_attribute("data-choice") == "gemini/edit"
    assert page.get_by_label("Operation").input_value() == "edit"
    settings.get_by_label("Prompt").fill("Turn the photo into a watercolour cartoon")
    settings.get_by_label("Model").select_option("gemini-3-pro-image-preview")
    settings.get_by_label("Image size").select_option("2K")
    if "qr_stamp" in CommonSettings.model_fields:
        settings.get_by_label("Size percent").fill("20")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r".*/admin/slots/slot-004\?notice=Saved\.$"))
    assert page.locator(".notice").inner_text() == "Saved."

    saved = slot_json(web_daemon, "slot-004")
    assert (saved["provider"], saved["operation"]) == ("gemini", "edit")
    assert saved["display_name"] == "Wedding cartoon"
    assert saved["settings"]["prompt"] == "Turn the photo into a watercolour cartoon"
    assert saved["settings"]["model"] == "gemini-3-pro-image-preview"
    assert saved["settings"]["image_size"] == "2K"
    assert saved["settings"]["max_input_pixels"] == 4_000_000  # typed, not "4000000"
    if "qr_stamp" in CommonSettings.model_fields:  # a nested object: a fieldset of its own
        assert saved["settings"]["qr_stamp"]["size_percent"] == 20
    assert "aspect_ratio" not in saved["settings"]  # left empty: omitted, not ""
    assert "" not in saved["settings"].values()
    # The page shows what was saved.
    assert visible_settings(page).get_by_label("Prompt").input_value().startswith("Turn the")
    assert page.get_by_label("Provider").input_value() == "gemini"
    # Last: after a full-page capture of this tall page, Chromium delivered the next click
    # off its target (measured: the Save click reached the form, nothing was submitted).
    page.screenshot(path=screenshot_path("console-slot-edit"), full_page=True)


@pytest.mark.slow
def test_invalid_values_show_their_errors_and_save_nothing(browser: Any, web_daemon: Any) -> None:
    before = slot_json(web_daemon, "slot-006")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, web_daemon)
    page.goto(_url(web_daemon, "/admin/slots/slot-006"))
    page.get_by_label("Display name").fill("Kept as typed")
    page.get_by_label("Provider").select_option("gemini")
    settings = visible_settings(page)
    settings.get_by_label("Prompt").fill("")
    settings.get_by_label("Max input pixels").fill("100")
    page.get_by_role("button", name="Save").click()
    page.wait_for_load_state()
    prompt = visible_settings(page).get_by_label("Prompt")
    assert prompt.get_attribute("aria-invalid") == "true"
    prompt_error = page.locator("#s-gemini-edit-prompt-error")
    assert prompt_error.inner_text() == "Field required"
    assert prompt_error.get_attribute("id") in (prompt.get_attribute("aria-describedby") or "")
    pixels_error = page.locator("#s-gemini-edit-max-input-pixels-error")
    assert "greater than or equal to 250000" in pixels_error.inner_text()
    # The submitted values are kept, the chosen provider's settings still shown.
    assert visible_settings(page).get_attribute("data-choice") == "gemini/edit"
    assert visible_settings(page).get_by_label("Max input pixels").input_value() == "100"
    assert page.get_by_label("Display name").input_value() == "Kept as typed"
    page.screenshot(path=screenshot_path("console-slot-errors"), full_page=True)
    after = slot_json(web_daemon, "slot-006")
    assert after["version"] == before["version"] and after["provider"] == "local"
    assert after["display_name"] == before["display_name"]


def test_fallbacks_are_edited_on_the_slot_page(browser: Any, web_daemon: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, web_daemon)
    page.goto(_url(web_daemon, "/admin/slots/slot-007"))
    section = page.locator("#fallbacks")
    assert "No fallbacks" in section.inner_text()
    editor = page.get_by_label("Chain (JSON, up to 3 steps)")
    assert editor.input_value() == "[]"
    # Refused with the API's message, the text kept as typed, nothing saved.
    wrong = '[{"provider": "local", "operation": "paint"}]'
    editor.fill(wrong)
    page.get_by_role("button", name="Update fallbacks").click()
    page.wait_for_load_state()
    error = page.locator("#fallbacks-error")
    assert "fallbacks.0.operation: local supports:" in error.inner_text()
    assert page.get_by_label("Chain (JSON, up to 3 steps)").input_value() == wrong
    assert slot_json(web_daemon, "slot-007")["fallbacks"] == []
    page.get_by_label("Chain (JSON, up to 3 steps)").fill(
        '[{"provider": "local", "operation": "sepia", "reserve_seconds": 4}]'
    )
    page.get_by_role("button", name="Update fallbacks").click()
    page.wait_for_load_state()
    assert "Fallbacks saved." in page.content()
    assert "local/sepia" in page.locator("#fallbacks li").inner_text()
    assert "keeps 4 s" in page.locator("#fallbacks li").inner_text()
    page.screenshot(path=screenshot_path("console-slot-fallbacks"), full_page=True)
    [step] = slot_json(web_daemon, "slot-007")["fallbacks"]
    assert (step["operation"], step["reserve_seconds"]) == ("sepia", 4.0)


@pytest.mark.slow
def test_without_javascript_show_its_settings_then_save(browser: Any, web_daemon: Any) -> None:
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    sign_in(page, web_daemon)
    page.goto(_url(web_daemon, "/admin/slots/slot-007"))
    page.get_by_label("Provider").select_option("openai")
    page.get_by_role("button", name="Show its settings").click()
    page.wait_for_url(re.compile(r".*/admin/slots/slot-007\?provider=openai&operation=\w+$"))
    settings = visible_settings(page)
    assert settings.get_attribute("data-choice") == "openai/edit"
    settings.get_by_label("Prompt").fill("Studio portrait lighting")
    settings.get_by_label("Quality").select_option("high")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r".*/admin/slots/slot-007\?notice=Saved\.$"))
    saved = slot_json(web_daemon, "slot-007")
    assert (saved["provider"], saved["operation"]) == ("openai", "edit")
    assert saved["settings"]["quality"] == "high"
    assert saved["settings"]["prompt"] == "Studio portrait lighting"
    context.close()


@pytest.mark.slow
def test_frame_template_upload_bind_and_switch(browser: Any, web_daemon: Any) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, web_daemon)
    page.goto(_url(web_daemon, "/admin/slots/slot-008"))
    # local/frame without a frame template: the API's rule, shown, nothing saved.
    page.get_by_label("Operation").select_option("frame")
    page.get_by_role("button", name="Save").click()
    page.wait_for_load_state()
    assert "needs a template with role 'frame'" in page.get_by_role("alert").first.inner_text()
    assert slot_json(web_daemon, "slot-008")["operation"] == "passthrough"

    page.get_by_label("Bind it as").select_option("frame")
    page.get_by_label("Image", exact=True).set_input_files(
        files=[{"name": "frame.png", "mimeType": "image/png", "buffer": FRAME}]
    )
    page.get_by_role("button", name="Upload").click()
    page.wait_for_url(re.compile(r".*/admin/slots/slot-008\?notice=.*#templates$"))
    assert "bound as frame" in page.locator(".notice").inner_text()
    preview = page.locator(".template-item img")
    assert preview.count() == 1
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=preview.element_handle()
    )
    [binding] = slot_json(web_daemon, "slot-008")["template_media"]
    assert binding["role"] == "frame" and (binding["width"], binding["height"]) == (800, 533)

    page.get_by_label("Provider").select_option("local")
    page.get_by_label("Operation").select_option("frame")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r".*/admin/slots/slot-008\?notice=Saved\.$"))
    saved = slot_json(web_daemon, "slot-008")
    assert (saved["provider"], saved["operation"]) == ("local", "frame")
    page.screenshot(path=screenshot_path("console-slot-frame"), full_page=True)

    # Unbinding the frame a frame slot needs is refused by the same validation.
    page.get_by_role("button", name=f"Unbind frame template {binding['template_id']}").click()
    page.wait_for_load_state()
    assert "needs a template with role 'frame'" in page.get_by_role("alert").first.inner_text()
    assert len(slot_json(web_daemon, "slot-008")["template_media"]) == 1
    # A booth's photo now comes back framed.
    framed = booth_upload(web_daemon, "slot-008")
    assert framed.status_code == 200 and framed.content != PHOTO


@pytest.mark.slow
def test_test_run_shows_the_result_and_the_gallery_lists_it(browser: Any, web_daemon: Any) -> None:
    booth = booth_upload(web_daemon, "slot-009")
    assert booth.status_code == 200
    booth_job = booth.headers["x-job-id"]
    # A provider that takes its time, so the "processing" state can be seen.
    web_daemon.sql(
        "UPDATE slot SET provider='script', operation='echo', settings='{\"seconds\": 1.5}'"
        " WHERE id='slot-010'"
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, web_daemon)
    page.goto(_url(web_daemon, "/admin/slots/slot-010"))
    page.get_by_label("Photo").set_input_files(
        files=[{"name": "test.jpg", "mimeType": "image/jpeg", "buffer": PHOTO}]
    )
    # The "processing" state, seen before the page is left: the first submit is held back.
    page.evaluate(
        """() => document.querySelector("form[data-processing]").addEventListener(
            "submit", (event) => event.preventDefault(), {once: true})"""
    )
    page.get_by_role("button", name="Run test").click()
    assert page.locator("[data-processing-status]").is_visible()
    assert page.get_by_role("button", name="Processing…").is_disabled()
    page.evaluate('() => document.querySelector("form[data-processing]").requestSubmit()')
    page.wait_for_url(
        re.compile(r".*/admin/slots/slot-010\?test_job=[\w-]+#test-run$"), timeout=30_000
    )
    result = page.locator(".test-result img.result")
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=result.element_handle()
    )
    job_id = page.url.split("test_job=")[1].split("#")[0]
    assert "Done in" in page.locator(".test-result").inner_text()
    seconds = re.search(r"Done in ([0-9.]+) s", page.locator(".test-result").inner_text())
    assert seconds is not None and float(seconds.group(1)) >= 1.5
    links = page.locator(".test-result a")
    assert links.nth(0).get_attribute("href") == f"/r/{job_id}"
    assert links.nth(1).get_attribute("href") == f"/public/results/{job_id}"
    download = httpx.get(_url(web_daemon, f"/public/results/{job_id}"))
    assert download.status_code == 200 and download.content == PHOTO  # echo gives it back
    gallery = page.locator("#gallery .gallery-item")
    assert gallery.count() == 1
    assert gallery.first.locator("a").first.get_attribute("href") == f"/r/{job_id}"
    assert "test run" in gallery.first.inner_text()
    page.screenshot(path=screenshot_path("console-slot-test-run"), full_page=True)
    phone = browser.new_page(viewport={"width": 375, "height": 800})
    sign_in(phone, web_daemon)
    phone.goto(_url(web_daemon, f"/admin/slots/slot-010?test_job={job_id}"))
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"the slot page is {width} px wide at 375 px"
    phone.screenshot(path=screenshot_path("console-slot-375"), full_page=True)

    # The booth's result in its slot's gallery: thumbnail, time, size, guest page, download.
    page.goto(_url(web_daemon, "/admin/slots/slot-009"))
    item = page.locator("#gallery .gallery-item").first
    assert item.locator("a").first.get_attribute("href") == f"/r/{booth_job}"
    assert item.get_by_role("link", name="Download").get_attribute("href") == (
        f"/public/results/{booth_job}"
    )
    assert re.search(r"\d+ KB", item.inner_text()) and "booth" in item.inner_text()
    item.scroll_into_view_if_needed()  # the thumbnails load lazily
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0",
        arg=item.locator("img").element_handle(),
    )


@pytest.mark.slow
def test_toggling_a_slot_off_makes_the_booth_ingest_404(browser: Any, web_daemon: Any) -> None:
    assert booth_upload(web_daemon, "slot-011").status_code == 200
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, web_daemon)
    page.get_by_role("button", name="Turn off slot-011").click()
    page.wait_for_url(re.compile(r".*/admin/\?notice=.+"))
    assert "slot-011 is off" in page.locator(".notice").inner_text()
    refused = booth_upload(web_daemon, "slot-011")
    assert refused.status_code == 404
    assert refused.json()["failure_reason"] == "slot_disabled"
    assert slot_json(web_daemon, "slot-011")["is_active"] is False
    page.screenshot(path=screenshot_path("console-slots-toggled-off"), full_page=True)
    page.get_by_role("button", name="Turn on slot-011").click()
    page.wait_for_url(re.compile(r".*/admin/\?notice=.+"))
    assert booth_upload(web_daemon, "slot-011").status_code == 200


# -- over plain HTTP --------------------------------------------------------------------------


@pytest.mark.slow
def test_every_slot_post_needs_the_csrf_token(web_daemon: Any) -> None:
    http, token = console(web_daemon)
    before = slot_json(web_daemon, "slot-012")
    form = {"provider": "local", "operation": "grayscale", "display_name": "x", "version": "1"}
    image = {"file": ("f.png", FRAME, "image/png")}
    photo = {"test_image": ("t.jpg", PHOTO, "image/jpeg")}
    routes: list[tuple[str, dict[str, Any]]] = [
        ("/admin/slots/slot-012", {"data": form}),
        ("/admin/slots/slot-012/active", {"data": {"is_active": "false"}}),
        ("/admin/slots/slot-012/templates", {"files": image, "data": {"role": "frame"}}),
        ("/admin/slots/slot-012/templates/bind", {"data": {"role": "frame", "template_id": "x"}}),
        ("/admin/slots/slot-012/templates/unbind", {"data": {"position": "0", "template_id": "x"}}),
        ("/admin/slots/slot-012/test-run", {"files": photo}),
        ("/admin/slots/slot-012/fallbacks", {"data": {"fallbacks": "[]"}}),
    ]
    for path, body in routes:
        refused = http.post(path, **body)
        assert refused.status_code == 403, path
        assert refused.json()["details"] == "missing or wrong CSRF token", path
        wrong = http.post(path + "?csrf_token=" + "0" * 64, **body)
        assert wrong.status_code == 403, path
        if "files" in body:  # a multipart body is not parsed for it: only the URL counts
            in_body = http.post(path, files=body["files"], data={"csrf_token": token})
            assert in_body.status_code == 403, path
    after = slot_json(web_daemon, "slot-012")
    assert after["version"] == before["version"] and after["template_media"] == []
    with api(web_daemon) as client:
        assert client.get("/api/template-media").json()["template_media"] == []
        assert client.get("/api/jobs?slot_id=slot-012").json()["jobs"] == []
    # With the token the same requests do their work (the test above can fail).
    done = http.post(
        "/admin/slots/slot-012/active", data={"is_active": "false", "csrf_token": token}
    )
    assert done.status_code == 303
    assert slot_json(web_daemon, "slot-012")["is_active"] is False
    ran = http.post(f"/admin/slots/slot-012/test-run?csrf_token={token}", files=photo)
    assert ran.status_code == 303 and "test_job=" in ran.headers["location"]
    http.close()


@pytest.mark.slow
def test_names_and_prompts_are_escaped(web_daemon: Any) -> None:
    http, token = console(web_daemon)
    saved = http.post(
        "/admin/slots/slot-013",
        data={
            "csrf_token": token,
            "display_name": f"Booth {SCRIPT_TAG}",
            "is_active": "true",
            "provider": "gemini",
            "operation": "edit",
            "prompt": f"Paint it {SCRIPT_TAG}",
        },
    )
    assert saved.status_code == 303, saved.text
    assert slot_json(web_daemon, "slot-013")["settings"]["prompt"] == f"Paint it {SCRIPT_TAG}"
    for path in ("/admin/", "/admin/slots/slot-013"):
        html = http.get(path).text
        assert SCRIPT_TAG not in html, path
        assert f"Booth {ESCAPED_TAG}" in html, path
    slot_page = http.get("/admin/slots/slot-013").text
    assert f"Paint it {ESCAPED_TAG}</textarea>" in slot_page
    # A rejected save shows the submitted values again: escaped too.
    rejected = http.post(
        "/admin/slots/slot-013",
        data={
            "csrf_token": token,
            "display_name": SCRIPT_TAG,
            "provider": "gemini",
            "operation": "edit",
            "prompt": SCRIPT_TAG,
            "max_input_pixels": "1",
        },
    )
    assert rejected.status_code == 422
    assert SCRIPT_TAG not in rejected.text and f"{ESCAPED_TAG}</textarea>" in rejected.text
    http.close()


@pytest.mark.slow
def test_a_stale_form_saves_nothing(web_daemon: Any) -> None:
    http, token = console(web_daemon)
    found = re.search(r'name="version" value="(\d+)"', http.get("/admin/slots/slot-014").text)
    assert found is not None
    with api(web_daemon) as client:
        other = client.put("/api/slots/slot-014", json={"display_name": "Changed elsewhere"})
        assert other.status_code == 200
    form = {
        "csrf_token": token,
        "version": found.group(1),
        "display_name": "Mine",
        "is_active": "true",
        "provider": "local",
        "operation": "sepia",
    }
    stale = http.post("/admin/slots/slot-014", data=form)
    assert stale.status_code == 409
    assert "changed by serg since you opened it: nothing was saved" in stale.text
    assert 'value="Mine"' in stale.text  # what was typed is kept
    assert slot_json(web_daemon, "slot-014")["display_name"] == "Changed elsewhere"
    fresh = re.search(r'name="version" value="(\d+)"', stale.text)
    assert fresh is not None and fresh.group(1) != found.group(1)
    saved = http.post("/admin/slots/slot-014", data={**form, "version": fresh.group(1)})
    assert saved.status_code == 303
    assert slot_json(web_daemon, "slot-014")["display_name"] == "Mine"
    assert slot_json(web_daemon, "slot-014")["operation"] == "sepia"
    missing = http.get("/admin/slots/slot-099")
    assert missing.status_code == 404 and "No such slot" in missing.text
    http.close()


@pytest.fixture
def small_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    """A daemon whose upload limit is 1 MiB (``max_upload_mb``)."""
    process = DaemonProcess(tmp_path / "data")
    process.env["PHOTOCHANGER_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{process.port}"
    process.env["PHOTOCHANGER_MAX_UPLOAD_MB"] = "1"
    try:
        process.start()
        yield process
    finally:
        process.stop()


@pytest.mark.slow
def test_uploads_over_the_limit_get_the_api_413(small_daemon: DaemonProcess) -> None:
    http, token = console(small_daemon)
    streamed = make_jpeg(1600, 1067, grain=0.6)  # > 1 MiB photo, < the body bound
    declared = make_jpeg(2400, 1600, grain=1.0)  # its Content-Length alone is over the limit
    assert 1024 * 1024 < len(streamed) < 2 * 1024 * 1024 < len(declared)
    json_only = {"Accept": "application/json"}
    with api(small_daemon) as client:
        for photo in (streamed, declared):
            expected = client.post("/api/template-media", files={"file": ("t.jpg", photo)})
            assert expected.status_code == 413
            assert expected.json()["failure_reason"] == "payload_too_large"
            upload = f"/admin/slots/slot-001/templates?csrf_token={token}"
            files = {"file": ("t.jpg", photo, "image/jpeg")}
            as_json = http.post(upload, files=files, data={"role": "frame"}, headers=json_only)
            assert (as_json.status_code, as_json.json()) == (413, expected.json())
            as_page = http.post(upload, files=files, data={"role": "frame"})
            assert as_page.status_code == 413
            assert as_page.headers["content-type"].startswith("text/html")
            assert expected.json()["details"] in as_page.text

            expected_run = client.post(
                "/api/slots/slot-001/test-run", files={"test_image": ("t.jpg", photo)}
            )
            assert expected_run.status_code == 413
            run = f"/admin/slots/slot-001/test-run?csrf_token={token}"
            photo_part = {"test_image": ("t.jpg", photo, "image/jpeg")}
            run_json = http.post(run, files=photo_part, headers=json_only)
            assert (run_json.status_code, run_json.json()) == (413, expected_run.json())
            run_page = http.post(run, files=photo_part)
            assert run_page.status_code == 413
            assert expected_run.json()["details"] in run_page.text
        assert client.get("/api/template-media").json()["template_media"] == []
    # Within the limit the same form works.
    fits = http.post(
        f"/admin/slots/slot-001/templates?csrf_token={token}",
        files={"file": ("f.png", make_frame_png(300, 200), "image/png")},
        data={"role": "frame"},
    )
    assert fits.status_code == 303, fits.text
    assert slot_json(small_daemon, "slot-001")["template_media"][0]["role"] == "frame"
    http.close()
