"""sd_notify(3): what the daemon tells systemd (``Type=notify``), and when.

* ``READY=1`` with ``STATUS=serving on …, N workers, SQLite`` once the listening sockets are
  bound, the database answered (migrations, first-start seeding, job recovery) and the HTTP
  server accepts: a connect made when systemd reports the unit started succeeds.
* ``WATCHDOG=1`` every third of ``$WATCHDOG_USEC`` (sd_watchdog_enabled(3) asks for at most
  half; a third leaves room for a slow round trip) — only while a ``SELECT 1`` answers within
  that time (``app._watchdog``).  While the database is unreachable the pings stop and
  ``STATUS=`` says so: after ``WatchdogSec=`` systemd restarts the daemon.
* ``RELOADING=1`` (with ``MONOTONIC_USEC=``, which systemd 253+ requires and 252 ignores),
  ``STATUS=reloading`` … ``READY=1`` around SIGHUP.
* ``STOPPING=1`` with ``STATUS=draining: N jobs in flight`` when SIGTERM starts the drain, and
  the count again every few seconds until the daemon exits.

Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

DIALECT_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
SYSTEMD_MARKERS = ("INVOCATION_ID", "NOTIFY_SOCKET", "JOURNAL_STREAM")


def notify(*fields: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send one datagram of ``KEY=value`` lines to ``$NOTIFY_SOCKET``; False when not sent."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address or not fields:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False  # AF_VSOCK ("vsock:…", systemd 253+) is not for a service on the host
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
        except OSError:
            return False
    return True


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in µs, as ``MONOTONIC_USEC=`` wants it next to ``RELOADING=1``."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings: a third of ``$WATCHDOG_USEC`` (``WatchdogSec=``),
    or None when systemd does not ask for them (or asks another process, ``$WATCHDOG_PID``)."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 3_000_000


def under_systemd(environ: Mapping[str, str]) -> bool:
    """Started by systemd: whatever the daemon prints ends up in the journal (or a log file)."""
    return any(environ.get(name) for name in SYSTEMD_MARKERS)


def serving_status(urls: list[str], workers: int, dialect: str) -> str:
    return f"serving on {', '.join(urls)}, {workers} workers, {DIALECT_NAMES.get(dialect, dialect)}"


def draining_status(in_flight: int) -> str:
    return f"draining: {in_flight} job{'' if in_flight == 1 else 's'} in flight"


class Notifier:
    """The service's state as systemd sees it; every message goes through here."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ
        self.serving: str | None = None  # the STATUS= line while ready
        self.stopping = False
        self.db_unreachable = False

    def _send(self, *fields: str) -> None:
        notify(*fields, environ=self._environ)

    def ready(self, serving: str) -> None:
        self.serving = serving
        self._send("READY=1", f"STATUS={self._current_status()}")

    def reloading(self) -> bool:
        """``RELOADING=1``; False (nothing sent) before ``READY=1`` or once stopping."""
        if self.serving is None or self.stopping:
            return False
        self._send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", "STATUS=reloading")
        return True

    def reloaded(self) -> None:
        if self.serving is not None and not self.stopping:
            self._send("READY=1", f"STATUS={self._current_status()}")

    def stop(self, in_flight: int) -> None:
        self.stopping = True
        self._send("STOPPING=1", f"STATUS={draining_status(in_flight)}")

    def draining(self, in_flight: int) -> None:
        self._send(f"STATUS={draining_status(in_flight)}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def database(self, reachable: bool) -> None:
        """The watchdog's database check changed its answer: say so in ``STATUS=``."""
        self.db_unreachable = not reachable
        if self.serving is not None and not self.stopping:
            self._send(f"STATUS={self._current_status()}")

    def _current_status(self) -> str:
        if self.db_unreachable:
            return "database unreachable: watchdog pings paused"
        return self.serving or "starting"
