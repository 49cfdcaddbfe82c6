"""A slot's fallback chain: the steps tried after the slot's own provider fails (docs/jobs.md,
"Fallbacks").

A step is ``{provider, operation, settings, templates, reserve_seconds}``.  The job's one
deadline is split: a step must end by ``deadline − Σ reserve_seconds of the steps after it``,
so the last step always keeps its reserve.  The admin API validates a chain with
:func:`validate_fallbacks` (422 with per-field messages); the daemon runs what was accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.slot_settings import SlotSettingsError, validate_slot

MAX_FALLBACKS = 3
# What a step keeps for itself when the admin names no reserve: the local provider answers in
# well under a second; a cloud vendor needs a few seconds even when it is quick.
DEFAULT_RESERVE_SECONDS = {"local": 2.0}
DEFAULT_CLOUD_RESERVE_SECONDS = 15.0
# The slot's own provider always keeps at least this much of the deadline.
MIN_PRIMARY_SECONDS = 1.0


class FallbackTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["style", "face", "frame", "reference"]
    template_id: str = Field(min_length=1, max_length=64)


class FallbackStep(BaseModel):
    """One step of a fallback chain (as stored and as sent over the admin API)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(min_length=1, max_length=32)
    operation: str = Field(min_length=1, max_length=32)
    settings: dict[str, Any] = Field(default_factory=dict)
    templates: list[FallbackTemplate] = Field(default_factory=list, max_length=4)
    reserve_seconds: float | None = Field(
        default=None,
        ge=1,
        le=60,
        description="The time this step keeps for itself out of the job's deadline (default: "
        "2 s for local, 15 s for the others).",
    )

    @property
    def reserve(self) -> float:
        if self.reserve_seconds is not None:
            return self.reserve_seconds
        return DEFAULT_RESERVE_SECONDS.get(self.provider, DEFAULT_CLOUD_RESERVE_SECONDS)

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.operation}"

    def stored(self) -> dict[str, Any]:
        """The step as stored in the slot (and snapshotted in each job): reserve made explicit."""
        return {
            "provider": self.provider,
            "operation": self.operation,
            "settings": dict(self.settings),
            "templates": [t.model_dump() for t in self.templates],
            "reserve_seconds": self.reserve,
        }


def parse_fallbacks(raw: Sequence[Any]) -> list[FallbackStep]:
    """Stored steps (already validated on save) as models."""
    return [FallbackStep.model_validate(step) for step in raw]


def total_reserve(steps: Sequence[FallbackStep]) -> float:
    return sum(step.reserve for step in steps)


def validate_fallbacks(raw: Sequence[Any], deadline_seconds: float) -> list[FallbackStep]:
    """Validate a chain for a slot whose jobs get ``deadline_seconds``.

    Raises :class:`~shared.slot_settings.SlotSettingsError` with per-field messages
    (``fallbacks``, ``fallbacks.0.settings.prompt``, ``fallbacks.1.templates`` …).
    """
    if len(raw) > MAX_FALLBACKS:
        raise SlotSettingsError({"fallbacks": f"at most {MAX_FALLBACKS} steps"})
    steps: list[FallbackStep] = []
    errors: dict[str, str] = {}
    for index, item in enumerate(raw):
        prefix = f"fallbacks.{index}"
        try:
            step = FallbackStep.model_validate(item)
        except ValidationError as exc:
            for error in exc.errors():
                path = ".".join(str(part) for part in error["loc"])
                errors[f"{prefix}.{path}" if path else prefix] = error["msg"]
            continue
        roles = [t.role for t in step.templates]
        try:
            validate_slot(step.provider, step.operation, dict(step.settings), roles)
        except SlotSettingsError as exc:
            for field, message in exc.errors.items():
                field = "templates" if field == "template_media" else field
                errors[f"{prefix}.{field}"] = message
            continue
        steps.append(step)
    if errors:
        raise SlotSettingsError(errors)
    problem = reserve_problem(steps, deadline_seconds)
    if problem:
        raise SlotSettingsError({"fallbacks": problem})
    return steps


def reserve_problem(steps: Sequence[FallbackStep], deadline_seconds: float) -> str | None:
    """Why the chain's reserves do not fit a ``deadline_seconds`` deadline (None: they fit)."""
    reserved = total_reserve(steps)
    if steps and reserved + MIN_PRIMARY_SECONDS > deadline_seconds:
        return (
            f"the fallbacks reserve {reserved:g} s of the {deadline_seconds:g} s deadline "
            f"(sync_response_seconds); the slot's own provider needs at least "
            f"{MIN_PRIMARY_SECONDS:g} s: lower reserve_seconds or raise the deadline"
        )
    return None
