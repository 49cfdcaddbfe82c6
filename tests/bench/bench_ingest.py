"""Ingest benchmark: the daemon's own cost, against fake providers on loopback.

``PYTHONPATH=. .venv/bin/python -m tests.bench.bench_ingest [--quick] [--skip-big]``

Starts its own daemon (``tests.support.run_daemon``: the real daemon plus the scripted test
provider) in a temporary data directory, runs the phases behind README.md "Performance" against
it with a DSLR-Remote-Pro-exact client, and prints one figure per line (``name: value unit``),
then one ``machine:`` line.  Slots used:

* slot-001 ``local/passthrough`` (zero-delay: answers the photo bytes unchanged)
* slot-002 ``script/echo`` 20 s (5 s with ``--quick``), slot-003 ``script/hang``,
  slot-004 ``script/echo`` 3 s (the 19 MB uploads)

Client latencies are DslrResponse.elapsed: from the TCP connect (the request head goes out
right after it; a loopback connect costs ~0.1 ms) to the last byte of the final response.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import trio

from tests.bench.bench_support import (
    INGEST_PASSWORD,
    REPO,
    BenchDaemon,
    Report,
    machine_line,
    server_timing,
)
from tests.support.dslr import DslrConnectionError, build_dslr_body, dslr_upload
from tests.support.images import make_jpeg

FAST_SLOT = "slot-001"
SLOW_SLOT = "slot-002"
HANG_SLOT = "slot-003"
BIG_SLOT = "slot-004"

CONCURRENCY = 30
WARMUP = 10
OVERHEAD_COUNT = 200
COMPLETION_SAMPLE = 50
HEALTH_INTERVAL = 0.05
DEFAULT_DEADLINE = 48.0
SHORT_DEADLINE = 2.0
BIG_ECHO_SECONDS = 3.0
DOWNLOAD_SECONDS = 5.0

# The daemon's defaults (30 workers, max_in_flight 30 per instance and per slot): a README
# figure that needs another setting would be a defect of the default.
DAEMON_ENV: dict[str, str] = {}


@dataclass(frozen=True)
class Upload:
    """A multipart body built once, so the client's CPU goes to sending, not to building."""

    label: str
    photo: bytes
    body: bytes
    content_type: str


def prepare(label: str, photo: bytes) -> Upload:
    body, content_type = build_dslr_body(photo, password=INGEST_PASSWORD)
    return Upload(label, photo, body, content_type)


@dataclass(frozen=True)
class Shot:
    """One ingest as the booth saw it."""

    status: int | None  # None: no HTTP answer at all (``error`` says why)
    elapsed: float  # connect -> last response byte, seconds
    wall_end: float  # time.time() at the last response byte
    job_id: str | None = None
    body_size: int = 0
    error: str | None = None
    daemon_ms: float | None = None  # the daemon's own time (Server-Timing), provider excluded

    @property
    def outcome(self) -> str:
        return str(self.status) if self.status is not None else f"error_{self.error}"


@dataclass(frozen=True)
class Bench:
    daemon: BenchDaemon
    report: Report
    quick: bool
    small: Upload  # ~52 KB: what DSLR Remote Pro sends with its default downscale
    large: Upload  # ~1 MB, 2000x1333


async def shoot(
    daemon: BenchDaemon, slot: str, upload: Upload, timeout: float = 120.0, path: str | None = None
) -> Shot:
    try:
        response = await dslr_upload(
            daemon.host,
            daemon.port,
            slot,
            body=upload.body,
            content_type=upload.content_type,
            timeout=timeout,
            path=path,
        )
    except (DslrConnectionError, OSError, trio.TooSlowError) as exc:
        return Shot(None, math.nan, time.time(), error=type(exc).__name__)
    wall_end = time.time()
    assert response is not None  # close_after is not used
    return Shot(
        response.status,
        response.elapsed,
        wall_end,
        response.headers.get("x-job-id"),
        len(response.body),
        daemon_ms=server_timing(response.headers.get("server-timing", ""), "daemon"),
    )


async def burst(
    daemon: BenchDaemon, slot: str, upload: Upload, timeout: float, path: str | None = None
) -> list[Shot]:
    """CONCURRENCY ingests started at once; all of their shots."""
    shots: list[Shot] = []

    async def one() -> None:
        shots.append(await shoot(daemon, slot, upload, timeout, path))

    async with trio.open_nursery() as nursery:
        for _ in range(CONCURRENCY):
            nursery.start_soon(one)
    return shots


def report_outcomes(report: Report, name: str, shots: Sequence[Shot], expected: int = 200) -> None:
    """How many answers were not ``expected``, then each kind: by status or client error."""
    counts = Counter(shot.outcome for shot in shots if shot.status != expected)
    report.add(f"{name}_non{expected}", sum(counts.values()), "requests")
    for outcome, count in sorted(counts.items()):
        report.add(f"{name}_{outcome}", count, "requests")


