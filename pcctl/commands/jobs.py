"""``pcctl jobs``, ``pcctl job show``, ``pcctl result get|qr``, ``pcctl cleanup``."""

from __future__ import annotations

import io
import re
import sys
from typing import Any

import click
from rich.text import Text

from pcctl.errors import NotFound
from pcctl.output import Column, Output, human_size, iso, when
from pcctl.params import IdCommand
from pcctl.render import job_outcome, outcome_text, seconds
from pcctl.saving import STDOUT, file_target, save_option, stdout_sink
from pcctl.state import State, output_option, pass_state
from shared.api_models import ClientMetadata, JobOut
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
        ("claimed_by", data.claimed_by, None),
        ("served_by", data.served_by, None),
    ]
    for a in data.attempts:
        took = f"{a.duration_seconds:g} s"
        text = f"{a.provider}/{a.operation} {a.outcome} after {took}"
        pairs.append((f"attempt.{a.step}", text + (f": {a.details}" if a.details else ""), None))
    for key, value in (data.result or {}).items():
        shown = iso(value) if key == "expires_at" and isinstance(value, int | float) else value
        pairs.append((f"result.{key}", shown, None))
    pairs.append(("public_result_url", data.public_result_url, None))
    pairs.append(("guest_url", data.guest_url, None))
    pairs.extend(_metadata_pairs(data.client_metadata))
    out.fields(pairs, f"Job {data.job_id}")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    """Booth-supplied text made safe for a terminal: control characters shown as ``\\xNN``
    (tabs and newlines are left to the output, which escapes them in plain mode)."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def _metadata_pairs(metadata: ClientMetadata | None) -> list[tuple[str, Any, Any]]:
    """What came with the photo: the booth's form fields (``form.<name>``), how its ``hash``
    matched, the query string, the photo's size."""
    if metadata is None:
        return []
    pairs: list[tuple[str, Any, Any]] = [
        (f"form.{_printable(name)}", _printable(value), None)
        for name, value in metadata.fields.items()
    ]
    if metadata.dropped_fields:
        pairs.append(("form_fields_dropped", metadata.dropped_fields, None))
    pairs.append(("hash_check", metadata.hash_check, None))
    pairs.append(("query", _printable(metadata.query), None))
    if metadata.width and metadata.height:
        pairs.append(("image", f"{metadata.width}x{metadata.height}", None))
    if metadata.size_bytes is not None:
        shown = Text(human_size(metadata.size_bytes))
        pairs.append(("upload_bytes", metadata.size_bytes, shown))
    return pairs


@job.command("show", cls=IdCommand)
@click.argument("job_id", metavar="ID")
@output_option
@pass_state
def show(state: State, job_id: str) -> None:
    """One job: timings, outcome, result, and what the booth sent with the photo."""
    show_job(state.out, state.client().get_job(job_id))


@click.group()
def result() -> None:
    """Finished results (the public links booths hand out)."""


@result.command("get", cls=IdCommand)
@click.argument("job_id", metavar="ID")
@save_option("File to save it to, - for stdout (default: ./<job id>.<ext>).")
@output_option
@pass_state
def get(state: State, job_id: str, save_to: str | None) -> None:
    """Download a job's result image; says where it went (on stderr with --save -)."""
    out = state.out
    if save_to == STDOUT:
        _, mime, size = state.client().download_result(job_id, stdout_sink(out))
        out.info(f"wrote result {job_id} to stdout ({mime}, {human_size(size)})")
        return
    path, mime, size = state.client().download_result(job_id, file_target(save_to, job_id))
    if out.is_json:
        out.json({"job_id": job_id, "saved_to": str(path), "mime_type": mime, "size_bytes": size})
    elif out.mode.value == "plain":
        out.line(path, mime, size)
    else:
        out.success(f"saved {path} ({mime}, {human_size(size)})")


@result.command("qr", cls=IdCommand)
@click.argument("job_id", metavar="ID")
@output_option
@pass_state
def qr(state: State, job_id: str) -> None:
    """The QR code of a result's guest page, drawn in the terminal (light on dark) for a
    phone to scan, then its address; with --output json only {"guest_url": …}."""
    import segno

    out = state.out
    url = state.client().get_job(job_id).guest_url
    if url is None:
        raise NotFound(
            f"job {job_id} has no result (unfinished, failed or removed)",
            status=404,
            reason="result_not_found",
        )
    if out.is_json:
        out.json({"guest_url": url})
        return
    drawing = io.StringIO()
    segno.make(url, error="m", micro=False).terminal(out=drawing, compact=True)
    sys.stdout.write(drawing.getvalue() + url + "\n")
    sys.stdout.flush()


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
