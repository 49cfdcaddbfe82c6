"""The ingest password check: one KDF run per distinct candidate, shared by concurrent uploads."""

from __future__ import annotations

import pytest
import trio

from photochangerd.auth import passwords
from photochangerd.auth.passwords import IngestPasswordChecker, hash_password

STORED = hash_password("booth-secret")


@pytest.fixture
def kdf_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    runs: list[str] = []
    real = passwords.verify_password

    def counting(stored_hash: str, password: str) -> bool:
        runs.append(password)
        return real(stored_hash, password)

    monkeypatch.setattr(passwords, "verify_password", counting)
    return runs


async def test_a_burst_of_the_same_new_password_costs_one_kdf_run(kdf_runs: list[str]) -> None:
    """After a start or a rotation every booth's next upload arrives at once."""
    checker = IngestPasswordChecker()
    verdicts: list[bool] = []

    async def upload() -> None:
        verdicts.append(await checker.check(STORED, "booth-secret", "10.0.0.7"))

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(30):
            nursery.start_soon(upload)
    assert verdicts == [True] * 30
    assert kdf_runs == ["booth-secret"]
    assert trio.current_time() - started < 2.0  # serialized, 30 runs took ~7 s

    assert await checker.check(STORED, "booth-secret") is True  # remembered: no KDF
    assert len(kdf_runs) == 1


async def test_concurrent_wrong_candidates_each_get_their_own_verdict(
    kdf_runs: list[str],
) -> None:
    checker = IngestPasswordChecker()
    verdicts: dict[str, list[bool]] = {"booth-secret": [], "guess": []}

    async def upload(candidate: str) -> None:
        verdicts[candidate].append(await checker.check(STORED, candidate, "10.0.0.8"))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(upload, "guess")
            nursery.start_soon(upload, "booth-secret")
    assert verdicts == {"booth-secret": [True] * 5, "guess": [False] * 5}
    assert sorted(kdf_runs) == ["booth-secret", "guess"]


async def test_a_cancelled_check_does_not_strand_the_others(kdf_runs: list[str]) -> None:
    checker = IngestPasswordChecker()
    verdicts: list[bool] = []

    async def upload() -> None:
        verdicts.append(await checker.check(STORED, "booth-secret"))

    async def leaving_upload(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await checker.check(STORED, "booth-secret")
            await trio.sleep_forever()  # the answer is never sent: the booth went away

    async with trio.open_nursery() as nursery:
        leaving = await nursery.start(leaving_upload)
        await trio.sleep(0.005)  # its KDF run is under way; these wait for it
        for _ in range(3):
            nursery.start_soon(upload)
        await trio.sleep(0.005)
        leaving.cancel()  # the first booth goes away before the run ends
    assert verdicts == [True] * 3
    assert kdf_runs == ["booth-secret"]  # the run itself is not abandoned half-way


async def test_a_burst_of_different_guesses_is_paced_past_the_free_ones(
    kdf_runs: list[str],
) -> None:
    """Forty different wrong passwords from one address at once: the pacing counted only
    settled failures, so every one of them passed that count on arrival and was checked at
    full speed.  Now the free ones run, the rest one per second, and past the queue's limit
    they are refused (429 at ingest)."""
    checker = IngestPasswordChecker()
    refused = 0

    async def guess(number: int) -> None:
        nonlocal refused
        try:
            assert await checker.check(STORED, f"guess-{number}", "10.0.0.9") is False
        except passwords.PacedOut:
            refused += 1

    started = trio.current_time()
    async with trio.open_nursery() as nursery:
        for number in range(40):
            nursery.start_soon(guess, number)
    free = passwords.FREE_FAILURES
    paced = len(kdf_runs) - free
    assert 1 <= paced <= passwords.MAX_PACED_WAIT / passwords.PACED_INTERVAL + 1, kdf_runs
    assert refused == 40 - len(kdf_runs)
    assert trio.current_time() - started >= (paced - 1) * passwords.PACED_INTERVAL
