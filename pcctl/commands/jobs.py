"""``pcctl jobs``, ``pcctl job show``, ``pcctl result get``, ``pcctl cleanup``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.text import Text

from pcctl.output import Column, Output, iso, when
from pcctl.params import IdCommand
from pcctl.render import EXTENSIONS, job_outcome, outcome_text, seconds
from pcctl.state import State, output_option, pass_state
from shared.api_models import JobOut
from shared.catalogue import JOB_STATUS_FILTERS
from shared.slots import SLOT_IDS

# What GET /api/jobs?status= accepts.
JOB_STATUSES = JOB_STATUS_FILTERS

JOB_COLUMNS: list[Column[JobOut]] = [
    Column("JOB", lambda j: j.job_id, lambda j: Text(j.job_id, style="bold"), no_wrap=True),
    Column("SLOT", lambda j: j.slot_id, no_wrap=True),
    Column("SOURCE", lambda j: j.source),
    Column("PROVIDER", lambda j: f"{j.provider}/{j.operation}"),
    Column("OUTCOME", job_outcome, lambda j: outcome_text(j, with_age=False)),
    Column("CREATED", lambda j: iso(j.created_at), lambda j: when(j.created_at)),
    Column(
        "DURATION",
        lambda j: j.duration_seconds,
        lambda j: Text(seconds(j.duration_seconds)),
        justify="right",
    ),
    Column("RESULT URL", lambda j: j.public_result_url, no_wrap=True),
]
TTY_JOB_COLUMNS = JOB_COLUMNS[:-1]  # the URL is in `pcctl job show`


def list_jobs_command(state: State, slot_id: str | None, status: str | None, limit: int) -> None:
    data = state.client().list_jobs(slot_id=slot_id, status=status, limit=limit)
    out = state.out
    if out.is_json:
        out.json(data)
    elif out.mode.value == "plain":
        out.table(JOB_COLUMNS, data.jobs)
    else:
        out.table(TTY_JOB_COLUMNS, data.jobs, title="Jobs (newest first)", empty="no jobs")


slot_option = click.option(
    "--slot",
    "slot_id",
    metavar="SLOT",
    shell_complete=lambda *_: list(SLOT_IDS),
    help="Only this slot.",
)
status_option = click.option(
    "--status", type=click.Choice(JOB_STATUSES), help="Only jobs in this state / outcome."
)
limit_option = click.option(
    "--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="How many."
)


@click.command("jobs")
@slot_option
@status_option
@limit_option
@output_option
@pass_state
def jobs(state: State, slot_id: str | None, status: str | None, limit: int) -> None:
    """Recent jobs, newest first (same as `pcctl job list`)."""
    list_jobs_command(state, slot_id, status, limit)


@click.group()
def job() -> None:
    """Jobs: one photo through one slot."""


@job.command("list")
@slot_option
@status_option
@limit_option
@output_option
@pass_state
def job_list(state: State, slot_id: str | None, status: str | None, limit: int) -> None:
    """Recent jobs, newest first."""
    list_jobs_command(state, slot_id, status, limit)


def show_job(out: Output, data: JobOut) -> None:
    if out.is_json:
        out.json(data)
        return
    pairs: list[tuple[str, Any, Any]] = [
        ("job_id", data.job_id, None),
        ("slot_id", data.slot_id, None),
        ("source", data.source, None),
        ("status", data.status, None),
        ("outcome", job_outcome(data), outcome_text(data, with_age=False)),
        ("failure_details", data.failure_details, None),
        ("provider", data.provider, None),
        ("operation", data.operation, None),
        ("created_at", iso(data.created_at), when(data.created_at)),
        ("started_at", iso(data.started_at), when(data.started_at)),
        ("finalized_at", iso(data.finalized_at), when(data.finalized_at)),
        ("deadline", iso(data.deadline), when(data.deadline)),
        ("duration_seconds", data.duration_seconds, Text(seconds(data.duration_seconds))),
        ("provider_job_reference", data.provider_job_reference, None),
    ]
    for key, value in (data.result or {}).items():
        shown = iso(value) if key == "expires_at" and isinstance(value, int | float) else value
        pairs.append((f"result.{key}", shown, None))
    pairs.append(("public_result_url", data.public_result_url, None))
    out.fields(pairs, f"Job {data.job_id}")


@job.command("show", cls=IdCommand)
@click.argument("job_id", metavar="ID")
@output_option
@pass_state
def show(state: State, job_id: str) -> None:
    """One job: timings, outcome, result."""
    show_job(state.out, state.client().get_job(job_id))


@click.group()
def result() -> None:
    """Finished results (the public links booths hand out)."""


@result.command("get", cls=IdCommand)
@click.argument("job_id", metavar="ID")
@click.option(
    "-o",
    "--save",
    "save_to",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to save it (default: ./<job id>.<ext>).",
)
@output_option
@pass_state
def get(state: State, job_id: str, save_to: Path | None) -> None:
    """Download a job's result image."""

    def target(mime: str) -> Path:
        return save_to or Path(f"{job_id}.{EXTENSIONS.get(mime, 'bin')}")

    path, mime, size = state.client().download_result(job_id, target)
    out = state.out
    if out.is_json:
        out.json({"job_id": job_id, "saved_to": str(path), "mime_type": mime, "size_bytes": size})
    elif out.mode.value == "plain":
        out.line(path, mime, size)
    else:
        out.success(f"saved {path} ({mime}, {size} bytes)")


@click.command("cleanup")
@slot_option
@output_option
@pass_state
def cleanup(state: State, slot_id: str | None) -> None:
    """Delete expired results now: of one slot (--slot), or start a purge of all."""
    out = state.out
    client = state.client()
    if slot_id is not None:
        report = client.cleanup_slot(slot_id)
        if out.is_json:
            out.json(report)
        else:
            out.success(f"{slot_id}: {report.deleted_results} expired result(s) deleted")
    else:
        accepted = client.purge_cache()
        if out.is_json:
            out.json(accepted)
        else:
            out.success("purge of expired media and results started on the server")
