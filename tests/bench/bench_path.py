"""Gemini-path benchmark: the booth's path through Gemini, SQLite and PostgreSQL side by side.

``PYTHONPATH=. .venv/bin/python -m tests.bench.bench_path [--quick] [--dialect D] [--profile]
[--media-backend local|s3|both]``

The issue's own measuring setup on a 2-core machine: the daemon (``tests.support.run_daemon``
through ``BenchDaemon``, on its default settings and default log level) runs alone on CPU 0;
this process (the DSLR-Remote-Pro-exact client and the fake Gemini on loopback, under one Trio
loop) runs on CPU 1, and so do the /healthz poller (a process of its own, like a load balancer:
``health_poller.py``) and the PostgreSQL cluster (they inherit our affinity: the "outside
world" shares the client's core, never the daemon's).  Every slot
(slot-001..015) is ``gemini/edit`` with ``output_format`` ``png``: the fake answers with zero
delay either a tiny 64x64 PNG or a photo-like 1024x1024 PNG of ~1.5 MB, and the daemon keeps
it as it is (the path the issue measures).  The upload is the ~1 MB 2000x1333 JPEG of
``bench_ingest``.

Order: per run and dialect, the floor first (``floor_app.py`` ``POST /small`` on CPU 0: each
run's ×floor figures are against its own floor, measured just before it), the path floor
(``floor_app.py`` ``POST /gemini``: the work the Gemini path cannot avoid, and nothing else, per
result size; the overheads are also given against it), then a fresh
daemon (and a fresh PostgreSQL database): idle RSS and start-up peak 2 s after ready, idle CPU,
sequential overhead (tiny, then 1.5 MB result), throughput at concurrency 30 over 15 slots
(tiny, then 1.5 MB), the load peak.  Full runs do two interleaved runs (sqlite, postgresql,
sqlite, postgresql); ``--quick`` one, with shorter load and idle phases.  Figures are printed
one per line (``name: value unit``), then a summary table of figure vs the issue's bar, then
one ``machine:`` line.  The exit status is 0 (130 on Ctrl-C): the bars are read, not enforced.

``--media-backend s3`` (or ``both``, local then s3 per dialect) runs the daemon with
``media_backend = "s3"`` against the test suite's SeaweedFS (tests/support/s3.py, a fresh bucket
per run, on the client's CPU like PostgreSQL: the outside world); its columns are labelled
``<dialect>+s3``, and with ``both`` the summary adds the S3 overhead over local disk (the bar:
p50 within +10 ms).

``--tls`` serves the fake Gemini over HTTPS (a throwaway certificate the daemon trusts through
``SSL_CERT_FILE``), as the real vendors are: the daemon's side of TLS (its handshakes, sealing
the 1.35 MB request, opening the answer) is then in its figures, and so is the fake's, on the
client's core, in the vendor round trip.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from shared.slots import SLOT_IDS
from tests.bench.bench_ingest import Upload, poll_health, prepare
from tests.bench.bench_support import (
    REPO,
    BenchDaemon,
    Report,
    cpu_busy_seconds,
    cpu_seconds,
    machine_line,
    percentile,
    pin_self,
    server_timing,
    tree_cpu_seconds,
)
from tests.fakes import FakeGemini
from tests.fakes.gemini_request import GeminiRequest
from tests.fakes.images import generated_image, photo_png
from tests.support.dslr import DslrConnectionError, dslr_upload
from tests.support.images import make_jpeg
from tests.support.nginx import self_signed
from tests.support.postgres import PostgresCluster, find_pg_bin
from tests.support.s3 import SeaweedS3

DAEMON_CPU = 0
CLIENT_CPU = 1  # this process, the fake Gemini, PostgreSQL, py-spy
SEQ_SLOT = "slot-001"
WARMUP = 10
COUNT = 200
CONCURRENCY = 30
LOAD_SECONDS = 10.0
QUICK_LOAD_SECONDS = 5.0
IDLE_SECONDS = 30.0
QUICK_IDLE_SECONDS = 10.0
SETTLE = 2.0  # after ready: the start-up is over, the daemon idles
PROFILE_COUNT = 100
TIMEOUT = 60.0
PROMPT = "turn it into a watercolour"
GEMINI_MODEL = "gemini-2.5-flash-image"  # the slots' default model
DIALECTS = ("sqlite", "postgresql")
BACKENDS = ("local", "s3")
BAR_S3_OVER_LOCAL_MS = 10.0  # overhead p50 with the media in a bucket, over local disk
# The bars (README "Performance"): the summary compares each figure with them.
BAR_X_FLOOR = {"tiny": 2.5, "big": 4.0}
BAR_P99_OVER_P50 = 2.0
BAR_THROUGHPUT = {"sqlite": 65.0, "postgresql": 55.0}
BAR_HEALTHZ_P95_MS = 20.0
BAR_RSS_IDLE = 90.0
BAR_STARTUP_OVER_IDLE = 10.0
BAR_RSS_LOAD = 160.0
BAR_PG_IDLE_CPU = 0.1


class PathGemini(FakeGemini):
    """The Gemini fake answering a fixed PNG (``result``) instead of a greyscale of the input.

    Everything else is the fake's real work: it checks the request, decodes its base64 photo,
    base64-encodes the result into the JSON answer and sends it.
    """

    def __init__(self, result: bytes) -> None:
        super().__init__()
        self.result = result

    def _result_image(self, source: bytes | None, model: str, request: GeminiRequest) -> bytes:
        return self.result


@dataclass(frozen=True)
class Sample:
    """One ingest as the booth saw it (and, for sequential ones, as the fake saw it)."""

    status: int | None  # None: no HTTP answer (``error`` says why)
    elapsed: float  # client: TCP connect -> last response byte, seconds
    body_size: int = 0
    daemon_ms: float | None = None  # Server-Timing daemon (provider time excluded)
    provider_ms: float | None = None  # Server-Timing provider (the driver's process())
    fake_seconds: float | None = None  # inside the fake: request head in -> last byte out
    vendor_seconds: float | None = None  # the fake's own work: whole body in -> last byte out
    error: str = ""

    @property
    def outcome(self) -> str:
        return str(self.status) if self.status is not None else f"error_{self.error}"


@dataclass
class Bench:
    report: Report
    upload: Upload
    tiny: bytes
    big: bytes
    quick: bool
    profile: str | None  # the result size whose phase is profiled
    pinned: bool = False
    pg: PostgresCluster | None = None
    s3: SeaweedS3 | None = None
    backends: tuple[str, ...] = ("local",)
    tls: tuple[Path, Path] | None = None  # the fake's certificate and key: it serves HTTPS
    floor_p50: float = math.nan  # seconds: the floor measured last (each run measures its own)
    # seconds, per result size: the path floor measured last (floor_app.py POST /gemini)
    path_floor_p50: dict[str, float] = field(default_factory=dict)
    floors: list[float] = field(default_factory=list)  # every floor p50 measured, seconds
    foreign: dict[str, float] = field(default_factory=dict)  # phase -> worst foreign % of a core
    # summary rows: (dialect, run) -> {figure: value}
    results: dict[tuple[str, int], dict[str, float]] = field(default_factory=dict)

    @property
    def load_seconds(self) -> float:
        return QUICK_LOAD_SECONDS if self.quick else LOAD_SECONDS

    @property
    def idle_seconds(self) -> float:
        return QUICK_IDLE_SECONDS if self.quick else IDLE_SECONDS


class Figures:
    """Adds the dialect/run prefix to each printed figure and keeps the values for the summary."""

    def __init__(self, bench: Bench, prefix: str, key: tuple[str, int]) -> None:
        self.report = bench.report
        self.prefix = prefix
        self.values = bench.results.setdefault(key, {})

    def add(self, name: str, value: float | int | str, unit: str = "", digits: int = 1) -> None:
        if isinstance(value, float | int) and not isinstance(value, bool):
            self.values[name] = float(value)
        self.report.add(f"{self.prefix}_{name}", value, unit, digits)

    def latency(self, name: str, seconds: Sequence[float], points: Sequence[int]) -> None:
        for point in points:
            label = {0: "min", 100: "max"}.get(point, f"p{point}")
            self.add(f"{name}_{label}", percentile(seconds, point) * 1000, "ms")


# -- the client ---------------------------------------------------------------------------


async def shoot(
    host: str,
    port: int,
    slot: str,
    upload: Upload,
    fake: FakeGemini | None = None,
    path: str | None = None,
) -> Sample:
    """One upload; with ``fake``, also the fake's own time for it (sequential use only)."""
    if fake is not None:
        fake.requests.clear()
    try:
        response = await dslr_upload(
            host,
            port,
            slot,
            body=upload.body,
            content_type=upload.content_type,
            timeout=TIMEOUT,
            path=path,
        )
    except (DslrConnectionError, OSError, trio.TooSlowError) as exc:
        return Sample(None, math.nan, error=type(exc).__name__)
    assert response is not None  # close_after is not used
    fake_seconds = vendor_seconds = None
    if fake is not None:
        fake_seconds = vendor_seconds = 0.0
        for r in fake.requests:
            if r.responded_at is not None:
                fake_seconds += r.responded_at - r.received_at
                vendor_seconds += r.responded_at - (r.body_received_at or r.received_at)
        fake.requests.clear()  # the records hold the 1.4 MB request bodies: do not keep them
    timing = response.headers.get("server-timing", "")
    return Sample(
        response.status,
        response.elapsed,
        len(response.body),
        server_timing(timing, "daemon"),
        server_timing(timing, "provider"),
        fake_seconds,
        vendor_seconds,
    )