# -- phases -------------------------------------------------------------------------------


async def phase_floor(bench: Bench) -> None:
    """0. The harness floor: the same client and requests against Hypercorn with an empty app
    (floor_app.py).  What the HTTP stack and the client cost by themselves on this machine."""
    with BenchDaemon(module="tests.bench.floor_app") as floor:
        for upload in (bench.large, bench.small):
            for _ in range(WARMUP):
                await shoot(floor, FAST_SLOT, upload, path="/echo")
            shots = [
                await shoot(floor, FAST_SLOT, upload, path="/echo") for _ in range(OVERHEAD_COUNT)
            ]
            bench.report.latency(
                f"floor_overhead_{upload.label}",
                [s.elapsed for s in shots if s.status == 200],
                points=(50, 99),
            )
        shots = await burst(floor, HANG_SLOT, bench.small, SHORT_DEADLINE + 30, path="/hang")
        late = [s.elapsed - SHORT_DEADLINE for s in shots if s.status == 504]
        bench.report.latency("floor_deadline_burst_504_lateness", late, points=(0, 50, 100))


async def phase_overhead(bench: Bench, upload: Upload) -> list[Shot]:
    """1. Sequential ingests to the zero-delay slot: client latency is the daemon's overhead."""
    for _ in range(WARMUP):
        await shoot(bench.daemon, FAST_SLOT, upload)
    shots = [await shoot(bench.daemon, FAST_SLOT, upload) for _ in range(OVERHEAD_COUNT)]
    good = [s for s in shots if s.status == 200 and s.body_size == len(upload.photo)]
    name = f"overhead_{upload.label}"
    bench.report.latency(name, [s.elapsed for s in good], points=(50, 95, 99))
    daemon_ms = [s.daemon_ms / 1000 for s in good if s.daemon_ms is not None]
    if daemon_ms:  # the same requests, timed inside the daemon (arrival -> response ready)
        bench.report.latency(f"{name}_daemon_side", daemon_ms, points=(50, 95, 99))
    report_outcomes(bench.report, name, shots)
    if len(good) != sum(s.status == 200 for s in shots):
        bench.report.add(f"{name}_wrong_body", len(shots) - len(good), "requests")
    return good


def phase_completion_to_response(bench: Bench, label: str, shots: Sequence[Shot]) -> None:
    """2. Last response byte (client wall clock) minus the job's finalized_at (daemon's)."""
    sample = [s for s in shots if s.job_id][-COMPLETION_SAMPLE:]
    marks = ",".join("?" * len(sample))
    rows = bench.daemon.query(
        f"SELECT id, finalized_at FROM job WHERE id IN ({marks})",  # only "?" marks
        *(s.job_id for s in sample),
    )
    finalized = {job_id: at for job_id, at in rows if at is not None}
    gaps = [s.wall_end - finalized[s.job_id] for s in sample if s.job_id in finalized]
    name = f"completion_to_response_{label}"
    bench.report.latency(name, gaps, points=(50, 95))
    bench.report.add(f"{name}_samples", len(gaps), "requests")


