"""Calls in flight per provider: no cap of its own by default, an operator's cap says who waited.

The former default capped every cloud provider at 10 calls: 30 booths on a vendor taking 20 s ran
in waves (10 at 20 s, 10 at 40 s) and the last 10 got 504 at 48 s.  Here the same shape, scaled
down: 30 booths, a vendor taking 1 s, a 2.5 s deadline.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from photochangerd.config import load_config
from photochangerd.providers.gate import GateWait, ProviderGate
from tests.conftest import INGEST_PASSWORD, RunningDaemon, make_config, start_daemon
from tests.fakes import FakeGemini, outcome
from tests.support.dslr import DslrResponse, dslr_upload
from tests.support.images import make_jpeg

KEY = "test-gemini-key"
PHOTO = make_jpeg(320, 240)


async def _gemini_daemon(
    nursery: trio.Nursery, tmp_path: Path, deadline: float, **config: object
) -> tuple[RunningDaemon, FakeGemini]:
    fake = FakeGemini(api_key=KEY)
    url = await nursery.start(fake.serve)
    daemon = await start_daemon(
        nursery, make_config(tmp_path, gemini_base_url=url, **config), env={"GEMINI_API_KEY": KEY}
    )
    await daemon.set_setting("sync_response_seconds", deadline)
    await daemon.configure_slot(
        "slot-001", provider="gemini", operation="edit", settings={"prompt": "watercolour"}
    )
    return daemon, fake


async def _shoot(daemon: RunningDaemon) -> DslrResponse:
    response = await dslr_upload(
        "127.0.0.1", daemon.port, "slot-001", photo=PHOTO, password=INGEST_PASSWORD, timeout=30
    )
    assert response is not None
    return response


def test_default_cap_is_what_admission_allows() -> None:
    config = load_config(environ={})
    assert config.provider_concurrency == 0
    assert config.effective_provider_concurrency == config.max_in_flight == 30
    capped = load_config(environ={"PHOTOCHANGER_PROVIDER_CONCURRENCY": "4"})
    assert capped.effective_provider_concurrency == 4


async def test_thirty_booths_on_a_slow_vendor_are_served_at_once_on_defaults(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    # workers=30 is the daemon's default (the test fixtures use 8 to save start-up time).
    daemon, fake = await _gemini_daemon(nursery, tmp_path, deadline=2.5, workers=30)
    fake.default = outcome("success", delay=1.0)
    responses: list[DslrResponse] = []

    async def booth() -> None:
        responses.append(await _shoot(daemon))

    async with trio.open_nursery() as booths:
        for _ in range(30):
            booths.start_soon(booth)
    late = sorted((r.status, round(r.elapsed, 2)) for r in responses if r.status != 200)
    assert not late, late
    assert max(r.elapsed for r in responses) < 2.4


@pytest.mark.slow
async def test_a_job_timing_out_behind_a_capped_provider_says_so(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Three booths, a cap of 1, a vendor taking 1.2 s, a 3 s deadline: the first two are
    served (at ~1.2 s and ~2.4 s), the third waits ~2.4 s for the slot and runs out of time in
    the vendor's call — its details name the cap, a slow vendor's do not."""
    daemon, fake = await _gemini_daemon(nursery, tmp_path, deadline=3.0, provider_concurrency=1)
    fake.default = outcome("success", delay=1.2)
    responses: list[DslrResponse] = []
    async with trio.open_nursery() as booths:
        for _ in range(3):
            booths.start_soon(_collect, daemon, responses)
            await trio.sleep(0.05)  # in this order at the gate
    assert sorted(r.status for r in responses) == [200, 200, 504]
    [late] = [r for r in responses if r.status == 504]
    job = await daemon.wait_job_final(late.headers["x-job-id"])
    assert job.failure_reason == "timeout"
    assert job.failure_details is not None
    assert job.failure_details.startswith("deadline reached after waiting 2."), job.failure_details
    assert job.failure_details.endswith(
        "s for a gemini slot (1 call in flight, provider_concurrency = 1)"
    )

    fake.default = outcome("success", delay=5.0)  # one slow vendor call, no cap in the way
    slow = await _shoot(daemon)
    assert slow.status == 504
    slow_job = await daemon.wait_job_final(slow.headers["x-job-id"])
    assert slow_job.failure_details == "deadline reached"


async def _collect(daemon: RunningDaemon, into: list[DslrResponse]) -> None:
    into.append(await _shoot(daemon))


async def test_gate_records_the_wait_on_a_mock_clock(autojump_clock: object) -> None:
    gate = ProviderGate("gemini", 2)
    holding = trio.Event()

    async def hold(seconds: float) -> None:
        async with gate.slot(GateWait()):
            holding.set()
            await trio.sleep(seconds)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold, 100)
        nursery.start_soon(hold, 30)
        await holding.wait()
        await trio.sleep(0)
        assert gate.in_flight == 2
        waiting = GateWait()
        with trio.move_on_after(20):
            async with gate.slot(waiting):
                pytest.fail("the gate is full")
        assert waiting.describe(trio.current_time()) == (
            "waited 20.0 s for a gemini slot (2 calls in flight, provider_concurrency = 2)"
        )
        served = GateWait()
        with trio.move_on_after(48):
            async with gate.slot(served):  # the 30 s holder leaves at t=30
                await trio.sleep(100)
        assert served.describe(trio.current_time()) == (
            "deadline reached after waiting 10.0 s for a gemini slot "
            "(2 calls in flight, provider_concurrency = 2)"
        )
        nursery.cancel_scope.cancel()
    free = GateWait()
    async with gate.slot(free):
        assert free.describe(trio.current_time()) is None