def report_outcomes(figures: Figures, name: str, samples: Sequence[Sample]) -> None:
    counts = Counter(s.outcome for s in samples if s.status != 200)
    figures.add(f"{name}_non200", sum(counts.values()), "requests")
    for outcome, count in sorted(counts.items()):
        figures.add(f"{name}_{outcome}", count, "requests")


def ms_as_seconds(values: Sequence[float | None]) -> list[float]:
    return [v / 1000 for v in values if v is not None]


# -- PostgreSQL ----------------------------------------------------------------------------


def postmaster_pid(pg: PostgresCluster) -> int:
    return int((pg.data_dir / "postmaster.pid").read_text().splitlines()[0])


def psql(pg: PostgresCluster, database: str, statement: str) -> None:
    """Run one statement over TCP with the cluster's password (as the daemon connects)."""
    bin_dir = pg.bin_dir or find_pg_bin()
    psql_bin = str(bin_dir / "psql") if bin_dir and (bin_dir / "psql").exists() else "psql"
    subprocess.run(
        [psql_bin, "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", pg.dsn(None, database)],
        input=statement,
        text=True,
        capture_output=True,
        check=True,
        timeout=60,
    )


def configure_slots(daemon: BenchDaemon, pg: PostgresCluster | None, database: str) -> None:
    """Every slot gemini/edit, PNG kept as it is; by hand in the database, like an operator.

    SQLite: the daemon caches slots, so ``BenchDaemon.sql`` sends SIGHUP.  PostgreSQL: the
    daemon hears of the commit (``NOTIFY`` on photochanger_config) and drops its copy.
    """
    settings = '{"prompt": "%s", "output_format": "png"}' % PROMPT  # noqa: UP031 - SQL literal
    ids = ", ".join(f"'{slot}'" for slot in SLOT_IDS)
    statement = (
        f"UPDATE slot SET provider = 'gemini', operation = 'edit', is_active = TRUE, "
        f"settings = '{settings}' WHERE id IN ({ids})"
    )
    if pg is None:
        changed = daemon.sql(statement)
        assert changed == len(SLOT_IDS), f"{changed} slots changed"
    else:
        psql(pg, database, statement)


