"""Password hashing (argon2id, memory-hard) and the ingest password check.

The ingest password is sent with *every* upload and real booths use weak ones, so a KDF per
request would be both slow and a DoS lever (docs/stack-traps.md, "A KDF per upload").
:class:`IngestPasswordChecker` runs the KDF once per distinct candidate and stored hash
(concurrent checks of the same candidate share that one run), then remembers the outcome as an HMAC
of the candidate under a per-process random key: the correct password costs one HMAC and a
constant-time compare; a repeated wrong one the same; new wrong ones at most one KDF each, with
at most ``kdf_threads`` running at once.  An address that has sent :data:`FREE_FAILURES` new
wrong passwords within :data:`FAILURE_WINDOW` is paced to one KDF run per
:data:`PACED_INTERVAL` seconds — slowed, not locked out: a booth behind the same NAT as a
guesser still gets its (new) correct password checked within a few seconds; past
:data:`MAX_PACED_WAIT` of queued turns a new candidate is refused (429) rather than queued.
Where the failures are counted is a :class:`PaceLedger`: the daemon's is in the database
(:mod:`photochangerd.auth.ingest_pacing`, shared by instances), :class:`MemoryPaceLedger` is
this process's own (unit tests, embedding).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Protocol

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# argon2id with OWASP's baseline (19 MiB, 2 passes, 1 lane) rather than the library's default
# profile (64 MiB, 3 passes, 4 lanes): each verification's memory is the daemon's largest
# single allocation, and two may run at once (sign-in, a rotated ingest password); at 64 MiB
# they were the daemon's start-up and peak memory.  Hashes made with other parameters still
# verify (the parameters are in the hash); an admin's is renewed at the next sign-in.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def needs_rehash(stored_hash: str) -> bool:
    """Whether ``stored_hash`` was made with other parameters than today's."""
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


def verify_password(stored_hash: str, password: str) -> bool:
    """Constant-time argon2 verification; False for a mismatch or an unusable hash."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """A strong random password that survives copy-paste (URL-safe, 20 chars)."""
    return secrets.token_urlsafe(15)


FREE_FAILURES = 20
FAILURE_WINDOW = 15 * 60.0
PACED_INTERVAL = 1.0
# A paced address queues at most this far ahead; past it new candidates are refused (429)
# instead of queued: abandoned requests must not push its turns (and a booth's) minutes out.
MAX_PACED_WAIT = 5.0


class PacedOut(Exception):
    """An address's queue of paced KDF turns is full: refuse, retry later."""


class PaceLedger(Protocol):
    """Where new wrong ingest passwords are counted per address, and paced KDF runs queued."""

    async def paced(self, address: str, pending: int = 0) -> bool:
        """Whether ``address`` sent ``FREE_FAILURES`` new wrong passwords within the window,
        counting ``pending`` candidates of it still being checked as wrong ones."""

    async def wait_turn(self, address: str) -> None:
        """Sleep until ``address`` may run its next KDF (one per ``PACED_INTERVAL``); raise
        :class:`PacedOut` when that is more than ``MAX_PACED_WAIT`` away."""

    async def failed(self, address: str) -> None:
        """Count a new wrong password from ``address``."""


@dataclass(slots=True)
class _Pace:
    next_run: float = 0.0  # the next free turn (trio time)


class MemoryPaceLedger:
    """This process's own count (one daemon per SQLite data dir), on Trio's clock."""

    MEMORY = 256

    def __init__(self) -> None:
        self._failures: dict[str, list[float]] = {}  # address → times of new wrong passwords
        self._paces: dict[str, _Pace] = {}

    async def paced(self, address: str, pending: int = 0) -> bool:
        now = trio.current_time()
        recent = [t for t in self._failures.get(address, []) if now - t < FAILURE_WINDOW]
        return len(recent) + pending >= FREE_FAILURES

    async def wait_turn(self, address: str) -> None:
        # The turn is reserved before the wait, as the database ledger's row does: a burst of
        # paced callers fills the queue up to MAX_PACED_WAIT, and the rest are refused.
        pace = self._paces.setdefault(address, _Pace())
        now = trio.current_time()
        start = max(pace.next_run, now)
        if start - now > MAX_PACED_WAIT:
            raise PacedOut(address)
        pace.next_run = start + PACED_INTERVAL
        await trio.sleep_until(start)

    async def failed(self, address: str) -> None:
        failures = self._failures.setdefault(address, [])
        now = trio.current_time()
        failures[:] = [t for t in failures if now - t < FAILURE_WINDOW][-FREE_FAILURES:]
        failures.append(now)
        while len(self._failures) > self.MEMORY:
            self._failures.pop(next(iter(self._failures)))


