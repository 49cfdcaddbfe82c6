"""The daemon on PostgreSQL: ingest end to end, the cross-instance waiter, DB down → 503 and
recovery after a PostgreSQL restart (docs/stack-traps.md, "Pre-ping after a restart"), two
daemons sharing one database."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import trio

from photochangerd.http.ingest import CONTEXT_READ_SECONDS
from tests.conftest import (
    ADMIN_PASSWORD,
    INGEST_PASSWORD,
    RunningDaemon,
    make_config,
    start_daemon,
)
from tests.support.dslr import dslr_upload
from tests.support.images import make_jpeg
from tests.support.postgres import PostgresCluster, find_pg_bin

pytestmark = pytest.mark.postgres
# Instances sharing a database share their keys (else the second refuses to start).
SHARED_KEYS = {
    "jwt_secret": "shared-jwt-secret-for-both-instances-0123456789",
    "secret_key": base64.b64encode(b"k" * 32).decode(),
}
PHOTO = make_jpeg(800, 600)


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster this test may stop and start (not the shared session one)."""
    if find_pg_bin() is None:
        if os.environ.get("PHOTOCHANGER_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL binaries not found and PHOTOCHANGER_REQUIRE_POSTGRES=1")
        pytest.skip("PostgreSQL binaries (initdb/pg_ctl) not found: PostgreSQL tests skipped")
    with PostgresCluster() as cluster:
        yield cluster


async def test_ingest_and_deadline_on_postgresql(
    nursery: trio.Nursery, tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    url = pg_cluster.create_database(f"daemon_{os.getpid()}")
    daemon = await start_daemon(nursery, make_config(tmp_path, database_url=url))
    response = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD)
    assert response is not None and response.status == 200 and response.body == PHOTO
    job = await daemon.job(response.headers["x-job-id"])
    assert job.is_finalized and job.client_metadata["hash_check"] == "verified_sha1"

    await daemon.set_setting("sync_response_seconds", 1.0)
    await daemon.configure_slot("slot-002", provider="script", operation="hang")
    late = await dslr_upload(
        "127.0.0.1", daemon.port, "slot-002", photo=PHOTO, password=INGEST_PASSWORD
    )
    assert late is not None and late.status == 504
    assert 0.95 <= late.elapsed <= 1.15


async def test_database_down_answers_503_and_recovers(
    nursery: trio.Nursery, tmp_path: Path, own_cluster: PostgresCluster
) -> None:
    daemon = await start_daemon(
        nursery,
        make_config(tmp_path, database_url=own_cluster.dsn(), db_connect_timeout_seconds=1.0),
    )
    ok = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD)
    assert ok is not None and ok.status == 200

    await trio.to_thread.run_sync(own_cluster.pause)
    down = await dslr_upload(
        "127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD, timeout=10
    )
    assert down is not None and down.status == 503
    assert down.json()["failure_reason"] == "service_unavailable"
    assert down.elapsed < 3
    async with httpx.AsyncClient(base_url=daemon.url) as client:
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200

    await trio.to_thread.run_sync(own_cluster.resume)
    # the first request after the restart succeeds (no stale connection error)
    again = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD)
    assert again is not None and again.status == 200 and again.body == PHOTO