# -- phases --------------------------------------------------------------------------------


def allowed_cpus(pid: int) -> str:
    """``Cpus_allowed_list`` of a process: proof of the pinning, printed with the figures."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.partition(":")[2].strip()
    return "?"


FOREIGN_WARN = 5.0  # % of a core used by something else during a phase: the figure is suspect


@dataclass(frozen=True)
class Usage:
    """CPU time over one phase: the server's, ours, PostgreSQL's, and each core's total."""

    wall: float
    server: float  # the daemon (or the floor server), all threads
    client: float  # this process: client, fake Gemini, /healthz poller
    pg: float  # the PostgreSQL cluster (0 for SQLite)
    busy: dict[int, float]  # per CPU, everything (/proc/stat)

    def foreign(self, pinned: bool) -> dict[str, float]:
        """% of a core used by other processes (another test run on the machine).

        Pinned: CPU 0 minus the server, CPU 1 minus us and PostgreSQL.  Not pinned: both
        cores together minus all of ours, as % of one core.  Kernel work charged to no process
        (some of the loopback's softirq time) lands here too, so expect a few %.
        """
        if pinned and DAEMON_CPU in self.busy and CLIENT_CPU in self.busy:
            ours_1 = self.client + self.pg
            return {
                f"cpu{DAEMON_CPU}": (self.busy[DAEMON_CPU] - self.server) / self.wall * 100,
                f"cpu{CLIENT_CPU}": (self.busy[CLIENT_CPU] - ours_1) / self.wall * 100,
            }
        ours = self.server + self.client + self.pg
        return {"all_cpus": (sum(self.busy.values()) - ours) / self.wall * 100}


class Meter:
    """Snapshot at creation; :meth:`read` gives the :class:`Usage` since then."""

    def __init__(self, server_pid: int, pg_pid: int | None = None) -> None:
        self.server_pid = server_pid
        self.pg_pid = pg_pid
        self._start = self._snapshot()

    def _snapshot(self) -> tuple[float, float, float, float, dict[int, float]]:
        return (
            time.monotonic(),
            cpu_seconds(self.server_pid),
            time.process_time(),  # this process, all threads
            tree_cpu_seconds(self.pg_pid) if self.pg_pid else 0.0,
            cpu_busy_seconds(),
        )

    def read(self) -> Usage:
        end, start = self._snapshot(), self._start
        busy = {cpu: end[4][cpu] - start[4].get(cpu, 0.0) for cpu in end[4]}
        wall, server, client, pg = (end[i] - start[i] for i in range(4))
        return Usage(wall, server, client, pg, busy)


def report_foreign(report: Report | Figures, name: str, usage: Usage, pinned: bool) -> float:
    """Print what other processes used of each core during a phase; the worst, in %."""
    worst = 0.0
    for cpu, percent in usage.foreign(pinned).items():
        report.add(f"{name}_foreign_{cpu}", percent, "% of that core (other processes)")
        worst = max(worst, percent)
    if worst > FOREIGN_WARN:
        print(
            f"warning: {name}: other processes used {worst:.0f}% of a core: "
            "these figures are not the daemon's alone (run on a quiet machine)",
            file=sys.stderr,
            flush=True,
        )
    return worst


async def phase_floor(bench: Bench, name: str = "floor_small_1mb") -> float:
    """The floor: the same client and upload against Hypercorn with an app that reads the body
    and answers 136 bytes, on the daemon's core (CPU 0).  Its p50 (seconds) becomes the floor
    of the figures measured next."""
    report = bench.report
    with BenchDaemon(module="tests.bench.floor_app", cpus={DAEMON_CPU}) as floor:
        for _ in range(WARMUP):
            await shoot(floor.host, floor.port, SEQ_SLOT, bench.upload, path="/small")
        meter = Meter(floor.pid)
        samples = [
            await shoot(floor.host, floor.port, SEQ_SLOT, bench.upload, path="/small")
            for _ in range(COUNT)
        ]
        usage = meter.read()
        ok = [s.elapsed for s in samples if s.status == 200]
        report.latency(name, ok, points=(50, 95, 99))
        report.add(f"{name}_200", len(ok), f"of {len(samples)}")
        per_upload = usage.server / len(samples) * 1000
        report.add(f"{name}_cpu_per_upload", per_upload, "ms", digits=2)
        bench.foreign[name] = report_foreign(report, name, usage, bench.pinned)
        bench.floor_p50 = percentile(ok, 50)
        bench.floors.append(bench.floor_p50)
        return bench.floor_p50


