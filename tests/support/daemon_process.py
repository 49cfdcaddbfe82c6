"""``photochangerd`` as a real process: its environment, one-shot commands, a daemon to start.

Every process gets an environment of its own: no ``PHOTOCHANGER_*`` from the caller, none of
the variables systemd hands a service (a test run inside a unit or a terminal started by one
must not look like a daemon under systemd), its own data dir and a free loopback port (never the
default 8080).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ADMIN_PASSWORD, INGEST_PASSWORD

REPO = Path(__file__).resolve().parent.parent.parent
PHOTOCHANGERD = (sys.executable, "-m", "photochangerd")
SYSTEMD_VARIABLES = frozenset(
    {
        "INVOCATION_ID",
        "JOURNAL_STREAM",
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "CREDENTIALS_DIRECTORY",
        "STATE_DIRECTORY",
    }
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def photochangerd_env(data_dir: Path, port: int, **settings: str) -> dict[str, str]:
    """A clean environment; ``settings`` are ``PHOTOCHANGER_*`` variables (``WORKERS="4"``)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PHOTOCHANGER_") and key not in SYSTEMD_VARIABLES
    }
    env.update(
        {
            "PHOTOCHANGER_DATA_DIR": str(data_dir),
            "PHOTOCHANGER_BIND": f"127.0.0.1:{port}",
            "PYTHONPATH": str(REPO),
        }
    )
    env.update({f"PHOTOCHANGER_{key}": value for key, value in settings.items()})
    return env


def run_photochangerd(
    *args: str, env: dict[str, str], timeout: float = 30, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one ``photochangerd`` command to its end (killed and raising past ``timeout``)."""
    return subprocess.run(
        [*PHOTOCHANGERD, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class DaemonProcess:
    def __init__(self, data_dir: Path, *, port: int | None = None, passwords: bool = True) -> None:
        """``passwords``: set the initial ones (False: the first start generates and prints)."""
        self.data_dir = data_dir
        self.port = free_port() if port is None else port
        self.env = photochangerd_env(data_dir, self.port, WORKERS="4", LOG_LEVEL="info")
        if passwords:
            self.env["PHOTOCHANGER_INITIAL_INGEST_PASSWORD"] = INGEST_PASSWORD
            self.env["PHOTOCHANGER_INITIAL_ADMIN_PASSWORD"] = ADMIN_PASSWORD
        self.proc: subprocess.Popen[bytes] | None = None
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.log = data_dir.parent / "daemon.log"

    def cli(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*PHOTOCHANGERD, *args],
            env=self.env,
            capture_output=True,
            timeout=60,
            check=True,
        )

    def sql(self, statement: str, *params: object) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.data_dir / "photochanger.sqlite3") as conn:
            rows = conn.execute(statement, params).fetchall()
            conn.commit()
            return rows

    def spawn(self, *, scripted: bool = True) -> None:
        """Start the process without waiting for it (output appended to ``self.log``)."""
        module = "tests.support.run_daemon" if scripted else "photochangerd"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module],
                env=self.env,
                stdout=log,
                stderr=log,
                cwd=self.data_dir.parent,
            )

    def start(self, *, scripted: bool = True) -> None:
        """Start the process and wait until ``/readyz`` answers 200."""
        self.spawn(scripted=scripted)
        assert self.proc is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError("daemon did not become ready:\n" + self.log.read_text())

    def terminate(self) -> int:
        """SIGTERM, and the exit status."""
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
