"""``run(config)``: the daemon's root nursery — every long-lived task is started here.

::

    run(config)                          data dir locked, sockets bound: before anything else
    └─ open_database()                   engine + pool, disposed on exit (PostgreSQL: inside a
       │                                 trio-asyncio loop for asyncpg; SQLite: threads)
       └─ root nursery
          ├─ http.server.serve(app)   Hypercorn protocol, own accept loop; booth fast path
          ├─ worker × N               claim → provider (job deadline) → store → finalize
          ├─ sweeper                  jobs past their deadline → ``timeout`` (the lease)
          ├─ cleaner                  expired results and orphan files, every 15 min
          ├─ activity log flusher     processing_log rows in batches
          ├─ watchdog pinger          ``WATCHDOG=1`` while the database answers (systemd)
          ├─ job event listener       PostgreSQL: LISTEN for other instances' jobs (+ slow poll)
          ├─ drain reporter           ``STATUS=draining: N jobs in flight`` once stopping
          └─ signal watcher           SIGTERM/SIGINT → graceful shutdown; SIGHUP → reload

What systemd is told and when (``READY=1`` only once the sockets are bound and the database
answered, ``RELOADING=1`` … ``READY=1`` around SIGHUP, ``STOPPING=1``): photochangerd/systemd.py.

Graceful shutdown is a deadline: stop intake (new ingests get 503), let Hypercorn finish the
requests in flight (their own deadlines are ≤ 60 s, ``graceful_timeout`` is above that), let the
workers finish what they hold, then cancel; whatever is still unfinished is finalized
``cancelled`` under a shield.  Exit status 0.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets

from photochangerd.auth.fingerprint import check_shared_keys
from photochangerd.auth.ingest_pacing import DatabasePaceLedger
from photochangerd.auth.keys import load_or_create_key
from photochangerd.auth.passwords import IngestPasswordChecker
from photochangerd.auth.secrets_box import SecretBox, SecretDecryptionError
from photochangerd.auth.throttle import LoginThrottle
from photochangerd.auth.tokens import TokenService
from photochangerd.bootstrap import bootstrap
from photochangerd.clock import WallClock
from photochangerd.config import Config
from photochangerd.credentials import Credentials, with_credentials
from photochangerd.data_dir_lock import lock_data_dir
from photochangerd.db import repositories
from photochangerd.db.engine import Database, DatabaseUnavailable, open_database
from photochangerd.db.ingest_context import IngestContext
from photochangerd.db.migrate import migrate
from photochangerd.db.notify import JobEventListener
from photochangerd.db.policy import storage_policy
from photochangerd.http.app import create_asgi_app
from photochangerd.http.context import AppContext, Intake
from photochangerd.http.listen import lan_hint, listening_sockets, wildcard_hint
from photochangerd.http.server import serve as serve_http
from photochangerd.jobs.activity import ActivityLog
from photochangerd.jobs.admission import Admission
from photochangerd.jobs.service import JobService
from photochangerd.jobs.worker import run_sweeper, run_worker
from photochangerd.logs import event, set_log_instance
from photochangerd.media.backends import open_media_store
from photochangerd.media.cleaner import Cleaner, startup_leftovers
from photochangerd.media.images import configure_pillow
from photochangerd.media.imaging import ImageWorkers
from photochangerd.media.provider_media import ProviderMedia
from photochangerd.memory import freeze_startup_objects, trim_while_idle, tune_malloc
from photochangerd.metrics import Metrics
from photochangerd.providers.base import Provider
from photochangerd.providers.keys import ProviderKeys
from photochangerd.providers.registry import open_providers
from photochangerd.systemd import Notifier, serving_status, watchdog_interval
from photochangerd.web.sessions import ConsoleSessions

log = logging.getLogger("photochangerd")


@dataclass(frozen=True, slots=True)
class Daemon:
    """Handed to ``task_status.started()``: what a supervisor (or a test) needs."""

    urls: list[str]
    context: AppContext
    shutdown: trio.Event


def _hypercorn_config(config: Config) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = list(config.bind)
    hc.keep_alive_timeout = config.keep_alive_timeout_seconds
    # Above the longest deadline: a restart must not cut in-flight ingests (docs/stack-traps.md,
    # "graceful_timeout").
    hc.graceful_timeout = config.shutdown_grace_seconds
    hc.alpn_protocols = ["http/1.1"]  # over TLS (docs/stack-traps.md, "HTTP/2 and h2c")
    hc.include_server_header = False
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.h11_max_incomplete_size = 16 * 1024
    return hc


def _instance_id(config: Config) -> str:
    """``instance_id`` from the config, else ``<hostname>:<pid>`` (unique among instances)."""
    return config.instance_id or f"{socket.gethostname()}:{os.getpid()}"


async def _watchdog(db: Database, interval: float, notifier: Notifier) -> None:
    """``WATCHDOG=1`` every ``interval`` (fixed ticks: a slow query does not stretch the gap),
    each only after ``SELECT 1`` answered within it.  No database, no pings."""
    reachable = True
    tick = trio.current_time()
    while True:
        try:
            with trio.fail_after(interval):
                await db.ping()
        except (DatabaseUnavailable, trio.TooSlowError):
            if reachable:
                event(log, logging.WARNING, "watchdog.db_unavailable")
                notifier.database(reachable=False)
            reachable = False
        else:
            notifier.watchdog()
            if not reachable:
                event(log, logging.INFO, "watchdog.db_available")
                notifier.database(reachable=True)
            reachable = True
        tick = max(tick + interval, trio.current_time())
        await trio.sleep_until(tick)


async def _report_draining(shutdown: trio.Event, jobs: JobService, notifier: Notifier) -> None:
    """While draining, ``systemctl status`` shows how many jobs are still in flight."""
    await shutdown.wait()
    while True:
        await trio.sleep(2)
        notifier.draining(jobs.in_progress)


async def _watch_signals(
    shutdown: trio.Event, nursery: trio.Nursery, db: Database, notifier: Notifier
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:  # systemctl reload: slots/settings edited by hand
                notifier.reloading()
                db.config_changed()
                event(log, logging.INFO, "config.reloaded")
                notifier.reloaded()
            elif not shutdown.is_set():
                event(log, logging.INFO, "shutdown.requested", signal=signal.Signals(signum).name)
                shutdown.set()
            else:  # a second signal: stop now
                event(log, logging.WARNING, "shutdown.forced")
                nursery.cancel_scope.cancel()


async def run(
    config: Config,
    *,
    providers: Mapping[str, Provider] | None = None,
    clock: WallClock | None = None,
    environ: Mapping[str, str] | None = None,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the daemon until SIGTERM/SIGINT (or ``Daemon.shutdown`` is set).

    First the data dir is locked (:class:`~photochangerd.data_dir_lock.DataDirInUse`), then the
    listening sockets are bound (:class:`~photochangerd.http.listen.CannotListen`): a start that
    cannot serve fails before the database is opened, jobs are recovered or the first-start
    passwords are printed.  Before both, systemd credentials (``$CREDENTIALS_DIRECTORY``) are
    read (:class:`~photochangerd.credentials.CredentialError`).
    """
    environ = os.environ if environ is None else environ
    tune_malloc()  # photochangerd/memory.py: a photo's buffers reused without page faults
    config, credentials = with_credentials(config, environ)
    with lock_data_dir(config.data_dir), listening_sockets(config.bind) as sockets:
        await _run_locked(
            config,
            sockets,
            credentials,
            providers=providers,
            clock=clock,
            environ=environ,
            handle_signals=handle_signals,
            task_status=task_status,
        )


