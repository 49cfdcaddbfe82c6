"""What each step of a job's chain did (docs/jobs.md, "Fallbacks").

The producer opens a step when it calls a provider and closes it with the step's outcome.  A
step still open when the job is settled by someone else (the waiting requester at the
deadline, the sweeper, shutdown) is closed by :meth:`AttemptLog.entries` with the job's own
outcome, so the recorded list always says what every step ended with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio

from photochangerd.domain.models import Outcome
from shared.errors import JobFailure

_OPEN_STEP_ENDED_BY = {
    JobFailure.TIMEOUT: "timeout",
    JobFailure.PROVIDER_ERROR: "provider_error",
    JobFailure.CANCELLED: "cancelled",
    JobFailure.INTERNAL_ERROR: "internal_error",
}


@dataclass(slots=True)
class _Open:
    step: int
    provider: str
    operation: str
    started: float  # Trio clock


@dataclass(slots=True)
class AttemptLog:
    """The attempts of one job, in the order they were made."""

    done: list[dict[str, Any]] = field(default_factory=list)
    _open: _Open | None = None

    def begin(self, step: int, provider: str, operation: str) -> None:
        self._open = _Open(step, provider, operation, trio.current_time())

    def end(self, outcome: str, details: str | None = None, status: int | None = None) -> None:
        """Close the open step with ``outcome`` (success, provider_error, timeout …)."""
        current = self._open
        if current is None:
            return
        self._open = None
        self.done.append(
            _entry(current, outcome, details, status, trio.current_time() - current.started)
        )

    def skip(self, step: int, provider: str, operation: str, details: str) -> None:
        """A step that got no time: the steps before it used its share."""
        self.done.append(_entry(_Open(step, provider, operation, 0.0), "skipped", details, None, 0))

    def entries(self, final: Outcome | None) -> list[dict[str, Any]]:
        """Every attempt, the open one (if any) closed with the job's ``final`` outcome."""
        current = self._open
        if current is None or final is None:
            return list(self.done)
        outcome = "success" if final.failure is None else _OPEN_STEP_ENDED_BY[final.failure]
        elapsed = trio.current_time() - current.started
        closing = _entry(current, outcome, final.details, final.response_status, elapsed)
        return [*self.done, closing]


def _entry(
    step: _Open, outcome: str, details: str | None, status: int | None, seconds: float
) -> dict[str, Any]:
    return {
        "step": step.step,
        "provider": step.provider,
        "operation": step.operation,
        "outcome": outcome,
        "details": details[:300] if details else None,
        "status": status,
        "duration_seconds": round(max(0.0, seconds), 3),
    }
