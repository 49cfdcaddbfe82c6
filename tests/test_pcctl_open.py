"""``pcctl open [SLOT]``: the console's address, opened in a browser on a terminal only.

In-process (CliRunner) for the address and the decisions, and as a real process on a real
pseudo-terminal with ``$BROWSER`` pointing at a recording script for the browser itself; the
printed address is then fetched from a real daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import webbrowser
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pcctl.commands import open as open_module
from tests.test_pcctl import REPO, Pcctl, PcctlDaemon, running_daemon


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcctlDaemon]:
    with running_daemon(tmp_path_factory.mktemp("pcctl-open-daemon")) as running:
        yield running


@pytest.fixture
def pcctl(daemon: PcctlDaemon, tmp_path: Path) -> Pcctl:
    runner = Pcctl(daemon, tmp_path / "home")
    runner.login()
    return runner


class RecordingBrowser(webbrowser.BaseBrowser):
    def __init__(self, works: bool = True) -> None:
        super().__init__("recording")
        self.opened: list[tuple[str, int]] = []
        self.works = works

    def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
        self.opened.append((url, new))
        return self.works


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> RecordingBrowser:
    recording = RecordingBrowser()
    monkeypatch.setattr(webbrowser, "get", lambda using=None: recording)
    return recording


def test_prints_the_console_url_of_the_logged_in_server(
    pcctl: Pcctl, daemon: PcctlDaemon, browser: RecordingBrowser
) -> None:
    assert pcctl.ok("open").stdout == f"{daemon.url}/admin/\n"
    assert pcctl.ok("open", "slot-003").stdout == f"{daemon.url}/admin/slots/slot-003\n"
    assert pcctl.json("open", "slot-015") == {"url": f"{daemon.url}/admin/slots/slot-015"}
    assert browser.opened == []  # piped: never a browser

    # the address works: the console asks to sign in and comes back to it
    with httpx.Client() as http:
        for path in ("/admin/", "/admin/slots/slot-003"):
            answer = http.get(f"{daemon.url}{path}")
            assert answer.status_code == 302
            assert answer.headers["location"] == f"/admin/login?next={path}"


def test_server_from_the_option_or_environment_without_login(
    tmp_path: Path, browser: RecordingBrowser
) -> None:
    anonymous = Pcctl(PcctlDaemon(tmp_path), tmp_path / "nobody")  # never started
    assert anonymous.ok("open").stdout == "http://127.0.0.1:8080/admin/\n"  # the default
    given = anonymous.ok("--server", "booth-server:8080/", "open", "slot-001").stdout
    assert given == "http://booth-server:8080/admin/slots/slot-001\n"
    from_env = anonymous.ok("open", env={"PCCTL_SERVER": "https://pc.example/"}).stdout
    assert from_env == "https://pc.example/admin/\n"
    assert browser.opened == []


@pytest.mark.parametrize("slot_id", ["slot-016", "slot-3", "../etc", "slot-000"])
def test_unknown_slots_are_not_found(pcctl: Pcctl, slot_id: str) -> None:
    result = pcctl("open", slot_id)
    assert result.exit_code == 4 and result.stdout == ""
    assert f"error: no such slot: {slot_id}" in result.stderr
    assert "slot-001 … slot-015" in result.stderr


def test_on_a_terminal_it_opens_the_browser(
    pcctl: Pcctl, daemon: PcctlDaemon, browser: RecordingBrowser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(open_module, "on_terminal", lambda state: True)
    result = pcctl.ok("open", "slot-007")
    url = f"{daemon.url}/admin/slots/slot-007"
    assert result.stdout == url + "\n" and "opened in your browser" in result.stderr
    assert browser.opened == [(url, 2)]  # a new tab

    pcctl.ok("open", "--print-only")
    pcctl.ok("open", "--output", "json")
    assert browser.opened == [(url, 2)]  # neither of them starts one

    browser.works = False
    failed = pcctl.ok("open")
    assert failed.stdout == f"{daemon.url}/admin/\n"
    assert "the browser did not start" in failed.stderr


def test_on_a_terminal_without_a_browser_it_only_prints(
    pcctl: Pcctl, daemon: PcctlDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_browser(using: str | None = None) -> webbrowser.BaseBrowser:
        raise webbrowser.Error("could not locate runnable browser")

    monkeypatch.setattr(webbrowser, "get", no_browser)
    monkeypatch.setattr(open_module, "on_terminal", lambda state: True)
    result = pcctl.ok("open")
    assert result.stdout == f"{daemon.url}/admin/\n"
    assert "no browser found here" in result.stderr


def _on_a_pty(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``pcctl ARGS`` with its stdout on a pseudo-terminal: exit status, stdout, stderr."""
    leader, follower = os.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pcctl", *args],
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=subprocess.PIPE,
            env=env,
            timeout=60,
            check=False,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    output = b"".join(chunks).decode().replace("\r\n", "\n")
    return done.returncode, output, done.stderr.decode()


def _process_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PCCTL_") and key not in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY")
    }
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "NO_COLOR": "1",
            "PATH": str(tmp_path / "empty-bin"),  # no xdg-open, www-browser, lynx…
        }
    )
    (tmp_path / "empty-bin").mkdir(exist_ok=True)
    env.update(extra)
    return env


@pytest.mark.slow
def test_a_real_terminal_and_browser_command(tmp_path: Path) -> None:
    record = tmp_path / "opened.txt"
    fake = tmp_path / "fake-browser"
    fake.write_text(
        f"#!{sys.executable}\nimport pathlib, sys\n"
        f"pathlib.Path({str(record)!r}).write_text(' '.join(sys.argv[1:]))\n"
    )
    fake.chmod(0o755)
    env = _process_env(tmp_path, BROWSER=str(fake))
    status, out, err = _on_a_pty(["--server", "http://pc.example:8080", "open", "slot-002"], env)
    assert status == 0, err
    assert out == "http://pc.example:8080/admin/slots/slot-002\n"
    assert record.read_text() == "http://pc.example:8080/admin/slots/slot-002"
    assert "opened in your browser" in err

    record.unlink()
    status, out, err = _on_a_pty(["open", "--print-only"], env)
    assert status == 0 and out == "http://127.0.0.1:8080/admin/\n"
    assert not record.exists()

    piped = subprocess.run(
        [sys.executable, "-m", "pcctl", "open", "--output", "json"],
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert json.loads(piped.stdout) == {"url": "http://127.0.0.1:8080/admin/"}
    assert not record.exists()

    status, out, err = _on_a_pty(["open"], _process_env(tmp_path))  # no browser at all
    assert status == 0 and out == "http://127.0.0.1:8080/admin/\n"
    assert "no browser found here" in err
