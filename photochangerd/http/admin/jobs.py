"""Jobs (list, detail) and statistics (global, per slot, and the older clients' aliases)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from quart_schema import validate_querystring, validate_response

from photochangerd.db import repositories
from photochangerd.domain.models import JOB_ID_PATTERN, Job
from photochangerd.domain.stats import ALL_SLOTS, bucket_seconds, build_stats
from photochangerd.http.admin import bp
from photochangerd.http.admin.slots import _check_slot_id, job_status
from photochangerd.http.context import AdminHandles, admin
from photochangerd.http.errors import NotFound
from photochangerd.web.guest import guest_url
from shared.api_models import ClientMetadata, JobAttempt, JobList, JobOut, SlotStatsList, Stats
from shared.catalogue import JOB_STATUS_FILTERS
from shared.errors import FailureReason

_JOB_ID_RE = re.compile(JOB_ID_PATTERN)
JOB_STATUSES = JOB_STATUS_FILTERS


@dataclass
class JobQuery:
    slot_id: str | None = None
    status: str | None = None
    limit: int = 50


@dataclass
class StatsQuery:
    window_minutes: int = 60


def job_out(app: AdminHandles, job: Job, *, with_metadata: bool = False) -> JobOut:
    base = app.config.effective_public_base_url
    has_result = job.result_file_path is not None and job.failure_reason is None
    return JobOut(
        job_id=job.id,
        slot_id=job.slot_id,
        source=job.source,
        status=job_status(job),
        is_finalized=job.is_finalized,
        failure_reason=job.failure_reason,
        failure_details=job.failure_details,
        provider=job.provider,
        operation=job.operation,
        created_at=job.created_at,
        started_at=job.started_at,
        finalized_at=job.finalized_at,
        deadline=job.deadline,
        duration_seconds=(
            round(job.finalized_at - job.created_at, 4) if job.finalized_at else None
        ),
        provider_job_reference=job.provider_job_reference,
        claimed_by=job.claimed_by,
        result=None
        if job.result_checksum is None
        else {
            "mime_type": job.result_mime_type,
            "size_bytes": job.result_size_bytes,
            "checksum": job.result_checksum,
            "expires_at": job.result_expires_at,
            "available": job.result_file_path is not None,
        },
        public_result_url=f"{base}/public/results/{job.id}" if has_result else None,
        guest_url=guest_url(base, job.id) if has_result else None,
        client_metadata=(
            ClientMetadata.model_validate(job.client_metadata) if with_metadata else None
        ),
        served_by=job.served_by,
        attempts=[JobAttempt.model_validate(a) for a in job.attempt_log] if with_metadata else [],
    )


@bp.get("/jobs")
@validate_querystring(JobQuery)
@validate_response(JobList, 200)
async def list_jobs(query_args: JobQuery) -> tuple[JobList, int]:
    from photochangerd.http.validation import ValidationFailed

    if query_args.slot_id is not None:
        _check_slot_id(query_args.slot_id)
    if query_args.status is not None and query_args.status not in JOB_STATUSES:
        raise ValidationFailed({"status": f"one of {', '.join(JOB_STATUSES)}"})
    if not 1 <= query_args.limit <= 500:
        raise ValidationFailed({"limit": "between 1 and 500"})
    app = admin()
    jobs = await app.db.read(
        repositories.list_jobs,
        slot_id=query_args.slot_id,
        status=query_args.status,
        limit=query_args.limit,
    )
    return JobList(jobs=[job_out(app, job) for job in jobs]), 200


@bp.get("/jobs/<job_id>")
@validate_response(JobOut, 200)
async def get_job(job_id: str) -> tuple[JobOut, int]:
    app = admin()
    job = None
    if _JOB_ID_RE.fullmatch(job_id):
        job = await app.db.read(repositories.get_job, job_id)
    if job is None:
        raise NotFound("no such job", reason=FailureReason.NOT_FOUND)
    return job_out(app, job, with_metadata=True), 200


async def _stats(window_minutes: int) -> dict[str | None, Stats]:
    from photochangerd.http.validation import ValidationFailed

    if not 1 <= window_minutes <= 60 * 24 * 31:
        raise ValidationFailed({"window_minutes": "between 1 and 44640"})
    app = admin()
    now = app.clock.now()
    since = now - window_minutes * 60
    rows = await app.db.read(repositories.stats_rows, since, bucket_seconds(window_minutes))
    return build_stats(rows, since=since, window_minutes=window_minutes, slot_ids=ALL_SLOTS)


@bp.get("/stats/global")
@bp.get("/stats/overview")
@validate_querystring(StatsQuery)
@validate_response(Stats, 200)
async def stats_global(query_args: StatsQuery) -> tuple[Stats, int]:
    return (await _stats(query_args.window_minutes))[None], 200


@bp.get("/stats/slots")
@validate_querystring(StatsQuery)
@validate_response(SlotStatsList, 200)
async def stats_slots(query_args: StatsQuery) -> tuple[SlotStatsList, int]:
    stats = await _stats(query_args.window_minutes)
    return SlotStatsList(
        window_minutes=query_args.window_minutes,
        slots=[s for key, s in stats.items() if key is not None],
    ), 200


@bp.get("/stats/<slot_id>")
@validate_querystring(StatsQuery)
@validate_response(Stats, 200)
async def stats_slot(slot_id: str, query_args: StatsQuery) -> tuple[Stats, int]:
    _check_slot_id(slot_id)
    return (await _stats(query_args.window_minutes))[slot_id], 200
