"""The daemon as a process: SIGTERM drains in-flight jobs and exits 0; kill -9 loses nothing
that was finished and leaves no job stuck after the restart."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import ADMIN_PASSWORD, INGEST_PASSWORD
from tests.support.dslr import DslrResponse, dslr_upload
from tests.support.images import make_jpeg

PHOTO = make_jpeg(800, 600)
REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DaemonProcess:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.env = {
            **os.environ,
            "PHOTOCHANGER_DATA_DIR": str(data_dir),
            "PHOTOCHANGER_BIND": f"127.0.0.1:{self.port}",
            "PHOTOCHANGER_INITIAL_INGEST_PASSWORD": INGEST_PASSWORD,
            "PHOTOCHANGER_INITIAL_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "PHOTOCHANGER_WORKERS": "4",
            "PHOTOCHANGER_LOG_LEVEL": "info",
            "PYTHONPATH": str(REPO),
        }
        self.env.pop("PHOTOCHANGER_CONFIG", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "daemon.log"

    def cli(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "photochangerd", *args],
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

    def start(self, *, scripted: bool = True) -> None:
        module = "tests.support.run_daemon" if scripted else "photochangerd"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", module],
                env=self.env,
                stdout=log,
                stderr=log,
                cwd=self.data_dir.parent,
            )
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

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def proc(tmp_path: Path) -> Iterator[DaemonProcess]:
    data = tmp_path / "data"
    data.mkdir()
    daemon = DaemonProcess(data)
    daemon.cli("migrate")
    yield daemon
    daemon.stop()


async def _wait_for(condition, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(timeout):
        while not await trio.to_thread.run_sync(condition):
            await trio.sleep(0.05)


async def test_sigterm_drains_in_flight_jobs_then_exits_0(proc: DaemonProcess) -> None:
    proc.sql(
        "UPDATE slot SET provider='script', operation='echo', settings='{\"seconds\": 1.5}'"
        " WHERE id='slot-001'"
    )
    proc.start()
    responses: list[DslrResponse | None] = []

    async def shoot() -> None:
        responses.append(
            await dslr_upload(
                "127.0.0.1", proc.port, photo=PHOTO, password=INGEST_PASSWORD, timeout=20
            )
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(shoot)
        await _wait_for(
            lambda: proc.sql("SELECT count(*) FROM job WHERE status='processing'") == [(1,)]
        )
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)
    assert responses[0] is not None and responses[0].status == 200
    assert responses[0].body == PHOTO
    assert proc.proc.wait(30) == 0
    log = proc.log.read_text()
    assert "shutdown.requested" in log and "daemon.stopped" in log
    assert proc.sql("SELECT is_finalized, failure_reason FROM job") == [(1, None)]
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", proc.port), timeout=1):
        pass


async def test_kill_9_mid_job_then_restart_recovers(proc: DaemonProcess) -> None:
    proc.sql("UPDATE slot SET provider='script', operation='hang' WHERE id='slot-001'")
    proc.start()
    done = await dslr_upload(
        "127.0.0.1", proc.port, "slot-002", photo=PHOTO, password=INGEST_PASSWORD
    )
    assert done is not None and done.status == 200
    finished_id = done.headers["x-job-id"]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: dslr_upload(
                "127.0.0.1", proc.port, photo=PHOTO, password=INGEST_PASSWORD, close_after=5
            )
        )
        await _wait_for(
            lambda: (
                proc.sql("SELECT count(*) FROM job WHERE status='processing' AND is_finalized=0")
                == [(1,)]
            )
        )
        assert proc.proc is not None
        proc.proc.kill()
        proc.proc.wait(10)
        nursery.cancel_scope.cancel()

    # SQLite: the daemon is alone, so inputs stay in memory (no copy on disk to leak).
    [(stuck_id, input_path)] = proc.sql("SELECT id, input_path FROM job WHERE is_finalized=0")
    assert input_path is None
    spool_leftover = proc.data_dir / "media" / "spool" / "abandoned.part"
    spool_leftover.write_bytes(b"x" * 1000)
    tmp_leftover = proc.data_dir / "media" / "results" / ".half-written.jpg.1234.tmp"
    tmp_leftover.write_bytes(b"x")

    proc.start(scripted=False)  # the real photochangerd command
    assert proc.sql(
        "SELECT is_finalized, failure_reason, input_path FROM job WHERE id=?", stuck_id
    ) == [(1, "internal_error", None)]
    assert [p for p in (proc.data_dir / "media" / "temp").iterdir()] == []
    assert not spool_leftover.exists() and not tmp_leftover.exists()
    async with httpx.AsyncClient() as client:
        kept = await client.get(f"http://127.0.0.1:{proc.port}/public/results/{finished_id}")
    assert kept.status_code == 200 and kept.content == PHOTO
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(30) == 0


async def test_sighup_rereads_slots_edited_by_hand(proc: DaemonProcess) -> None:
    """SQLite: slots and settings are kept in memory (the daemon is their only writer through
    the admin API); an operator who edits the database by hand reloads with SIGHUP."""
    proc.start()
    first = await dslr_upload("127.0.0.1", proc.port, photo=PHOTO, password=INGEST_PASSWORD)
    assert first is not None and first.status == 200
    proc.sql("UPDATE slot SET is_active=0 WHERE id='slot-001'")
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGHUP)
    await _wait_for(lambda: "config.reloaded" in proc.log.read_text())
    after = await dslr_upload("127.0.0.1", proc.port, photo=PHOTO, password=INGEST_PASSWORD)
    assert after is not None and after.status == 404
    assert after.json()["failure_reason"] == "slot_disabled"
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(30) == 0
