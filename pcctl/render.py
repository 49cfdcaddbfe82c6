"""How the API's objects look in tables (shared by several commands)."""

from __future__ import annotations

from rich.text import Text

from pcctl.output import age
from shared.api_models import JobOut, JobSummary

EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


def job_outcome(job: JobSummary | JobOut) -> str:
    """``ok``, the failure reason, or the state of an unfinished job."""
    if not job.is_finalized:
        return job.status
    return job.failure_reason or "ok"


def outcome_text(job: JobSummary | JobOut | None, *, with_age: bool = True) -> Text:
    """``ok · 3m ago`` in green, a failure in red, an unfinished job in yellow."""
    if job is None:
        return Text("—", style="dim")
    outcome = job_outcome(job)
    style = "green" if outcome == "ok" else ("yellow" if not job.is_finalized else "red")
    text = Text(outcome, style=style)
    if with_age:
        text.append(f" · {age(job.finalized_at or job.created_at)}", style="dim")
    return text


def seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.2f} s"
