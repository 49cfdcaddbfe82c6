"""The database handle: SQLAlchemy Core from Trio, on PostgreSQL or SQLite.

Repository operations are plain synchronous functions ``fn(conn, *args)`` over a SQLAlchemy
``Connection``; :class:`Database` runs each in one transaction, on the back end's executor:

* **PostgreSQL** — SQLAlchemy's async engine on asyncpg, hosted by the asyncio loop that
  ``trio_asyncio.open_loop()`` runs inside the Trio run (opened once, in
  :func:`photochangerd.app.run`).  The operation runs through ``AsyncConnection.run_sync``; a
  Trio cancel scope cancels the asyncio task and the running query, and the pooled connection
  stays usable (docs/stack-traps.md, "Cancel scopes and asyncpg").  A pooled connection the
  server closed (a PostgreSQL restart) is replaced at checkout, so the first query after a
  restart succeeds (docs/stack-traps.md, "Pre-ping after a restart"); single statements and
  reads run in autocommit (:func:`single_statement`).
* **SQLite** — the stdlib ``sqlite3`` driver in Trio worker threads.  Measured on this machine
  class (2 vCPU), one single-row transaction costs ≈ 0.5 ms this way against 4–7 ms through
  aiosqlite under trio-asyncio (every statement, cursor and commit is a thread hop plus an
  asyncio→Trio wake-up) — the difference between meeting and blowing the 15 ms ingest-overhead
  budget.  SQLite allows one writer: writes are serialized by a Trio lock; reads run
  concurrently (WAL).  A SQLite statement cannot be interrupted mid-way: a cancel scope takes
  effect when it returns (our statements are indexed single-row operations, well under 1 ms).

Failure mapping: a database that cannot be reached (refused connection, connect timeout, a
connection dropped by a restart) raises :class:`DatabaseUnavailable`, which the HTTP layer
answers with 503.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import sqlalchemy as sa
import trio
from sqlalchemy import Connection, Engine, event

from photochangerd.errors import PhotoChangerError
from photochangerd.logs import event as log_event

if TYPE_CHECKING:  # the PostgreSQL stack is imported only when a PostgreSQL URL is opened
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")
Dialect = Literal["sqlite", "postgresql"]
Operation = Callable[..., T]

SQLITE_THREADS = 8

_CONFIG_WRITES: set[Callable[..., Any]] = set()
_SINGLE_STATEMENTS: set[Callable[..., Any]] = set()


def config_write(fn: Callable[..., T]) -> Callable[..., T]:
    """Mark a repository operation that changes what ingests read (slots, settings).

    :meth:`Database.write` bumps :attr:`Database.config_generation` after it, which is how the
    in-memory ingest context (``photochangerd.db.ingest_context``) knows it is stale.
    """
    _CONFIG_WRITES.add(fn)
    return fn


def single_statement(fn: Callable[..., T]) -> Callable[..., T]:
    """Mark a write that is one statement (atomic by itself).

    On PostgreSQL it runs in autocommit: one round trip instead of ``BEGIN``, the statement and
    ``COMMIT`` — the hot path's insert, claims and finalize.  Reads run that way too (under
    READ COMMITTED a transaction gives several statements no common snapshot anyway).
    """
    _SINGLE_STATEMENTS.add(fn)
    return fn


log = logging.getLogger("photochangerd.db")

# What sqlite3 says when the database file cannot be used right now.
_SQLITE_UNAVAILABLE = (
    "database is locked",
    "unable to open database file",
    "disk i/o error",
    "database or disk is full",
    "readonly database",
)

# Of those, what a file that can still be read says when it cannot be written.
_SQLITE_WRITE_REFUSALS = ("database is locked", "disk i/o error", "or disk is full", "readonly")

# SQLSTATEs meaning "the server is not there right now": class 08 (connection exception),
# 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now).
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03")


class DatabaseUnavailable(PhotoChangerError):
    """The database cannot be reached right now (answered with 503, retried by periodic tasks)."""


def _is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or anything in its cause chain) says the database cannot be reached."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, OSError | TimeoutError | ConnectionError):
            return True
        if isinstance(seen, sa.exc.TimeoutError):  # no pooled connection in time: saturated
            return True
        if isinstance(seen, sa.exc.DBAPIError) and (
            seen.connection_invalidated
            or isinstance(seen, sa.exc.OperationalError | sa.exc.InterfaceError)
        ):
            # SQLite raises OperationalError for its own mistakes too ("no such table", a
            # syntax error): only a file that cannot be used right now is "unavailable" (503);
            # the rest is a defect (500, logged with its traceback).
            if not isinstance(seen.orig, sqlite3.Error):
                return True
            return any(sign in str(seen.orig).lower() for sign in _SQLITE_UNAVAILABLE)
        state = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(state, str) and state.startswith(_UNAVAILABLE_STATES):
            return True
        name = type(seen).__name__
        if "Connection" in name or "CannotConnect" in name or "Shutdown" in name:
            return True
        seen = seen.__cause__ or getattr(seen, "orig", None)
    return False


class Database:
    """Run repository operations from Trio, each in its own transaction."""

    def __init__(
        self,
        dialect: Dialect,
        *,
        sync_engine: Engine | None = None,
        async_engine: AsyncEngine | None = None,
    ) -> None:
        self.dialect: Dialect = dialect
        self._sync_engine = sync_engine
        self._async_engine = async_engine
        self._autocommit = (
            async_engine.execution_options(isolation_level="AUTOCOMMIT")
            if async_engine is not None
            else None
        )
        self._write_lock = trio.Lock() if dialect == "sqlite" else None
        self._threads = trio.CapacityLimiter(SQLITE_THREADS)
        # Bumped after every write that changes slots or settings (and on SIGHUP; on
        # PostgreSQL also when another instance's change is announced: db/notify.py).
        self.config_generation = 0
        # Why the last write failed, until one succeeds (a full disk, a read-only file): reads
        # still work then, so /readyz's ping alone said "ok" while every upload got 503.
        self.write_problem: str | None = None
        self._refusal_logged = False
        # Whether an in-memory copy of slots and settings may be used: always with SQLite
        # (this daemon is the only writer), on PostgreSQL only while changes are announced.
        self.config_trusted = dialect == "sqlite"
        # Bound explicitly so tasks outside the loop's context (tests, other nurseries) can
        # call in too.
        self._loop = None
        if async_engine is not None:
            import trio_asyncio

            self._loop = trio_asyncio.current_loop.get()

    async def _run(
        self, fn: Operation[T], args: tuple[Any, ...], kwargs: dict[str, Any], *, atomic: bool
    ) -> T:
        try:
            if self._sync_engine is not None:
                engine = self._sync_engine

                def in_thread() -> T:
                    with engine.begin() as conn:
                        return fn(conn, *args, **kwargs)

                return await trio.to_thread.run_sync(in_thread, limiter=self._threads)
            assert self._async_engine is not None and self._autocommit is not None
            async_engine, autocommit = self._async_engine, self._autocommit

            async def in_asyncio() -> T:
                if atomic:
                    async with autocommit.connect() as conn:
                        return await conn.run_sync(fn, *args, **kwargs)
                async with async_engine.begin() as conn:
                    return await conn.run_sync(fn, *args, **kwargs)

            import trio_asyncio

            return await trio_asyncio.aio_as_trio(in_asyncio, loop=self._loop)()  # type: ignore[no-any-return]
        except Exception as exc:
            if _is_unavailable(exc):
                raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
            raise

    async def read(self, fn: Operation[T], *args: Any, **kwargs: Any) -> T:
        """Run a read-only operation."""
        return await self._run(fn, args, kwargs, atomic=True)

    async def write(self, fn: Operation[T], *args: Any, **kwargs: Any) -> T:
        """Run an operation that writes, in one transaction (committed on return)."""
        try:
            atomic = fn in _SINGLE_STATEMENTS
            if self._write_lock is None:
                result = await self._run(fn, args, kwargs, atomic=atomic)
            else:
                async with self._write_lock:
                    result = await self._run(fn, args, kwargs, atomic=atomic)
        except DatabaseUnavailable as exc:
            self._writes_refused(exc)
            raise
        finally:
            if fn in _CONFIG_WRITES:
                self.config_changed()
        if self.write_problem is not None:
            if self._refusal_logged:
                log_event(log, logging.INFO, "db.writes_accepted")
            self.write_problem, self._refusal_logged = None, False
        return result

    def _writes_refused(self, exc: DatabaseUnavailable) -> None:
        """Remember (and log, once per outage) why writes fail: the driver's own words."""
        cause: BaseException | None = exc.__cause__
        while cause is not None and cause.__cause__ is not None:
            cause = cause.__cause__
        words = " ".join(str(cause or exc).split())[:200]
        problem = f"database refuses writes: {words}"
        # Logged when the file refuses writes while it can be read (a full disk, a read-only
        # file, a lock held elsewhere); a server that cannot be reached says so everywhere
        # already (and a start that cannot reach it must stay one line).
        refusal = isinstance(cause, sqlite3.OperationalError) and any(
            words_ in str(cause).lower() for words_ in _SQLITE_WRITE_REFUSALS
        )
        if refusal and problem != self.write_problem:
            log_event(log, logging.WARNING, "db.writes_refused", problem=problem)
            self._refusal_logged = True
        self.write_problem = problem

    def config_changed(self) -> None:
        """Slots or settings changed (here, or by hand in the database: SIGHUP)."""
        self.config_generation += 1

    async def ping(self) -> None:
        """Cheap round trip; raises :class:`DatabaseUnavailable` when the DB is down."""
        await self.read(_select_one)

    async def dispose(self) -> None:
        if self._sync_engine is not None:
            await trio.to_thread.run_sync(self._sync_engine.dispose)
        if self._async_engine is not None:
            import trio_asyncio

            await trio_asyncio.aio_as_trio(self._async_engine.dispose, loop=self._loop)()


