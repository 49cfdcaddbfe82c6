"""Starting ``photochangerd``: one daemon per data dir, a taken port fails with one line before
the first-start passwords are spent, where it listens (and how to open a loopback bind to the
LAN), ``-h``."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import trio

from photochangerd.config import load_config
from photochangerd.data_dir_lock import LOCK_FILE, DataDirInUse, lock_data_dir
from photochangerd.http.listen import CannotListen, lan_hint, listening_sockets, wildcard_hint
from photochangerd.lan import lan_address
from tests.conftest import make_config, start_daemon
from tests.support.daemon_process import (
    DaemonProcess,
    free_port,
    photochangerd_env,
    run_photochangerd,
)

BANNER = "initial passwords (shown once"


def test_the_data_dir_lock_holds_the_pid_and_goes_with_its_holder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with lock_data_dir(data):
        assert (data / LOCK_FILE).read_text() == f"{os.getpid()}\n"
        with pytest.raises(DataDirInUse) as taken, lock_data_dir(data):
            pass
        assert taken.value.pid == os.getpid()
        assert str(taken.value) == (
            f"data dir {data.resolve()} is in use by pid {os.getpid()} (another photochangerd?)"
        )
    with lock_data_dir(data):  # released: a restart is not blocked by the file left behind
        pass


async def test_run_locks_its_data_dir_and_other_data_dirs_run_side_by_side(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Several daemons (one shared PostgreSQL) each have a data dir of their own."""
    first = await start_daemon(nursery, make_config(tmp_path / "a"))
    with pytest.raises(DataDirInUse):
        await start_daemon(nursery, make_config(tmp_path / "a"))
    second = await start_daemon(nursery, make_config(tmp_path / "b"))
    assert first.port != second.port
    first.daemon.shutdown.set()
    second.daemon.shutdown.set()


def test_listening_sockets_name_the_address_that_failed() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        with (
            pytest.raises(CannotListen, match=f"^cannot listen on {busy}: address already in use$"),
            listening_sockets([f"127.0.0.1:{free_port()}", busy]),
        ):
            pass
    with listening_sockets(["127.0.0.1:0", "127.0.0.1:0"]) as sockets:
        assert len(sockets.insecure_sockets) == 2
        assert not sockets.secure_sockets and not sockets.quic_sockets
    assert all(sock.fileno() == -1 for sock in sockets.insecure_sockets)  # closed


