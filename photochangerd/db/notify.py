"""PostgreSQL notifications between instances (docs/jobs.md, "Several instances").

Triggers send them when a change commits, so an upload costs no extra statement:

* ``photochanger_jobs`` (``sql/postgresql/0003_job_events.sql``): ``queued <id>`` for a job
  inserted pending (its instance had no idle worker), ``final <id>`` for a job that became
  final.  The job service's idle worker claims the queued job at once; a request waiting for a
  job another instance ran is answered at once.  Hints only: without them (the listener
  reconnecting after a PostgreSQL restart) the slow polls of
  :class:`~photochangerd.db.policy.StoragePolicy` still move every job, and each (re)connect
  starts with a catch-up.
* ``photochanger_config`` (``0004_config_events.sql``): slots, their templates or the settings
  changed.  The in-memory copy uploads read (:mod:`photochangerd.db.ingest_context`) is
  dropped at once; it is trusted only while this connection listens
  (:attr:`Database.config_trusted`), so a lost connection means reading the rows again.

The connection is asyncpg's own (not the SQLAlchemy pool: a pooled connection is returned
after each transaction, and LISTEN belongs to a session), on the trio-asyncio loop.  asyncpg
calls the listener from that loop's task, which runs inside the Trio run; it only puts the
payload on a Trio memory channel.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import sqlalchemy as sa
import trio

from photochangerd.db.engine import Database
from photochangerd.logs import event

log = logging.getLogger("photochangerd.db")

CHANNEL = "photochanger_jobs"
CONFIG_CHANNEL = "photochanger_config"
RECONNECT_FIRST = 0.5
RECONNECT_MAX = 30.0
HEARTBEAT_SECONDS = 30.0
HEARTBEAT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class JobEvent:
    kind: Literal["queued", "final"]
    job_id: str


def parse_job_event(payload: str) -> JobEvent | None:
    kind, _, job_id = payload.partition(" ")
    if kind == "queued" and job_id:
        return JobEvent("queued", job_id)
    if kind == "final" and job_id:
        return JobEvent("final", job_id)
    return None


class JobEventHandler(Protocol):
    async def on_job_event(self, job_event: JobEvent) -> None: ...

    async def catch_up(self) -> None:
        """Act on whatever may have been missed while not listening."""


def asyncpg_dsn(url: str) -> str:
    """The libpq-style DSN asyncpg takes, from our SQLAlchemy URL (any ``postgresql+…``)."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class JobEventListener:
    """``LISTEN`` on a dedicated connection, reconnecting forever."""

    def __init__(
        self, db: Database, url: str, connect_timeout: float, handler: JobEventHandler
    ) -> None:
        self._db = db
        self._dsn = asyncpg_dsn(url)
        self._timeout = connect_timeout
        self._handler = handler
        self.listening = False
        self.received = 0
        self.heartbeat_failed = False
        self._started = False

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled.  ``task_status.started()`` once listening, or after the
        first failed attempt (a database that is down then is no reason to delay the daemon)."""
        import asyncpg

        delay = RECONNECT_FIRST
        while True:
            try:
                await self._listen_once(task_status)
                delay = RECONNECT_FIRST  # it was up: reconnect quickly
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                if delay == RECONNECT_FIRST:  # once per outage, not per attempt
                    event(log, logging.WARNING, "db.listen_failed", error=type(exc).__name__)
            finally:
                self.listening = False
                self._db.config_trusted = False
            if not self._started:
                self._started = True
                task_status.started()
            await trio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    async def _heartbeat(self, connection: Any, loop: Any, scope: trio.CancelScope) -> None:
        import trio_asyncio

        while True:
            await trio.sleep(HEARTBEAT_SECONDS)
            with trio.move_on_after(HEARTBEAT_TIMEOUT):
                await trio_asyncio.aio_as_trio(connection.fetchval, loop=loop)("SELECT 1")
                continue
            self._db.config_trusted = False
            self.heartbeat_failed = True
            event(log, logging.WARNING, "db.listen_heartbeat_missed")
            scope.cancel()
            return

    async def _guarded(self, handling: Awaitable[None]) -> None:
        """A handler's failure is logged, never the end of the listener (or the daemon)."""
        try:
            await handling
        except Exception:
            log.exception("db.listen_handler_failed")

    async def _listen_once(self, task_status: trio.TaskStatus[None]) -> None:
        self.heartbeat_failed = False
        import asyncpg
        import trio_asyncio

        loop = trio_asyncio.current_loop.get()
        send, receive = trio.open_memory_channel[str | None](math.inf)
        db = self._db

        def on_notification(_conn: Any, _pid: int, channel: str, payload: str) -> None:
            if channel == CONFIG_CHANNEL:
                db.config_changed()  # synchronous: the next upload reads the rows
            else:
                send.send_nowait(payload)

        def on_termination(_conn: Any) -> None:
            # At once, not after the events queued before it: the copy is no longer covered.
            db.config_trusted = False
            db.config_changed()
            send.send_nowait(None)

        connection = await trio_asyncio.aio_as_trio(asyncpg.connect, loop=loop)(
            self._dsn, timeout=self._timeout
        )
        try:
            connection.add_termination_listener(on_termination)
            for channel in (CONFIG_CHANNEL, CHANNEL):
                await trio_asyncio.aio_as_trio(connection.add_listener, loop=loop)(
                    channel, on_notification
                )
            # Listening: whatever changed before is dropped now, whatever changes later is
            # announced — from here the in-memory configuration can be trusted.
            db.config_changed()
            db.config_trusted = True
            self.listening = True
            event(log, logging.DEBUG, "db.listening", channel=CHANNEL)
            if not self._started:
                self._started = True
                task_status.started()
            async with trio.open_nursery() as nursery:
                # A connection dropped without a FIN (a NAT or firewall forgetting an idle
                # flow) would otherwise look alive forever while notifications stop: a
                # round trip on it now and then proves it, or ends this connection.
                nursery.start_soon(self._heartbeat, connection, loop, nursery.cancel_scope)
                await self._guarded(self._handler.catch_up())
                async for payload in receive:
                    if payload is None:  # the server closed the connection (a restart)
                        event(log, logging.WARNING, "db.listen_lost")
                        break
                    self.received += 1
                    job_event = parse_job_event(payload)
                    if job_event is not None:
                        await self._guarded(self._handler.on_job_event(job_event))
                nursery.cancel_scope.cancel()
            if self.heartbeat_failed:
                raise TimeoutError("the listening connection stopped answering")
        finally:
            connection.terminate()  # synchronous; no network wait on cancellation
