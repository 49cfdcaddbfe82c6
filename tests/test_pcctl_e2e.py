"""pcctl as a real process (``python -m pcctl``) against a real daemon: pipes, not terminals;
a pseudo-terminal for the progress bar; exit codes as a shell sees them."""

from __future__ import annotations

import contextlib
import os
import pty
import shlex
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pcctl import config as pcctl_config
from tests.conftest import ADMIN_PASSWORD
from tests.support.images import make_jpeg
from tests.test_pcctl import REPO, PcctlDaemon, _free_port, running_daemon

EDITOR = shlex.join([sys.executable, str(REPO / "tests" / "support" / "editor.py")])


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcctlDaemon]:
    with running_daemon(tmp_path_factory.mktemp("pcctl-e2e-daemon")) as running:
        yield running


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pcctl-e2e-home")


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PCCTL_", "NO_COLOR"))}
    env.update({"XDG_CONFIG_HOME": str(home), "PYTHONPATH": str(REPO), **extra})
    for name in ("VISUAL", "EDITOR"):
        env.pop(name, None)
    return env


def run(
    home: Path, *args: str, input: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pcctl", *args],
        env=_env(home, **env),
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def logged_in(daemon: PcctlDaemon, home: Path) -> Path:
    done = run(
        home,
        "login",
        "--server",
        daemon.url,
        "--user",
        "serg",
        "--password-stdin",
        input=ADMIN_PASSWORD + "\n",
    )
    assert done.returncode == 0, done.stderr
    return home


def test_login_with_password_stdin_writes_0600(daemon: PcctlDaemon, logged_in: Path) -> None:
    path = logged_in / "pcctl" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert pcctl_config.load(path).server == daemon.url
    assert ADMIN_PASSWORD not in path.read_text()


def test_piped_output_is_plain_and_uncoloured(logged_in: Path) -> None:
    done = run(logged_in, "slot", "list")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert len(lines) == 15 and all(line.count("\t") == 6 for line in lines)
    assert "\x1b" not in done.stdout
    forced = run(logged_in, "slot", "list", "--output", "table", NO_COLOR="1")
    assert "slot-001" in forced.stdout and "\x1b" not in forced.stdout


def test_slot_test_over_pipes_has_no_progress_bar(logged_in: Path, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(make_jpeg(1600, 1200))
    result = tmp_path / "out.jpg"
    done = run(logged_in, "slot", "test", "slot-001", str(photo), "--save", str(result))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    fields = dict(line.split("\t", 1) for line in done.stdout.splitlines())
    assert fields["saved_to"] == str(result)
    assert result.read_bytes() == photo.read_bytes()  # passthrough


def _run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (stdout stays a pipe): (status, stdout, terminal)."""
    master, slave = pty.openpty()
    captured: list[bytes] = []

    def drain() -> None:
        with contextlib.suppress(OSError):
            while chunk := os.read(master, 65536):
                captured.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        proc = subprocess.Popen(
            args, env={**env, "COLUMNS": "100"}, stdout=subprocess.PIPE, stderr=slave, text=True
        )
        os.close(slave)
        stdout, _ = proc.communicate(timeout=60)
    finally:
        reader.join(10)
        os.close(master)
    return proc.returncode, stdout, b"".join(captured).decode(errors="replace")


def test_progress_bar_only_on_a_terminal(logged_in: Path, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(make_jpeg(1600, 1200))
    status, stdout, terminal = _run_on_a_terminal(
        [sys.executable, "-m", "pcctl", "slot", "test", "slot-001", str(photo)],
        _env(logged_in),
    )
    assert status == 0, terminal
    assert "uploading photo.jpg" in terminal or "waiting for the result" in terminal
    assert "\x1b[?25h" in terminal  # the cursor is given back when the bar goes
    assert "job_id\t" in stdout and "\x1b" not in stdout  # the data on the pipe stays clean


def test_edit_through_visual_and_pcctl_editor(logged_in: Path, tmp_path: Path) -> None:
    script = tmp_path / "steps.json"
    script.write_text(
        '[{"replace": [["display_name = \\"Slot 2\\"", "display_name = \\"E2E\\""]]}]'
    )
    done = run(
        logged_in,
        "slot",
        "edit",
        "slot-002",
        VISUAL="false",  # would fail: PCCTL_EDITOR wins
        EDITOR="false",
        PCCTL_EDITOR=EDITOR,
        PCCTL_TEST_EDITOR_SCRIPT=str(script),
    )
    assert done.returncode == 0, done.stderr
    assert "slot-002 updated" in done.stderr
    shown = run(logged_in, "slot", "show", "slot-002", "--output", "json")
    assert '"display_name": "E2E"' in shown.stdout


@pytest.mark.slow
def test_exit_codes(daemon: PcctlDaemon, logged_in: Path, tmp_path: Path) -> None:
    assert run(logged_in, "job", "show", "A" * 22).returncode == 4
    assert run(logged_in, "slot", "show", "slot-016").returncode == 4
    assert run(logged_in, "slot", "wobble").returncode == 2
    assert run(logged_in, "settings", "set", "sync-response", "99").returncode == 1
    stale = tmp_path / "stale"
    pcctl_config.save(
        stale / "pcctl" / "config.toml",
        pcctl_config.StoredLogin(server=daemon.url, token=daemon.expired_token()),
    )
    done = run(stale, "slot", "list")
    assert done.returncode == 3
    assert "your session expired, run `pcctl login`" in done.stderr
    assert "Traceback" not in done.stderr
    # not logged in anywhere and the server is down: that is what to say (exit 1)
    server = f"http://127.0.0.1:{_free_port()}"
    down = run(tmp_path / "nobody", "slot", "list", PCCTL_SERVER=server)
    assert down.returncode == 1, down.stderr
    assert f"error: cannot reach {server}" in down.stderr and "not logged in" not in down.stderr


def test_result_image_on_stdout_through_a_pipe(logged_in: Path, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(make_jpeg(800, 600))
    done = subprocess.run(
        [sys.executable, "-m", "pcctl", "slot", "test", "slot-003", str(photo), "--save", "-"],
        env=_env(logged_in),
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == photo.read_bytes()  # passthrough
    report = done.stderr.decode()
    assert "saved to:   stdout (image/jpeg, " in report and "public URL: http" in report
    job_id = report.split("(job ", 1)[1].split(")", 1)[0]
    again = subprocess.run(
        [sys.executable, "-m", "pcctl", "result", "get", job_id, "--save", "-"],
        env=_env(logged_in),
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0 and again.stdout == photo.read_bytes()
    assert again.stderr.decode().startswith(f"wrote result {job_id} to stdout (image/jpeg, ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]  # no file named "-"
