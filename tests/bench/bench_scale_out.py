"""Scale-out benchmark: one instance vs two behind nginx, on one PostgreSQL, on their defaults.

``PYTHONPATH=. .venv/bin/python -m tests.bench.bench_scale_out [--quick] [--runs N]
[--media-backend local|s3]``

The several-instances issue's bars on this 2-core machine.  Instance A is pinned to CPU 0 and
instance B to CPU 1 ("each on its own core"); everything else floats over both cores and so
shares them with the instances: this process (the DSLR-Remote-Pro-exact client and the fake
Gemini, under one Trio loop), the ``/healthz`` poller of ``bench_path`` (a process of its own),
Debian's nginx (the shipped example, round robin, one worker), the PostgreSQL cluster and,
with ``--media-backend s3``, SeaweedFS.  Every phase prints the CPU seconds each of them
used, and what other processes of the machine used (``bench_path``'s check).

Both instances run on their default settings (log level ``info``) with one database, the same
keys, ``trusted_proxies`` for nginx, and the media in one shared directory (``local``) or one
fresh bucket (``s3``).  Slots slot-001..015 are ``gemini/edit`` keeping the fake's PNG as it is,
as in ``bench_path``.  Per run (a fresh database each):

1. start A, restart it (what a box runs all day), start B; 2 s later ``rss_idle_{a,b}``; then
   ``idle_cpu_{a,b}`` (and the PostgreSQL server's) over 30 s (10 s with ``--quick``);
2. serial uploads, tiny then 1.5 MB result: through nginx (``nginx_{tiny,big}``, alternating
   between the instances) and straight to A (``direct_{tiny,big}``): ``bench_path``'s overhead
   figures and the CPU each process spent per upload;
3. ``two``: c=30 over the 15 slots through nginx to both, tiny result: throughput, latency,
   non-200s, ``/healthz`` of A polled directly (nginx's plain-HTTP port serves only the booth
   routes), CPU seconds per process; the RSS peak of each instance;
4. ``one``: B stopped, nginx restarted with A alone, the same load.

The ratio two/one compares two load phases through nginx: the only difference is B.  The floor
(``bench_path``'s, on CPU 0) comes first, for the ``x_floor`` ratios.  Then a summary against
the bars and one ``machine:`` line; the exit status is 0 (130 on Ctrl-C).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from tests.bench.bench_path import (
    BAR_HEALTHZ_P95_MS,
    BAR_P99_OVER_P50,
    BAR_PG_IDLE_CPU,
    BAR_RSS_IDLE,
    BAR_RSS_LOAD,
    BAR_THROUGHPUT,
    BAR_X_FLOOR,
    IDLE_SECONDS,
    SETTLE,
    WARMUP,
    Bench,
    Figures,
    PathGemini,
    Usage,
    allowed_cpus,
    configure_slots,
    drive_load,
    finish,
    make_bench,
    phase_floor,
    postmaster_pid,
    print_other_load,
    report_foreign,
    report_load,
    report_overhead,
    run_with_fake,
    serial_uploads,
)
from tests.bench.bench_support import (
    BenchDaemon,
    Report,
    cpu_busy_seconds,
    cpu_seconds,
    tree_cpu_seconds,
)
from tests.support.nginx import Nginx, nginx_binary, run_nginx
from tests.support.postgres import PostgresCluster
from tests.support.s3 import SeaweedS3

CPUS = {"a": 0, "b": 1}  # instance -> the core it is pinned to
BAR_TWO_OVER_ONE = 1.7
KEYS = {  # the same on both instances (the database keeps their fingerprint)
    "PHOTOCHANGER_JWT_SECRET": "bench-scale-out-jwt-secret-shared-by-both-0123456789",
    "PHOTOCHANGER_SECRET_KEY": base64.b64encode(b"b" * 32).decode(),
}
HOST = "127.0.0.1"


# -- CPU per process -----------------------------------------------------------------------


class ProcessMeter:
    """CPU seconds of each named process (tree) and of each core between creation and read."""

    def __init__(self, sources: dict[str, Callable[[], float]]) -> None:
        self.sources = sources
        self._start = self._snapshot()

    def _snapshot(self) -> tuple[float, dict[str, float], dict[int, float]]:
        return (
            time.monotonic(),
            {name: read() for name, read in self.sources.items()},
            cpu_busy_seconds(),
        )

    def read(self) -> tuple[float, dict[str, float], dict[int, float]]:
        """(wall seconds, CPU seconds per name, busy seconds per core)."""
        (t0, own0, busy0), (t1, own1, busy1) = self._start, self._snapshot()
        return (
            t1 - t0,
            {name: own1[name] - own0[name] for name in own1},
            {cpu: busy1[cpu] - busy0.get(cpu, 0.0) for cpu in busy1},
        )


@dataclass
class Cluster:
    """What runs during a run: the instances, the proxy, and where their CPU time is read."""

    bench: Bench
    fake: PathGemini
    a: BenchDaemon
    b: BenchDaemon
    b_running: bool = True
    nginx: Nginx | None = None

    def meter(self) -> ProcessMeter:
        sources: dict[str, Callable[[], float]] = {"a": lambda: cpu_seconds(self.a.pid)}
        if self.b_running:
            sources["b"] = lambda: cpu_seconds(self.b.pid)
        if self.nginx is not None:
            master = int((self.nginx.directory / "nginx.pid").read_text().split()[0])
            sources["nginx"] = lambda: tree_cpu_seconds(master)
        if self.bench.pg is not None:
            pg_pid = postmaster_pid(self.bench.pg)
            sources["postgresql"] = lambda: tree_cpu_seconds(pg_pid)
        if self.bench.s3 is not None and self.bench.s3.proc is not None:
            weed = self.bench.s3.proc.pid
            sources["seaweedfs"] = lambda: tree_cpu_seconds(weed)
        sources["client_fake"] = time.process_time  # this process: client, fake, poller
        return ProcessMeter(sources)


def report_cpu(
    bench: Bench, figures: Figures, name: str, meter: ProcessMeter, uploads: int
) -> None:
    """CPU seconds per process over a phase (and per upload), then other processes' share."""
    wall, used, busy = meter.read()
    for process, seconds in used.items():
        share = seconds / wall * 100
        figures.add(f"{name}_cpu_{process}", seconds, f"s ({share:.0f}% of a core)", digits=2)
        if uploads:
            figures.add(f"{name}_cpu_per_upload_{process}", seconds / uploads * 1000, "ms")
    instances = used.get("a", 0.0) + used.get("b", 0.0)
    outside = sum(v for k, v in used.items() if k not in ("a", "b", "client_fake"))
    usage = Usage(wall, instances, used["client_fake"], outside, busy)
    bench.foreign[f"{figures.prefix} {name}"] = report_foreign(figures, name, usage, False)