def _select_one(conn: Connection) -> None:
    conn.execute(sa.text("SELECT 1"))


def _dialect_of(url: sa.URL) -> Dialect:
    name = url.get_backend_name()
    if name == "sqlite":
        return "sqlite"
    if name == "postgresql":
        return "postgresql"
    raise ValueError(f"unsupported database: {name} (use sqlite:/// or postgresql+asyncpg://)")


def _sqlite_engine(url: sa.URL, timeout: float) -> Engine:
    # Whatever driver the URL names (sqlite+aiosqlite:// included), SQLite runs on sqlite3.
    engine = sa.create_engine(
        url.set(drivername="sqlite"),
        connect_args={"check_same_thread": False, "timeout": timeout},
        # One connection per worker thread at most; they stay open (each holds the database,
        # -wal and -shm descriptors).
        pool_size=SQLITE_THREADS,
        max_overflow=0,
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def _postgresql_engine(url: sa.URL, timeout: float) -> AsyncEngine:
    from photochangerd.db.sa_asyncio import create_async_engine

    engine = create_async_engine(
        url.set(drivername="postgresql+asyncpg"),
        # 15 connections at most: an operation holds one for a round trip (autocommit), so 30
        # booths at once need few; every connection costs memory here and on the server
        # (peak under 30 concurrent uploads: 172 → 162 MiB with 15 instead of 30).  All 15 in
        # the pool, no overflow: an overflow connection is closed when it is given back and
        # opened again at the next peak (a PostgreSQL backend started per burst).  Measured,
        # 30 booths: PostgreSQL's own CPU 15 → 5 % of a core with 15 + 0 instead of 10 + 5.
        pool_size=15,
        max_overflow=0,
        pool_timeout=timeout,
        connect_args={"timeout": timeout},
    )

    @event.listens_for(engine.sync_engine, "checkout")
    def _closed_is_invalid(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        # Instead of pool_pre_ping (a round trip before every operation): a PostgreSQL restart
        # closes every pooled connection, asyncpg notices the close on its idle socket, and
        # such a connection is replaced here at no cost (docs/stack-traps.md).
        if dbapi_conn.driver_connection.is_closed():
            raise sa.exc.DisconnectionError("connection closed by the server")

    return engine


@asynccontextmanager
async def open_database(url: str, connect_timeout: float = 3.0) -> AsyncIterator[Database]:
    """Create the engine for ``url``; dispose of it on exit.

    PostgreSQL runs on an asyncio loop inside the Trio run: the caller's
    ``trio_asyncio.open_loop()`` if there is one, else one opened here for as long as the
    database is open (tasks started inside the ``async with`` run on it).  SQLite needs no
    loop, and a daemon on SQLite never imports asyncpg, trio-asyncio or SQLAlchemy's asyncio
    layer (≈ 12 MB of resident memory).  Does not connect: a database that is down at start-up
    is reported by the first operation (the migration, normally).
    """
    parsed = sa.make_url(url)
    dialect = _dialect_of(parsed)
    if dialect == "sqlite":
        database = Database(dialect, sync_engine=_sqlite_engine(parsed, connect_timeout))
        async with _disposing(database):
            yield database
        return
    import trio_asyncio

    async with contextlib.AsyncExitStack() as stack:
        if trio_asyncio.current_loop.get() is None:
            await stack.enter_async_context(trio_asyncio.open_loop())
        database = Database(dialect, async_engine=_postgresql_engine(parsed, connect_timeout))
        async with _disposing(database):
            yield database


@asynccontextmanager
async def _disposing(database: Database) -> AsyncIterator[None]:
    try:
        yield
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await database.dispose()