class IngestPasswordChecker:
    REJECTED_MEMORY = 256

    def __init__(self, kdf_threads: int = 1, ledger: PaceLedger | None = None) -> None:
        self._key = secrets.token_bytes(32)
        self._limiter = trio.CapacityLimiter(kdf_threads)
        self._accepted: tuple[str, bytes] | None = None
        self._rejected: OrderedDict[tuple[str, bytes], None] = OrderedDict()
        self._ledger: PaceLedger = ledger or MemoryPaceLedger()
        self._in_flight: dict[tuple[str, bytes], trio.Event] = {}  # KDF runs under way
        # address -> its new candidates being checked (and by how many requests)
        self._unsettled: dict[str, Counter[bytes]] = {}

    def _mac(self, password: str) -> bytes:
        return hmac.new(
            self._key, password.encode("utf-8", "surrogatepass"), hashlib.sha256
        ).digest()

    def known(self, stored_hash: str, password: str) -> bool | None:
        """The remembered verdict for ``password`` (no KDF), or None when it needs one."""
        mac = self._mac(password)
        accepted = self._accepted
        if (
            accepted is not None
            and accepted[0] == stored_hash
            and hmac.compare_digest(accepted[1], mac)
        ):
            return True
        if (stored_hash, mac) in self._rejected:
            return False
        return None

    async def check(self, stored_hash: str, password: str, address: str = "") -> bool:
        """True when ``password`` matches ``stored_hash`` (the current ingest password)."""
        verdict = self.known(stored_hash, password)
        if verdict is not None:
            return verdict
        # Candidates of this address still being checked count as wrong ones until settled:
        # a burst of 150 different guesses sent at once all passed the count of settled
        # failures on arrival and were all checked unpaced (review, 2026-12-02).  The same
        # candidate in flight counts once (every booth's upload after a rotation).
        mac = self._mac(password)
        unsettled = self._unsettled.setdefault(address, Counter())
        others = len(unsettled) - (mac in unsettled)
        unsettled[mac] += 1
        try:
            if await self._ledger.paced(address, others):
                await self._ledger.wait_turn(address)
            ok = await self._verify(stored_hash, password)
            if not ok:
                await self._ledger.failed(address)
        finally:
            unsettled[mac] -= 1
            if unsettled[mac] <= 0:
                del unsettled[mac]
                if not unsettled:
                    self._unsettled.pop(address, None)
        return ok

    async def _verify(self, stored_hash: str, password: str) -> bool:
        key = (stored_hash, self._mac(password))
        while True:
            verdict = self.known(stored_hash, password)  # decided meanwhile (paced callers)
            if verdict is not None:
                return verdict
            pending = self._in_flight.get(key)
            if pending is None:
                break
            # The same candidate is being checked already: after a start or a rotation every
            # booth's next upload arrives at once, and 30 serialized KDF runs took ~7 s.
            await pending.wait()
        done = self._in_flight[key] = trio.Event()
        try:
            ok = await trio.to_thread.run_sync(
                verify_password, stored_hash, password, limiter=self._limiter
            )
        finally:
            del self._in_flight[key]
            done.set()
        if ok:
            self._accepted = key
        else:
            self._rejected[key] = None
            while len(self._rejected) > self.REJECTED_MEMORY:
                self._rejected.popitem(last=False)
        return ok
