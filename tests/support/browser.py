"""A real browser for the web pages: Playwright for Python driving Debian's ``chromium``.

Playwright's own browser download is not reachable from our machines, so the suite launches
``/usr/bin/chromium`` (installed by tests/support/ensure_browser.sh) with the flags a closed
network needs.  The sync API runs its own event loop, so browser tests are plain (not Trio)
tests against a daemon in a subprocess (:class:`tests.support.daemon_process.DaemonProcess`).
Screenshots go to ``test-artefacts/screenshots/`` (kept by CI as artefacts, ignored by git).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artefacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    for candidate in ("chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found:
            return found
    return None


def require(tool: str | None, what: str) -> str:
    """The tool's path, or skip (fail when ``PHOTOCHANGER_REQUIRE_BROWSER=1``, as in CI)."""
    if tool:
        return tool
    message = f"{what} not found: browser tests skipped (tests/support/ensure_browser.sh)"
    if os.environ.get("PHOTOCHANGER_REQUIRE_BROWSER") == "1":
        pytest.fail(message + " — and PHOTOCHANGER_REQUIRE_BROWSER=1")
    pytest.skip(message)


@contextmanager
def launch_browser() -> Iterator[object]:
    """A headless Chromium (``playwright.sync_api.Browser``), closed on exit."""
    executable = require(chromium_path(), "chromium")
    from playwright.sync_api import sync_playwright

    # trio-asyncio (imported by the daemon's code) installs its own asyncio loop policy; the
    # sync API needs a plain asyncio loop of its own.  Restored for the Trio tests after us.
    policy = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_ARGS
            )
            try:
                yield browser
            finally:
                browser.close()
    finally:
        asyncio.set_event_loop_policy(policy)


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / (re.sub(r"[^a-z0-9_-]+", "-", name.lower()) + ".png")


def decode_qr(image: Path) -> list[str]:
    """Every QR code ``zbarimg`` finds in ``image`` (its text)."""
    zbarimg = require(shutil.which("zbarimg"), "zbarimg (zbar-tools)")
    done = subprocess.run(
        [zbarimg, "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", str(image)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return [line for line in done.stdout.splitlines() if line]
