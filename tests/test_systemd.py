"""photochangerd under systemd: the unit file (``systemd-analyze security`` exposure ≤ 2.0,
``systemd-analyze verify`` clean), the example configuration, and sd_notify as a real process
sees it — a datagram socket of our own as ``$NOTIFY_SOCKET``, the daemon as a subprocess.

systemd is not PID 1 here: nothing is started *by* systemd.  What the service manager would
do with the messages (start-up, watchdog, reload, stop) is checked from the messages and their
timing; the sandbox's one setting that could break a Python daemon, ``MemoryDenyWriteExecute=``,
is reproduced with the kernel's own switch for it (``PR_SET_MDWE``).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

from photochangerd.config import DEFAULT_CONFIG_FILE, SETTINGS, Config, load_config
from tests.conftest import ADMIN_PASSWORD, INGEST_PASSWORD
from tests.support.daemon_process import REPO, DaemonProcess, free_port
from tests.support.dslr import dslr_upload
from tests.support.images import make_jpeg
from tests.support.postgres import PostgresCluster

UNIT = REPO / "systemd" / "photochangerd.service"
EXAMPLE = REPO / "systemd" / "photochangerd.toml.example"
MAX_EXPOSURE = 2.0
PHOTO = make_jpeg(640, 480)


# -- systemd-analyze ---------------------------------------------------------------------------


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        message = "systemd-analyze not found (Debian package systemd): unit checks skipped"
        if os.environ.get("PHOTOCHANGER_REQUIRE_SYSTEMD") == "1":
            pytest.fail(message + " — and PHOTOCHANGER_REQUIRE_SYSTEMD=1")
        pytest.skip(message)
    return found


def _directives() -> list[tuple[str, str, str]]:
    """(section, key, value) of every directive in the unit, in order."""
    section = ""
    found = []
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.append((section, key.strip(), value.strip()))
    return found


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, value
    return int(match[1]) * (60 if match[2] == "min" else 1)


def test_the_unit_is_hardened_to_an_exposure_of_at_most_2() -> None:
    analyze = _systemd_analyze()
    done = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for photochangerd\.service: (\d+\.\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    exposure = float(match[1])
    assert exposure <= MAX_EXPOSURE, done.stdout
    assert done.stderr == ""  # no directive it did not understand


def test_the_unit_verifies_cleanly(tmp_path: Path) -> None:
    """``systemd-analyze verify`` needs no running manager, only what the unit refers to: the
    standard targets and slices (copied from this host's unit directory into a root of its
    own) and its commands (stubs at the installed paths).  It exits 0 even for an unknown key or
    a bad value — it reports them on stderr, so the output must be empty."""
    analyze = _systemd_analyze()
    host_units = next(
        (d for d in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if d.is_dir()),
        None,
    )
    assert host_units is not None and (host_units / "multi-user.target").exists()
    root = tmp_path / "root"
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    for pattern in ("*.target", "*.slice"):
        for path in host_units.glob(pattern):
            if path.is_file():
                shutil.copy(path, units / path.name)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system" / UNIT.name)
    for section, key, value in _directives():
        if key in ("ExecStart", "ExecReload"):
            command = Path(value.split()[0])
            stub = root / command.relative_to("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\n")
            stub.chmod(0o755)
    assert Path("/bin/kill").exists()  # ExecReload's, on the real host
    done = subprocess.run(
        [analyze, "verify", "--man=no", "--recursive-errors=no", f"--root={root}", UNIT.name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_every_directive_says_why() -> None:
    lines = UNIT.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.strip() and not line.startswith(("#", "[")):
            assert lines[number - 1].startswith("#"), f"line {number + 1} has no comment: {line}"


def test_the_unit_matches_the_daemon() -> None:
    directives = _directives()
    service = {key: value for section, key, value in directives if section == "Service"}
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    command = service["ExecStart"].split()
    entry_points = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(command[0]).name in entry_points and command[1] == "serve"
    assert command[command.index("--config") + 1] == str(DEFAULT_CONFIG_FILE)
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    # Stop: the drain (shutdown_grace_seconds) + finalizing leftovers (10 s) + a margin.
    grace = Config().shutdown_grace_seconds
    assert _seconds(service["TimeoutStopSec"]) >= grace + 10 + 10
    assert _seconds(service["WatchdogSec"]) >= 10  # pings every third: a slow query is no miss
    assert service["DynamicUser"] == "yes" and service["StateDirectory"] == "photochanger"
    assert service["RestrictAddressFamilies"].split() == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert "IPAddressDeny" not in service  # Gemini, Turbotext and OpenAI are on the internet
    assert service["UMask"] == "0027" and service["LimitNOFILE"] == "65536"
    # Under systemd the data dir is $STATE_DIRECTORY, and the example config names the same.
    state = load_config(environ={"STATE_DIRECTORY": "/var/lib/photochanger"}).data_dir
    assert state == Path("/var/lib/photochanger")
    assert load_config(EXAMPLE, environ={}).data_dir == state


def test_the_example_config_loads_and_names_every_setting() -> None:
    config = load_config(EXAMPLE, environ={})
    text = EXAMPLE.read_text()
    for setting in SETTINGS:
        assert re.search(rf"^(# )?{setting.name} = ", text, re.MULTILINE), setting.name
    assert config.jwt_secret == config.secret_key == config.database_url == ""  # credentials


# -- sd_notify ---------------------------------------------------------------------------------


@dataclass
class Message:
    at: float  # trio.current_time() when it arrived
    fields: dict[str, str]

    def get(self, key: str, default: str = "") -> str:
        return self.fields.get(key, default)


class NotifySocket:
    """A service manager's end of ``$NOTIFY_SOCKET``: every datagram, timestamped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[Message] = []
        self._changed = trio.Event()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            await sock.bind(str(self.path))
            task_status.started()
            while True:
                data = await sock.recv(65536)
                lines = data.decode().split("\n")
                fields = dict(line.split("=", 1) for line in lines if "=" in line)
                self.messages.append(Message(trio.current_time(), fields))
                self._changed.set()
                self._changed = trio.Event()

    async def wait(
        self, predicate: Callable[[Message], bool], *, since: int = 0, timeout: float = 30
    ) -> tuple[int, Message]:
        """The first message from index ``since`` on that matches, and its index."""
        with trio.fail_after(timeout):
            while True:
                for index in range(since, len(self.messages)):
                    if predicate(self.messages[index]):
                        return index, self.messages[index]
                await self._changed.wait()

    def having(self, key: str) -> list[Message]:
        return [m for m in self.messages if key in m.fields]


