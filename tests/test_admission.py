"""Admission: bounded unfinished ingests, globally and per slot, released however a hold ends.

On Trio's ``MockClock`` (``autojump_clock``): holders keep their place across (mock) seconds.
"""

from __future__ import annotations

import pytest
import trio

from photochangerd.jobs.admission import Admission, Overloaded


async def _hold(admission: Admission, slot_id: str, seconds: float) -> None:
    with admission.admit(slot_id):
        await trio.sleep(seconds)


async def test_global_bound_rejects_at_once_and_frees_on_exit(autojump_clock: object) -> None:
    admission = Admission(max_in_flight=2, max_per_slot=10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_hold, admission, "slot-001", 10)
        nursery.start_soon(_hold, admission, "slot-002", 20)
        await trio.sleep(1)
        assert admission.in_flight == 2
        started = trio.current_time()
        with pytest.raises(Overloaded) as refused, admission.admit("slot-003"):
            raise AssertionError("admitted over the global bound")
        assert refused.value.scope == "global" and trio.current_time() == started
        assert admission.in_flight == 2  # a refusal holds nothing
        await trio.sleep(10)  # the first holder left at t=10
        assert admission.in_flight == 1
        with admission.admit("slot-003"):
            assert admission.in_flight == 2
    assert admission.in_flight == 0


async def test_per_slot_bound_is_per_slot(autojump_clock: object) -> None:
    admission = Admission(max_in_flight=10, max_per_slot=2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_hold, admission, "slot-001", 5)
        nursery.start_soon(_hold, admission, "slot-001", 5)
        await trio.sleep(1)
        with pytest.raises(Overloaded) as refused, admission.admit("slot-001"):
            raise AssertionError("admitted over the slot's bound")
        assert refused.value.scope == "slot-001"
        with admission.admit("slot-002"):  # another slot is not affected
            assert admission.in_flight == 3
        await trio.sleep(5)
        with admission.admit("slot-001"):  # freed once its holders left
            assert admission.in_flight == 1
    assert admission.in_flight == 0


async def test_a_cancelled_holder_releases_its_place(autojump_clock: object) -> None:
    admission = Admission(max_in_flight=1, max_per_slot=1)
    with trio.move_on_after(3):  # the client went away: the request is cancelled
        await _hold(admission, "slot-001", 60)
    assert trio.current_time() == pytest.approx(3)
    assert admission.in_flight == 0
    with admission.admit("slot-001"):  # both bounds are free again
        assert admission.in_flight == 1


async def test_a_failing_holder_releases_its_place(autojump_clock: object) -> None:
    admission = Admission(max_in_flight=1, max_per_slot=1)
    with pytest.raises(RuntimeError), admission.admit("slot-001"):
        await trio.sleep(2)
        raise RuntimeError("the ingest failed")
    assert admission.in_flight == 0
    with admission.admit("slot-001"):
        assert admission.in_flight == 1


async def test_many_holders_never_exceed_the_bounds(autojump_clock: object) -> None:
    admission = Admission(max_in_flight=5, max_per_slot=3)
    holding: dict[str, int] = {"global": 0, "slot-001": 0}
    peak = dict(holding)
    refused: list[tuple[int, str]] = []

    async def booth(n: int, slot: str) -> None:
        await trio.sleep(n * 0.1)  # one after the other, all within the first second
        try:
            with admission.admit(slot):
                for scope in {"global", slot} & holding.keys():
                    holding[scope] += 1
                    peak[scope] = max(peak[scope], holding[scope])
                await trio.sleep(5)
                for scope in {"global", slot} & holding.keys():
                    holding[scope] -= 1
        except Overloaded as exc:
            refused.append((n, exc.scope))

    async with trio.open_nursery() as nursery:
        for n in range(10):  # 4 on one slot, then 6 on slots of their own
            nursery.start_soon(booth, n, "slot-001" if n < 4 else f"slot-{n:03d}")
    assert peak == {"global": 5, "slot-001": 3}
    assert refused == [(3, "slot-001"), (6, "global"), (7, "global"), (8, "global"), (9, "global")]
    assert admission.in_flight == 0