async def phase_path_floor(bench: Bench, figures: Figures, fake: PathGemini) -> None:
    """The path floor: ``floor_app.py``'s ``POST /gemini`` on the daemon's core, against the
    same fake — the work the Gemini path cannot avoid, with nothing else (``PathFloor``).  Per
    result size: its p50 with the vendor's own work taken out, as in the overhead (what the
    daemon's overhead is then compared with: ``overhead_<size>_x_path_floor``), and its CPU."""
    env = {
        "PHOTOCHANGER_FLOOR_GEMINI_URL": f"{fake.url}/v1beta/models/{GEMINI_MODEL}:generateContent",
        "PHOTOCHANGER_FLOOR_GEMINI_KEY": fake.api_key,
    }
    if bench.tls is not None:
        env["SSL_CERT_FILE"] = str(bench.tls[0])
    with BenchDaemon(module="tests.bench.floor_app", cpus={DAEMON_CPU}, **env) as floor:
        for label, result in (("tiny", bench.tiny), ("big", bench.big)):
            fake.result = result

            async def upload() -> Sample:
                return await shoot(
                    floor.host, floor.port, SEQ_SLOT, bench.upload, fake, path="/gemini"
                )

            for _ in range(WARMUP):
                await upload()
            meter = Meter(floor.pid)
            samples = [await upload() for _ in range(COUNT)]
            usage = meter.read()
            good = [s for s in samples if s.status == 200 and s.body_size == len(result)]
            elapsed = [s.elapsed - (s.vendor_seconds or 0.0) for s in good]
            name = f"path_floor_{label}"
            figures.latency(name, elapsed, points=(50, 99))
            figures.add(f"{name}_200", len(good), f"of {len(samples)}")
            per_upload = usage.server / len(samples) * 1000
            figures.add(f"{name}_cpu_per_upload", per_upload, "ms", digits=2)
            bench.path_floor_p50[label] = percentile(elapsed, 50)


@contextlib.contextmanager
def profiling(pid: int, out: Path) -> Iterator[subprocess.Popen[bytes] | None]:
    """``py-spy record`` on ``pid`` (non-blocking sampling, collapsed stacks) while inside."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        print("profile: py-spy not installed in the venv (pip install py-spy)", file=sys.stderr)
        yield None
        return
    proc = subprocess.Popen(
        [
            *(str(spy), "record", "--pid", str(pid), "--rate", "200", "--nonblocking"),
            *("--format", "raw", "--output", str(out)),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        time.sleep(0.5)  # attached before the first upload
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def summarize_profile(path: Path, prefix: str, top: int = 15) -> None:
    """Print the hottest frames of a collapsed-stack file: self time and inclusive time."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    try:
        lines = path.read_text().splitlines()
    except OSError:
        print(f"{prefix}_profile: no output", file=sys.stderr)
        return
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[_short(frames[-1])] += count
        for frame in {_LINE.sub(")", _short(f)) for f in frames}:  # a function, all its lines
            inclusive[frame] += count
    print(f"{prefix}_profile: {path} ({total} samples)", flush=True)
    if not total:
        return
    print(f"{prefix}_profile self time (top {top}):")
    for frame, count in own.most_common(top):
        print(f"  {count / total * 100:5.1f}%  {frame}")
    print(f"{prefix}_profile inclusive time, photochangerd functions (top {top}):")
    ours = [(f, c) for f, c in inclusive.most_common() if "photochangerd/" in f]
    for frame, count in ours[:top]:
        print(f"  {count / total * 100:5.1f}%  {frame}")


_LINE = re.compile(r":\d+\)$")


def _short(frame: str) -> str:
    """``func (path/to/file.py:12)`` with the path cut to the package."""
    for marker in ("site-packages/", "/lib/python3", str(REPO) + "/"):
        head, sep, tail = frame.partition(marker)
        if sep:
            return f"{head}{tail}" if marker != "/lib/python3" else f"{head}python3{tail}"
    return frame


async def serial_uploads(
    host: str, port: int, upload: Upload, fake: FakeGemini, count: int = COUNT
) -> list[Sample]:
    """``count`` uploads to slot-001, one at a time, each with the fake's own time for it."""
    return [await shoot(host, port, SEQ_SLOT, upload, fake) for _ in range(count)]


def report_overhead(
    bench: Bench, figures: Figures, label: str, result: bytes, samples: Sequence[Sample]
) -> str:
    """The latency figures of serial uploads (``overhead_<label>_*``); the figure's name."""
    name = f"overhead_{label}"
    good = [s for s in samples if s.status == 200 and s.body_size == len(result)]
    # The overhead is the booth's wait minus the vendor's own work (the fake parsing the
    # request and building its answer: 10-20 ms of the fake's Python, not ours).  The transfer
    # of the request to the fake and of its answer back stay in: that is the daemon's work.
    elapsed = [s.elapsed - (s.vendor_seconds or 0.0) for s in good]
    figures.latency(f"client_latency_{label}", [s.elapsed for s in good], points=(50, 99))
    figures.latency(name, elapsed, points=(50, 95, 99))
    report_outcomes(figures, name, samples)
    wrong = sum(s.status == 200 for s in samples) - len(good)
    if wrong:
        figures.add(f"{name}_wrong_body", wrong, "requests (not the fake's PNG as it is)")
    p50 = percentile(elapsed, 50)
    figures.add(f"{name}_x_floor", p50 / bench.floor_p50, "x floor p50", digits=2)
    path_floor = bench.path_floor_p50.get(label, math.nan)
    figures.add(f"{name}_x_path_floor", p50 / path_floor, "x path floor p50", digits=2)
    figures.add(f"{name}_p99_over_p50", percentile(elapsed, 99) / p50, "x", digits=2)
    figures.latency(
        f"{name}_server_timing_daemon", ms_as_seconds([s.daemon_ms for s in good]), points=(50,)
    )
    figures.latency(
        f"{name}_server_timing_provider", ms_as_seconds([s.provider_ms for s in good]), points=(50,)
    )
    figures.latency(
        f"{name}_inside_fake",
        [s.fake_seconds for s in good if s.fake_seconds is not None],
        points=(50,),
    )
    figures.latency(
        f"{name}_vendor_work",
        [s.vendor_seconds for s in good if s.vendor_seconds is not None],
        points=(50,),
    )
    # Part of the overhead that is the fake's, not ours: its Hypercorn reading our 1.35 MB
    # request (request head in -> whole body in), on the client's core.  A vendor's front end
    # reads at the network's pace; shown so the overhead can be read without it.
    figures.latency(
        f"{name}_fake_reading_request",
        [
            s.fake_seconds - s.vendor_seconds
            for s in good
            if s.fake_seconds is not None and s.vendor_seconds is not None
        ],
        points=(50,),
    )
    return name