@pytest.fixture
async def notify_socket(nursery: trio.Nursery) -> AsyncIterator[NotifySocket]:
    # AF_UNIX paths are limited to 108 bytes: pytest's tmp_path can be longer.
    directory = Path(tempfile.mkdtemp(prefix="pc-notify-", dir="/tmp"))
    listener = NotifySocket(directory / "notify")
    await nursery.start(listener.serve)
    yield listener
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(tmp_path / "data")
    yield process
    process.stop()


def _spawn(daemon: DaemonProcess, notify: NotifySocket, *, scripted: bool = False) -> None:
    """Start the daemon without waiting for it: the test watches its messages instead."""
    daemon.env["NOTIFY_SOCKET"] = str(notify.path)
    daemon.spawn(scripted=scripted)


def _ready(message: Message) -> bool:
    return message.get("READY") == "1"


async def _exit_status(daemon: DaemonProcess) -> int:
    assert daemon.proc is not None
    proc = daemon.proc
    return await trio.to_thread.run_sync(lambda: proc.wait(60))


@pytest.mark.slow
async def test_ready_comes_once_the_port_accepts_and_the_database_answered(
    daemon: DaemonProcess, notify_socket: NotifySocket
) -> None:
    # A watchdog meant for another process (WATCHDOG_PID) is not ours to feed.
    daemon.env.update(WATCHDOG_USEC="300000", WATCHDOG_PID=str(os.getpid()))
    _spawn(daemon, notify_socket)
    _, ready = await notify_socket.wait(_ready)
    # Right away, before anything else: the listening socket must already accept.
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=2):
        pass
    assert ready.get("STATUS") == f"serving on http://127.0.0.1:{daemon.port}, 4 workers, SQLite"
    async with httpx.AsyncClient() as client:
        readyz = await client.get(f"http://127.0.0.1:{daemon.port}/readyz")
    assert readyz.status_code == 200  # the database answers
    await trio.sleep(1.0)  # ≥ 3 periods of a 0.3 s watchdog
    assert notify_socket.having("WATCHDOG") == []
    assert [m.fields for m in notify_socket.messages] == [ready.fields]
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    assert await _exit_status(daemon) == 0


