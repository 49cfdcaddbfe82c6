"""Password hashing (argon2id, memory-hard) and the ingest password check.

The ingest password is sent with *every* upload and real booths use weak ones, so a KDF per
request would be both slow and a DoS lever (pitfalls.md #12).  :class:`IngestPasswordChecker`
runs the KDF once per distinct candidate and stored hash, then remembers the outcome as an HMAC
of the candidate under a per-process random key: the correct password costs one HMAC and a
constant-time compare; a repeated wrong one the same; new wrong ones at most one KDF each, with
at most ``kdf_threads`` running at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # argon2id, library defaults (t=3, m=64 MiB, p=4)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Constant-time argon2 verification; False for a mismatch or an unusable hash."""
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """A strong random password that survives copy-paste (URL-safe, 20 chars)."""
    return secrets.token_urlsafe(15)


class IngestPasswordChecker:
    REJECTED_MEMORY = 256

    def __init__(self, kdf_threads: int = 1) -> None:
        self._key = secrets.token_bytes(32)
        self._limiter = trio.CapacityLimiter(kdf_threads)
        self._accepted: tuple[str, bytes] | None = None
        self._rejected: OrderedDict[tuple[str, bytes], None] = OrderedDict()

    def _mac(self, password: str) -> bytes:
        return hmac.new(
            self._key, password.encode("utf-8", "surrogatepass"), hashlib.sha256
        ).digest()

    async def check(self, stored_hash: str, password: str) -> bool:
        """True when ``password`` matches ``stored_hash`` (the current ingest password)."""
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
        ok = await trio.to_thread.run_sync(
            verify_password, stored_hash, password, limiter=self._limiter
        )
        if ok:
            self._accepted = (stored_hash, mac)
        else:
            self._rejected[(stored_hash, mac)] = None
            while len(self._rejected) > self.REJECTED_MEMORY:
                self._rejected.popitem(last=False)
        return ok
