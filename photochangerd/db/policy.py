"""What changes between one daemon on SQLite and several instances sharing PostgreSQL.

Chosen once, in :func:`photochangerd.app.run`, from the database URL; the job service, the
workers and the ingest context read its fields instead of testing the dialect themselves
(docs/architecture.md, "SQLite and PostgreSQL").  SQL that differs by dialect (``SKIP LOCKED``,
upserts, migrations) stays in :mod:`photochangerd.db`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StoragePolicy:
    name: str
    # Only this process uses the database (SQLite; the data dir is locked).
    single_instance: bool
    # Job inputs are written to the media directory so another instance can run the job.
    inputs_on_disk: bool
    # Slots and settings are kept in memory between config writes (PostgreSQL: while other
    # instances' writes are announced, db/notify.py).
    cache_ingest_context: bool
    # Other instances' jobs are announced by notifications (db/notify.py); as the guarantee
    # behind them, an idle worker looks for a job queued elsewhere this often (None: never) …
    idle_poll_seconds: float | None
    # … and a request waiting for a job no worker here holds checks its row this often.
    cross_instance_poll_seconds: float | None
    # LISTEN for other instances' job events.
    listens: bool
    # At start every unfinished job belonged to a dead process (else only overdue ones).
    recover_every_unfinished_job: bool
    # At shutdown the jobs nobody will run any more are ended here (else left to the others).
    finalize_leftovers_on_shutdown: bool
    # Abandoned spool and .tmp files at start are ours to remove.
    remove_startup_leftovers: bool


SINGLE_INSTANCE = StoragePolicy(
    name="sqlite",
    single_instance=True,
    inputs_on_disk=False,
    cache_ingest_context=True,
    idle_poll_seconds=None,
    cross_instance_poll_seconds=None,
    listens=False,
    recover_every_unfinished_job=True,
    finalize_leftovers_on_shutdown=True,
    remove_startup_leftovers=True,
)

SHARED = StoragePolicy(
    name="postgresql",
    single_instance=False,
    inputs_on_disk=True,
    cache_ingest_context=True,
    idle_poll_seconds=5.0,
    cross_instance_poll_seconds=5.0,
    listens=True,
    recover_every_unfinished_job=False,
    finalize_leftovers_on_shutdown=False,
    remove_startup_leftovers=False,
)


def storage_policy(dialect: str) -> StoragePolicy:
    return SINGLE_INSTANCE if dialect == "sqlite" else SHARED
