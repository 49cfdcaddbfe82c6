"""Provider-driver benchmark: the daemon around each real driver, against the vendor fakes.

``PYTHONPATH=. .venv/bin/python -m tests.bench.bench_providers [--quick]``

Runs the three fake vendors (``tests/fakes``: Gemini, Turbotext, OpenAI images) on loopback in
this process under Trio, and the real daemon (``tests.support.run_daemon``) as a subprocess
pointed at them with the ``PHOTOCHANGER_*_BASE_URL`` settings and the fakes' API keys.  Prints
one figure per line (``name: value unit``), then one ``machine:`` line.  Phases:

1. ``{gemini,turbotext,openai}_*``: 100 sequential ingests (30 with ``--quick``, after 3
   warm-ups) of the ~52 KB photo against a zero-delay fake: client latency, the daemon's own
   time (``Server-Timing: daemon``) and the provider time (``Server-Timing: provider``).
2. ``gemini_no_image_*``: 10 ingests, each scripted ``no_image, no_image, success``.
3. ``turbotext_job_*``: one Turbotext job that the vendor finishes after ~20 s (5 s with
   ``--quick``), polled at the production interval of 2.5 s, after one warm-up ingest.  The
   poll interval is static configuration, so this phase runs on a second daemon, started after
   the first one stopped.
4. ``gemini_slow_burst_*``: 30 booths at once on Gemini taking ~20 s per photo (5 s with
   ``--quick``), on the daemon's default settings (no ``provider_concurrency`` cap, 30 workers,
   ``max_in_flight`` 30): wall time for all 30, how many got 200, the slowest client latency.
   With the former default cap of 10 the last third got 504 at 48 s.

Slots: slot-005 ``gemini/edit``, slot-006 ``turbotext/image2image``, slot-007 ``openai/edit``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from tests.bench.bench_ingest import Upload, prepare
from tests.bench.bench_support import (
    BenchDaemon,
    Report,
    machine_line,
    percentile,
    server_timing,
)
from tests.fakes import (
    FakeGemini,
    FakeOpenAIImages,
    FakeServer,
    FakeTurbotext,
    RecordedRequest,
    TurbotextJob,
    outcome,
)
from tests.support.dslr import DslrConnectionError, dslr_upload
from tests.support.images import make_jpeg

GEMINI_SLOT = "slot-005"
TURBOTEXT_SLOT = "slot-006"
OPENAI_SLOT = "slot-007"

WARMUP = 3
COUNT = 100
QUICK_COUNT = 30
NO_IMAGE_JOBS = 10
FAST_POLL = 0.1  # Turbotext poll interval of phases 1-2
PRODUCTION_POLL = 2.5  # the daemon's default turbotext_poll_interval_seconds
LONG_JOB = 20.0
QUICK_LONG_JOB = 5.0
BURST = 30  # booths shooting at once (the default max_in_flight)
TIMEOUT = 120.0


@dataclass(frozen=True)
class Fakes:
    gemini: FakeGemini
    turbotext: FakeTurbotext
    openai: FakeOpenAIImages

    def all(self) -> tuple[FakeServer, ...]:
        return (self.gemini, self.turbotext, self.openai)


@dataclass(frozen=True)
class Sample:
    """One ingest: what the booth saw, what the daemon said, what the fake saw."""

    status: int | None  # None: no HTTP answer (``error`` says why)
    elapsed: float  # client: TCP connect -> last response byte, seconds
    daemon_ms: float | None  # Server-Timing daemon (the daemon's own time, provider excluded)
    provider_ms: float | None  # Server-Timing provider (the driver's process() call)
    requests: tuple[RecordedRequest, ...]  # the fake's requests made during this ingest
    jobs: tuple[TurbotextJob, ...] = ()  # Turbotext only: the queues created
    snippet: str = ""  # start of the body when not 200, or the client error

    @property
    def fake_seconds(self) -> float:
        """Time inside the fake: request head arrived -> last answer byte, summed."""
        return sum(
            r.responded_at - r.received_at for r in self.requests if r.responded_at is not None
        )


async def ingest(daemon: BenchDaemon, slot: str, upload: Upload, fake: FakeServer) -> Sample:
    before = len(fake.requests)
    jobs_before = len(fake.jobs) if isinstance(fake, FakeTurbotext) else 0
    try:
        response = await dslr_upload(
            daemon.host,
            daemon.port,
            slot,
            body=upload.body,
            content_type=upload.content_type,
            timeout=TIMEOUT,
        )
    except (DslrConnectionError, OSError, trio.TooSlowError) as exc:
        return Sample(None, float("nan"), None, None, (), snippet=repr(exc))
    assert response is not None  # close_after is not used
    jobs = tuple(fake.jobs.values())[jobs_before:] if isinstance(fake, FakeTurbotext) else ()
    timing = response.headers.get("server-timing", "")
    return Sample(
        response.status,
        response.elapsed,
        server_timing(timing, "daemon"),
        server_timing(timing, "provider"),
        tuple(fake.requests[before:]),
        jobs,
        "" if response.status == 200 else response.body[:300].decode("utf-8", "replace"),
    )


def ms(values: Sequence[float | None]) -> list[float]:
    """Milliseconds (Server-Timing) as seconds, for ``Report.latency``; None dropped."""
    return [v / 1000 for v in values if v is not None]


def report_failures(report: Report, name: str, samples: Sequence[Sample]) -> None:
    bad = [s for s in samples if s.status != 200]
    report.add(f"{name}_200", len(samples) - len(bad), f"of {len(samples)}")
    for sample in bad[:3]:
        print(f"{name}: status {sample.status}: {sample.snippet}", file=sys.stderr)


# -- phases -------------------------------------------------------------------------------


async def phase_sequential(
    daemon: BenchDaemon,
    report: Report,
    name: str,
    slot: str,
    fake: FakeServer,
    upload: Upload,
    count: int,
) -> list[Sample]:
    """1. ``count`` sequential ingests against a zero-delay fake (after WARMUP unmeasured)."""
    for _ in range(WARMUP):
        await ingest(daemon, slot, upload, fake)
    samples = [await ingest(daemon, slot, upload, fake) for _ in range(count)]
    report_failures(report, name, samples)
    ok = [s for s in samples if s.status == 200]
    report.latency(f"{name}_client", [s.elapsed for s in ok], points=(50, 99))
    report.latency(f"{name}_daemon", ms([s.daemon_ms for s in ok]), points=(50, 99))
    report.latency(f"{name}_provider", ms([s.provider_ms for s in ok]), points=(50,))
    if isinstance(fake, FakeTurbotext):
        polls = [sum(r.do == "get_result" for r in s.requests) for s in ok]
        report.add(f"{name}_polls_per_job_min", min(polls, default=0), "polls")
        report.add(f"{name}_polls_per_job_max", max(polls, default=0), "polls")
        sleeps = [
            (s.provider_ms or 0.0) / 1000 - FAST_POLL * n for s, n in zip(ok, polls, strict=True)
        ]
        report.latency(f"{name}_provider_minus_poll_sleeps", sleeps, points=(50,))
        fetches = [
            f.finished_at - f.started_at
            for s in ok
            for job in s.jobs
            for f in job.fetches
            if f.finished_at is not None
        ]
        report.latency(f"{name}_fake_fetch_of_our_link", fetches, points=(50, 99))
    else:
        report.latency(f"{name}_inside_fake", [s.fake_seconds for s in ok], points=(50,))
        rest = [(s.provider_ms or 0.0) / 1000 - s.fake_seconds for s in ok]
        report.latency(f"{name}_provider_minus_fake", rest, points=(50,))
    return samples


async def phase_no_image(
    daemon: BenchDaemon, report: Report, fake: FakeGemini, upload: Upload, baseline: float
) -> None:
    """2. Gemini answers NO_IMAGE twice, then the image: retries and what they cost."""
    name = "gemini_no_image"
    samples: list[Sample] = []
    for _ in range(NO_IMAGE_JOBS):
        fake.script("no_image", "no_image", "success")
        samples.append(await ingest(daemon, GEMINI_SLOT, upload, fake))
        if fake.scripted_left:  # the daemon stopped early: do not leak outcomes into the next
            report.add(f"{name}_unused_outcomes", fake.scripted_left, "outcomes")
            while fake.scripted_left:
                fake.next_outcome()
    report_failures(report, name, samples)
    retries = [len(s.requests) - 1 for s in samples]
    report.add(f"{name}_retries_per_job_min", min(retries), "retries")
    report.add(f"{name}_retries_per_job_max", max(retries), "retries")
    report.add(f"{name}_retries_total", sum(retries), f"for {len(samples)} jobs")
    ok = [s for s in samples if s.status == 200]
    report.latency(f"{name}_client", [s.elapsed for s in ok], points=(50,))
    report.latency(f"{name}_extra_latency", [s.elapsed - baseline for s in ok], points=(50,))
    gaps = [
        later.received_at - earlier.responded_at
        for s in ok
        for earlier, later in itertools.pairwise(s.requests)
        if earlier.responded_at is not None
    ]
    report.latency(f"{name}_pause_between_attempts", gaps, points=(50,))


async def phase_slow_gemini_burst(
    daemon: BenchDaemon, report: Report, fake: FakeGemini, upload: Upload, seconds: float
) -> None:
    """4. 30 booths at once on a Gemini that takes ``seconds`` per photo, on defaults."""
    name = "gemini_slow_burst"
    fake.default = outcome("success", delay=seconds)
    samples: list[Sample] = []

    async def booth() -> None:
        samples.append(await ingest(daemon, GEMINI_SLOT, upload, fake))

    started = trio.current_time()
    try:
        async with trio.open_nursery() as booths:
            for _ in range(BURST):
                booths.start_soon(booth)
    finally:
        fake.default = outcome("success")
    report.add(f"{name}_wall_for_{BURST}", trio.current_time() - started, "s", digits=2)
    report.add(f"{name}_slowest", max(s.elapsed for s in samples), "s", digits=2)
    report_failures(report, name, samples)


async def phase_long_turbotext(
    daemon: BenchDaemon, report: Report, fake: FakeTurbotext, upload: Upload, seconds: float
) -> None:
    """3. A job the vendor finishes after ~``seconds``, polled every PRODUCTION_POLL s.

    ``fetch_delay`` makes the job time-based, like the real service: the fake answers
    ``reconnect`` until it has fetched our photo link, and it starts that fetch ``fetch_delay``
    after create_queue.  It is set half a poll interval before ``seconds`` so the count does not
    hinge on a race with the poll due at ``seconds``: any job finishing in
    (seconds - 2.5, seconds] gets the same number of polls.  (``reconnects=N`` would fix the
    count to N + 1 whatever the interval, so it would measure nothing.)
    """
    name = "turbotext_job"
    # Warm-up on this fresh daemon (answered at the first poll, ~2.5 s): the first ingest after
    # a start pays one-off costs that would otherwise land in the job's daemon time.
    warmup = await ingest(daemon, TURBOTEXT_SLOT, upload, fake)
    report.add(f"{name}_warmup_status", str(warmup.status))
    if warmup.daemon_ms is not None:
        report.add(f"{name}_warmup_daemon", warmup.daemon_ms, "ms (first ingest after start)")
    ready = seconds - PRODUCTION_POLL / 2
    fake.script(outcome("success", reconnects=0, fetch_delay=ready))
    creates_before = len(fake.creates())
    polls_before = len(fake.polls())
    sample = await ingest(daemon, TURBOTEXT_SLOT, upload, fake)
    report.add(f"{name}_vendor_seconds", seconds, "s (nominal)", digits=2)
    report.add(f"{name}_status", str(sample.status))
    if sample.status != 200:
        print(f"{name}: status {sample.status}: {sample.snippet}", file=sys.stderr)
    report.add(f"{name}_create_calls", len(fake.creates()) - creates_before, "calls")
    polls = fake.polls()[polls_before:]
    report.add(f"{name}_get_result_polls", len(polls), "polls")
    report.add(f"{name}_wall", sample.elapsed, "s", digits=2)
    if sample.provider_ms is not None and sample.daemon_ms is not None:
        report.add(f"{name}_provider", sample.provider_ms / 1000, "s", digits=3)
        report.add(f"{name}_daemon", sample.daemon_ms, "ms")
    spacing = [b.received_at - a.received_at for a, b in itertools.pairwise(polls)]
    report.add(f"{name}_poll_spacing_p50", percentile(spacing, 50), "s", digits=3)
    if sample.jobs and sample.jobs[0].fetches and polls:
        job = sample.jobs[0]
        done = job.fetches[-1].finished_at
        if done is not None:
            report.add(f"{name}_vendor_ready_after_create", done - job.created_at, "s", digits=2)
            pickup = polls[-1].received_at - done
            report.add(f"{name}_result_picked_up_after", pickup, "s", digits=2)


# -- orchestration ------------------------------------------------------------------------


def provider_daemon(fakes: Fakes, poll_interval: float) -> BenchDaemon:
    daemon = BenchDaemon(
        PHOTOCHANGER_GEMINI_BASE_URL=fakes.gemini.url,
        PHOTOCHANGER_OPENAI_BASE_URL=f"{fakes.openai.url}/v1",
        PHOTOCHANGER_TURBOTEXT_BASE_URL=fakes.turbotext.url,
        PHOTOCHANGER_TURBOTEXT_POLL_INTERVAL_SECONDS=str(poll_interval),
        GEMINI_API_KEY=fakes.gemini.api_key,
        TURBOTEXT_API_KEY=fakes.turbotext.api_key,
        OPENAI_API_KEY=fakes.openai.api_key,
    )
    # The fake fetches our provider-media links: they must point at this daemon's own port.
    daemon.env["PHOTOCHANGER_PUBLIC_BASE_URL"] = daemon.url
    return daemon


def configure_slots(daemon: BenchDaemon) -> None:
    daemon.set_slot(GEMINI_SLOT, "gemini", "edit", prompt="turn it into a watercolour")
    daemon.set_slot(TURBOTEXT_SLOT, "turbotext", "image2image", prompt="anime style")
    daemon.set_slot(OPENAI_SLOT, "openai", "edit", prompt="make it a comic")


def finish(daemon: BenchDaemon, report: Report, label: str) -> None:
    report.add(f"{label}_exit_status", str(daemon.stop()))
    for line in daemon.log_problems()[:20]:
        print(f"{label} log: {line}", file=sys.stderr)


async def run(report: Report, upload: Upload, *, quick: bool) -> None:
    fakes = Fakes(FakeGemini(), FakeTurbotext(reconnects=0), FakeOpenAIImages())
    count = QUICK_COUNT if quick else COUNT
    async with trio.open_nursery() as nursery:
        for fake in fakes.all():
            await nursery.start(fake.serve)
        # Started from inside the Trio loop (blocking ~1 s): the fakes' URLs are needed first.
        with provider_daemon(fakes, FAST_POLL) as daemon:
            try:
                configure_slots(daemon)
                gemini = await phase_sequential(
                    daemon, report, "gemini", GEMINI_SLOT, fakes.gemini, upload, count
                )
                await phase_sequential(
                    daemon, report, "turbotext", TURBOTEXT_SLOT, fakes.turbotext, upload, count
                )
                await phase_sequential(
                    daemon, report, "openai", OPENAI_SLOT, fakes.openai, upload, count
                )
                baseline = percentile([s.elapsed for s in gemini if s.status == 200], 50)
                await phase_no_image(daemon, report, fakes.gemini, upload, baseline)
            finally:
                finish(daemon, report, "daemon")
        with provider_daemon(fakes, PRODUCTION_POLL) as daemon:
            try:
                configure_slots(daemon)
                seconds = QUICK_LONG_JOB if quick else LONG_JOB
                await phase_long_turbotext(daemon, report, fakes.turbotext, upload, seconds)
                await phase_slow_gemini_burst(daemon, report, fakes.gemini, upload, seconds)
            finally:
                finish(daemon, report, "daemon2")
        errors = [exc for fake in fakes.all() for exc in fake.internal_errors]
        report.add("fake_internal_errors", len(errors), "errors")
        for exc in errors[:5]:
            print(f"fake internal error: {exc!r}", file=sys.stderr)
        nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_COUNT} ingests per provider, a 5 s job"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda _sig, _frame: os.kill(os.getpid(), signal.SIGINT))

    upload = prepare("52kb", make_jpeg(800, 533, quality=80, target_bytes=52_000))
    report = Report()
    report.add("photo", len(upload.photo), "bytes")
    interrupted = False
    try:
        trio.run(lambda: run(report, upload, quick=args.quick))
    except* KeyboardInterrupt:
        interrupted = True
    if interrupted:
        print("interrupted; the daemon was stopped", file=sys.stderr)
        return 130
    print(machine_line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