async def test_a_hung_database_answers_the_booth_by_the_deadline(
    nursery: trio.Nursery, tmp_path: Path, own_cluster: PostgresCluster
) -> None:
    """A server that stops answering (connections open, nothing comes back) must not keep a
    booth past its deadline: the job's insert is bounded by it (503, the database is the
    cause), and once the server answers again so does the daemon.  An insert the server still
    commits afterwards leaves a claimed row that the sweeper ends."""
    daemon = await start_daemon(nursery, make_config(tmp_path, database_url=own_cluster.dsn()))
    await daemon.set_setting("sync_response_seconds", 2.0)
    ok = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD)
    assert ok is not None and ok.status == 200

    async def hold_a_connection() -> None:
        await daemon.context.db.read(lambda conn: conn.execute(sa.text("SELECT pg_sleep(0.2)")))

    async with trio.open_nursery() as warm:  # idle pooled connections to hang on, not new ones
        for _ in range(4):
            warm.start_soon(hold_a_connection)
    await trio.to_thread.run_sync(own_cluster.freeze)
    try:
        hung = await dslr_upload(
            "127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD, timeout=15
        )
        daemon.context.db.config_changed()  # the slot and settings must be read again
        unread = await dslr_upload(
            "127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD, timeout=15
        )
    finally:
        await trio.to_thread.run_sync(own_cluster.thaw)
    for answer in (hung, unread):
        assert answer is not None and answer.status == 503, answer
        assert answer.json()["failure_reason"] == "service_unavailable"
    assert hung.elapsed < 2.0 + 4.0  # the deadline, then the driver gives the statement up (~2 s)
    assert unread.elapsed < CONTEXT_READ_SECONDS + 4.0  # read before any deadline exists

    again = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD)
    assert again is not None and again.status == 200 and again.body == PHOTO
    await trio.sleep(2.5)  # past every deadline so far
    await daemon.context.jobs.sweep(grace=0)
    left = await daemon.context.db.read(
        lambda conn: conn.execute(
            sa.text("SELECT count(*) FROM job WHERE NOT is_finalized")
        ).scalar_one()
    )
    assert left == 0


@pytest.mark.slow
async def test_postgresql_restart_under_a_running_daemon(
    nursery: trio.Nursery, tmp_path: Path, own_cluster: PostgresCluster
) -> None:
    daemon = await start_daemon(nursery, make_config(tmp_path, database_url=own_cluster.dsn()))
    for _ in range(3):
        await trio.to_thread.run_sync(own_cluster.restart)
        response = await dslr_upload(
            "127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD
        )
        assert response is not None and response.status == 200