async def test_no_ready_while_the_database_does_not_answer(
    daemon: DaemonProcess, notify_socket: NotifySocket
) -> None:
    """The sockets are bound first (a taken port fails fast), but READY=1 waits for the
    database: a daemon whose database refuses connections never says it is ready."""
    nobody = free_port()  # nothing listens there
    daemon.env["PHOTOCHANGER_DATABASE_URL"] = f"postgresql+asyncpg://u:p@127.0.0.1:{nobody}/db"
    _spawn(daemon, notify_socket)
    assert await _exit_status(daemon) == 1
    await trio.sleep(0.2)  # a datagram sent just before the exit has arrived by now
    assert [m for m in notify_socket.messages if "READY" in m.fields] == []
    assert f"127.0.0.1:{nobody}" in daemon.log.read_text()


@pytest.mark.slow
async def test_watchdog_pings_come_at_most_half_a_watchdog_period_apart(
    daemon: DaemonProcess, notify_socket: NotifySocket
) -> None:
    watchdog_usec = 6_000_000  # a ping every 2 s, at most 3 s apart: 1 s for a busy machine
    daemon.env["WATCHDOG_USEC"] = str(watchdog_usec)
    _spawn(daemon, notify_socket)
    _, ready = await notify_socket.wait(_ready)
    await trio.sleep(9)
    pings = [m.at for m in notify_socket.having("WATCHDOG")]
    assert all(m.get("WATCHDOG") == "1" for m in notify_socket.having("WATCHDOG"))
    assert len(pings) >= 4, pings
    gaps = [later - earlier for earlier, later in itertools.pairwise(pings)]
    assert max(gaps) <= watchdog_usec / 2_000_000, gaps
    assert pings[-1] > ready.at + 6  # still pinging after READY
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    assert await _exit_status(daemon) == 0


async def test_reload_is_announced_around_sighup(
    daemon: DaemonProcess, notify_socket: NotifySocket
) -> None:
    _spawn(daemon, notify_socket)
    first, ready = await notify_socket.wait(_ready)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    index, reloading = await notify_socket.wait(
        lambda m: m.get("RELOADING") == "1", since=first + 1
    )
    assert reloading.get("STATUS") == "reloading"
    # systemd 253+ wants CLOCK_MONOTONIC in µs with RELOADING=1 (and drops it without).
    stamp = int(reloading.get("MONOTONIC_USEC", "0"))
    assert abs(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000 - stamp) < 10_000_000
    _, again = await notify_socket.wait(_ready, since=index + 1)
    assert again.get("STATUS") == ready.get("STATUS")
    assert "config.reloaded" in daemon.log.read_text()
    daemon.proc.send_signal(signal.SIGTERM)
    assert await _exit_status(daemon) == 0


