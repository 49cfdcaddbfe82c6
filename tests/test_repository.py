"""Repository and queue behaviour on both dialects: real SQLite file, throwaway PostgreSQL."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa
import trio
import trio_asyncio

from photochangerd.db import repositories, tables
from photochangerd.db.engine import Database, open_database
from photochangerd.db.migrate import migrate
from photochangerd.domain.models import StoredResult, new_job_id
from shared.slots import SLOT_IDS


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    async with trio_asyncio.open_loop(), open_database(database_url) as database:
        if database.dialect == "postgresql":  # + the notification triggers
            expected = ["0001_initial", "0002_admin_session", "0003_job_events"]
            expected += ["0004_config_events", "0005_revoked_token", "0006_login_throttle"]
            expected += ["0007_ingest_pacing", "0008_fallbacks"]
        else:
            expected = ["0001_initial", "0002_admin_session", "0003_revoked_token"]
            expected += ["0004_login_throttle", "0005_ingest_pacing", "0006_fallbacks"]
        assert await migrate(database) == expected
        assert await migrate(database) == []  # idempotent
        yield database


def _job_values(slot_id: str = "slot-001", deadline_in: float = 30, **extra: Any) -> dict[str, Any]:
    now = time.time()
    values = {
        "id": new_job_id(),
        "slot_id": slot_id,
        "source": "ingest",
        "status": "pending",
        "is_finalized": False,
        "provider": "local",
        "operation": "passthrough",
        "settings": {"output_format": "jpeg"},
        "created_at": now,
        "deadline": now + deadline_in,
        "attempts": 0,
        "client_metadata": {"fields": {"profile": "C:\\Users\\Acer\\setup.xml"}},
        "input_path": "/nonexistent/input.jpg",
        "input_mime_type": "image/jpeg",
    }
    values.update(extra)
    return values


async def test_schema_matches_table_definitions(db: Database) -> None:
    def columns(conn: Any) -> dict[str, set[str]]:
        inspector = sa.inspect(conn)
        return {
            name: {c["name"] for c in inspector.get_columns(name)}
            for name in inspector.get_table_names()
        }

    found = await db.read(columns)
    for table in tables.metadata.sorted_tables:
        assert found[table.name] == {c.name for c in table.columns}, table.name
    assert "schema_migrations" in found


async def test_fifteen_slots_seeded_active_on_local(db: Database) -> None:
    slots = await db.read(repositories.list_slots)
    assert [s.id for s in slots] == list(SLOT_IDS)
    assert all(
        s.is_active and s.provider == "local" and s.operation == "passthrough" for s in slots
    )
    assert all(s.settings == {} and s.version == 1 and s.size_limit_mb == 20 for s in slots)


async def test_update_slot_bumps_version(db: Database) -> None:
    await db.write(
        repositories.update_slot,
        "slot-002",
        {"display_name": "Booth A", "settings": {"prompt": "x"}, "updated_by": "serg"},
    )
    slot = await db.read(repositories.get_slot, "slot-002")
    assert slot is not None and slot.version == 2 and slot.display_name == "Booth A"
    assert slot.settings == {"prompt": "x"} and slot.updated_by == "serg"
    assert await db.read(repositories.get_slot, "slot-999") is None


async def test_job_lifecycle_and_finalize_exactly_once(db: Database) -> None:
    values = _job_values()
    await db.write(repositories.insert_job, values)
    job = await db.write(repositories.claim_job, values["id"], "instance-a", time.time())
    assert job is not None and job.status == "processing" and job.attempts == 1
    assert job.claimed_by == "instance-a"
    assert job.client_metadata["fields"]["profile"] == "C:\\Users\\Acer\\setup.xml"
    # a second claim of the same job fails
    assert await db.write(repositories.claim_job, values["id"], "instance-b", time.time()) is None

    result = StoredResult("/media/results/x.jpg", "image/jpeg", 123, "ab" * 32)
    won = await db.write(
        repositories.finalize_job,
        values["id"],
        now=1000.0,
        failure_reason=None,
        response_status=200,
        details=None,
        result=result,
        result_ttl_seconds=3600.0,
    )
    lost = await db.write(
        repositories.finalize_job,
        values["id"],
        now=1001.0,
        failure_reason="timeout",
        response_status=504,
        details="late",
        result=None,
        result_ttl_seconds=3600.0,
    )
    assert (won, lost) == (True, False)
    final = await db.read(repositories.get_job, values["id"])
    assert final is not None and final.is_finalized and final.failure_reason is None
    assert final.result_expires_at == 4600.0 and final.input_path is None
    assert final.result_size_bytes == 123


async def test_concurrent_claims_take_each_job_once(db: Database) -> None:
    ids = []
    for _ in range(20):
        values = _job_values()
        ids.append(values["id"])
        await db.write(repositories.insert_job, values)
        await trio.sleep(0.001)  # distinct created_at
    claimed: list[str] = []

    async def claimer(name: str) -> None:
        while True:
            job = await db.write(repositories.claim_next_job, name, time.time(), db.dialect)
            if job is None:
                return
            claimed.append(job.id)

    async with trio.open_nursery() as nursery:
        for n in range(8):
            nursery.start_soon(claimer, f"w{n}")
    assert sorted(claimed) == sorted(ids)
    assert len(set(claimed)) == 20


async def test_claim_next_is_oldest_first_and_skips_expired(db: Database) -> None:
    expired = _job_values(deadline_in=-1)
    first = _job_values()
    await db.write(repositories.insert_job, expired)
    await trio.sleep(0.01)
    await db.write(repositories.insert_job, first)
    await trio.sleep(0.01)
    await db.write(repositories.insert_job, _job_values())
    job = await db.write(repositories.claim_next_job, "w", time.time(), db.dialect)
    assert job is not None and job.id == first["id"]


async def test_overdue_jobs_are_swept(db: Database) -> None:
    overdue = _job_values(deadline_in=-10, status="processing")
    fresh = _job_values(deadline_in=60, status="processing")
    await db.write(repositories.insert_job, overdue)
    await db.write(repositories.insert_job, fresh)
    now = time.time()
    ended = await db.write(
        repositories.finalize_overdue,
        now=now,
        before=now - 2,
        failure_reason="timeout",
        details="swept",
    )
    assert ended == [(overdue["id"], "/nonexistent/input.jpg")]
    job = await db.read(repositories.get_job, overdue["id"])
    assert job is not None and job.is_finalized and job.failure_reason == "timeout"
    assert job.response_status == 504
    still = await db.read(repositories.get_job, fresh["id"])
    assert still is not None and not still.is_finalized


async def test_expired_results_query(db: Database) -> None:
    values = _job_values(
        is_finalized=True,
        result_file_path="/r/a.jpg",
        result_expires_at=100.0,
        result_mime_type="image/jpeg",
    )
    await db.write(repositories.insert_job, values)
    await db.write(
        repositories.insert_job,
        _job_values(is_finalized=True, result_file_path="/r/b.jpg", result_expires_at=10_000.0),
    )
    assert await db.read(repositories.expired_results, 200.0, 10) == [(values["id"], "/r/a.jpg")]
    assert await db.read(repositories.expired_results, 200.0, 10, "slot-002") == []
    await db.write(repositories.clear_result_paths, [values["id"]])
    assert await db.read(repositories.expired_results, 200.0, 10) == []


async def test_settings_upsert_and_seed(db: Database) -> None:
    assert await db.write(repositories.insert_setting_if_missing, "k", {"a": 1}, 1.0)
    assert not await db.write(repositories.insert_setting_if_missing, "k", {"a": 2}, 2.0)
    await db.write(repositories.put_setting, "k", {"a": 3}, 3.0, "igor")
    await db.write(repositories.put_setting, "n", 48.0, 3.0, "igor")
    assert await db.read(repositories.get_settings) == {"k": {"a": 3}, "n": 48.0}


async def test_cancelled_query_leaves_the_pool_usable(db: Database) -> None:
    """A Trio cancel scope cancels a running query cleanly.

    PostgreSQL aborts the query at once.  SQLite runs queries in a thread that cannot be
    interrupted, so on SQLite the scope only returns once the statement ends (our statements
    are single-row, indexed and take well under a millisecond); the engine stays usable.
    """

    def slow(conn: Any) -> None:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_sleep(5)"))
        else:  # a long recursive CTE keeps SQLite busy
            conn.execute(
                sa.text(
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c"
                    " WHERE x < 5000000)"  # ~1 s: well past the 0.2 s scope on any machine
                    " SELECT count(*) FROM c"
                )
            )

    started = trio.current_time()
    with trio.move_on_after(0.2) as scope:
        await db.read(slow)
        await trio.lowlevel.checkpoint()
    assert scope.cancelled_caught
    if db.dialect == "postgresql":
        assert trio.current_time() - started < 1.0
    await db.ping()
    assert len(await db.read(repositories.list_slots)) == 15


async def test_admin_queries_on_both_dialects(db: Database) -> None:
    """The grouped statistics and admin listings run on SQLite and PostgreSQL alike."""
    from photochangerd.domain.stats import ALL_SLOTS, bucket_seconds, build_stats

    now = time.time()
    ok = _job_values(
        "slot-003",
        is_finalized=True,
        finalized_at=now,
        created_at=now - 2,
        result_file_path="/r/x.jpg",
        result_size_bytes=2048,
        result_expires_at=now + 100,
    )
    late = _job_values(
        "slot-003",
        is_finalized=True,
        failure_reason="timeout",
        finalized_at=now,
        created_at=now - 48,
    )
    pending = _job_values("slot-004")
    for values in (ok, late, pending):
        await db.write(repositories.insert_job, values)
    await db.write(
        repositories.insert_processing_log,
        [
            {
                "created_at": now,
                "slot_id": "slot-003",
                "job_id": None,
                "source": "ingest",
                "status_code": 401,
                "failure_reason": "invalid_password",
                "duration_ms": 1.0,
            },
        ],
    )
    rows = await db.read(repositories.stats_rows, now - 3600, bucket_seconds(60))
    stats = build_stats(rows, since=now - 3600, window_minutes=60, slot_ids=ALL_SLOTS)
    slot3 = stats["slot-003"]
    assert (slot3.jobs, slot3.successes, slot3.timeouts) == (2, 1, 1)
    assert slot3.rejected == {"invalid_password": 1} and slot3.last_error_reason == "timeout"
    assert slot3.p50_duration_seconds == pytest.approx(2.0, abs=0.01)
    assert slot3.storage_usage_mb == pytest.approx(2048 / 1024 / 1024, abs=0.001)
    assert sum(b.jobs for b in slot3.buckets) == 2 and sum(b.rejected for b in slot3.buckets) == 1
    assert stats[None].jobs == 3 and stats[None].in_progress == 1

    last = await db.read(repositories.last_job_per_slot)
    assert set(last) == {"slot-003", "slot-004"} and last["slot-004"].id == pending["id"]
    listed = await db.read(repositories.list_jobs, slot_id="slot-003", status="timeout", limit=10)
    assert [j.id for j in listed] == [late["id"]]
    recent = await db.read(repositories.recent_finished, "slot-003", 10)
    assert len(recent) == 2

    await db.write(repositories.put_provider_secret, "gemini", b"\x00cipher", now, "serg")
    assert (await db.read(repositories.provider_secrets))["gemini"][0] == b"\x00cipher"
    await db.write(repositories.put_provider_secret, "gemini", None, now, "serg")
    assert await db.read(repositories.provider_secrets) == {}

    await db.write(
        repositories.insert_template,
        {
            "id": "t1",
            "path": "/t/t1.png",
            "mime_type": "image/png",
            "size_bytes": 1,
            "checksum": "c",
            "width": 1,
            "height": 1,
            "created_at": now,
        },
    )
    assert (
        await db.write(
            repositories.update_slot_checked,
            "slot-005",
            {"display_name": "x"},
            [("frame", "t1")],
            1,
        )
        == "ok"
    )
    assert (
        await db.write(repositories.update_slot_checked, "slot-005", {"display_name": "y"}, None, 1)
        == "conflict"
    )
    assert (
        await db.write(
            repositories.update_slot_checked,
            "slot-005",
            {"display_name": "y"},
            [("frame", "nope")],
            None,
        )
        == "missing_template"
    )
    assert await db.write(repositories.delete_template_if_unused, "t1") == ["slot-005"]
    await db.write(repositories.bind_templates, "slot-005", [])
    assert await db.write(repositories.delete_template_if_unused, "t1") == []
    assert await db.write(repositories.delete_template_if_unused, "t1") is None


async def test_a_failed_migration_leaves_the_old_schema(
    database_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upgrades are all or nothing on both dialects (SQLite ran DDL in autocommit before)."""
    import shutil

    from photochangerd.db import migrate as migrate_module

    dialect = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    sql = tmp_path / "sql"
    shutil.copytree(migrate_module.sql_dir() / dialect, sql / dialect)
    broken = sql / dialect / "0099_broken.sql"
    broken.write_text("CREATE TABLE half_done (x INTEGER);\nCREATE TABLE oops (;\n")
    monkeypatch.setattr(migrate_module, "sql_dir", lambda: sql)
    async with trio_asyncio.open_loop(), open_database(database_url) as database:
        with pytest.raises(Exception):  # the driver's syntax error, whatever its class
            await migrate(database)

        def tables_now(conn: sa.Connection) -> set[str]:
            return set(sa.inspect(conn).get_table_names())

        assert "half_done" not in await database.read(tables_now)
        assert "job" not in await database.read(tables_now)  # 0001 rolled back with it
        broken.write_text("CREATE TABLE half_done (x INTEGER);\n")
        applied = await migrate(database)
        assert applied[:2] == ["0001_initial", "0002_admin_session"]
        assert applied[-1] == "0099_broken" and "half_done" in await database.read(tables_now)


