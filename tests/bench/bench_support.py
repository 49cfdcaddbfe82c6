"""What the benchmarks share: the daemon as a subprocess, figures, statistics.

:class:`BenchDaemon` runs ``python -m tests.support.run_daemon`` (the real daemon plus the
scripted ``script`` provider) in a throw-away data directory on a free loopback port.  It is a
context manager that always stops the process and removes the directory, also on Ctrl-C and
exceptions; on Linux the child additionally gets ``PR_SET_PDEATHSIG`` so even a ``kill -9`` of
the benchmark does not leave a daemon behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
INGEST_PASSWORD = "bench-ingest-password"
ADMIN_PASSWORD = "bench-admin-password"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
RELOAD_SETTLE = 0.2  # seconds for the daemon to act on SIGHUP
PR_SET_PDEATHSIG = 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    # Not Linux (no prctl): the context manager still stops the daemon on every normal path.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _child_setup(cpus: frozenset[int] | None) -> Callable[[], None]:
    """The ``preexec_fn`` of a benchmark child: die with us, and run on ``cpus`` if given."""

    def setup() -> None:  # between fork and exec: no allocation-heavy work, no locks
        _die_with_parent()
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    return setup


class BenchDaemon:
    """The daemon under test, as a separate process (its own CPU time, its own RSS)."""

    def __init__(
        self,
        module: str = "tests.support.run_daemon",
        *,
        cpus: Collection[int] | None = None,
        **env: str,
    ) -> None:
        """``cpus``: CPU affinity of the child (``sched_setaffinity`` before exec); None
        inherits ours.  ``env``: extra environment variables of the child."""
        self.module = module
        self.cpus = None if cpus is None else frozenset(cpus)
        self.host = "127.0.0.1"
        self.port = _free_port()
        self._tmp = Path(tempfile.mkdtemp(prefix="photochanger-bench-"))
        self.data_dir = self._tmp / "data"
        self.log_path = self._tmp / "daemon.log"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PHOTOCHANGER_DATA_DIR": str(self.data_dir),
            "PHOTOCHANGER_BIND": f"{self.host}:{self.port}",
            "PHOTOCHANGER_INITIAL_INGEST_PASSWORD": INGEST_PASSWORD,
            "PHOTOCHANGER_INITIAL_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "PHOTOCHANGER_LOG_LEVEL": "warning",
            **env,
        }
        self.env.pop("PHOTOCHANGER_CONFIG", None)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "photochanger.sqlite3"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> BenchDaemon:
        try:
            self._start()
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cleanup()

    def _start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module],
                env=self.env,
                cwd=self._tmp,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the daemon ourselves
                # prctl + sched_setaffinity only: nothing that waits on a lock another
                # thread of ours (Trio's worker threads) could hold at fork time
                preexec_fn=_child_setup(self.cpus),
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready after {READY_TIMEOUT} s:\n{self.log_tail()}")

    def restart(self) -> None:
        """Stop (gracefully) and start again on the same data dir and port: a restart."""
        self.stop()
        self._start()

    def stop(self) -> int | None:
        """SIGTERM (graceful drain), SIGKILL if that takes too long; the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def _cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)

    # -- inspection -------------------------------------------------------------------------

    def sql(self, statement: str, *params: object) -> int:
        """Run one write statement next to the running daemon; the number of rows changed.

        The daemon keeps slots and settings in memory (SQLite): like an operator editing the
        database by hand, we send it SIGHUP afterwards.
        """
        with sqlite3.connect(self.db_path, timeout=30) as conn:
            changed = conn.execute(statement, params).rowcount
        if self.proc is not None:
            self.proc.send_signal(signal.SIGHUP)
            time.sleep(RELOAD_SETTLE)
        return changed

    def query(self, statement: str, *params: object) -> list[tuple[Any, ...]]:
        """Read-only query (the daemon keeps writing; we never take a write lock)."""
        uri = f"file:{self.db_path}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=30)
        try:
            return conn.execute(statement, params).fetchall()
        finally:
            conn.close()

    def set_slot(self, slot_id: str, provider: str, operation: str, **settings: object) -> None:
        changed = self.sql(
            "UPDATE slot SET provider=?, operation=?, settings=? WHERE id=?",
            provider,
            operation,
            json.dumps(settings),
            slot_id,
        )
        assert changed == 1, f"no slot {slot_id}"

    def set_deadline(self, seconds: float) -> None:
        """T_sync_response; the daemon reads it on every ingest, no restart needed."""
        changed = self.sql(
            "UPDATE app_settings SET value=? WHERE key='sync_response_seconds'",
            json.dumps(seconds),
        )
        assert changed == 1, "sync_response_seconds is seeded on the daemon's first start"

    def memory_mib(self) -> dict[str, float]:
        """VmRSS / VmHWM (peak RSS) of the daemon process, in MiB."""
        out: dict[str, float] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
        return out

    def cpu_seconds(self) -> float:
        """utime + stime of the daemon process (all its threads) so far, in seconds."""
        return cpu_seconds(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_problems(self) -> list[str]:
        """Log lines at level error/critical and traceback lines (warnings are expected)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        markers = (" error ", " critical ", "Traceback (most recent call last)")
        return [line for line in text.splitlines() if any(m in line for m in markers)]


# -- CPU time and affinity ------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after ``comm`` (which may hold spaces and parentheses):
    index 0 is field 3 (state), so field N of proc(5) is index N - 3."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """utime + stime of process ``pid`` (all threads), from /proc/<pid>/stat, in seconds.

    ``children`` adds cutime + cstime: the time of its children that exited and were waited
    for (e.g. PostgreSQL backends of closed connections).  The resolution is one clock tick
    (usually 10 ms), so divide deltas over many requests, not one.
    """
    fields = _stat_fields(pid)
    ticks = int(fields[11]) + int(fields[12])  # utime (14), stime (15)
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime (16), cstime (17)
    return ticks / CLOCK_TICKS


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` (via /proc/<pid>/task/*/children), depth first."""
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                kids = [int(k) for k in (task / "children").read_text().split()]
                found.extend(kids)
                stack.extend(kids)
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid``, its live descendants and the children they reaped.

    Descendants that exit between two readings take their time with them unless their
    parent waited for them (then it is in the parent's cutime/cstime).
    """
    total = 0.0
    for one in (pid, *descendants(pid)):
        with contextlib.suppress(OSError, ValueError):
            total += cpu_seconds(one, children=True)
    return total


def cpu_busy_seconds() -> dict[int, float]:
    """Busy time of each CPU since boot (/proc/stat: all but idle and iowait), in seconds.

    Compared with the CPU time of the benchmark's own processes over a phase, it tells how much
    of a core something else used (another test run on the same machine): the figures are
    only the daemon's when that is near zero.
    """
    busy: dict[int, float] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                # user nice system idle iowait irq softirq steal
                ticks = [int(v) for v in values[:8]]
                busy[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS
    return busy


def pin_self(cpus: Collection[int]) -> bool:
    """Run this process (and the children it starts later) on ``cpus``; False if impossible."""
    try:
        os.sched_setaffinity(0, set(cpus))
    except (AttributeError, OSError, ValueError):
        return False
    return True


# -- figures ------------------------------------------------------------------------------


class Report:
    """Prints each figure as soon as it exists (``name: value unit``): a crash keeps the rest."""

    def __init__(self) -> None:
        self.figures: list[tuple[str, str, str]] = []

    def add(self, name: str, value: float | int | str, unit: str = "", digits: int = 1) -> None:
        text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
        self.figures.append((name, text, unit))
        print(f"{name}: {text} {unit}".rstrip(), flush=True)

    def latency(self, name: str, seconds: Sequence[float], *, points: Sequence[int]) -> None:
        """``name_p50: 12.3 ms`` for each percentile in ``points`` (0 = min, 100 = max)."""
        for point in points:
            label = {0: "min", 100: "max"}.get(point, f"p{point}")
            self.add(f"{name}_{label}", percentile(seconds, point) * 1000, "ms")


def percentile(values: Sequence[float], point: float) -> float:
    """Linear-interpolated percentile (like numpy's default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * point / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def machine_line() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return (
        f"machine: nproc={os.cpu_count()} python={platform.python_version()} "
        f"kernel={platform.release()} cpu={cpu!r} date={stamp}"
    )


def server_timing(header: str, name: str) -> float | None:
    """``dur`` (ms) of metric ``name`` in a ``Server-Timing`` header."""
    for metric in header.split(","):
        parts = [p.strip() for p in metric.split(";")]
        if parts and parts[0] == name:
            for param in parts[1:]:
                if param.startswith("dur="):
                    return float(param[4:])
    return None
