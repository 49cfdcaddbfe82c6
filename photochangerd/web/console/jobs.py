"""``/admin/jobs`` (recent jobs, filtered by slot and status) and ``/admin/jobs/<job_id>``
(timings, outcome, failure, attempts, what the booth sent, the result's links).

The rows are the API's :class:`~shared.api_models.JobOut` (``GET /api/jobs``,
``GET /api/jobs/{job_id}``), built by the same :func:`~photochangerd.http.admin.jobs.job_out`.
Booth metadata is booth-supplied text: the templates only ever print it escaped.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from quart import Response, request

from photochangerd.db import repositories
from photochangerd.domain.models import JOB_ID_PATTERN
from photochangerd.http.admin.jobs import JOB_STATUSES, job_out
from photochangerd.http.context import admin
from photochangerd.web import formatting
from photochangerd.web.console import bp, page
from shared.api_models import JobOut
from shared.slots import SLOT_IDS, is_slot_id

LIMITS = (25, 50, 100, 200, 500)  # GET /api/jobs allows 1–500
DEFAULT_LIMIT = 50
_JOB_ID = re.compile(JOB_ID_PATTERN)


def outcome(job: JobOut) -> str:
    """``ok``, the failure reason, or the state of an unfinished job (as pcctl shows it)."""
    if not job.is_finalized:
        return job.status
    return job.failure_reason or "ok"


def outcome_class(job: JobOut) -> str:
    value = outcome(job)
    if value == "ok":
        return "ok"
    return "running" if not job.is_finalized else "bad"


def _query(**values: str | int | None) -> str:
    return urlencode({k: v for k, v in values.items() if v not in (None, "")})


@bp.get("/jobs")
async def jobs_page() -> Response:
    errors: dict[str, str] = {}
    slot_id: str | None = request.args.get("slot", "") or None
    if slot_id is not None and not is_slot_id(slot_id):
        errors["slot"] = f"no such slot: choose all or one of {SLOT_IDS[0]} … {SLOT_IDS[-1]}"
        slot_id = None
    status: str | None = request.args.get("status", "") or None
    if status is not None and status not in JOB_STATUSES:
        errors["status"] = "choose one of " + ", ".join(JOB_STATUSES)
        status = None
    raw_limit = request.args.get("limit", str(DEFAULT_LIMIT))
    limit = int(raw_limit) if raw_limit.isdigit() else 0
    if not 1 <= limit <= LIMITS[-1]:
        errors["limit"] = f"between 1 and {LIMITS[-1]}"
        limit = DEFAULT_LIMIT
    app = admin()
    rows = await app.db.read(repositories.list_jobs, slot_id=slot_id, status=status, limit=limit)
    jobs = [job_out(app, row) for row in rows]
    more = None
    if len(jobs) == limit and limit < LIMITS[-1]:
        bigger = next((n for n in LIMITS if n > limit), LIMITS[-1])
        more = "/admin/jobs?" + _query(slot=slot_id, status=status, limit=bigger)
    return await page(
        "jobs.html",
        status=400 if errors else 200,
        errors=errors,
        jobs=jobs,
        slot_id=slot_id,
        job_status=status,
        limit=limit,
        limits=sorted({*LIMITS, limit}),
        slot_ids=SLOT_IDS,
        statuses=JOB_STATUSES,
        more=more,
        outcome=outcome,
        outcome_class=outcome_class,
        fmt=formatting,
        now=app.clock.now(),
    )


@bp.get("/jobs/<job_id>")
async def job_page(job_id: str) -> Response:
    app = admin()
    job = None
    if _JOB_ID.fullmatch(job_id):
        job = await app.db.read(repositories.get_job, job_id)
    if job is None:
        return await page("job_missing.html", status=404, job_id=job_id[:64])
    data = job_out(app, job, with_metadata=True)
    # after the first: the time of day and the offset from when the photo arrived
    timings = [
        (label, ts, None if ts is None else ts - data.created_at)
        for label, ts in (
            ("Started", data.started_at),
            ("Finished", data.finalized_at),
            ("Deadline", data.deadline),
        )
    ]
    waited = (
        None if data.started_at is None else round(max(0.0, data.started_at - data.created_at), 3)
    )
    worked = (
        None
        if data.started_at is None or data.finalized_at is None
        else round(max(0.0, data.finalized_at - data.started_at), 3)
    )
    result_available = bool(data.public_result_url)
    return await page(
        "job.html",
        job=data,
        attempts=job.attempts,
        response_status=job.response_status,
        timings=timings,
        waited=waited,
        worked=worked,
        result_available=result_available,
        outcome=outcome(data),
        outcome_class=outcome_class(data),
        fmt=formatting,
        now=app.clock.now(),
    )
