"""The database handle: SQLAlchemy's async engine driven from Trio through trio-asyncio.

asyncpg and aiosqlite are asyncio libraries; the daemon is Trio.  ``trio_asyncio.open_loop()``
(opened once, in :func:`photochangerd.app.run`) hosts an asyncio loop inside the Trio run, and
every database call crosses over with ``aio_as_trio``.  A Trio cancel scope around a call cancels
the asyncio task running the query; the pooled connection stays usable (pitfalls.md #13).

Failure mapping: a database that cannot be reached (refused connection, connect timeout, a
connection dropped by a restart) raises :class:`DatabaseUnavailable`, which the HTTP layer
answers with 503.  ``pool_pre_ping`` makes the first query after a PostgreSQL restart succeed
instead of failing on a dead pooled connection (pitfalls.md #14).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
import trio
import trio_asyncio
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

T = TypeVar("T")
Dialect = Literal["sqlite", "postgresql"]
Operation = Callable[..., Awaitable[T]]


class DatabaseUnavailable(Exception):
    """The database cannot be reached right now (answered with 503, retried by periodic tasks)."""


# SQLSTATEs meaning "the server is not there right now": class 08 (connection exception),
# 57P01-57P03 (admin shutdown, crash shutdown, cannot connect now).
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03")


def _is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or anything in its cause chain) says the database cannot be reached."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, OSError | TimeoutError | asyncio.TimeoutError | ConnectionError):
            return True
        if isinstance(seen, sa.exc.DBAPIError) and (
            seen.connection_invalidated
            or isinstance(seen, sa.exc.OperationalError | sa.exc.InterfaceError)
        ):
            return True
        state = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(state, str) and state.startswith(_UNAVAILABLE_STATES):
            return True
        name = type(seen).__name__
        if "Connection" in name or "CannotConnect" in name or "Shutdown" in name:
            return True
        seen = seen.__cause__ or getattr(seen, "orig", None)
    return False


class Database:
    """Run SQLAlchemy Core operations from Trio.

    An *operation* is an asyncio coroutine function ``fn(conn, *args)``; :meth:`read` and
    :meth:`write` run it in a transaction on the asyncio side and return its result to Trio.
    SQLite allows one writer: writes are serialized by a Trio lock instead of letting two
    deferred transactions collide on ``SQLITE_BUSY``.  PostgreSQL writes run concurrently.
    """

    def __init__(self, engine: AsyncEngine, dialect: Dialect) -> None:
        self.engine = engine
        self.dialect: Dialect = dialect
        self._write_lock = trio.Lock() if dialect == "sqlite" else None
        # Bound explicitly so tasks outside the loop's context (tests, other nurseries) can
        # call in too.
        self._loop = trio_asyncio.current_loop.get()

    async def _run(self, fn: Operation[T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        async def in_asyncio() -> T:
            async with self.engine.begin() as conn:
                return await fn(conn, *args, **kwargs)

        try:
            return await trio_asyncio.aio_as_trio(in_asyncio, loop=self._loop)()  # type: ignore[no-any-return]
        except Exception as exc:
            if _is_unavailable(exc):
                raise DatabaseUnavailable(f"database unavailable: {type(exc).__name__}") from exc
            raise

    async def read(self, fn: Operation[T], *args: Any, **kwargs: Any) -> T:
        """Run a read-only operation.  Cancellable: a cancel scope aborts the query."""
        return await self._run(fn, args, kwargs)

    async def write(self, fn: Operation[T], *args: Any, **kwargs: Any) -> T:
        """Run an operation that writes, in one transaction (committed on return)."""
        if self._write_lock is None:
            return await self._run(fn, args, kwargs)
        async with self._write_lock:
            return await self._run(fn, args, kwargs)

    async def ping(self) -> None:
        """Cheap round trip; raises :class:`DatabaseUnavailable` when the DB is down."""

        async def select_one(conn: AsyncConnection) -> None:
            await conn.execute(sa.text("SELECT 1"))

        await self.read(select_one)


def _dialect_of(url: str) -> Dialect:
    name = sa.make_url(url).get_backend_name()
    if name == "sqlite":
        return "sqlite"
    if name == "postgresql":
        return "postgresql"
    raise ValueError(f"unsupported database: {name} (use sqlite+aiosqlite or postgresql+asyncpg)")


def _make_engine(url: str, connect_timeout: float) -> tuple[AsyncEngine, Dialect]:
    dialect = _dialect_of(url)
    if dialect == "sqlite":
        engine = create_async_engine(
            url, pool_pre_ping=True, connect_args={"timeout": connect_timeout}
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(connect_timeout * 1000)}")
            cursor.close()

    else:
        engine = create_async_engine(
            url,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=20,
            pool_timeout=connect_timeout,
            connect_args={"timeout": connect_timeout},
        )
    return engine, dialect


@asynccontextmanager
async def open_database(url: str, connect_timeout: float = 3.0) -> AsyncIterator[Database]:
    """Create the engine for ``url``; dispose of it on exit.

    Must run inside ``trio_asyncio.open_loop()``.  Does not connect: a database that is down at
    start-up is reported by the first operation (the migration step, normally).
    """
    engine, dialect = _make_engine(url, connect_timeout)
    try:
        yield Database(engine, dialect)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await trio_asyncio.aio_as_trio(engine.dispose)()