@pytest.mark.slow
async def test_sigterm_says_stopping_and_draining_then_exits_0(
    daemon: DaemonProcess, notify_socket: NotifySocket
) -> None:
    daemon.cli("migrate")
    daemon.sql(
        "UPDATE slot SET provider='script', operation='echo', settings='{\"seconds\": 3}'"
        " WHERE id='slot-001'"
    )
    _spawn(daemon, notify_socket, scripted=True)
    first, _ = await notify_socket.wait(_ready)
    assert daemon.proc is not None
    proc = daemon.proc
    answers = []

    async def shoot() -> None:
        answers.append(
            await dslr_upload(
                "127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD, timeout=30
            )
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(shoot)
        with trio.fail_after(20):
            while await trio.to_thread.run_sync(
                lambda: daemon.sql("SELECT count(*) FROM job WHERE status='processing'")
            ) != [(1,)]:
                await trio.sleep(0.05)
        await trio.sleep(0.3)  # claimed in the database; now surely in its worker too
        proc.send_signal(signal.SIGTERM)
        index, stopping = await notify_socket.wait(
            lambda m: m.get("STOPPING") == "1", since=first + 1
        )
        assert stopping.get("STATUS") == "draining: 1 job in flight"
        proc.send_signal(signal.SIGHUP)  # a reload while stopping must not claim READY again
        await trio.sleep(0.5)
    assert answers[0] is not None and answers[0].status == 200
    assert await _exit_status(daemon) == 0
    after = notify_socket.messages[index + 1 :]
    assert not [m for m in after if "READY" in m.fields or "RELOADING" in m.fields], after
    assert all(m.get("STATUS", "").startswith("draining: ") for m in after if "STATUS" in m.fields)


@pytest.mark.slow
@pytest.mark.postgres
async def test_watchdog_pings_stop_while_the_database_is_down(
    daemon: DaemonProcess, notify_socket: NotifySocket, pg_cluster: PostgresCluster
) -> None:
    """No ``WATCHDOG=1`` while ``SELECT 1`` fails: systemd restarts a daemon whose database
    stays away longer than ``WatchdogSec=``; pings resume as soon as it is back."""
    daemon.env["PHOTOCHANGER_DATABASE_URL"] = pg_cluster.create_database(f"t{os.getpid()}_watchdog")
    daemon.env["WATCHDOG_USEC"] = "3000000"  # a ping every second
    _spawn(daemon, notify_socket)
    first, ready = await notify_socket.wait(_ready)
    assert ready.get("STATUS", "").endswith(", 4 workers, PostgreSQL")
    await notify_socket.wait(lambda m: "WATCHDOG" in m.fields, since=first + 1)
    try:
        await trio.to_thread.run_sync(pg_cluster.pause)
        down = trio.current_time()
        await notify_socket.wait(
            lambda m: "database unreachable" in m.get("STATUS"), since=first, timeout=10
        )
        await trio.sleep(4)  # four ping periods
        late = [m.at - down for m in notify_socket.having("WATCHDOG") if m.at > down + 0.5]
        assert late == [], "pinged while the database was down"
    finally:
        # Counted before the resume: the daemon may ping, and say it is back, before the
        # thread running resume() has returned to this task (a busy CI run missed it).
        back = len(notify_socket.messages)
        await trio.to_thread.run_sync(pg_cluster.resume)
    await notify_socket.wait(lambda m: "WATCHDOG" in m.fields, since=back, timeout=20)
    await notify_socket.wait(lambda m: m.get("STATUS") == ready.get("STATUS"), since=back)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    assert await _exit_status(daemon) == 0


# -- MemoryDenyWriteExecute= -------------------------------------------------------------------

# Runs the rest of its command line with the kernel's memory-deny-write-execute switch (Linux
# 6.3+): the rule systemd's MemoryDenyWriteExecute= enforces with seccomp — no mapping both
# writable and executable, none made executable later.  Kept across execve.
MDWE_LAUNCHER = """
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, REFUSE_EXEC_GAIN
    sys.exit(77)
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""
MDWE_PROBE = """
import ctypes, mmap, sys
assert ctypes.CDLL(None).prctl(66, 0, 0, 0, 0) == 1  # PR_GET_MDWE: still on after execve
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    sys.exit(0)
sys.exit(1)
"""


async def test_the_daemon_works_without_writable_executable_memory(
    daemon: DaemonProcess,
) -> None:
    """argon2-cffi, cryptography (cffi) and Pillow under the unit's MemoryDenyWriteExecute=yes:
    first start (argon2 hashes), login (argon2 verify, JWT), a provider key stored (AES-GCM),
    a booth upload (Pillow)."""
    probe = subprocess.run(
        [sys.executable, "-c", MDWE_LAUNCHER, "-c", MDWE_PROBE], capture_output=True, timeout=30
    )
    if probe.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3)")
    assert probe.returncode == 0, probe.stderr  # the switch is on, and enforced, after execve
    with open(daemon.log, "ab") as log:
        daemon.proc = subprocess.Popen(
            [sys.executable, "-c", MDWE_LAUNCHER, "-m", "photochangerd"],
            env=daemon.env,
            stdout=log,
            stderr=log,
            cwd=daemon.data_dir.parent,
        )
    base = f"http://127.0.0.1:{daemon.port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        with trio.fail_after(30):
            while True:
                assert daemon.proc.poll() is None, daemon.log.read_text()
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await trio.sleep(0.1)
        login = await client.post(
            "/api/login", json={"username": "serg", "password": ADMIN_PASSWORD}
        )
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        stored = await client.put(
            "/api/settings", json={"provider_keys": {"openai": "sk-mdwe-test"}}, headers=auth
        )
        assert stored.status_code == 200, stored.text
        assert stored.json()["provider_keys"]["openai"]["source"] == "settings"
    upload = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD)
    assert upload is not None and upload.status == 200
    daemon.proc.send_signal(signal.SIGTERM)
    assert await _exit_status(daemon) == 0
    assert "Traceback" not in daemon.log.read_text()
