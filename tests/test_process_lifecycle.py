"""The daemon as a process: SIGTERM drains in-flight jobs and exits 0; kill -9 loses nothing
that was finished and leaves no job stuck after the restart; a second daemon on the same data
dir stops at once, before it can touch the first one's jobs."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import INGEST_PASSWORD
from tests.support.daemon_process import DaemonProcess, free_port, run_photochangerd
from tests.support.dslr import DslrResponse, dslr_upload
from tests.support.images import make_jpeg

PHOTO = make_jpeg(800, 600)


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


@pytest.mark.slow
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


@pytest.mark.slow
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
    thumbs = proc.data_dir / "media" / "thumbs"
    thumbs.mkdir(exist_ok=True)
    thumb_leftover = thumbs / ".half-written.webp.5678.tmp"  # a thumbnail cut by the kill
    thumb_leftover.write_bytes(b"x")

    proc.start(scripted=False)  # the real photochangerd command
    assert proc.sql(
        "SELECT is_finalized, failure_reason, input_path FROM job WHERE id=?", stuck_id
    ) == [(1, "cancelled", None)]  # interrupted, not an internal error
    assert [p for p in (proc.data_dir / "media" / "temp").iterdir()] == []
    assert not spool_leftover.exists() and not tmp_leftover.exists()
    assert not thumb_leftover.exists()
    async with httpx.AsyncClient() as client:
        kept = await client.get(f"http://127.0.0.1:{proc.port}/public/results/{finished_id}")
    assert kept.status_code == 200 and kept.content == PHOTO
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(30) == 0


@pytest.mark.slow
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


def _in_use_line(proc: DaemonProcess) -> str:
    assert proc.proc is not None
    return (
        f"photochangerd: data dir {proc.data_dir.resolve()} is in use by pid {proc.proc.pid}"
        " (another photochangerd?)"
    )


@pytest.mark.slow
async def test_a_second_daemon_on_the_same_data_dir_fails_at_once(proc: DaemonProcess) -> None:
    """Start-up recovery on SQLite finalizes every unfinished job: a second daemon that got that
    far would end the first one's running jobs."""
    proc.sql("UPDATE slot SET provider='script', operation='hang' WHERE id='slot-001'")
    proc.start()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: dslr_upload(
                "127.0.0.1", proc.port, photo=PHOTO, password=INGEST_PASSWORD, close_after=20
            )
        )
        await _wait_for(lambda: proc.sql("SELECT count(*) FROM job WHERE is_finalized=0") == [(1,)])
        second = await trio.to_thread.run_sync(
            lambda: run_photochangerd(
                env={**proc.env, "PHOTOCHANGER_BIND": f"127.0.0.1:{free_port()}"}, timeout=15
            )
        )
        assert second.returncode == 1
        assert second.stderr.splitlines() == [_in_use_line(proc)]
        assert proc.sql("SELECT status, is_finalized FROM job") == [("processing", 0)]
        async with httpx.AsyncClient() as client:
            ready = await client.get(f"http://127.0.0.1:{proc.port}/readyz")
        assert ready.status_code == 200
        nursery.cancel_scope.cancel()


@pytest.mark.slow
def test_migrate_refuses_a_data_dir_in_use_set_admin_password_does_not(
    proc: DaemonProcess,
) -> None:
    """SQLite: the daemon migrated at its own start, a schema change under it is a mistake;
    setting an admin password is meant for a running daemon."""
    proc.start()
    migrated = run_photochangerd("migrate", env=proc.env)
    assert migrated.returncode == 1
    assert migrated.stderr.splitlines() == [_in_use_line(proc)]
    changed = run_photochangerd(
        "set-admin-password", "serg", "--password-stdin", env=proc.env, stdin="new-password-1\n"
    )
    assert changed.returncode == 0, changed.stderr
    assert proc.terminate() == 0
    assert run_photochangerd("migrate", env=proc.env).returncode == 0  # the lock went with it