async def poll_health(
    url: str,
    latencies: list[float],
    failures: list[str],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """GET /healthz every HEALTH_INTERVAL on one keep-alive connection, until cancelled; from
    a process of its own (``health_poller.py``: a load balancer's view, not this loop's).
    With ``nursery.start``, returns once the poller runs.  A poller that dies is reported in
    ``failures``."""
    command = [sys.executable, "-m", "tests.bench.health_poller", url, str(HEALTH_INTERVAL)]
    process = await trio.lowlevel.open_process(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO
    )
    assert process.stdin is not None and process.stdout is not None
    output = bytearray()
    try:
        while b"\n" not in output:  # "ready": the interpreter and httpx are loaded
            chunk = await process.stdout.receive_some()
            if not chunk:
                break
            output += chunk
        del output[: output.find(b"\n") + 1]
        task_status.started()
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(15):
                await process.stdin.aclose()  # the poller's signal to stop and report
                async for chunk in process.stdout:
                    output += chunk
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        try:
            report = json.loads(output)
        except ValueError:
            report = {"failures": [f"health_poller exited {process.returncode}"]}
        latencies.extend(report.get("latencies", []))
        failures.extend(report.get("failures", []))


async def phase_throughput(bench: Bench, upload: Upload, seconds: float) -> None:
    """3. CONCURRENCY booths shooting back to back at the zero-delay slot, /healthz aside."""
    shots: list[Shot] = []
    health: list[float] = []
    health_failures: list[str] = []

    async def booth(stop_at: float) -> None:
        while trio.current_time() < stop_at:
            shots.append(await shoot(bench.daemon, FAST_SLOT, upload, timeout=60))

    async with trio.open_nursery() as nursery:
        await nursery.start(poll_health, bench.daemon.url, health, health_failures)
        start = trio.current_time()
        async with trio.open_nursery() as booths:
            for _ in range(CONCURRENCY):
                booths.start_soon(booth, start + seconds)
        elapsed = trio.current_time() - start
        nursery.cancel_scope.cancel()

    name = f"throughput_{upload.label}"
    ok = [s for s in shots if s.status == 200]
    bench.report.add(f"{name}_duration", elapsed, "s")
    bench.report.add(name, len(ok) / elapsed, "req/s")
    report_outcomes(bench.report, name, shots)
    bench.report.latency(f"{name}_latency", [s.elapsed for s in ok], points=(50, 95, 100))
    bench.report.latency(f"healthz_under_load_{upload.label}", health, points=(50, 95, 100))
    if health_failures:
        bench.report.add(f"healthz_under_load_{upload.label}_failed", len(health_failures))


async def phase_slow_provider(bench: Bench, seconds: float) -> None:
    """4. CONCURRENCY ingests to a provider taking ``seconds``: not serialized ⇒ wall ≈ seconds."""
    bench.daemon.set_slot(SLOW_SLOT, "script", "echo", seconds=seconds)
    start = trio.current_time()
    shots = await burst(bench.daemon, SLOW_SLOT, bench.large, timeout=seconds + 60)
    wall = trio.current_time() - start
    name = f"slow_provider_{seconds:g}s"
    bench.report.add(f"{name}_wall_for_{CONCURRENCY}", wall, "s", digits=2)
    bench.report.add(f"{name}_200", sum(s.status == 200 for s in shots), f"of {CONCURRENCY}")
    report_outcomes(bench.report, name, shots)
    bench.report.add("rss_after_slow_provider", bench.daemon.memory_mib()["VmRSS"], "MiB")


async def phase_deadline(bench: Bench) -> None:
    """5. A hung provider and a 2 s deadline: how late after 2.0 s each 504 arrives.

    First a few lone requests (the floor), then the burst of CONCURRENCY the spec asks for.
    """
    bench.daemon.set_slot(HANG_SLOT, "script", "hang")
    bench.daemon.set_deadline(SHORT_DEADLINE)
    try:
        timeout = SHORT_DEADLINE + 30
        single = [
            await shoot(bench.daemon, HANG_SLOT, bench.small, timeout)
            for _ in range(2 if bench.quick else 5)
        ]
        burst_start = time.time()
        shots = await burst(bench.daemon, HANG_SLOT, bench.small, timeout)
    finally:
        bench.daemon.set_deadline(DEFAULT_DEADLINE)
    for name, run in (("deadline_single", single), ("deadline_burst", shots)):
        late = [s.elapsed - SHORT_DEADLINE for s in run if s.status == 504]
        bench.report.add(f"{name}_504", len(late), f"of {len(run)}")
        bench.report.latency(f"{name}_504_lateness", late, points=(0, 50, 100))
        report_outcomes(bench.report, name, run, expected=504)
    # Where the burst's lateness goes: the daemon starts each deadline at the request's arrival
    # (job.created_at), settles the timeout at finalized_at (the settle, not the later commit).
    rows = bench.daemon.query(
        "SELECT created_at, finalized_at - deadline FROM job WHERE slot_id=? AND created_at>=?",
        HANG_SLOT,
        burst_start,
    )
    arrivals = [created - burst_start for created, _ in rows]
    lags = [lag for _, lag in rows if lag is not None]
    bench.report.latency("deadline_burst_server_arrival", arrivals, points=(50, 100))
    bench.report.latency("deadline_burst_finalized_after_deadline", lags, points=(50, 100))


async def phase_public_download(bench: Bench, photo: bytes, seconds: float) -> None:
    """7. One ~2 MB result fetched back to back over a keep-alive connection."""
    shot = await shoot(bench.daemon, FAST_SLOT, prepare("2mb", photo))
    if shot.status != 200 or shot.job_id is None:
        bench.report.add("public_download_setup_failed", shot.outcome)
        return
    done = 0
    failures: Counter[int] = Counter()
    async with httpx.AsyncClient(base_url=bench.daemon.url, timeout=30) as client:
        start = trio.current_time()
        while trio.current_time() - start < seconds:
            response = await client.get(f"/public/results/{shot.job_id}")
            if response.status_code == 200 and response.content == photo:
                done += 1
            else:
                failures[response.status_code] += 1
        elapsed = trio.current_time() - start
    bench.report.add("public_download_size", len(photo) / 1e6, "MB", digits=2)
    bench.report.add("public_download", done / elapsed, "req/s")
    bench.report.add("public_download_throughput", done * len(photo) / 1e6 / elapsed, "MB/s")
    for status, count in sorted(failures.items()):
        bench.report.add(f"public_download_{status}", count, "requests")


async def sample_rss(daemon: BenchDaemon, peak: list[float]) -> None:
    """Keep ``peak[0]`` at the highest VmRSS seen, every 20 ms, until cancelled."""
    while True:
        peak[0] = max(peak[0], daemon.memory_mib()["VmRSS"])
        await trio.sleep(0.02)


async def phase_big_uploads(bench: Bench) -> None:
    """8. CONCURRENCY 19 MB uploads in flight at once (3 s provider): the daemon's RSS peak."""
    upload = prepare("19mb", make_jpeg(6000, 4000, target_bytes=19_000_000))
    bench.daemon.set_slot(BIG_SLOT, "script", "echo", seconds=BIG_ECHO_SECONDS)
    peak = [0.0]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample_rss, bench.daemon, peak)
        start = trio.current_time()
        shots = await burst(bench.daemon, BIG_SLOT, upload, timeout=120)
        wall = trio.current_time() - start
        nursery.cancel_scope.cancel()
    bench.report.add("big_uploads_photo_size", len(upload.photo) / 1e6, "MB", digits=2)
    bench.report.add("big_uploads_wall", wall, "s", digits=2)
    ok = sum(s.status == 200 and s.body_size == len(upload.photo) for s in shots)
    bench.report.add("big_uploads_200", ok, f"of {CONCURRENCY}")
    report_outcomes(bench.report, "big_uploads", shots)
    bench.report.add("big_uploads_rss_peak_sampled", peak[0], "MiB")


