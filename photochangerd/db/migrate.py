"""Apply ``sql/<dialect>/NNNN_name.sql`` in order, recording them in ``schema_migrations``.

Plain SQL per dialect, no ORM autogeneration: what runs in production is what a reviewer reads.
On PostgreSQL an advisory lock serializes several daemons starting at once against one database.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Connection

from photochangerd.db.engine import Database

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_ADVISORY_LOCK_ID = 0x5043_0001  # "PC" + 1: any constant shared by all instances


def sql_dir() -> Path:
    """Where the migrations are: inside the wheel (``_sql``) or the source checkout (``sql``)."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "_sql"
    return installed if installed.is_dir() else package.parent / "sql"


def migration_files(dialect: str) -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted((sql_dir() / dialect).glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if match is None:
            raise RuntimeError(f"badly named migration {path.name}")
        found.append((int(match.group(1)), match.group(2), path))
    if not found:
        raise RuntimeError(f"no migrations found under {sql_dir() / dialect}")
    return found


def split_statements(script: str) -> list[str]:
    """Split a migration into statements (drivers' prepared statements take one at a time).

    ``;`` ends a statement except inside a dollar-quoted body (``$$ … $$``: PL/pgSQL
    functions); ``--`` comment lines are dropped.
    """
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    statements: list[str] = []
    current: list[str] = []
    for index, part in enumerate("\n".join(lines).split("$$")):
        if index % 2:  # inside $$ … $$
            current.append(f"$${part}$$")
            continue
        pieces = part.split(";")
        current.append(pieces[0])
        for piece in pieces[1:]:
            statements.append("".join(current))
            current = [piece]
    statements.append("".join(current))
    return [statement.strip() for statement in statements if statement.strip()]


def _apply(conn: Connection, dialect: str) -> list[str]:
    if dialect == "sqlite":
        # Python's sqlite3 opens a transaction only before INSERT/UPDATE/DELETE, so DDL would
        # run in autocommit: a migration failing half-way left its first tables behind (and
        # the next start failed on "table already exists").  One explicit transaction instead:
        # a failed upgrade leaves the old schema, as on PostgreSQL.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    if dialect == "postgresql":
        conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK_ID})"))
    conn.execute(
        sa.text(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at DOUBLE PRECISION NOT NULL)"
        )
    )
    done = set((conn.execute(sa.text("SELECT version FROM schema_migrations"))).scalars())
    applied = []
    for version, name, path in migration_files(dialect):
        if version in done:
            continue
        for statement in split_statements(path.read_text(encoding="utf-8")):
            conn.exec_driver_sql(statement)
        conn.execute(
            sa.text(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (:v, :n, :t)"
            ),
            {"v": version, "n": name, "t": time.time()},
        )
        applied.append(f"{version:04d}_{name}")
    return applied


async def migrate(db: Database) -> list[str]:
    """Bring the schema up to date in one transaction; returns the names applied."""
    return await db.write(_apply, db.dialect)