async def _run_locked(
    config: Config,
    sockets: Sockets,
    credentials: Credentials,
    *,
    providers: Mapping[str, Provider] | None = None,
    clock: WallClock | None = None,
    environ: Mapping[str, str] | None = None,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    environ = os.environ if environ is None else environ
    clock = clock or WallClock()
    configure_pillow(config.max_image_pixels)
    store = await open_media_store(config)
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    store.ensure_dirs()
    # Keys for admin tokens and provider secrets at rest: configured, else generated once
    # (mode 0600) so that every later start — and every instance sharing the data dir — agrees.
    jwt_key = load_or_create_key(config.keys_dir, "jwt.key", config.jwt_secret)
    secrets_key = load_or_create_key(config.keys_dir, "secrets.key", config.secret_key)
    secrets = SecretBox(secrets_key)
    images = ImageWorkers(config.image_threads)
    database: list[Database] = []  # bound once the engine exists

    async def stored_key(provider: str) -> str | None:
        blobs = await database[0].read(repositories.provider_secrets)
        if provider not in blobs:
            return None
        try:
            return secrets.decrypt(blobs[provider][0], provider)
        except SecretDecryptionError:
            event(log, logging.ERROR, "settings.provider_key_unreadable", provider=provider)
            return None

    def config_generation() -> int | None:
        db = database[0] if database else None
        return db.config_generation if db is not None and db.config_trusted else None

    keys = ProviderKeys(environ, stored_key, credentials, config_generation)

    async with (
        open_database(config.effective_database_url, config.db_connect_timeout_seconds) as db,
        open_providers(config, images, keys, extra=providers) as registry,
    ):
        database.append(db)
        applied = await migrate(db)
        if applied:
            event(log, logging.INFO, "db.migrated", applied=",".join(applied))
        await bootstrap(db, config, clock.now(), environ, credentials=credentials)
        provider_media = ProviderMedia(db, store, clock, config.effective_public_base_url)
        policy = storage_policy(db.dialect)  # SQLite: this daemon alone; PostgreSQL: shared
        instance_id = _instance_id(config)
        set_log_instance(instance_id)
        if not policy.single_instance:  # every instance must hold the same keys
            await check_shared_keys(db, {"jwt": jwt_key, "secrets": secrets_key}, clock.now())
        jobs = JobService(
            db=db,
            store=store,
            providers=registry,
            images=images,
            clock=clock,
            instance_id=instance_id,
            provider_media=provider_media,
            policy=policy,
        )
        await jobs.recover_on_start()
        if policy.remove_startup_leftovers:  # one daemon: nobody else can be writing these
            leftovers = await trio.to_thread.run_sync(startup_leftovers, store)
            await store.remove(*leftovers)
        metrics = Metrics()
        jobs.metrics = metrics
        admission = Admission(config.max_in_flight, config.max_in_flight_per_slot)
        metrics.track_in_flight(lambda: admission.in_flight)
        purge_send, purge_receive = trio.open_memory_channel[str](1)
        context = AppContext(
            config=config,
            db=db,
            store=store,
            jobs=jobs,
            images=images,
            admission=admission,
            activity=ActivityLog(db, metrics),
            ingest_passwords=IngestPasswordChecker(ledger=DatabasePaceLedger(db, clock)),
            clock=clock,
            tokens=TokenService(jwt_key, config.admin_token_ttl_minutes * 60),
            secrets=secrets,
            keys=keys,
            cleaner=Cleaner(db, store, clock, metrics),
            provider_media=provider_media,
            metrics=metrics,
            purge_requests=purge_send,
            ingest_context=IngestContext(db, cached=policy.cache_ingest_context),
            sessions=ConsoleSessions(db, jwt_key, config.admin_token_ttl_minutes * 60, clock),
            throttle=LoginThrottle(db, clock),
            intake=Intake(),
            instance_id=instance_id,
        )
        await _serve(
            config,
            sockets,
            context,
            purge_receive,
            handle_signals,
            task_status,
            Notifier(environ),
            watchdog_interval(environ),
        )


def _print_lan_hint(urls: list[str], config: Config) -> None:
    """A plain line, like the first-start banner: the default bind is loopback only, and a
    wildcard bind's links use a guessed LAN address."""
    hint = lan_hint(urls) or wildcard_hint(
        urls, config.public_base_url, config.effective_public_base_url
    )
    if hint is not None:
        print(f"photochangerd: {hint}", file=sys.stderr, flush=True)


async def _maintenance(context: AppContext, requests: trio.MemoryReceiveChannel[str]) -> None:
    """Admin-requested purges, run here in the daemon's nursery rather than in the request."""
    async for _request in requests:
        try:
            await context.cleaner.run_once()
        except Exception:  # reported, retried on the next request or timer round
            log.exception("purge.failed")


async def _serve(
    config: Config,
    sockets: Sockets,
    context: AppContext,
    purge_requests: trio.MemoryReceiveChannel[str],
    handle_signals: bool,
    task_status: trio.TaskStatus[Daemon],
    notifier: Notifier,
    watchdog: float | None,
) -> None:
    shutdown = trio.Event()
    jobs = context.jobs

    async def shutdown_trigger() -> None:
        await shutdown.wait()
        context.intake.open = False
        notifier.stop(jobs.in_progress)
        event(log, logging.INFO, "shutdown.draining", in_flight=jobs.in_progress)

    async with trio.open_nursery() as root:
        if handle_signals:
            root.start_soon(_watch_signals, shutdown, root, context.db, notifier)
        root.start_soon(context.activity.run)
        root.start_soon(jobs.recorder.run)  # writes runs settled while no worker held them
        root.start_soon(
            run_sweeper, jobs, config.sweep_interval_seconds, config.sweep_grace_seconds
        )
        root.start_soon(context.cleaner.run, config.cleanup_interval_seconds)
        root.start_soon(context.store.watch)  # a bucket's health (nothing for a local dir)
        root.start_soon(_maintenance, context, purge_requests)
        root.start_soon(_report_draining, shutdown, jobs, notifier)
        root.start_soon(
            trim_while_idle, lambda: not context.admission.in_flight and not jobs.in_progress
        )
        if watchdog:
            root.start_soon(_watchdog, context.db, watchdog, notifier)
        if jobs.policy.listens:  # other instances' job events (PostgreSQL)
            listener = JobEventListener(
                context.db,
                config.effective_database_url,
                config.db_connect_timeout_seconds,
                jobs.elsewhere,
            )
            jobs.elsewhere.listener = listener
            await root.start(listener.run)
            root.start_soon(jobs.elsewhere.poll_slowly)
        async with trio.open_nursery() as workers:
            for number in range(config.workers):
                workers.start_soon(run_worker, jobs, number)
            async with trio.open_nursery() as http:
                urls: list[str] = await http.start(
                    partial(serve_http, shutdown_trigger=shutdown_trigger, sockets=sockets),
                    create_asgi_app(context),
                    _hypercorn_config(config),
                )
                # Sockets bound, database migrated and answering, HTTP accepting: ready.
                if handle_signals:  # the process is ours (not embedded in a test run)
                    freeze_startup_objects()
                notifier.ready(serving_status(urls, config.workers, context.db.dialect))
                event(
                    log,
                    logging.INFO,
                    "daemon.ready",
                    urls=",".join(urls),
                    database=context.db.dialect,
                    workers=config.workers,
                )
                _print_lan_hint(urls, config)
                task_status.started(Daemon(urls, context, shutdown))
            # Hypercorn has returned: requests in flight were answered (or hit
            # graceful_timeout).  Jobs whose requester left may still run: until the grace ends.
            with trio.move_on_after(config.shutdown_grace_seconds):
                await jobs.wait_until_idle()
            workers.cancel_scope.cancel()
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            try:
                await jobs.finalize_leftovers_on_shutdown()
            except DatabaseUnavailable:
                event(log, logging.ERROR, "shutdown.db_unavailable")
            await context.activity.flush()
        root.cancel_scope.cancel()
    event(log, logging.INFO, "daemon.stopped")
