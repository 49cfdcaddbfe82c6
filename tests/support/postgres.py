"""A throwaway PostgreSQL cluster for the test suite.

Usage::

    with PostgresCluster() as pg:
        url = pg.dsn()                       # postgresql+asyncpg://photochanger:...@127.0.0.1:N/photochanger
        other = pg.create_database("t_abc")  # fresh database for one test

The cluster lives in a private temp dir, listens only on 127.0.0.1 (plus a unix socket
inside the temp dir) and is tuned for speed, not durability. It is always torn down with
``stop()``, which is also registered with ``atexit`` so an aborted test run does not leave a
server behind. A SIGKILLed test process cannot clean up: its server keeps running until the
temp dir is deleted (the postmaster re-checks its lock file about once a minute and exits
when it is gone) or it is killed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["PostgresCluster", "PostgresError", "find_pg_bin"]

START_TIMEOUT_S = 30
# Extra slack on top of pg_ctl's own -t so a wedged pg_ctl cannot hang the test run.
_SUBPROCESS_SLACK_S = 15
_IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresError(RuntimeError):
    """The throwaway cluster could not be created, started or used."""


def find_pg_bin() -> Path | None:
    """Directory holding ``initdb`` and ``pg_ctl``, or None if PostgreSQL is not installed."""
    on_path = shutil.which("initdb")
    if on_path is not None:
        # /usr/local/bin/initdb may be a symlink into /usr/lib/postgresql/N/bin; prefer the
        # real directory because it also holds a matching psql (Debian's /usr/bin/psql is
        # the pg_wrapper script, which picks a version on its own).
        for candidate in (Path(on_path).resolve().parent, Path(on_path).parent):
            if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
                return candidate
    versions: list[tuple[int, Path]] = []
    for bin_dir in Path("/usr/lib/postgresql").glob("*/bin"):
        if bin_dir.parent.name.isdigit() and (bin_dir / "initdb").exists():
            versions.append((int(bin_dir.parent.name), bin_dir))
    if versions:
        return max(versions)[1]
    return None


def _free_port() -> int:
    # Racy by nature (someone may grab it before postgres binds), which is why start()
    # retries with a fresh port when the bind fails.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresError("running as root but neither a 'postgres' nor a 'nobody' user exists")


class PostgresCluster:
    """A private PostgreSQL server in a temp dir; see the module docstring."""

    def __init__(
        self,
        *,
        bin_dir: Path | None = None,
        user: str = "photochanger",
        database: str = "photochanger",
    ) -> None:
        for ident in (user, database):
            if not _IDENT_RE.match(ident):
                raise ValueError(f"not a plain SQL identifier: {ident!r}")
        self.bin_dir = bin_dir
        self.host = "127.0.0.1"
        self.port = 0
        self.user = user
        # Hex keeps the password URL-safe, so dsn() needs no quoting.
        self.password = secrets.token_hex(16)
        self.database = database
        self.base_dir: Path | None = None
        self._run_as: pwd.struct_passwd | None = None
        self._running = False

    # -- paths -------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self._base / "data"

    @property
    def socket_dir(self) -> Path:
        return self._base / "sock"

    @property
    def log_file(self) -> Path:
        return self._base / "server.log"

    @property
    def _base(self) -> Path:
        if self.base_dir is None:
            raise PostgresError("cluster has not been started")
        return self.base_dir

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> PostgresCluster:
        if self.base_dir is not None:
            raise PostgresError("cluster already started (use restart())")
        if self.bin_dir is None:
            self.bin_dir = find_pg_bin()
        if self.bin_dir is None:
            raise PostgresError("PostgreSQL not installed (no initdb on PATH or in /usr/lib)")
        # Register first: whatever happens below, stop() will clean it up.
        atexit.register(self.stop)
        try:
            self._create_base_dir()
            self._initdb()
            for attempt in range(3):
                self.port = _free_port()
                try:
                    self._pg_ctl_start()
                    break
                except PostgresError as exc:
                    if attempt == 2 or "already in use" not in str(exc):
                        raise
            self._psql(f'CREATE DATABASE "{self.database}"', database="postgres")
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self) -> None:
        """Fast-stop and start again on the same port and data dir (simulates a DB restart)."""
        if not self._running:
            raise PostgresError("cluster is not running")
        self._pg_ctl("stop", "--mode=fast", "--wait", f"--timeout={START_TIMEOUT_S}")
        self._running = False
        self._pg_ctl_start()

    def pause(self) -> None:
        """Stop the server but keep its data (the database is "down" until :meth:`resume`)."""
        if not self._running:
            raise PostgresError("cluster is not running")
        self._pg_ctl("stop", "--mode=fast", "--wait", f"--timeout={START_TIMEOUT_S}")
        self._running = False

    def resume(self) -> None:
        """Start a paused server again on the same port and data dir."""
        self._pg_ctl_start()

    def _server_pids(self) -> list[int]:
        """The postmaster and its children (backends, background workers)."""
        postmaster = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
        return [postmaster, *(int(pid) for pid in children)]

    def freeze(self) -> None:
        """Make the server hang: every process stopped (SIGSTOP), connections left open, as a
        wedged host or a network partition looks to a client.  :meth:`thaw` undoes it."""
        for pid in self._server_pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._server_pids():
            os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        """Kill the server and delete everything. Idempotent; safe from atexit."""
        atexit.unregister(self.stop)
        if self.base_dir is None:
            return
        try:
            if self.data_dir.exists():
                self._kill_server()
        finally:
            self._running = False
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- helpers for tests -------------------------------------------------------------

    def dsn(self, driver: str | None = "asyncpg", database: str | None = None) -> str:
        """SQLAlchemy URL; ``driver=None`` gives a plain libpq-style ``postgresql://`` URL."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        db = database or self.database
        return f"{scheme}://{self.user}:{self.password}@{self.host}:{self.port}/{db}"

    def create_database(self, name: str, driver: str | None = "asyncpg") -> str:
        """Create an empty database and return its URL (for per-test isolation)."""
        if not _IDENT_RE.match(name):
            raise ValueError(f"database name must match {_IDENT_RE.pattern}: {name!r}")
        self._psql(f'CREATE DATABASE "{name}"')
        return self.dsn(driver, database=name)

    def drop_database(self, name: str) -> None:
        if not _IDENT_RE.match(name):
            raise ValueError(f"database name must match {_IDENT_RE.pattern}: {name!r}")
        self._psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # -- internals ---------------------------------------------------------------------

    def _create_base_dir(self) -> None:
        # /tmp rather than $TMPDIR: when we drop to an unprivileged user every parent
        # directory must be traversable by it, and a root-owned 0700 TMPDIR would not be.
        parent = "/tmp" if os.path.isdir("/tmp") else None
        base = Path(tempfile.mkdtemp(prefix="photochanger-pg-", dir=parent))
        self.base_dir = base
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root.
            self._run_as = _unprivileged_user()
            os.chown(base, self._run_as.pw_uid, self._run_as.pw_gid)
        base.chmod(0o755)

    def _initdb(self) -> None:
        pwfile = self._base / "pwfile"
        pwfile.touch(mode=0o600)  # the base dir is world-readable
        pwfile.write_text(self.password + "\n")
        if self._run_as is not None:
            os.chown(pwfile, self._run_as.pw_uid, self._run_as.pw_gid)
        try:
            self._run(
                [
                    str(self._bin("initdb")),
                    f"--pgdata={self.data_dir}",
                    f"--username={self.user}",
                    f"--pwfile={pwfile}",
                    # Socket connections are only reachable by us (0700 dir) -> trust;
                    # TCP needs the password, like production.
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-locale",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                timeout=120,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self.socket_dir.mkdir(mode=0o700)
        if self._run_as is not None:
            os.chown(self.socket_dir, self._run_as.pw_uid, self._run_as.pw_gid)
        # Durability is pointless for a throwaway cluster; these make it several times faster.
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "'32MB'",
            "max_connections": "200",
            "max_wal_size": "'1GB'",
            "logging_collector": "off",
            "log_min_messages": "warning",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# photochanger test cluster\n")
            for key, value in settings.items():
                conf.write(f"{key} = {value}\n")

    def _pg_ctl_start(self) -> None:
        # -l is required, not cosmetic: without it the postmaster inherits our stdout pipe
        # and subprocess.run() would wait for it forever.
        self._pg_ctl(
            "start",
            "--wait",
            f"--timeout={START_TIMEOUT_S}",
            f"--log={self.log_file}",
            f"--options=-p {self.port}",
        )
        self._running = True

    def _kill_server(self) -> None:
        try:
            self._pg_ctl("stop", "--mode=immediate", "--wait", f"--timeout={START_TIMEOUT_S}")
            return
        except (PostgresError, OSError):
            pass
        # pg_ctl failed (never started, or wedged). If a postmaster is still alive, kill it
        # directly -- after checking the PID really is postgres, since a stale pid file may
        # name a recycled PID.
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            if Path(f"/proc/{pid}/comm").read_text().strip() in ("postgres", "postmaster"):
                os.kill(pid, signal.SIGKILL)

    def _pg_ctl(self, *args: str) -> None:
        self._run(
            [str(self._bin("pg_ctl")), f"--pgdata={self.data_dir}", *args],
            timeout=START_TIMEOUT_S + _SUBPROCESS_SLACK_S,
        )

    def _psql(self, sql: str, *, database: str | None = None) -> str:
        return self._run(
            [
                str(self._bin("psql")),
                "--no-psqlrc",
                "--quiet",
                "--no-align",
                "--tuples-only",
                "--set=ON_ERROR_STOP=1",
                f"--host={self.socket_dir}",
                f"--port={self.port}",
                f"--username={self.user}",
                f"--dbname={database or self.database}",
                f"--command={sql}",
            ],
            timeout=60,
        )

    def _bin(self, name: str) -> Path:
        assert self.bin_dir is not None
        path = self.bin_dir / name
        if path.exists():
            return path
        found = shutil.which(name)
        if found is None:
            raise PostgresError(f"{name} not found in {self.bin_dir} or on PATH")
        return Path(found)

    def _env(self) -> Mapping[str, str]:
        # Drop PG* variables (PGHOST, PGDATABASE, PGPASSWORD, ...) so the developer's own
        # settings cannot redirect our commands to another server.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["HOME"] = str(self._base)
        return env

    def _run(self, argv: Sequence[str], *, timeout: float) -> str:
        cmd = list(argv)
        if self._run_as is not None:
            cmd = (
                [
                    "setpriv",
                    f"--reuid={self._run_as.pw_uid}",
                    f"--regid={self._run_as.pw_gid}",
                    "--clear-groups",
                    "--",
                    *cmd,
                ]
                if shutil.which("setpriv")
                else ["runuser", "-u", self._run_as.pw_name, "--", *cmd]
            )
        try:
            proc = subprocess.run(
                cmd,
                # The unprivileged user may not be able to enter our cwd (e.g. /root).
                cwd=self._base,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PostgresError(
                f"timed out after {timeout:.0f}s: {' '.join(argv)}\n{self._log_tail()}"
            ) from exc
        if proc.returncode != 0:
            raise PostgresError(
                f"command failed (exit {proc.returncode}): {' '.join(argv)}\n"
                f"{proc.stdout}{proc.stderr}{self._log_tail()}"
            )
        return proc.stdout

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except (OSError, PostgresError):
            return ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- server log tail ({self.log_file}) ---\n{tail}"