# -- the run --------------------------------------------------------------------------------


@contextlib.contextmanager
def balancer(ports: Sequence[int], directory: Path) -> Iterator[Nginx]:
    """nginx (the shipped example) in front of ``ports``, round robin, until the block ends."""
    proxy = run_nginx(ports, directory)
    try:
        yield next(proxy)
    finally:
        next(proxy, None)  # the generator's ``finally`` stops nginx


def instance_env(bench: Bench, fake: PathGemini, url: str, media: str) -> dict[str, str]:
    """Both instances' settings: defaults, but one database, one media store, the same keys."""
    env = {
        "PHOTOCHANGER_GEMINI_BASE_URL": fake.url,
        "GEMINI_API_KEY": fake.api_key,
        "PHOTOCHANGER_LOG_LEVEL": "info",  # the daemon's default (BenchDaemon says warning)
        "PHOTOCHANGER_DATABASE_URL": url,
        "PHOTOCHANGER_TRUSTED_PROXIES": "127.0.0.1/32",
        **KEYS,
    }
    if bench.s3 is not None:
        env.update(bench.s3.env())
        env.update({f"PHOTOCHANGER_{k}": v for k, v in bench.s3.settings(media).items()})
    else:
        env["PHOTOCHANGER_MEDIA_DIR"] = media
    return env


