"""Hostile and broken input, faults and leaks: the daemon answers clearly and keeps serving."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest
import trio

from photochangerd.db.engine import SQLITE_THREADS
from photochangerd.http import bodies
from tests.conftest import INGEST_PASSWORD, RunningDaemon
from tests.support.dslr import DSLR_BOUNDARY, build_dslr_body, dslr_upload
from tests.support.images import make_jpeg

PHOTO = make_jpeg(400, 300)


def _with_parts(extra: bytes) -> tuple[bytes, str]:
    """The DSLR body with ``extra`` parts (each starting with the boundary line) in front."""
    body, ctype = build_dslr_body(PHOTO, password=INGEST_PASSWORD)
    return extra + body, ctype


async def test_ten_thousand_fields_are_bounded(daemon: RunningDaemon) -> None:
    marker = f"--{DSLR_BOUNDARY}\r\n".encode()
    fields = b"".join(
        marker + f'Content-Disposition: form-data; name="f{i}"\r\n\r\nv\r\n'.encode()
        for i in range(10_000)
    )
    body, ctype = _with_parts(fields)
    response = await dslr_upload("127.0.0.1", daemon.port, body=body, content_type=ctype)
    assert response is not None and response.status == 200 and response.body == PHOTO
    job = await daemon.job(response.headers["x-job-id"])
    assert len(job.client_metadata["fields"]) <= 64 + 1  # + the reserved "hash"
    assert job.client_metadata["dropped_fields"] > 9000


async def test_huge_text_part_is_truncated_not_fatal(daemon: RunningDaemon) -> None:
    marker = f"--{DSLR_BOUNDARY}\r\n".encode()
    huge = (
        marker
        + b'Content-Disposition: form-data; name="status"\r\n\r\n'
        + b"C:\\" * 400_000
        + b"\r\n"
    )
    body, ctype = _with_parts(huge)
    response = await dslr_upload("127.0.0.1", daemon.port, body=body, content_type=ctype)
    assert response is not None and response.status == 200
    job = await daemon.job(response.headers["x-job-id"])
    assert len(job.client_metadata["fields"]["status"]) <= 4096


@pytest.mark.parametrize(
    "filename",
    [
        "../../etc/passwd",
        "x" * 5000,
        "evil\u202egpj.exe",
        "a\r\nX-Injected: 1",
        "C:\\boot.ini",
    ],
)
async def test_client_file_names_are_ignored(daemon: RunningDaemon, filename: str) -> None:
    body, ctype = build_dslr_body(
        PHOTO, password=INGEST_PASSWORD, filename=filename.replace("\r\n", " ")
    )
    response = await dslr_upload("127.0.0.1", daemon.port, body=body, content_type=ctype)
    assert response is not None and response.status == 200
    assert "x-injected" not in response.headers
    job = await daemon.job(response.headers["x-job-id"])
    assert Path(job.result_file_path or "").name == f"{job.id}.jpg"


async def test_disk_full_on_result_write_is_500_and_the_daemon_keeps_serving(
    daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = daemon.context.store
    original = store.write_result

    async def disk_full(*args: object, **kwargs: object) -> object:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "write_result", disk_full)
    failed = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD)
    assert failed is not None and failed.status == 500
    assert failed.json()["failure_reason"] == "internal_error"
    assert "No space" not in failed.body.decode()  # no server internals in the body
    job = await daemon.wait_job_final(failed.headers.get("x-job-id") or await _last_job(daemon))
    assert job.failure_reason == "internal_error"
    monkeypatch.setattr(store, "write_result", original)
    ok = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD)
    assert ok is not None and ok.status == 200


async def _last_job(daemon: RunningDaemon) -> str:
    from tests.test_ingest import _all_jobs

    jobs = await daemon.context.db.read(_all_jobs)
    return str(max(jobs, key=lambda j: j.created_at).id)


def _descriptors() -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {"sqlite": [], "other": []}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, already closed
            continue
        sqlite = target.endswith((".sqlite3", ".sqlite3-wal", ".sqlite3-shm"))
        kinds["sqlite" if sqlite else "other"].append(target)
    return kinds


async def test_no_descriptor_task_or_file_leak_under_load(daemon: RunningDaemon) -> None:
    async def burst() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(30):
                nursery.start_soon(
                    lambda: dslr_upload(
                        "127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD
                    )
                )

    await burst()  # warm up pools and thread caches
    await trio.sleep(0.3)
    before = _descriptors()
    for _ in range(3):
        await burst()
    await trio.sleep(0.5)  # keep-alive sockets of the finished clients close
    after = _descriptors()
    # The SQLite pool opens connections lazily, up to one per DB thread (each holds the
    # database, -wal and -shm files): a later burst may reach a concurrency the warm-up did
    # not.  Anything else (sockets, spool/result files) must be back where it was.
    assert len(after["sqlite"]) <= 3 * SQLITE_THREADS
    assert len(after["other"]) <= len(before["other"]) + 5, after["other"]
    store = daemon.context.store
    assert list(store.spool.iterdir()) == [] and list(store.temp.iterdir()) == []
    assert len(list(store.results.iterdir())) == 120
    assert daemon.context.jobs.runs == {}
    assert daemon.context.admission.in_flight == 0


async def _answer_to(daemon: RunningDaemon, head: bytes, body: bytes) -> tuple[bytes, bool]:
    """Send ``head`` and ``body``, then nothing more; the answer as received until the daemon
    closes the connection, and whether it did."""
    stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
    async with stream:
        await stream.send_all(head + body)
        received = b""
        with trio.move_on_after(10):
            while chunk := await stream.receive_some(65536):
                received += chunk
            return received, True
        return received, False


async def test_a_login_body_over_its_cap_is_413_without_waiting_for_the_rest(
    daemon: RunningDaemon,
) -> None:
    """quart-trio buffers a body as it comes, whatever the route: 20 MB sent to the login and
    left unfinished stayed in memory with its connection, for good (http/bodies.py)."""
    piece = b"x" * (128 * 1024)
    head = (
        b"POST /api/login HTTP/1.1\r\nHost: booth\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    answer, closed = await _answer_to(daemon, head, b"%x\r\n%s\r\n" % (len(piece), piece))
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b'"failure_reason":"payload_too_large"' in answer.replace(b" ", b"")
    assert closed


async def test_a_login_body_that_stops_coming_is_408(
    daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bodies, "SIGN_IN_SECONDS", 0.5)
    head = (
        b"POST /api/login HTTP/1.1\r\nHost: booth\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    started = trio.current_time()
    answer, closed = await _answer_to(daemon, head, b'{"username": "se')
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"failure_reason":"invalid_request"' in answer.replace(b" ", b"")
    assert closed and trio.current_time() - started < 5


def test_every_route_that_takes_a_body_is_bounded_on_purpose() -> None:
    """Uploads stream (their own limits); the sign-in forms take 64 KiB in 10 s; every other
    route Quart's cap in 60 s (http/bodies.py).  A new route must be placed."""
    from photochangerd.http.app import create_quart_app

    streamed = {
        "/ingest/<path:slot_id>",
        "/api/ingest/<path:slot_id>",
        "/api/slots/<slot_id>/test-run",
        "/admin/slots/<slot_id>/test-run",
        "/admin/slots/<slot_id>/templates",
        "/api/template-media",
        "/api/template-media/register",
        "/api/media/register",
    }
    sign_in = {"/api/login", "/admin/login"}
    taking_a_body = {
        rule.rule
        for rule in create_quart_app(None).url_map.iter_rules()
        if rule.methods and rule.methods & {"POST", "PUT", "PATCH"}
    }
    assert streamed | sign_in <= taking_a_body
    for rule in sorted(taking_a_body):
        path = re.sub(r"<[^>]+>", "slot-001", rule)
        assert (bodies.STREAMED_BODY.fullmatch(path) is not None) == (rule in streamed), rule
        assert (bodies.SIGN_IN.fullmatch(path) is not None) == (rule in sign_in), rule


async def test_readyz_says_so_while_the_database_refuses_writes(
    daemon: RunningDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk or a read-only file: reads work, so /readyz's ping said "ok" while every
    upload got 503 and the log never said why.  Here another process holds SQLite's write lock
    (as a full disk would refuse the write)."""
    import sqlite3

    import httpx

    caplog.set_level("INFO", "photochangerd.db")
    url = daemon.context.config.effective_database_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(url, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # every write of the daemon waits, then is refused
    try:
        refused = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD)
        assert refused is not None and refused.status == 503
        async with httpx.AsyncClient(base_url=daemon.url, timeout=15) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["details"].startswith("database refuses writes: ")
            assert "database is locked" in ready.json()["details"]
            assert "db.writes_refused" in caplog.text
            holder.execute("ROLLBACK")
            assert (await client.get("/readyz")).status_code == 200  # the probe passed
        assert daemon.context.db.write_problem is None
        assert "db.writes_accepted" in caplog.text
    finally:
        holder.close()