async def phase_sequential(
    bench: Bench,
    figures: Figures,
    daemon: BenchDaemon,
    fake: PathGemini,
    label: str,
    result: bytes,
    pg_pid: int | None,
) -> None:
    """1-2. COUNT sequential uploads after WARMUP: the daemon's overhead and CPU per upload."""
    fake.result = result
    await serial_uploads(daemon.host, daemon.port, bench.upload, fake, WARMUP)
    meter = Meter(daemon.pid, pg_pid)
    samples = await serial_uploads(daemon.host, daemon.port, bench.upload, fake)
    usage = meter.read()
    name = report_overhead(bench, figures, label, result, samples)
    per_upload = usage.server / len(samples) * 1000
    figures.add(f"cpu_per_upload_{label}", per_upload, "ms (daemon utime+stime)")
    figures.add(f"{name}_cpu_busy", usage.server / usage.wall * 100, "% of a core (daemon)")
    client_busy = usage.client / usage.wall * 100
    figures.add(f"{name}_client_cpu_busy", client_busy, "% of a core (client + fake)")
    if pg_pid:
        pg_per_upload = usage.pg / len(samples) * 1000
        figures.add(f"pg_cpu_per_upload_{label}", pg_per_upload, "ms (PostgreSQL server)")
    worst = report_foreign(figures, name, usage, bench.pinned)
    bench.foreign[f"{figures.prefix} {name}"] = worst

    if bench.profile == label:
        out = Path(tempfile.gettempdir()) / f"bench_path-profile-{figures.prefix}-{os.getpid()}.txt"
        with profiling(daemon.pid, out) as spy:
            if spy is not None:
                extra = await serial_uploads(
                    daemon.host, daemon.port, bench.upload, fake, PROFILE_COUNT
                )
                ok = [s.elapsed for s in extra if s.status == 200]
                figures.latency(f"{name}_under_py_spy", ok, points=(50,))
        if spy is not None:
            summarize_profile(out, figures.prefix)


async def clear_records(fake: FakeGemini) -> None:
    """Drop the fake's request records (1.4 MB bodies each) while a load phase runs."""
    while True:
        fake.requests.clear()
        await trio.sleep(0.2)


@dataclass
class Load:
    """What one load phase saw: every upload, the /healthz latencies and failures."""

    samples: list[Sample]
    health: list[float]
    health_failures: list[str]
    elapsed: float  # seconds, start -> the last booth's last answer


async def drive_load(
    host: str, port: int, health_url: str, upload: Upload, fake: FakeGemini, seconds: float
) -> Load:
    """CONCURRENCY booths back to back over the 15 slots for ``seconds``, /healthz polled."""
    load = Load([], [], [], math.nan)  # elapsed: set when the booths are done

    async def booth(number: int, stop_at: float) -> None:
        slot = SLOT_IDS[number % len(SLOT_IDS)]
        while trio.current_time() < stop_at:
            load.samples.append(await shoot(host, port, slot, upload))

    async with trio.open_nursery() as nursery:
        await nursery.start(poll_health, health_url, load.health, load.health_failures)
        nursery.start_soon(clear_records, fake)
        start = trio.current_time()
        async with trio.open_nursery() as booths:
            for number in range(CONCURRENCY):
                booths.start_soon(booth, number, start + seconds)
        load.elapsed = trio.current_time() - start
        nursery.cancel_scope.cancel()
    fake.requests.clear()
    return load


def report_load(figures: Figures, label: str, result: bytes, load: Load) -> str:
    """Throughput, outcomes, latency and /healthz of a load phase; the figures' name."""
    name = f"throughput_{label}"
    good = [s for s in load.samples if s.status == 200 and s.body_size == len(result)]
    figures.add(f"{name}_duration", load.elapsed, "s")
    figures.add(name, len(good) / load.elapsed, "req/s")
    report_outcomes(figures, name, load.samples)
    figures.latency(f"{name}_latency", [s.elapsed for s in good], points=(50, 95, 99))
    figures.latency(f"healthz_under_load_{label}", load.health, points=(50, 95, 100))
    figures.add(f"healthz_under_load_{label}_failures", len(load.health_failures), "polls")
    return name


async def phase_load(
    bench: Bench,
    figures: Figures,
    daemon: BenchDaemon,
    fake: PathGemini,
    label: str,
    result: bytes,
    pg_pid: int | None,
) -> None:
    """3. CONCURRENCY booths back to back over the 15 slots, /healthz polled beside them."""
    fake.result = result
    meter = Meter(daemon.pid, pg_pid)
    load = await drive_load(
        daemon.host, daemon.port, daemon.url, bench.upload, fake, bench.load_seconds
    )
    usage = meter.read()
    name = report_load(figures, label, result, load)
    samples = load.samples
    uploads = max(1, len(samples))
    figures.add(f"{name}_cpu_per_upload", usage.server / uploads * 1000, "ms (daemon)")
    figures.add(f"{name}_cpu_busy", usage.server / usage.wall * 100, "% of a core (daemon)")
    client_busy = usage.client / usage.wall * 100
    figures.add(f"{name}_client_cpu_busy", client_busy, "% of a core (client + fake)")
    if pg_pid:
        pg_busy = usage.pg / usage.wall * 100
        figures.add(f"{name}_pg_cpu_busy", pg_busy, "% of a core (PostgreSQL server)")
    worst = report_foreign(figures, name, usage, bench.pinned)
    bench.foreign[f"{figures.prefix} {name}"] = worst