async def phase_idle(cluster: Cluster, figures: Figures) -> None:
    """Both instances just started (A restarted): RSS, then CPU over the idle phase."""
    bench = cluster.bench
    await trio.sleep(SETTLE)
    for name, daemon in (("a", cluster.a), ("b", cluster.b)):
        figures.add(f"cpus_{name}", allowed_cpus(daemon.pid))
        memory = daemon.memory_mib()
        figures.add(f"rss_idle_{name}", memory["VmRSS"], "MiB (ready + 2 s)")
        figures.add(f"rss_startup_peak_{name}", memory["VmHWM"], "MiB (VmHWM)")
    meter = cluster.meter()
    await trio.sleep(bench.idle_seconds)
    wall, used, _ = meter.read()
    per = f"s per {IDLE_SECONDS:.0f} s"
    for process in ("a", "b", "postgresql"):
        if process in used:
            figures.add(f"idle_cpu_{process}", used[process] * IDLE_SECONDS / wall, per, digits=2)


async def phase_serial(cluster: Cluster, figures: Figures, route: str, size: str) -> None:
    """Serial uploads through nginx or straight to A: overhead and CPU per upload."""
    bench, fake = cluster.bench, cluster.fake
    assert cluster.nginx is not None
    port = cluster.nginx.http_port if route == "nginx" else cluster.a.port
    fake.result = bench.tiny if size == "tiny" else bench.big
    await serial_uploads(HOST, port, bench.upload, fake, WARMUP)
    meter = cluster.meter()
    samples = await serial_uploads(HOST, port, bench.upload, fake)
    name = report_overhead(bench, figures, f"{route}_{size}", fake.result, samples)
    report_cpu(bench, figures, name, meter, len(samples))


async def phase_c30(cluster: Cluster, figures: Figures, label: str) -> None:
    """c=30 over the 15 slots through nginx, tiny result."""
    bench, fake = cluster.bench, cluster.fake
    assert cluster.nginx is not None
    fake.result = bench.tiny
    meter = cluster.meter()
    load = await drive_load(
        HOST, cluster.nginx.http_port, cluster.a.url, bench.upload, fake, bench.load_seconds
    )
    name = report_load(figures, label, fake.result, load)
    report_cpu(bench, figures, name, meter, len(load.samples))


async def run_once(bench: Bench, fake: PathGemini, run: int, runs: int, work: Path) -> None:
    """One run on a fresh database: idle, serial, then two instances and one under load."""
    assert bench.pg is not None
    prefix = "scale" if runs == 1 else f"scale_r{run}"
    figures = Figures(bench, prefix, ("scale", run))
    database = f"bench_scale_{run}_{os.getpid()}"
    url = bench.pg.create_database(database)
    if bench.s3 is not None:
        media = bench.s3.create_bucket(f"bench-scale-{run}-{os.getpid()}")
    else:
        media = str(work / f"media-{run}")
        os.makedirs(media)
    env = instance_env(bench, fake, url, media)
    print(f"-- {prefix}: instance a on CPU {CPUS['a']}, b on CPU {CPUS['b']}", flush=True)
    # Started from inside the Trio loop, blocking (~1 s each), like bench_path's daemon.
    with (
        BenchDaemon(cpus={CPUS["a"]}, PHOTOCHANGER_INSTANCE_ID="a", **env) as a,
        contextlib.ExitStack() as stack,
    ):
        a.restart()  # the first start migrated and hashed the initial passwords
        b = stack.enter_context(BenchDaemon(cpus={CPUS["b"]}, PHOTOCHANGER_INSTANCE_ID="b", **env))
        cluster = Cluster(bench, fake, a, b)
        try:
            await phase_idle(cluster, figures)
            configure_slots(a, bench.pg, database)  # both hear the NOTIFY
            with balancer([a.port, b.port], work / f"nginx-two-{run}") as cluster.nginx:
                for size in ("tiny", "big"):
                    for route in ("nginx", "direct"):
                        await phase_serial(cluster, figures, route, size)
                await phase_c30(cluster, figures, "two")
            for name, daemon in (("a", a), ("b", b)):
                figures.add(f"rss_load_peak_{name}", daemon.memory_mib()["VmHWM"], "MiB (VmHWM)")
            with trio.CancelScope(shield=True):
                figures.add("b_exit_status", str(await trio.to_thread.run_sync(b.stop)))
            cluster.b_running = False
            with balancer([a.port], work / f"nginx-one-{run}") as cluster.nginx:
                await phase_c30(cluster, figures, "one")
            ratio = figures.values["throughput_two"] / figures.values["throughput_one"]
            figures.add("throughput_two_over_one", ratio, "x", digits=2)
        finally:
            with trio.CancelScope(shield=True):  # the fake still serves: in-flight jobs drain
                for name, daemon in (("a", a), ("b", b)):
                    status = await trio.to_thread.run_sync(daemon.stop)
                    figures.add(f"{name}_exit_status", str(status))
                    for line in daemon.log_problems()[:20]:
                        print(f"{prefix} {name} log: {line}", file=sys.stderr)
    bench.pg.drop_database(database)