@pytest.mark.slow
def test_port_in_use_fails_with_one_line_and_keeps_the_first_start_passwords(
    tmp_path: Path,
) -> None:
    daemon = DaemonProcess(tmp_path / "data", passwords=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", daemon.port))
        taken.listen()
        started = time.monotonic()
        failed = run_photochangerd(env=daemon.env, timeout=30)
        elapsed = time.monotonic() - started
    assert failed.returncode == 1 and elapsed < 10
    assert failed.stderr.splitlines() == [
        f"photochangerd: cannot listen on 127.0.0.1:{daemon.port}: address already in use"
    ]
    assert not (tmp_path / "data" / "photochanger.sqlite3").exists()  # nothing was created

    try:
        daemon.start(scripted=False)  # the port is free now: the passwords were not spent
        assert BANNER in daemon.log.read_text()
        assert daemon.terminate() == 0
    finally:
        daemon.stop()


def _start_and_stop(daemon: DaemonProcess) -> str:
    try:
        daemon.start(scripted=False)
        assert daemon.terminate() == 0
    finally:
        daemon.stop()
    return daemon.log.read_text()


@pytest.mark.slow
def test_a_loopback_bind_says_how_to_open_it_to_the_lan(tmp_path: Path) -> None:
    loopback = DaemonProcess(tmp_path / "loopback" / "data")
    log = _start_and_stop(loopback)
    port = loopback.port
    assert f"daemon.ready urls=http://127.0.0.1:{port}" in log
    [hint] = [line for line in log.splitlines() if "this machine only" in line]
    assert hint.startswith(f"photochangerd: listening on http://127.0.0.1:{port}, ")
    assert f'bind = "0.0.0.0:{port}"' in hint
    assert f'public_base_url = "http://<this machine\'s LAN address>:{port}"' in hint
    assert "PHOTOCHANGER_BIND / PHOTOCHANGER_PUBLIC_BASE_URL" in hint

    everywhere = DaemonProcess(tmp_path / "everywhere" / "data")
    everywhere.env["PHOTOCHANGER_BIND"] = f"0.0.0.0:{everywhere.port}"
    log = _start_and_stop(everywhere)
    assert f"daemon.ready urls=http://0.0.0.0:{everywhere.port}" in log
    assert "this machine only" not in log and 'bind = "0.0.0.0' not in log
    if "PHOTOCHANGER_PUBLIC_BASE_URL" not in everywhere.env:
        links = f"http://{lan_address()}:{everywhere.port}"
        assert f"booth URLs and links use {links} (set public_base_url" in log


def test_a_wildcard_bind_never_hands_out_links_to_0_0_0_0() -> None:
    """A booth or a guest's phone cannot open http://0.0.0.0:8080/...: use the LAN address."""
    config = load_config(environ={"PHOTOCHANGER_BIND": "0.0.0.0:8080"})
    assert config.effective_public_base_url == f"http://{lan_address()}:8080"
    assert "0.0.0.0" not in config.effective_public_base_url
    ipv6 = load_config(environ={"PHOTOCHANGER_BIND": "[::]:8080"})
    assert ipv6.effective_public_base_url == f"http://{lan_address()}:8080"
    chosen = load_config(
        environ={"PHOTOCHANGER_BIND": "0.0.0.0:8080", "PHOTOCHANGER_PUBLIC_BASE_URL": "http://b/"}
    )
    assert chosen.effective_public_base_url == "http://b"
    hint = wildcard_hint(["http://0.0.0.0:8080"], "", "http://192.168.1.20:8080")
    assert hint is not None and "links use http://192.168.1.20:8080" in hint
    assert wildcard_hint(["http://0.0.0.0:8080"], "http://b", "http://b") is None
    assert wildcard_hint(["http://127.0.0.1:8080"], "", "http://127.0.0.1:8080") is None


@pytest.mark.parametrize(
    ("urls", "hinted"),
    [
        (["http://127.0.0.1:8080"], True),
        (["http://[::1]:8080"], True),
        (["http://localhost:8080", "http://127.0.0.2:9000"], True),
        (["http://0.0.0.0:8080"], False),
        (["http://[::]:8080"], False),
        (["http://127.0.0.1:8080", "http://192.168.1.20:8080"], False),
        (["http://booth-server.lan:8080"], False),
    ],
)
def test_lan_hint_only_when_every_address_is_loopback(urls: list[str], hinted: bool) -> None:
    assert (lan_hint(urls) is not None) == hinted


@pytest.mark.parametrize("args", [("-h",), ("serve", "-h"), ("check-config", "-h")])
def test_dash_h_is_help_everywhere(tmp_path: Path, args: tuple[str, ...]) -> None:
    done = run_photochangerd(*args, env=photochangerd_env(tmp_path / "data", free_port()))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: ") and "-h, --help" in done.stdout
    assert not (tmp_path / "data").exists()  # help only: nothing served, nothing created


def _one_line_failure(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "ExceptionGroup" not in done.stderr, done.stderr
    [line] = done.stderr.splitlines()
    return str(line)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere; /proc is used instead")
def test_an_unwritable_data_dir_is_one_line_as_a_user(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    env = photochangerd_env(locked / "data", free_port())
    line = _one_line_failure(run_photochangerd("serve", env=env))
    assert line == f"photochangerd: cannot use data dir {locked / 'data'}: Permission denied"


def test_an_unusable_data_dir_is_one_line(tmp_path: Path) -> None:
    env = photochangerd_env(Path("/proc/photochanger-test/data"), free_port())
    line = _one_line_failure(run_photochangerd("serve", env=env))
    assert line == (
        "photochangerd: cannot use data dir /proc/photochanger-test/data: No such file or directory"
    )
    assert _one_line_failure(run_photochangerd("migrate", env=env)) == line


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    env = photochangerd_env(
        tmp_path / "data",
        free_port(),
        DATABASE_URL=f"postgresql+asyncpg://booth:secret@127.0.0.1:{free_port()}/photochanger",
    )
    line = _one_line_failure(run_photochangerd("serve", env=env))
    assert line.startswith("photochangerd: database unavailable: ")
    assert "secret" not in line and line.endswith("/photochanger)")