def base_dialect(label: str) -> str:
    """``sqlite+s3`` → ``sqlite``: the database of a summary column."""
    return label.split("+")[0]


async def run_dialect(
    bench: Bench, fake: PathGemini, dialect: str, run: int, runs: int, backend: str = "local"
) -> None:
    """A fresh daemon (and database) for one dialect: every per-dialect figure."""
    label = dialect if backend == "local" else f"{dialect}+{backend}"
    prefix = label.replace("+", "_") if runs == 1 else f"{label.replace('+', '_')}_r{run}"
    figures = Figures(bench, prefix, (label, run))
    # This run's own floor, measured just before it: the machine drifts within minutes (floors
    # of 2.4-4.7 ms in one hour), and a ratio to a floor taken earlier measures the drift.
    floor = await phase_floor(bench, f"{prefix}_floor_small_1mb")
    figures.add("floor_p50", floor * 1000, "ms (this run's own floor)", digits=2)
    await phase_path_floor(bench, figures, fake)
    env = {
        "PHOTOCHANGER_GEMINI_BASE_URL": fake.url,
        "GEMINI_API_KEY": fake.api_key,
        "PHOTOCHANGER_LOG_LEVEL": "info",  # the daemon's default (BenchDaemon says warning)
    }
    if bench.tls is not None:  # trust the fake's throwaway certificate (as a private CA's)
        env["SSL_CERT_FILE"] = str(bench.tls[0])
    if backend == "s3":
        assert bench.s3 is not None
        bucket = bench.s3.create_bucket(f"bench-{dialect}-{run}-{os.getpid()}")
        env.update(bench.s3.env())
        env.update({f"PHOTOCHANGER_{k}": v for k, v in bench.s3.settings(bucket).items()})
    database = f"bench_{dialect}_{run}_{backend}"
    pg_pid: int | None = None
    if dialect == "postgresql":
        assert bench.pg is not None
        env["PHOTOCHANGER_DATABASE_URL"] = bench.pg.create_database(database)
        pg_pid = postmaster_pid(bench.pg)
    print(f"-- {prefix}: daemon on CPU {DAEMON_CPU}", flush=True)
    # Started from inside the Trio loop (blocking ~1 s): the fake's URL is needed first.
    with BenchDaemon(cpus={DAEMON_CPU}, **env) as daemon:
        try:
            figures.add("daemon_cpus", allowed_cpus(daemon.pid))
            if pg_pid:
                figures.add("pg_cpus", allowed_cpus(pg_pid))
            await trio.sleep(SETTLE)
            # The first start hashes the two initial passwords (argon2id, 19 MiB each); every
            # later start is a restart: what an operator's box runs all day.
            first = daemon.memory_mib()
            figures.add("rss_first_start_idle", first["VmRSS"], "MiB (ready + 2 s)")
            figures.add("rss_first_start_peak", first["VmHWM"], "MiB (VmHWM, incl. the KDF)")
            # Blocking, in this thread: PR_SET_PDEATHSIG follows the thread that started the
            # child, and a Trio worker thread exits when idle (the daemon would die with it).
            daemon.restart()
            await trio.sleep(SETTLE)
            memory = daemon.memory_mib()
            figures.add("rss_idle", memory["VmRSS"], "MiB (restart, ready + 2 s)")
            figures.add("rss_startup_peak", memory["VmHWM"], "MiB (VmHWM of the restart)")
            figures.add("rss_startup_over_idle", memory["VmHWM"] - memory["VmRSS"], "MiB", digits=1)
            meter = Meter(daemon.pid, pg_pid)
            await trio.sleep(bench.idle_seconds)
            usage = meter.read()
            scale = IDLE_SECONDS / usage.wall
            per = f"s per {IDLE_SECONDS:.0f} s"
            figures.add("idle_cpu", usage.server * scale, f"{per} (daemon)", digits=2)
            if pg_pid:
                figures.add("idle_cpu_pg_server", usage.pg * scale, per, digits=2)
            configure_slots(daemon, bench.pg if pg_pid else None, database)
            for label, result in (("tiny", bench.tiny), ("big", bench.big)):
                await phase_sequential(bench, figures, daemon, fake, label, result, pg_pid)
            for label, result in (("tiny", bench.tiny), ("big", bench.big)):
                await phase_load(bench, figures, daemon, fake, label, result, pg_pid)
                peak = daemon.memory_mib()["VmHWM"]
                figures.add(f"rss_load_peak_{label}", peak, "MiB (VmHWM after this load)")
            figures.add("rss_load_peak", daemon.memory_mib()["VmHWM"], "MiB (VmHWM at the end)")
        finally:
            # In a thread, with the fake still serving: a job in flight when a signal cut the
            # phase short is drained (SIGTERM), not left hanging on a blocked event loop.
            with trio.CancelScope(shield=True):
                status = await trio.to_thread.run_sync(daemon.stop)
            figures.add("daemon_exit_status", str(status))
            for line in daemon.log_problems()[:20]:
                print(f"{prefix} log: {line}", file=sys.stderr)
    if dialect == "postgresql" and bench.pg is not None:
        bench.pg.drop_database(database)


async def run_with_fake(bench: Bench, phases: Callable[[PathGemini], Awaitable[None]]) -> bool:
    """``phases(fake)`` with the fake Gemini serving; True when SIGINT/SIGTERM cut them short.

    The signals are received here and cancel everything, rather than raising
    KeyboardInterrupt into whatever code happens to run: inside the fake's Hypercorn handler
    that exception would be swallowed (an HTTP 500) and the run would go on.
    """
    fake = PathGemini(bench.tiny)
    fake.tls = bench.tls
    interrupted = False
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(fake.serve)  # outlives the phases: a stopping daemon drains
            with trio.CancelScope() as scope:

                async def stop_on_signal() -> None:
                    nonlocal interrupted
                    async for _ in signals:
                        interrupted = True
                        scope.cancel()
                        return

                nursery.start_soon(stop_on_signal)
                await phases(fake)
            bench.report.add("fake_internal_errors", len(fake.internal_errors), "errors")
            for exc in fake.internal_errors[:5]:
                print(f"fake internal error: {exc!r}", file=sys.stderr)
            nursery.cancel_scope.cancel()
    return interrupted