async def run_phases(bench: Bench, *, big: bool) -> None:
    report = bench.report
    report.add("photo_small", len(bench.small.photo), "bytes")
    report.add("photo_large", len(bench.large.photo), "bytes")
    await phase_floor(bench)
    for upload in (bench.large, bench.small):
        shots = await phase_overhead(bench, upload)
        phase_completion_to_response(bench, upload.label, shots)
    await phase_throughput(bench, bench.small, 5.0 if bench.quick else 20.0)
    await phase_throughput(bench, bench.large, 5.0 if bench.quick else 10.0)
    await phase_slow_provider(bench, 5.0 if bench.quick else 20.0)
    await phase_deadline(bench)
    await phase_public_download(
        bench, make_jpeg(2000, 1333, target_bytes=2_000_000), DOWNLOAD_SECONDS
    )
    report.add("peak_rss", bench.daemon.memory_mib()["VmHWM"], "MiB")  # 6.
    if big:
        await phase_big_uploads(bench)
        report.add("peak_rss_end", bench.daemon.memory_mib()["VmHWM"], "MiB")
    report.add("jobs_unfinalized_at_end", await settled_unfinalized(bench.daemon), "jobs")


async def settled_unfinalized(daemon: BenchDaemon, patience: float = 10.0) -> int:
    """Unfinalized jobs once things settle: expected 0 (nothing lost, nothing stuck)."""
    with trio.move_on_after(patience):
        while daemon.query("SELECT count(*) FROM job WHERE is_finalized=0")[0][0]:
            await trio.sleep(0.1)
    return int(daemon.query("SELECT count(*) FROM job WHERE is_finalized=0")[0][0])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="5 s load phases (about 1 min)")
    parser.add_argument("--skip-big", action="store_true", help="skip the 30 x 19 MB phase")
    args = parser.parse_args(argv)
    # Ctrl-C and SIGTERM both take Trio's KeyboardInterrupt path, so the daemon is stopped on
    # the way out. SIGINT is re-armed because a shell starting us with "&" leaves it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda _sig, _frame: os.kill(os.getpid(), signal.SIGINT))

    # Photos first: the client's own CPU work must not overlap the measurements.
    small = prepare("52kb", make_jpeg(800, 533, quality=80, target_bytes=52_000))
    large = prepare("1mb", make_jpeg(2000, 1333, target_bytes=1_000_000))
    report = Report()
    interrupted = False
    try:
        with BenchDaemon(**DAEMON_ENV) as daemon:
            bench = Bench(daemon, report, args.quick, small, large)
            try:
                trio.run(lambda: run_phases(bench, big=not args.skip_big))
            finally:
                report.add("daemon_exit_status", str(daemon.stop()))
                for line in daemon.log_problems()[:20]:
                    print(f"daemon log: {line}", file=sys.stderr)
    except* KeyboardInterrupt:  # Trio may deliver it inside an exception group
        interrupted = True
    if interrupted:
        print("interrupted; the daemon was stopped", file=sys.stderr)
        return 130
    print(machine_line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
