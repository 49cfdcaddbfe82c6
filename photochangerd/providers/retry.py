"""The cloud drivers' one retry loop: back-off, vendor-given waits, and the deadline.

A driver describes one attempt as an async function of the attempt number that returns the
result, returns :class:`Retry` (the error, and the wait the vendor asked for, if any) when
another attempt may help, or raises the error when it will not (a safety block, a bad key).
:func:`with_retries` calls it until it succeeds, raises, or retrying is no longer worth it:

* after ``max_attempts`` attempts;
* when the wait before the next attempt plus ``min_attempt`` (the least time an attempt needs
  to be useful) would pass the enclosing deadline (``trio.current_effective_deadline()``) —
  an attempt that cannot finish is not started, and a 429 whose ``Retry-After`` does not fit
  gives up at once.

Either way the last attempt's error is raised as the driver mapped it (503 for overload and
quota, 502 for the rest), instead of the job being cut off by its deadline mid-call.  The first
attempt is always made: a job with too little time left for it times out as any other.
Cancellation is never caught: the job's deadline stops a wait or an attempt where it is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import trio

from photochangerd.providers.base import ProviderError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Retry:
    """An attempt failed with ``error``, and another attempt may succeed.

    ``wait``: the seconds to wait before it (a vendor's ``Retry-After``/``retryDelay``, or the
    driver's own pause); None: the policy's exponential back-off.
    """

    error: ProviderError
    wait: float | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a driver retries.  ``backoff`` is the first back-off, doubled after every failed
    attempt up to ``max_backoff``."""

    max_attempts: int
    backoff: float
    max_backoff: float
    # The least time an attempt needs to be worth starting (the vendor's fastest answers).
    min_attempt: float = 1.0
    # A wait the attempt asked for is stretched to the current back-off (OpenAI), rather than
    # taken as it is (Gemini's short pause after a NO_IMAGE answer).
    wait_at_least_backoff: bool = False

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.backoff <= self.max_backoff:
            raise ValueError("need 0 <= backoff <= max_backoff")
        if self.min_attempt < 0:
            raise ValueError("min_attempt must not be negative")

    def wait_before_next(self, retry: Retry, backoff: float) -> float:
        """The seconds to wait after ``retry`` when the back-off has reached ``backoff``."""
        if retry.wait is None:
            return backoff
        return max(retry.wait, backoff) if self.wait_at_least_backoff else retry.wait


def fits_before_deadline(wait: float, min_attempt: float) -> bool:
    """Whether waiting ``wait`` seconds still leaves ``min_attempt`` before the deadline."""
    left = trio.current_effective_deadline() - trio.current_time()
    return wait + min_attempt <= left


async def with_retries(policy: RetryPolicy, attempt: Callable[[int], Awaitable[T | Retry]]) -> T:
    """``await attempt(1)``, ``attempt(2)``… as ``policy`` allows; the first result, or the
    error of the last attempt (errors an attempt raises propagate at once)."""
    backoff = policy.backoff
    number = 0
    while True:
        number += 1
        outcome = await attempt(number)
        if not isinstance(outcome, Retry):
            return outcome
        wait = policy.wait_before_next(outcome, backoff)
        if number >= policy.max_attempts or not fits_before_deadline(wait, policy.min_attempt):
            raise outcome.error
        await trio.sleep(wait)
        backoff = min(backoff * 2, policy.max_backoff)