async def run(bench: Bench, dialects: Sequence[str], runs: int) -> bool:
    """All phases (the floor, then each run, dialect and backend); True when interrupted."""

    async def phases(fake: PathGemini) -> None:
        for number in range(1, runs + 1):  # each run measures its floor first
            for dialect in dialects:
                for backend in bench.backends:
                    await run_dialect(bench, fake, dialect, number, runs, backend)

    return await run_with_fake(bench, phases)


# -- summary -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    label: str
    figure: str
    limit: float | None  # None: shown, no bar
    unit: str
    higher_is_better: bool = False
    dialects: tuple[str, ...] = DIALECTS
    derive: Any = None  # (values) -> value, instead of ``figure``


def bars() -> list[Bar]:
    return [
        Bar("floor p50 (the run's own)", "floor_p50", None, "ms"),
        Bar("overhead tiny p50 / floor p50", "overhead_tiny_x_floor", BAR_X_FLOOR["tiny"], "x"),
        Bar("overhead 1.5MB p50 / floor p50", "overhead_big_x_floor", BAR_X_FLOOR["big"], "x"),
        Bar("overhead tiny p99 / p50", "overhead_tiny_p99_over_p50", BAR_P99_OVER_P50, "x"),
        Bar("overhead 1.5MB p99 / p50", "overhead_big_p99_over_p50", BAR_P99_OVER_P50, "x"),
        Bar("overhead tiny p50", "overhead_tiny_p50", None, "ms"),
        Bar("overhead 1.5MB p50", "overhead_big_p50", None, "ms"),
        Bar("path floor tiny p50", "path_floor_tiny_p50", None, "ms"),
        Bar("path floor 1.5MB p50", "path_floor_big_p50", None, "ms"),
        Bar("overhead tiny / path floor", "overhead_tiny_x_path_floor", None, "x"),
        Bar("overhead 1.5MB / path floor", "overhead_big_x_path_floor", None, "x"),
        Bar("path floor CPU per upload, tiny", "path_floor_tiny_cpu_per_upload", None, "ms"),
        Bar("path floor CPU per upload, 1.5MB", "path_floor_big_cpu_per_upload", None, "ms"),
        Bar("CPU per upload, tiny", "cpu_per_upload_tiny", None, "ms"),
        Bar("CPU per upload, 1.5MB", "cpu_per_upload_big", None, "ms"),
        Bar(
            "throughput c=30 tiny",
            "throughput_tiny",
            BAR_THROUGHPUT["sqlite"],
            "req/s",
            True,
            ("sqlite",),
        ),
        Bar(
            "throughput c=30 tiny",
            "throughput_tiny",
            BAR_THROUGHPUT["postgresql"],
            "req/s",
            True,
            ("postgresql",),
        ),
        Bar("throughput c=30 1.5MB", "throughput_big", None, "req/s", True),
        Bar("non-200 under load, tiny", "throughput_tiny_non200", 0, "req"),
        Bar("non-200 under load, 1.5MB", "throughput_big_non200", 0, "req"),
        Bar(
            "healthz p95 under load, tiny", "healthz_under_load_tiny_p95", BAR_HEALTHZ_P95_MS, "ms"
        ),
        Bar(
            "healthz p95 under load, 1.5MB", "healthz_under_load_big_p95", BAR_HEALTHZ_P95_MS, "ms"
        ),
        Bar("RSS idle", "rss_idle", BAR_RSS_IDLE, "MiB"),
        Bar("start-up peak - idle", "rss_startup_over_idle", BAR_STARTUP_OVER_IDLE, "MiB"),
        Bar("RSS peak, c=30 tiny results", "rss_load_peak_tiny", BAR_RSS_LOAD, "MiB"),
        Bar("RSS peak, + c=30 1.5MB results", "rss_load_peak", BAR_RSS_LOAD, "MiB"),
        Bar("idle CPU per 30 s", "idle_cpu", None, "s", dialects=("sqlite",)),
        Bar("idle CPU per 30 s", "idle_cpu", BAR_PG_IDLE_CPU, "s", dialects=("postgresql",)),
    ]


def print_summary(bench: Bench) -> None:
    keys = sorted(bench.results, key=lambda k: (DIALECTS.index(base_dialect(k[0])), k[0], k[1]))
    if not keys:
        return
    columns = [k[0] if len({r for _, r in keys}) == 1 else f"{k[0]} r{k[1]}" for k in keys]
    width = max(12, *(len(c) for c in columns))
    print("summary (figure vs the issue's bar; '!' marks a value outside it):", flush=True)
    header = f"  {'figure':<32} {'bar':>12} " + " ".join(f"{c:>{width}}" for c in columns)
    print(header)
    for bar in bars():
        if not any(base_dialect(k[0]) in bar.dialects for k in keys):
            continue
        if bar.limit is None:
            limit = "-"
        else:
            limit = f"{'>=' if bar.higher_is_better else '<='} {bar.limit:g} {bar.unit}"
        cells = []
        for key in keys:
            applies = base_dialect(key[0]) in bar.dialects
            value = bench.results[key].get(bar.figure) if applies else None
            if value is None or math.isnan(value):
                cells.append(f"{'':>{width}}" if not applies else f"{'n/a':>{width}}")
                continue
            outside = bar.limit is not None and (
                value < bar.limit if bar.higher_is_better else value > bar.limit
            )
            if bar.unit == "req":  # a count
                text = f"{value:.0f}"
            else:
                text = f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
            cells.append(f"{text + ('!' if outside else ' '):>{width}}")
        print(f"  {bar.label:<32} {limit:>12} " + " ".join(cells))
    floors = ", ".join(f"{floor * 1000:.1f}" for floor in bench.floors)
    print(f"  (floor p50 of each run, in order: {floors} ms; MiB compared with the bars' MB)")
    print_s3_over_local(bench)
    print_other_load(bench)