# -- summary --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    label: str
    figure: str
    limit: float | None = None  # None: shown, no bar
    unit: str = ""
    at_least: bool = False  # the bar is a minimum


def rows() -> list[Row]:
    tiny, big, p99 = BAR_X_FLOOR["tiny"], BAR_X_FLOOR["big"], BAR_P99_OVER_P50
    out = [
        Row(
            "throughput c=30, two instances",
            "throughput_two",
            BAR_THROUGHPUT["postgresql"],
            "req/s",
            True,
        ),
        Row("throughput c=30, one instance", "throughput_one", None, "req/s"),
        Row("two / one", "throughput_two_over_one", BAR_TWO_OVER_ONE, "x", True),
    ]
    for phase in ("two", "one"):
        out += [
            Row(f"latency p50, {phase}", f"throughput_{phase}_latency_p50", None, "ms"),
            Row(f"latency p95, {phase}", f"throughput_{phase}_latency_p95", None, "ms"),
            Row(f"non-200, {phase}", f"throughput_{phase}_non200", 0, "req"),
            Row(
                f"healthz p95 (A), {phase}",
                f"healthz_under_load_{phase}_p95",
                BAR_HEALTHZ_P95_MS,
                "ms",
            ),
        ]
    for route in ("nginx", "direct"):
        out += [
            Row(f"overhead tiny p50, {route}", f"overhead_{route}_tiny_p50", None, "ms"),
            Row(f"  / floor p50, {route}", f"overhead_{route}_tiny_x_floor", tiny, "x"),
            Row(f"  p99 / p50, {route}", f"overhead_{route}_tiny_p99_over_p50", p99, "x"),
            Row(f"overhead 1.5MB p50, {route}", f"overhead_{route}_big_p50", None, "ms"),
            Row(f"  / floor p50, {route}", f"overhead_{route}_big_x_floor", big, "x"),
            Row(f"  p99 / p50, {route}", f"overhead_{route}_big_p99_over_p50", p99, "x"),
        ]
    for name in ("a", "b"):
        out += [
            Row(f"idle CPU per 30 s, {name}", f"idle_cpu_{name}", BAR_PG_IDLE_CPU, "s"),
            Row(f"RSS idle, {name}", f"rss_idle_{name}", BAR_RSS_IDLE, "MiB"),
            Row(f"RSS peak after the loads, {name}", f"rss_load_peak_{name}", BAR_RSS_LOAD, "MiB"),
        ]
    return out


