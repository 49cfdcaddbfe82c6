"""Self-test of the throwaway PostgreSQL cluster in tests/support/postgres.py."""

from __future__ import annotations

import asyncio
import os
import socket

import asyncpg
import pytest

from tests.support.postgres import PostgresCluster, find_pg_bin

pytestmark = pytest.mark.postgres


def _require_postgres() -> None:
    if find_pg_bin() is not None:
        return
    msg = "PostgreSQL not installed: run tests/support/ensure_postgres.sh (as root) to install it"
    if os.environ.get("PHOTOCHANGER_REQUIRE_POSTGRES") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


def _asyncpg_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _fetch(url: str, query: str) -> object:
    conn = await asyncpg.connect(_asyncpg_url(url), timeout=10)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def test_cluster_lifecycle() -> None:
    _require_postgres()
    pg = PostgresCluster()
    try:
        pg.start()
        data_dir, base_dir = pg.data_dir, pg.base_dir
        assert pg.dsn() == (
            f"postgresql+asyncpg://photochanger:{pg.password}@127.0.0.1:{pg.port}/photochanger"
        )
        assert asyncio.run(_fetch(pg.dsn(), "SELECT 1")) == 1
        assert asyncio.run(_fetch(pg.dsn(), "SELECT current_user")) == "photochanger"

        # TCP really needs the password.
        bad = pg.dsn().replace(pg.password, "wrong")
        with pytest.raises(asyncpg.InvalidPasswordError):
            asyncio.run(_fetch(bad, "SELECT 1"))

        other = pg.create_database("t_isolated")
        assert other.endswith(f":{pg.port}/t_isolated")
        assert asyncio.run(_fetch(other, "SELECT current_database()")) == "t_isolated"

        pg.restart()
        assert asyncio.run(_fetch(other, "SELECT 1")) == 1
    finally:
        pg.stop()

    assert base_dir is not None
    assert not data_dir.exists()
    assert not base_dir.exists()
    assert not _port_open("127.0.0.1", pg.port)
    pg.stop()  # idempotent


def test_context_manager_cleans_up_on_error() -> None:
    _require_postgres()
    with pytest.raises(RuntimeError, match="boom"), PostgresCluster() as pg:
        port, base_dir = pg.port, pg.base_dir
        assert _port_open("127.0.0.1", port)
        raise RuntimeError("boom")
    assert base_dir is not None and not base_dir.exists()
    assert not _port_open("127.0.0.1", port)


def test_rejects_unsafe_database_name() -> None:
    with pytest.raises(ValueError, match="database name"):
        PostgresCluster().create_database('x"; DROP DATABASE photochanger; --')