def print_other_load(bench: Bench) -> None:
    """The summary's verdict on the machine: the worst phase for other processes' CPU."""
    if bench.foreign:
        phase, worst = max(bench.foreign.items(), key=lambda item: item[1])
        verdict = "quiet" if worst <= FOREIGN_WARN else "NOT quiet: figures include other load"
        print(f"  other processes: at most {worst:.0f}% of a core ({phase}): {verdict}")


def print_s3_over_local(bench: Bench) -> None:
    """Per dialect and run: the overhead p50 with the media in a bucket minus on local disk."""
    for (label, run), values in sorted(bench.results.items()):
        if not label.endswith("+s3") or (base_dialect(label), run) not in bench.results:
            continue
        local = bench.results[(base_dialect(label), run)]
        for size in ("tiny", "big"):
            figure = f"overhead_{size}_p50"
            if figure not in values or figure not in local:
                continue
            extra = values[figure] - local[figure]
            verdict = "ok" if extra <= BAR_S3_OVER_LOCAL_MS else "OUTSIDE the bar"
            print(
                f"  s3 over local, {base_dialect(label)} r{run} {size}: overhead p50 "
                f"{values[figure]:.1f} - {local[figure]:.1f} = {extra:+.1f} ms "
                f"(bar <= +{BAR_S3_OVER_LOCAL_MS:g} ms): {verdict}"
            )


# -- main ----------------------------------------------------------------------------------


def make_bench(
    report: Report,
    *,
    quick: bool,
    profile: str | None,
    pinned: bool,
    backends: tuple[str, ...],
) -> Bench:
    """The upload and the two results (printed), in a :class:`Bench` with no results yet."""
    upload = prepare("1mb", make_jpeg(2000, 1333, target_bytes=1_000_000))
    bench = Bench(
        report,
        upload,
        tiny=generated_image((64, 64)),
        big=photo_png((1024, 1024), 1_500_000),
        quick=quick,
        profile=profile,
        pinned=pinned,
        backends=backends,
    )
    report.add("photo", len(upload.photo), "bytes (2000x1333 JPEG)")
    report.add("result_tiny", len(bench.tiny), "bytes (64x64 PNG)")
    report.add("result_big", len(bench.big), "bytes (1024x1024 PNG)")
    return bench


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"one run, {QUICK_LOAD_SECONDS:g} s load phases, {QUICK_IDLE_SECONDS:g} s idle",
    )
    parser.add_argument("--dialect", choices=(*DIALECTS, "both"), default="both")
    parser.add_argument(
        "--media-backend",
        choices=(*BACKENDS, "both"),
        default="local",
        help="where the daemon keeps results: the media dir, a SeaweedFS bucket, or both",
    )
    parser.add_argument(
        "--tls", action="store_true", help="the fake Gemini serves HTTPS, as the real one does"
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="interleaved runs per dialect (default 2, quick 1)"
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="big",
        choices=("tiny", "big"),
        default=None,
        help=f"py-spy record the daemon over {PROFILE_COUNT} extra uploads (tiny or big result)",
    )
    args = parser.parse_args(argv)
    runs = args.runs if args.runs is not None else (1 if args.quick else 2)
    dialects = DIALECTS if args.dialect == "both" else (args.dialect,)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda _sig, _frame: os.kill(os.getpid(), signal.SIGINT))

    report = Report()
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    pinned = {DAEMON_CPU, CLIENT_CPU} <= cpus and pin_self({CLIENT_CPU})
    if pinned:
        print(
            f"pinning: daemon and floor on CPU {DAEMON_CPU}; client, fake Gemini, "
            f"PostgreSQL{', py-spy' if args.profile else ''} on CPU {CLIENT_CPU}",
            flush=True,
        )
    else:
        print(
            f"pinning: NOT pinned (CPUs available: {sorted(cpus)}); figures not comparable "
            "with the issue's",
            file=sys.stderr,
            flush=True,
        )
    bench = make_bench(
        report,
        quick=args.quick,
        profile=args.profile,
        pinned=pinned,
        backends=BACKENDS if args.media_backend == "both" else (args.media_backend,),
    )
    interrupted = False
    try:
        with contextlib.ExitStack() as stack:
            if args.tls:
                certificates = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                bench.tls = self_signed(certificates, "127.0.0.1")
            if "postgresql" in dialects:
                bench.pg = stack.enter_context(PostgresCluster())
            if "s3" in bench.backends:  # started here: on the client's CPU (pinned above)
                bench.s3 = stack.enter_context(SeaweedS3())
            interrupted = trio.run(run, bench, dialects, runs)
    except* KeyboardInterrupt:  # before or after the Trio run (images, PostgreSQL start)
        interrupted = True
    return finish(interrupted, lambda: print_summary(bench), "the daemon and PostgreSQL")


def finish(interrupted: bool, summary: Callable[[], None], stopped: str) -> int:
    """A benchmark's end: 130 when interrupted; else the summary, the machine line and 0."""
    if interrupted:
        print(f"interrupted; {stopped} were stopped", file=sys.stderr)
        return 130
    summary()
    print(machine_line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