def print_summary(bench: Bench) -> None:
    runs = sorted(run for _, run in bench.results)
    if not runs:
        return
    print("summary (figure vs the issue's bar; '!' marks a value outside it):", flush=True)
    print(f"  {'figure':<34} {'bar':>12} " + " ".join(f"{'run ' + str(r):>10}" for r in runs))
    for row in rows():
        bar = (
            "-"
            if row.limit is None
            else f"{'>=' if row.at_least else '<='} {row.limit:g} {row.unit}"
        )
        cells = []
        for run in runs:
            value = bench.results[("scale", run)].get(row.figure, math.nan)
            outside = row.limit is not None and (
                value < row.limit if row.at_least else value > row.limit
            )
            text = (
                f"{value:.0f}"
                if row.unit == "req"
                else f"{value:.2f}"
                if abs(value) < 10
                else f"{value:.1f}"
            )
            cells.append(f"{text + ('!' if outside else ' '):>10}")
        print(f"  {row.label:<34} {bar:>12} " + " ".join(cells))
    for phase in ("two", "one"):
        for run in runs:
            values = bench.results[("scale", run)]
            marker = f"throughput_{phase}_cpu_"
            spent = {
                k[len(marker) :]: v
                for k, v in values.items()
                if k.startswith(marker) and not k.startswith(marker + "per_upload")
            }
            listed = ", ".join(f"{k} {v:.1f}" for k, v in spent.items())
            other = values.get(f"throughput_{phase}_foreign_all_cpus", math.nan)
            print(
                f"  CPU s during c=30 {phase}, run {run}: {listed}; "
                f"other processes {other:.0f}% of a core"
            )
    print(f"  (floor p50 {bench.floor_p50 * 1000:.1f} ms; MiB compared with the bars' MB)")
    print(
        "  (A pinned to CPU 0, B to CPU 1; client, fake Gemini, nginx, PostgreSQL"
        f"{', SeaweedFS' if bench.s3 else ''} float over both: they share the instances' cores)"
    )
    print_other_load(bench)


# -- main -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one run, 5 s load, 10 s idle")
    parser.add_argument(
        "--runs", type=int, default=None, help="runs, each on a fresh database (default 2, quick 1)"
    )
    parser.add_argument(
        "--media-backend",
        choices=("local", "s3"),
        default="local",
        help="the instances' media: one shared directory, or one SeaweedFS bucket",
    )
    args = parser.parse_args(argv)
    runs = args.runs if args.runs is not None else (1 if args.quick else 2)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda _sig, _frame: os.kill(os.getpid(), signal.SIGINT))
    try:
        nginx_binary()
    except pytest.skip.Exception as exc:
        print(exc.msg, file=sys.stderr)
        return 2
    if not set(CPUS.values()) <= os.sched_getaffinity(0):
        print(f"pinning: NOT possible (CPUs {sorted(os.sched_getaffinity(0))})", file=sys.stderr)
    print(
        f"pinning: instance a on CPU {CPUS['a']}, b on CPU {CPUS['b']} (the floor on CPU 0); "
        "client, fake Gemini, nginx, PostgreSQL, SeaweedFS not pinned (both cores)",
        flush=True,
    )
    report = Report()
    bench = make_bench(
        report, quick=args.quick, profile=None, pinned=False, backends=(args.media_backend,)
    )
    work = Path(tempfile.mkdtemp(prefix="photochanger-bench-scale-"))

    async def phases(fake: PathGemini) -> None:
        await phase_floor(bench)
        for number in range(1, runs + 1):
            await run_once(bench, fake, number, runs, work)

    interrupted = False
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(shutil.rmtree, work, True)
            bench.pg = stack.enter_context(PostgresCluster())
            if args.media_backend == "s3":
                bench.s3 = stack.enter_context(SeaweedS3())
            interrupted = trio.run(run_with_fake, bench, phases)
    except* KeyboardInterrupt:
        interrupted = True
    return finish(interrupted, lambda: print_summary(bench), "the daemons, nginx and PostgreSQL")


if __name__ == "__main__":
    sys.exit(main())