def test_migrations_split_on_semicolons_outside_dollar_quotes() -> None:
    from photochangerd.db.migrate import split_statements

    script = (
        "-- a comment; with a semicolon\n"
        "CREATE TABLE a (x INTEGER);\n"
        "CREATE FUNCTION f() RETURNS trigger AS $$\nBEGIN\n  PERFORM 1;\n  RETURN NULL;\nEND\n"
        "$$ LANGUAGE plpgsql;\n"
        "CREATE TRIGGER t AFTER INSERT ON a FOR EACH ROW EXECUTE FUNCTION f();"
    )
    statements = split_statements(script)
    assert len(statements) == 3
    assert statements[1].startswith("CREATE FUNCTION") and "RETURN NULL;" in statements[1]
    assert statements[1].endswith("$$ LANGUAGE plpgsql")


async def test_paced_turns_queue_at_most_max_wait_ahead(db: Database) -> None:
    """Abandoned requests cannot push an address's turns (and a booth's behind the same NAT)
    minutes out: past ``max_wait`` nothing is reserved."""
    now = 1000.0
    starts = [
        await db.write(repositories.reserve_ingest_turn, "10.0.0.9", now, 1.0, 5.0)
        for _ in range(8)
    ]
    assert starts == [1000.0, 1001.0, 1002.0, 1003.0, 1004.0, 1005.0, None, None]
    later = await db.write(repositories.reserve_ingest_turn, "10.0.0.9", now + 10, 1.0, 5.0)
    assert later == now + 10  # the queue drained meanwhile
    other = await db.write(repositories.reserve_ingest_turn, "10.0.0.7", now, 1.0, 5.0)
    assert other == now  # per address