@pytest.mark.slow
async def test_two_daemons_share_one_database(
    nursery: trio.Nursery, tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    """Scale-out: a job enqueued on A while A's only worker is busy is run by B's worker."""
    url = pg_cluster.create_database(f"shared_{os.getpid()}")
    media = tmp_path / "shared-media"
    a = await start_daemon(
        nursery,
        make_config(tmp_path / "a", database_url=url, media_dir=media, workers=1, **SHARED_KEYS),
    )
    b = await start_daemon(
        nursery,
        make_config(tmp_path / "b", database_url=url, media_dir=media, workers=2, **SHARED_KEYS),
    )
    await a.configure_slot(
        "slot-001", provider="script", operation="echo", settings={"seconds": 2.0}
    )
    await a.configure_slot(
        "slot-002", provider="script", operation="echo", settings={"seconds": 0.1}
    )
    statuses: dict[str, int] = {}

    async def shoot(slot: str) -> None:
        response = await dslr_upload(
            "127.0.0.1", a.port, slot, photo=PHOTO, password=INGEST_PASSWORD
        )
        assert response is not None
        statuses[slot] = response.status

    async with trio.open_nursery() as inner:
        inner.start_soon(shoot, "slot-001")  # occupies A's only worker for 2 s
        with trio.fail_after(5):
            while not a.provider.calls:
                await trio.sleep(0.01)
        started = trio.current_time()
        await shoot("slot-002")
        quick = trio.current_time() - started
    assert statuses == {"slot-001": 200, "slot-002": 200}
    # B claimed it at once (the "queued" notification; the slow poll would take 5 s) and A's
    # waiting request heard of its end at once (the "final" notification).
    assert quick < 0.9
    assert len(b.provider.calls) == 1 and b.provider.calls[0].operation == "echo"


async def _wait_listening(*daemons: RunningDaemon, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not all(d.context.jobs.elsewhere.listener.listening for d in daemons):
            await trio.sleep(0.05)


@pytest.mark.slow
async def test_job_events_survive_a_postgresql_restart(
    nursery: trio.Nursery, tmp_path: Path, own_cluster: PostgresCluster
) -> None:
    """The listener reconnects: after a restart a job queued on A while A is busy is still
    claimed by B at once and A's request hears of its end at once (not after the slow poll)."""
    media = tmp_path / "shared-media"
    url = own_cluster.dsn()
    a = await start_daemon(
        nursery,
        make_config(tmp_path / "a", database_url=url, media_dir=media, workers=1, **SHARED_KEYS),
    )
    b = await start_daemon(
        nursery,
        make_config(tmp_path / "b", database_url=url, media_dir=media, workers=1, **SHARED_KEYS),
    )
    await a.configure_slot(
        "slot-001", provider="script", operation="echo", settings={"seconds": 2.0}
    )
    await a.configure_slot(
        "slot-002", provider="script", operation="echo", settings={"seconds": 0.1}
    )
    await _wait_listening(a, b)
    generations = [d.context.db.config_generation for d in (a, b)]
    await trio.to_thread.run_sync(own_cluster.restart)
    await _wait_listening(a, b)
    # Reconnected: what changed while nobody listened cannot have been announced, so each
    # instance dropped its copy of slots and settings (and trusts the new one again).
    assert all(d.context.db.config_generation > g for d, g in zip((a, b), generations, strict=True))
    assert a.context.db.config_trusted and b.context.db.config_trusted

    async with trio.open_nursery() as inner:
        inner.start_soon(
            partial(
                dslr_upload, "127.0.0.1", a.port, "slot-001", photo=PHOTO, password=INGEST_PASSWORD
            )
        )
        with trio.fail_after(5):
            while not a.provider.calls:
                await trio.sleep(0.01)
        started = trio.current_time()
        quick = await dslr_upload(
            "127.0.0.1", a.port, "slot-002", photo=PHOTO, password=INGEST_PASSWORD
        )
        elapsed = trio.current_time() - started
    assert quick is not None and quick.status == 200
    assert elapsed < 0.9 and len(b.provider.calls) == 1


@pytest.mark.slow
async def test_idle_instances_leave_the_database_alone(
    nursery: trio.Nursery, tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    """No worker polls: 30 idle workers used to claim every second (30 transactions/s and
    ~10 % of a core).  Idle, only the slow poll and the sweeper run, each every 5 s."""
    url = pg_cluster.create_database(f"idle_{os.getpid()}")
    config = make_config(tmp_path, database_url=url, workers=30, sweep_interval_seconds=5.0)
    daemon = await start_daemon(nursery, config)
    await _wait_listening(daemon)
    await trio.sleep(1.0)  # the cleaner's first round, at start
    operations: list[float] = []
    pool = daemon.context.db._async_engine.sync_engine.pool
    on_checkout = lambda *_: operations.append(trio.current_time())  # noqa: E731
    sa.event.listen(pool, "checkout", on_checkout)
    try:
        await trio.sleep(10.0)
    finally:
        sa.event.remove(pool, "checkout", on_checkout)
    # 2-3 slow polls and 2-3 sweeps (the polling workers made 300 claims in 10 s).
    assert len(operations) <= 8, len(operations)
    assert daemon.context.jobs.in_progress == 0


async def test_a_rotation_on_one_instance_holds_on_the_next_upload_to_another(
    nursery: trio.Nursery, tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    """PostgreSQL instances keep slots and settings in memory like SQLite; a change committed
    by another instance is announced (photochanger_config) and drops the copy at once."""
    url = pg_cluster.create_database(f"rotation_{os.getpid()}")
    media = tmp_path / "shared-media"
    a = await start_daemon(
        nursery, make_config(tmp_path / "a", database_url=url, media_dir=media, **SHARED_KEYS)
    )
    b = await start_daemon(
        nursery, make_config(tmp_path / "b", database_url=url, media_dir=media, **SHARED_KEYS)
    )
    await _wait_listening(a, b)
    assert b.context.db.config_trusted
    for _ in range(2):  # the second upload is served from B's in-memory copy
        ok = await dslr_upload("127.0.0.1", b.port, photo=PHOTO, password=INGEST_PASSWORD)
        assert ok is not None and ok.status == 200
    generation = b.context.db.config_generation

    async with httpx.AsyncClient(base_url=a.url) as admin:
        login = await admin.post(
            "/api/login", json={"username": "serg", "password": ADMIN_PASSWORD}
        )
        token = login.json()["access_token"]
        rotated = await admin.put(
            "/api/settings",
            json={"ingest_password": "rotated-on-a-1234"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert rotated.status_code == 200
    old = await dslr_upload("127.0.0.1", b.port, photo=PHOTO, password=INGEST_PASSWORD)
    assert old is not None and old.status == 401
    assert b.context.db.config_generation > generation
    new = await dslr_upload("127.0.0.1", b.port, photo=PHOTO, password="rotated-on-a-1234")
    assert new is not None and new.status == 200


async def test_an_upload_costs_two_statements(
    nursery: trio.Nursery, tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    """The hot path on PostgreSQL: one insert and one conditional update, each in autocommit
    (one round trip): slots, settings and keys come from memory, no pre-ping, no BEGIN."""
    name = f"statements_{os.getpid()}"
    url = pg_cluster.create_database(name)
    pg_cluster._psql(f"ALTER DATABASE {name} SET log_statement = 'all'")
    daemon = await start_daemon(nursery, make_config(tmp_path, database_url=url))
    await _wait_listening(daemon)
    warm = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD)
    assert warm is not None and warm.status == 200
    await trio.sleep(0.5)  # the activity log's batch of the warm-up is written

    statements: list[str] = []
    engine = daemon.context.db._async_engine.sync_engine

    def on_execute(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement.split()[0].upper())

    sa.event.listen(engine, "before_cursor_execute", on_execute)
    log_from = pg_cluster.log_file.stat().st_size
    try:
        response = await dslr_upload(
            "127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD
        )
    finally:
        sa.event.remove(engine, "before_cursor_execute", on_execute)
    assert response is not None and response.status == 200
    assert statements == ["INSERT", "UPDATE"], statements
    with open(pg_cluster.log_file, encoding="utf-8", errors="replace") as log:
        log.seek(log_from)
        logged = [line for line in log if "statement:" in line or "execute " in line]
    # What reached the server: the two statements, no BEGIN/COMMIT, no pre-ping.
    assert len(logged) == 2 and not any("BEGIN" in line for line in logged), logged


async def test_an_instance_with_other_keys_refuses_to_start(
    nursery: trio.Nursery, tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    from photochangerd.auth.fingerprint import KeysDiffer

    url = pg_cluster.create_database(f"keys_{os.getpid()}")
    first = await start_daemon(
        nursery, make_config(tmp_path / "a", database_url=url, **SHARED_KEYS)
    )
    other = {**SHARED_KEYS, "jwt_secret": "another-jwt-secret-of-enough-length-0123456789"}
    with pytest.raises(BaseException) as caught:
        await start_daemon(nursery, make_config(tmp_path / "b", database_url=url, **other))
    error = caught.value
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    assert isinstance(error, KeysDiffer), repr(error)
    assert "jwt_secret differs" in str(error) and "secret_key" in str(error)
    same = await start_daemon(
        nursery, make_config(tmp_path / "c", database_url=url, **SHARED_KEYS)
    )  # the same keys: welcome
    assert first.url != same.url


async def test_a_sign_out_on_one_instance_holds_on_the_other(
    nursery: trio.Nursery, tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    url = pg_cluster.create_database(f"logout_{os.getpid()}")
    a = await start_daemon(nursery, make_config(tmp_path / "a", database_url=url, **SHARED_KEYS))
    b = await start_daemon(nursery, make_config(tmp_path / "b", database_url=url, **SHARED_KEYS))
    async with httpx.AsyncClient() as http:
        login = await http.post(
            f"{a.url}/api/login", json={"username": "serg", "password": ADMIN_PASSWORD}
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        assert (await http.get(f"{b.url}/api/slots", headers=headers)).status_code == 200
        assert (await http.post(f"{a.url}/api/logout", headers=headers)).status_code == 204
        assert (await http.get(f"{b.url}/api/slots", headers=headers)).status_code == 401


async def test_failed_sign_ins_are_counted_across_instances(
    nursery: trio.Nursery, tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    """Two instances give a guesser no more attempts than one: 5 failures on each lock the
    account on both (10 in 15 minutes)."""
    url = pg_cluster.create_database(f"throttle_{os.getpid()}")
    a = await start_daemon(nursery, make_config(tmp_path / "a", database_url=url, **SHARED_KEYS))
    b = await start_daemon(nursery, make_config(tmp_path / "b", database_url=url, **SHARED_KEYS))
    async with httpx.AsyncClient() as http:
        for number in range(10):
            daemon = a if number % 2 else b
            wrong = await http.post(
                f"{daemon.url}/api/login", json={"username": "igor", "password": "guess"}
            )
            assert wrong.status_code == 401
        for daemon in (a, b):
            locked = await http.post(
                f"{daemon.url}/api/login", json={"username": "igor", "password": ADMIN_PASSWORD}
            )
            assert locked.status_code == 429 and 800 < int(locked.headers["retry-after"]) <= 901
        other = await http.post(
            f"{a.url}/api/login", json={"username": "serg", "password": ADMIN_PASSWORD}
        )
        assert other.status_code == 429  # the same address is locked too (10 from it)


async def test_ingest_password_pacing_is_shared_by_instances(
    nursery: trio.Nursery, tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    """20 new wrong passwords from one address, spread over two instances, pace it on both:
    the next three (alternating instances) take a KDF turn a second apart, not one each at once
    per instance."""
    url = pg_cluster.create_database(f"pacing_{os.getpid()}")
    media = tmp_path / "shared-media"
    a = await start_daemon(
        nursery, make_config(tmp_path / "a", database_url=url, media_dir=media, **SHARED_KEYS)
    )
    b = await start_daemon(
        nursery, make_config(tmp_path / "b", database_url=url, media_dir=media, **SHARED_KEYS)
    )
    small = make_jpeg(200, 150)
    for attempt in range(20):
        daemon = a if attempt % 2 else b
        response = await dslr_upload("127.0.0.1", daemon.port, photo=small, password=f"g-{attempt}")
        assert response is not None and response.status == 401

    async def guess(daemon: RunningDaemon, attempt: int) -> None:
        response = await dslr_upload("127.0.0.1", daemon.port, photo=small, password=f"g-{attempt}")
        assert response is not None and response.status == 401

    started = trio.current_time()
    async with trio.open_nursery() as guesses:  # at once: the shared queue spaces them
        for attempt, daemon in ((20, a), (21, b), (22, a)):
            guesses.start_soon(guess, daemon, attempt)
    assert trio.current_time() - started >= 1.9


async def test_a_silent_listener_connection_is_noticed(
    nursery: trio.Nursery,
    tmp_path: Path,
    own_cluster: PostgresCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A connection that stops answering without closing (here: the server paused) no longer
    vouches for the in-memory configuration once a heartbeat is missed; it is replaced when
    the server answers again."""
    from photochangerd.db import notify

    monkeypatch.setattr(notify, "HEARTBEAT_SECONDS", 0.3)
    monkeypatch.setattr(notify, "HEARTBEAT_TIMEOUT", 0.5)
    daemon = await start_daemon(
        nursery,
        make_config(tmp_path, database_url=own_cluster.dsn(), db_connect_timeout_seconds=1.0),
    )
    await _wait_listening(daemon)
    assert daemon.context.db.config_trusted
    await trio.to_thread.run_sync(own_cluster.pause)
    try:
        with trio.fail_after(5):
            while daemon.context.db.config_trusted:
                await trio.sleep(0.05)
    finally:
        await trio.to_thread.run_sync(own_cluster.resume)
    await _wait_listening(daemon, timeout=20)
    assert daemon.context.db.config_trusted