async def test_concurrent_lockouts_of_one_key_do_not_collide(db: Database) -> None:
    """Two instances' tenth failure at once: the lock is an upsert, not a duplicate key."""
    keys = ["user:igor"]
    for _ in range(9):
        await db.write(
            repositories.record_login_failure,
            keys,
            100.0,
            window=900.0,
            max_failures=10,
            lock_seconds=900.0,
        )
    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(
                partial(
                    db.write,
                    repositories.record_login_failure,
                    keys,
                    101.0,
                    window=900.0,
                    max_failures=10,
                    lock_seconds=900.0,
                )
            )
    assert await db.read(repositories.login_locked_until, keys, 102.0) == 1001.0


async def test_only_an_unusable_database_is_unavailable(tmp_path: Any) -> None:
    """503 is for a database that cannot be used right now; SQLite's own OperationalError for
    a defect ("no such table") is not that (it is a 500 with a traceback)."""
    from photochangerd.db.engine import DatabaseUnavailable

    def broken(conn: sa.Connection) -> None:
        conn.execute(sa.text("SELECT * FROM no_such_table"))

    async with trio_asyncio.open_loop(), open_database(f"sqlite:///{tmp_path / 'x.db'}") as db:
        with pytest.raises(sa.exc.OperationalError):
            await db.read(broken)
    locked = sa.exc.OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked"))
    from photochangerd.db.engine import _is_unavailable

    assert _is_unavailable(locked)
    assert not isinstance(locked, DatabaseUnavailable)
