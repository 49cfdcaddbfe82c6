"""Named queries (SQLAlchemy Core), one function per operation, written against a plain
synchronous :class:`sqlalchemy.Connection` so the same code runs on both back ends (see
:mod:`photochangerd.db.engine`).  Call them through :class:`~photochangerd.db.engine.Database`::

    job = await db.read(repositories.get_job, job_id)

Only the claim differs per dialect: PostgreSQL takes the next pending job with ``FOR UPDATE
SKIP LOCKED`` so several daemons can share one database; SQLite has a single writer and takes it
with a plain conditional update in the same statement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from photochangerd.db.engine import config_write, single_statement
from photochangerd.db.tables import (
    admin_session,
    admin_user,
    app_settings,
    ingest_failure,
    ingest_pace,
    job,
    login_failure,
    login_lock,
    media_object,
    processing_log,
    provider_secret,
    revoked_token,
    slot,
    slot_template,
    template_media,
)
from photochangerd.domain.models import Job, Slot, StoredResult, TemplateBinding

# -- slots ------------------------------------------------------------------------------------


def _slot(row: sa.Row[Any]) -> Slot:
    return Slot(**row._mapping)


def get_slot(conn: Connection, slot_id: str) -> Slot | None:
    row = (conn.execute(sa.select(slot).where(slot.c.id == slot_id))).first()
    return None if row is None else _slot(row)


def list_slots(conn: Connection) -> list[Slot]:
    rows = conn.execute(sa.select(slot).order_by(slot.c.id))
    return [_slot(row) for row in rows]


@config_write
def update_slot(conn: Connection, slot_id: str, values: Mapping[str, Any]) -> None:
    conn.execute(
        sa.update(slot).where(slot.c.id == slot_id).values(**values, version=slot.c.version + 1)
    )


def slot_templates(conn: Connection, slot_id: str) -> list[TemplateBinding]:
    rows = conn.execute(
        sa.select(
            slot_template.c.role,
            slot_template.c.template_id,
            template_media.c.path,
            template_media.c.mime_type,
        )
        .join(template_media, template_media.c.id == slot_template.c.template_id)
        .where(slot_template.c.slot_id == slot_id)
        .order_by(slot_template.c.position)
    )
    return [TemplateBinding(*row) for row in rows]


def insert_template(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(sa.insert(template_media).values(**values))


@config_write
def bind_templates(conn: Connection, slot_id: str, bindings: Sequence[tuple[str, str]]) -> None:
    """Replace ``slot_id``'s template bindings with ``[(role, template_id), ...]`` in order."""
    conn.execute(sa.delete(slot_template).where(slot_template.c.slot_id == slot_id))
    for position, (role, template_id) in enumerate(bindings):
        conn.execute(
            sa.insert(slot_template).values(
                slot_id=slot_id, position=position, role=role, template_id=template_id
            )
        )


# -- settings ---------------------------------------------------------------------------------


def get_settings(conn: Connection) -> dict[str, Any]:
    rows = conn.execute(sa.select(app_settings.c.key, app_settings.c.value))
    return {key: value for key, value in rows}


@config_write
def put_setting(conn: Connection, key: str, value: Any, now: float, by: str | None) -> None:
    updated = conn.execute(
        sa.update(app_settings)
        .where(app_settings.c.key == key)
        .values(value=value, updated_at=now, updated_by=by)
    )
    if updated.rowcount == 0:
        conn.execute(
            sa.insert(app_settings).values(key=key, value=value, updated_at=now, updated_by=by)
        )


def load_ingest_context(
    conn: Connection, slot_id: str
) -> tuple[Slot | None, dict[str, Any], tuple[TemplateBinding, ...]]:
    """The slot, the global settings and the slot's template bindings an ingest needs, in one
    read (one transaction on SQLite; three autocommit statements on PostgreSQL, like every read
    there).  The job then runs with the bindings it was submitted with."""
    found = get_slot(conn, slot_id)
    bindings = tuple(slot_templates(conn, slot_id)) if found is not None else ()
    return found, get_settings(conn), bindings


# -- admins -----------------------------------------------------------------------------------


def admin_credentials(conn: Connection, username: str) -> tuple[str, float] | None:
    """(password hash, when the password was last set) of an admin, else None.  The second is
    the password's version: tokens carry it, and one set later refuses them."""
    row = conn.execute(
        sa.select(admin_user.c.password_hash, admin_user.c.updated_at).where(
            admin_user.c.username == username
        )
    ).first()
    return None if row is None else (str(row.password_hash), float(row.updated_at))


def admin_password_hash(conn: Connection, username: str) -> str | None:
    value = conn.scalar(
        sa.select(admin_user.c.password_hash).where(admin_user.c.username == username)
    )
    return None if value is None else str(value)


def set_admin_password(conn: Connection, username: str, password_hash: str, now: float) -> None:
    """A new password: the user's console sessions end, and tokens issued before ``now``
    (``updated_at``) are refused (:func:`token_refusal`)."""
    updated = conn.execute(
        sa.update(admin_user)
        .where(admin_user.c.username == username)
        .values(password_hash=password_hash, updated_at=now)
    )
    if updated.rowcount == 0:
        conn.execute(
            sa.insert(admin_user).values(
                username=username, password_hash=password_hash, updated_at=now
            )
        )
    conn.execute(sa.delete(admin_session).where(admin_session.c.username == username))


@single_statement
def renew_admin_password_hash(conn: Connection, username: str, password_hash: str) -> None:
    """The same password hashed with current parameters: sessions and tokens stay valid."""
    conn.execute(
        sa.update(admin_user)
        .where(admin_user.c.username == username)
        .values(password_hash=password_hash)
    )


# -- jobs -------------------------------------------------------------------------------------


def _job(row: sa.Row[Any]) -> Job:
    return Job(**row._mapping)


# The two statements every ingest runs are built once: constructing a statement and its cache
# key costs more than executing it (measured ≈ 0.7 → 0.2 ms per transaction on SQLite).
_INSERT_JOB = sa.insert(job)
_FINALIZE_JOB = sa.update(job).where(
    job.c.id == sa.bindparam("finalize_job_id"), job.c.is_finalized == sa.false()
)


def pending_job_row(
    job_id: str,
    slot: Slot,
    source: str,
    created_at: float,
    deadline: float,
    metadata: dict[str, Any],
    input_path: str | None,
    input_mime_type: str,
) -> dict[str, Any]:
    """The row of a job just submitted to ``slot``: pending, nothing tried yet."""
    return {
        "id": job_id,
        "slot_id": slot.id,
        "source": source,
        "status": "pending",
        "is_finalized": False,
        "provider": slot.provider,
        "operation": slot.operation,
        "settings": slot.settings,
        "created_at": created_at,
        "deadline": deadline,
        "attempts": 0,
        "client_metadata": metadata,
        "input_path": input_path,
        "input_mime_type": input_mime_type,
        "fallbacks": slot.fallbacks,
        "attempt_log": [],
    }


@single_statement
def insert_job(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(_INSERT_JOB, dict(values))


def get_job(conn: Connection, job_id: str) -> Job | None:
    row = (conn.execute(sa.select(job).where(job.c.id == job_id))).first()
    return None if row is None else _job(row)


_UNFINALIZED = job.c.is_finalized == sa.false()


def _claim_values(instance_id: str, now: float) -> dict[str, Any]:
    return {
        "status": "processing",
        "started_at": now,
        "claimed_by": instance_id,
        "attempts": job.c.attempts + 1,
    }


@single_statement
def claim_job(conn: Connection, job_id: str, instance_id: str, now: float) -> Job | None:
    """Claim one known job if it is still pending (a wake-up names it)."""
    row = (
        conn.execute(
            sa.update(job)
            .where(job.c.id == job_id, job.c.status == "pending", _UNFINALIZED)
            .values(**_claim_values(instance_id, now))
            .returning(*job.c)
        )
    ).first()
    return None if row is None else _job(row)


@single_statement
def claim_next_job(conn: Connection, instance_id: str, now: float, dialect: str) -> Job | None:
    """Claim the oldest pending job whose deadline has not passed (any instance's)."""
    candidate = (
        sa.select(job.c.id)
        .where(job.c.status == "pending", _UNFINALIZED, job.c.deadline > now)
        .order_by(job.c.created_at)
        .limit(1)
    )
    if dialect == "postgresql":
        candidate = candidate.with_for_update(skip_locked=True)
    row = (
        conn.execute(
            sa.update(job)
            .where(job.c.id == candidate.scalar_subquery(), job.c.status == "pending")
            .values(**_claim_values(instance_id, now))
            .returning(*job.c)
        )
    ).first()
    return None if row is None else _job(row)


@single_statement
def finalize_job(
    conn: Connection,
    job_id: str,
    *,
    now: float,
    failure_reason: str | None,
    response_status: int,
    details: str | None,
    result: StoredResult | None,
    result_ttl_seconds: float,
    attempt_log: list[dict[str, Any]] | None = None,
    served_by: str | None = None,
    fallback_step: int | None = None,
) -> bool:
    """Finalize ``job_id`` unless someone already did; True when this call won.

    The conditional update is what makes finalization exactly-once across the worker, the
    waiting request, the sweeper and other instances.
    """
    values: dict[str, Any] = {
        "is_finalized": True,
        "failure_reason": failure_reason,
        "failure_details": details[:500] if details else None,
        "response_status": response_status,
        "finalized_at": now,
        "input_path": None,  # the caller removes the input copy once this commits
        "attempt_log": attempt_log or [],
        "served_by": served_by,
        "fallback_step": fallback_step,
    }
    if result is not None:
        values.update(
            result_file_path=result.path,
            result_mime_type=result.mime_type,
            result_size_bytes=result.size_bytes,
            result_checksum=result.checksum,
            result_expires_at=now + result_ttl_seconds,
        )
    updated = conn.execute(_FINALIZE_JOB, {"finalize_job_id": job_id, **values})
    return updated.rowcount == 1


# What a requester is (or would have been) answered for a job ended by recovery or sweeping.
_STATUS_OF_FAILURE = {"timeout": 504, "cancelled": 503}


@single_statement
def finalize_overdue(
    conn: Connection, *, now: float, before: float, failure_reason: str, details: str
) -> list[tuple[str, str | None]]:
    """Finalize every unfinalized job whose deadline is before ``before``; (id, input_path)s."""
    rows = conn.execute(
        sa.update(job)
        .where(_UNFINALIZED, job.c.deadline < before)
        .values(
            is_finalized=True,
            failure_reason=failure_reason,
            failure_details=details,
            response_status=_STATUS_OF_FAILURE.get(failure_reason, 500),
            finalized_at=now,
        )
        .returning(job.c.id, job.c.input_path)
    )
    return [(row.id, row.input_path) for row in rows]


def finalize_all_unfinalized(
    conn: Connection, *, now: float, failure_reason: str, details: str
) -> list[tuple[str, str | None]]:
    """Single-instance recovery: every unfinalized job belongs to a process that is gone."""
    return finalize_overdue(
        conn, now=now, before=float("inf"), failure_reason=failure_reason, details=details
    )


def inputs_of_finalized(conn: Connection, limit: int) -> list[tuple[str, str]]:
    """Finalized jobs whose input copy is still recorded (to delete their temp files)."""
    rows = conn.execute(
        sa.select(job.c.id, job.c.input_path)
        .where(job.c.is_finalized == sa.true(), job.c.input_path.is_not(None))
        .limit(limit)
    )
    return [(row.id, row.input_path) for row in rows]


def clear_input_paths(conn: Connection, job_ids: Sequence[str]) -> None:
    if job_ids:
        conn.execute(sa.update(job).where(job.c.id.in_(job_ids)).values(input_path=None))


def expired_results(
    conn: Connection, now: float, limit: int, slot_id: str | None = None
) -> list[tuple[str, str]]:
    query = sa.select(job.c.id, job.c.result_file_path).where(
        job.c.result_file_path.is_not(None), job.c.result_expires_at <= now
    )
    if slot_id is not None:
        query = query.where(job.c.slot_id == slot_id)
    rows = conn.execute(query.limit(limit))
    return [(row.id, row.result_file_path) for row in rows]


def clear_result_paths(conn: Connection, job_ids: Sequence[str]) -> None:
    if job_ids:
        conn.execute(sa.update(job).where(job.c.id.in_(job_ids)).values(result_file_path=None))


def known_media_paths(conn: Connection) -> set[str]:
    """Every file path the database still points at (results, inputs, live provider media)
    — for orphan sweeps."""
    rows = conn.execute(
        sa.select(job.c.result_file_path, job.c.input_path).where(
            sa.or_(job.c.result_file_path.is_not(None), job.c.input_path.is_not(None))
        )
    )
    known = {path for row in rows for path in row if path}
    media = conn.execute(sa.select(media_object.c.path).where(media_object.c.cleaned_at.is_(None)))
    return known | {row.path for row in media}


@single_statement
def set_job_values(conn: Connection, job_id: str, values: Mapping[str, Any]) -> None:
    """Test and maintenance helper: overwrite columns of one job."""
    conn.execute(sa.update(job).where(job.c.id == job_id).values(**values))


# -- processing log ---------------------------------------------------------------------------


def insert_processing_log(conn: Connection, entries: Sequence[Mapping[str, Any]]) -> None:
    if entries:
        conn.execute(sa.insert(processing_log), list(entries))


# -- first start ------------------------------------------------------------------------------


def _insert_ignore(conn: Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


@config_write
def insert_setting_if_missing(conn: Connection, key: str, value: Any, now: float) -> bool:
    """Seed a setting; False when it already existed (another instance may have won)."""
    result = conn.execute(
        _insert_ignore(conn, app_settings).values(key=key, value=value, updated_at=now)
    )
    return result.rowcount == 1


@config_write
def insert_initial_passwords(
    conn: Connection, ingest: dict[str, Any] | None, admins: Mapping[str, str], now: float
) -> set[str]:
    """A first start's passwords in one transaction (the ingest password's record, the admins'
    hashes), each only if missing; the names stored (``"ingest"``, usernames): another
    instance starting at the same moment may have stored some first."""
    stored: set[str] = set()
    if ingest is not None and insert_setting_if_missing(conn, "ingest_password", ingest, now):
        stored.add("ingest")
    for username, password_hash in admins.items():
        if insert_admin_if_missing(conn, username, password_hash, now):
            stored.add(username)
    return stored


def insert_admin_if_missing(
    conn: Connection, username: str, password_hash: str, now: float
) -> bool:
    result = conn.execute(
        _insert_ignore(conn, admin_user).values(
            username=username, password_hash=password_hash, updated_at=now
        )
    )
    return result.rowcount == 1


# -- temporary provider media -----------------------------------------------------------------


def insert_media_object(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(sa.insert(media_object).values(**values))


def get_media_object(conn: Connection, media_id: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(media_object).where(media_object.c.id == media_id)).first()


def expired_media_objects(conn: Connection, now: float, limit: int) -> list[tuple[str, str]]:
    rows = conn.execute(
        sa.select(media_object.c.id, media_object.c.path)
        .where(media_object.c.cleaned_at.is_(None), media_object.c.expires_at <= now)
        .limit(limit)
    )
    return [(row.id, row.path) for row in rows]


def mark_media_cleaned(conn: Connection, media_ids: Sequence[str], now: float) -> None:
    if media_ids:
        conn.execute(
            sa.update(media_object).where(media_object.c.id.in_(media_ids)).values(cleaned_at=now)
        )


@single_statement
def set_provider_reference(conn: Connection, job_id: str, reference: str) -> None:
    conn.execute(
        sa.update(job).where(job.c.id == job_id).values(provider_job_reference=reference[:200])
    )


def keep_attempt_log(conn: Connection, job_id: str, attempt_log: list[dict[str, Any]]) -> None:
    """The steps a worker tried, for a job the sweeper finalized while the worker still ran."""
    conn.execute(sa.update(job).where(job.c.id == job_id).values(attempt_log=attempt_log))


# -- provider secrets -------------------------------------------------------------------------


def provider_secrets(conn: Connection) -> dict[str, tuple[bytes, float]]:
    rows = conn.execute(
        sa.select(
            provider_secret.c.provider, provider_secret.c.ciphertext, provider_secret.c.updated_at
        )
    )
    return {row.provider: (bytes(row.ciphertext), row.updated_at) for row in rows}


@config_write
def put_provider_secret(
    conn: Connection, provider: str, ciphertext: bytes | None, now: float, by: str
) -> None:
    conn.execute(sa.delete(provider_secret).where(provider_secret.c.provider == provider))
    if ciphertext is not None:
        conn.execute(
            sa.insert(provider_secret).values(
                provider=provider, ciphertext=ciphertext, updated_at=now, updated_by=by
            )
        )


# -- template media ---------------------------------------------------------------------------


def list_templates(conn: Connection) -> list[tuple[sa.Row[Any], list[str]]]:
    rows = conn.execute(sa.select(template_media).order_by(template_media.c.created_at))
    usage = _template_usage(conn)
    return [(row, sorted(set(usage.get(row.id, [])))) for row in rows]


def _template_usage(conn: Connection) -> dict[str, list[str]]:
    """Template id → the slots using it (bound to the slot, or in one of its fallbacks)."""
    usage: dict[str, list[str]] = {}
    for binding in conn.execute(sa.select(slot_template.c.template_id, slot_template.c.slot_id)):
        usage.setdefault(binding.template_id, []).append(binding.slot_id)
    for row in conn.execute(sa.select(slot.c.id, slot.c.fallbacks)):
        for step in row.fallbacks or []:
            for template in step.get("templates", []):
                usage.setdefault(template["template_id"], []).append(row.id)
    return usage


def get_template(conn: Connection, template_id: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(template_media).where(template_media.c.id == template_id)).first()


def delete_template_if_unused(conn: Connection, template_id: str) -> list[str] | None:
    """Delete the template; returns the slots still using it instead (and deletes nothing),
    or None when there was no such template."""
    if get_template(conn, template_id) is None:
        return None
    users = sorted(set(_template_usage(conn).get(template_id, [])))
    if not users:
        conn.execute(sa.delete(template_media).where(template_media.c.id == template_id))
    return users


def slot_bindings_detail(conn: Connection, slot_id: str) -> list[sa.Row[Any]]:
    return list(
        conn.execute(
            sa.select(
                slot_template.c.role,
                slot_template.c.template_id,
                template_media.c.mime_type,
                template_media.c.width,
                template_media.c.height,
            )
            .join(template_media, template_media.c.id == slot_template.c.template_id)
            .where(slot_template.c.slot_id == slot_id)
            .order_by(slot_template.c.position)
        )
    )


@config_write
def update_slot_checked(
    conn: Connection,
    slot_id: str,
    values: Mapping[str, Any],
    bindings: Sequence[tuple[str, str]] | None,
    expected_version: int | None,
    fallback_templates: Sequence[str] = (),
) -> str:
    """Apply an admin's slot update: ``"ok"``, ``"conflict"`` (If-Match mismatch),
    ``"missing_template"`` or ``"missing_fallback_template"``."""
    if bindings is not None:
        for _role, template_id in bindings:
            if get_template(conn, template_id) is None:
                return "missing_template"
    for template_id in fallback_templates:
        if get_template(conn, template_id) is None:
            return "missing_fallback_template"
    query = sa.update(slot).where(slot.c.id == slot_id)
    if expected_version is not None:
        query = query.where(slot.c.version == expected_version)
    updated = conn.execute(query.values(**values, version=slot.c.version + 1))
    if updated.rowcount != 1:
        return "conflict"
    if bindings is not None:
        bind_templates(conn, slot_id, bindings)
    return "ok"


# -- jobs for the admin API -------------------------------------------------------------------


def list_jobs(
    conn: Connection, *, slot_id: str | None, status: str | None, limit: int
) -> list[Job]:
    query = sa.select(job).order_by(job.c.created_at.desc()).limit(limit)
    if slot_id is not None:
        query = query.where(job.c.slot_id == slot_id)
    if status in ("pending", "processing"):
        query = query.where(job.c.status == status, _UNFINALIZED)
    elif status == "finalized":
        query = query.where(job.c.is_finalized == sa.true())
    elif status == "succeeded":
        query = query.where(job.c.is_finalized == sa.true(), job.c.failure_reason.is_(None))
    elif status in ("timeout", "provider_error", "cancelled", "internal_error"):
        query = query.where(job.c.failure_reason == status)
    return [_job(row) for row in conn.execute(query)]


def recent_finished(conn: Connection, slot_id: str, limit: int) -> list[Job]:
    rows = conn.execute(
        sa.select(job)
        .where(job.c.slot_id == slot_id, job.c.is_finalized == sa.true())
        .order_by(job.c.finalized_at.desc())
        .limit(limit)
    )
    return [_job(row) for row in rows]


def last_job_per_slot(conn: Connection) -> dict[str, Job]:
    latest = (
        sa.select(job.c.slot_id, sa.func.max(job.c.created_at).label("created"))
        .group_by(job.c.slot_id)
        .subquery()
    )
    rows = conn.execute(
        sa.select(job).join(
            latest, sa.and_(job.c.slot_id == latest.c.slot_id, job.c.created_at == latest.c.created)
        )
    )
    return {row.slot_id: _job(row) for row in rows}


# -- statistics (grouped: a handful of queries for all slots, never one per slot) -------------


def stats_rows(conn: Connection, since: float, bucket_seconds: float) -> dict[str, Any]:
    is_ok = sa.and_(job.c.is_finalized == sa.true(), job.c.failure_reason.is_(None))

    def count_if(condition: Any) -> Any:
        return sa.func.sum(sa.case((condition, 1), else_=0))

    counts = conn.execute(
        sa.select(
            job.c.slot_id,
            sa.func.count().label("jobs"),
            count_if(is_ok).label("successes"),
            count_if(job.c.failure_reason == "timeout").label("timeouts"),
            count_if(job.c.failure_reason == "provider_error").label("provider_errors"),
            count_if(job.c.failure_reason == "internal_error").label("internal_errors"),
            count_if(job.c.failure_reason == "cancelled").label("cancelled"),
            count_if(job.c.is_finalized == sa.false()).label("in_progress"),
        )
        .where(job.c.created_at >= since)
        .group_by(job.c.slot_id)
    ).all()
    durations = conn.execute(
        sa.select(job.c.slot_id, (job.c.finalized_at - job.c.created_at).label("seconds")).where(
            job.c.created_at >= since, is_ok
        )
    ).all()
    rejected = conn.execute(
        sa.select(processing_log.c.slot_id, processing_log.c.failure_reason, sa.func.count())
        .where(processing_log.c.created_at >= since, processing_log.c.job_id.is_(None))
        .group_by(processing_log.c.slot_id, processing_log.c.failure_reason)
    ).all()
    offset = (job.c.created_at - since) / bucket_seconds
    bucket = (
        sa.func.floor(offset) if conn.dialect.name == "postgresql" else sa.cast(offset, sa.Integer)
    )
    buckets = conn.execute(
        sa.select(
            job.c.slot_id,
            bucket.label("bucket"),
            sa.func.count().label("jobs"),
            count_if(is_ok).label("successes"),
            count_if(job.c.failure_reason == "timeout").label("timeouts"),
            count_if(job.c.failure_reason == "provider_error").label("provider_errors"),
        )
        .where(job.c.created_at >= since)
        .group_by(job.c.slot_id, bucket)
    ).all()
    log_offset = (processing_log.c.created_at - since) / bucket_seconds
    log_bucket = (
        sa.func.floor(log_offset)
        if conn.dialect.name == "postgresql"
        else sa.cast(log_offset, sa.Integer)
    )
    rejected_buckets = conn.execute(
        sa.select(processing_log.c.slot_id, log_bucket.label("bucket"), sa.func.count())
        .where(processing_log.c.created_at >= since, processing_log.c.job_id.is_(None))
        .group_by(processing_log.c.slot_id, log_bucket)
    ).all()
    last_success = conn.execute(
        sa.select(job.c.slot_id, sa.func.max(job.c.finalized_at))
        .where(is_ok)
        .group_by(job.c.slot_id)
    ).all()
    failed = job.c.failure_reason.is_not(None)
    latest_failure = (
        sa.select(job.c.slot_id, sa.func.max(job.c.finalized_at).label("at"))
        .where(failed)
        .group_by(job.c.slot_id)
        .subquery()
    )
    last_error = conn.execute(
        sa.select(job.c.slot_id, job.c.failure_reason, job.c.finalized_at)
        .join(
            latest_failure,
            sa.and_(
                job.c.slot_id == latest_failure.c.slot_id, job.c.finalized_at == latest_failure.c.at
            ),
        )
        .where(failed)
    ).all()
    storage = conn.execute(
        sa.select(job.c.slot_id, sa.func.sum(job.c.result_size_bytes))
        .where(job.c.result_file_path.is_not(None))
        .group_by(job.c.slot_id)
    ).all()
    fallbacks = conn.execute(
        sa.select(job.c.slot_id, job.c.served_by, sa.func.count())
        .where(job.c.created_at >= since, is_ok, job.c.fallback_step > 0)
        .group_by(job.c.slot_id, job.c.served_by)
    ).all()
    return {
        "counts": counts,
        "fallbacks": fallbacks,
        "durations": durations,
        "rejected": rejected,
        "buckets": buckets,
        "rejected_buckets": rejected_buckets,
        "last_success": last_success,
        "last_error": last_error,
        "storage": storage,
    }


# -- web console sessions ----------------------------------------------------------------------


def open_admin_session(
    conn: Connection, id_hash: str, username: str, now: float, expires_at: float
) -> None:
    """Store a new session (and drop the expired ones: sign-ins are rare, this keeps it small)."""
    conn.execute(sa.delete(admin_session).where(admin_session.c.expires_at < now))
    conn.execute(
        sa.insert(admin_session).values(
            id_hash=id_hash, username=username, created_at=now, expires_at=expires_at
        )
    )


def admin_session_user(conn: Connection, id_hash: str, now: float) -> tuple[str, float] | None:
    """(username, expires_at) of a live session, else None."""
    row = conn.execute(
        sa.select(admin_session.c.username, admin_session.c.expires_at).where(
            admin_session.c.id_hash == id_hash, admin_session.c.expires_at > now
        )
    ).first()
    return (str(row.username), float(row.expires_at)) if row is not None else None


def close_admin_session(conn: Connection, id_hash: str) -> None:
    conn.execute(sa.delete(admin_session).where(admin_session.c.id_hash == id_hash))


# -- signed-out admin tokens ----------------------------------------------------------------


@single_statement
def revoke_token(conn: Connection, jti: str, expires_at: float) -> None:
    conn.execute(_insert_ignore(conn, revoked_token).values(jti=jti, expires_at=expires_at))


def write_probe(conn: Connection) -> None:
    """A write that leaves nothing behind (a row in and out of ``revoked_token``, a table no
    trigger watches): whether the database takes writes again after a refused one."""
    conn.execute(sa.insert(revoked_token).values(jti="photochangerd-write-probe", expires_at=0.0))
    conn.execute(sa.delete(revoked_token).where(revoked_token.c.jti == "photochangerd-write-probe"))


def token_refusal(
    conn: Connection,
    jti: str,
    username: str,
    issued_at: float,
    password_version: float | None,
) -> str | None:
    """Why a well-signed token is refused anyway, or None: signed out, or its user's password
    set again since it was issued (or a user who is gone).

    A token carries the version of the password it was issued with (``pwv``, the
    ``updated_at`` read at sign-in), compared exactly: no clock of one host is compared with
    another's.  A token issued before that claim existed falls back to its ``iat``.
    """
    if conn.scalar(sa.select(revoked_token.c.jti).where(revoked_token.c.jti == jti)) is not None:
        return "the token was signed out"
    changed = conn.scalar(
        sa.select(admin_user.c.updated_at).where(admin_user.c.username == username)
    )
    if changed is None:
        return "the token's user does not exist"
    stale = (
        float(changed) != password_version
        if password_version is not None
        else issued_at < float(changed)
    )
    return "the password changed after the token was issued: sign in again" if stale else None


@single_statement
def delete_expired_revocations(conn: Connection, now: float) -> int:
    result = conn.execute(sa.delete(revoked_token).where(revoked_token.c.expires_at < now))
    return int(result.rowcount or 0)


# -- sign-in throttle (auth/throttle.py) ------------------------------------------------------


def login_locked_until(conn: Connection, keys: Sequence[str], now: float) -> float | None:
    """The latest lock among ``keys`` still in force, or None."""
    value = conn.scalar(
        sa.select(sa.func.max(login_lock.c.locked_until)).where(
            login_lock.c.key.in_(keys), login_lock.c.locked_until > now
        )
    )
    return None if value is None else float(value)


def record_login_failure(
    conn: Connection,
    keys: Sequence[str],
    now: float,
    *,
    window: float,
    max_failures: int,
    lock_seconds: float,
) -> None:
    """Count a failure for each key; a key with ``max_failures`` in ``window`` is locked."""
    conn.execute(
        sa.delete(login_failure).where(
            login_failure.c.key.in_(keys), login_failure.c.failed_at <= now - window
        )
    )
    conn.execute(sa.insert(login_failure), [{"key": key, "failed_at": now} for key in keys])
    counts = conn.execute(
        sa.select(login_failure.c.key, sa.func.count())
        .where(login_failure.c.key.in_(keys))
        .group_by(login_failure.c.key)
    )
    full = [key for key, count in counts if count >= max_failures]
    for key in full:  # an upsert: two instances may lock the same key at once
        conn.execute(_insert_ignore(conn, login_lock).values(key=key, locked_until=0.0))
        conn.execute(
            sa.update(login_lock)
            .where(login_lock.c.key == key)
            .values(locked_until=sa.func.max(login_lock.c.locked_until, now + lock_seconds))
            if conn.dialect.name == "sqlite"
            else sa.update(login_lock)
            .where(login_lock.c.key == key)
            .values(locked_until=sa.func.greatest(login_lock.c.locked_until, now + lock_seconds))
        )
    if full:
        conn.execute(sa.delete(login_failure).where(login_failure.c.key.in_(full)))


def clear_login_failures(conn: Connection, keys: Sequence[str]) -> None:
    conn.execute(sa.delete(login_failure).where(login_failure.c.key.in_(keys)))
    conn.execute(sa.delete(login_lock).where(login_lock.c.key.in_(keys)))


def prune_login_throttle(conn: Connection, now: float, window: float) -> None:
    conn.execute(sa.delete(login_failure).where(login_failure.c.failed_at <= now - window))
    conn.execute(sa.delete(login_lock).where(login_lock.c.locked_until <= now))


# -- ingest password pacing (auth/ingest_pacing.py) -------------------------------------------


def ingest_failures_since(conn: Connection, address: str, since: float) -> int:
    return int(
        conn.scalar(
            sa.select(sa.func.count()).where(
                ingest_failure.c.address == address, ingest_failure.c.failed_at > since
            )
        )
        or 0
    )


@single_statement
def add_ingest_failure(conn: Connection, address: str, now: float) -> None:
    conn.execute(sa.insert(ingest_failure).values(address=address, failed_at=now))


def reserve_ingest_turn(
    conn: Connection, address: str, now: float, interval: float, max_wait: float
) -> float | None:
    """The start of ``address``'s next paced turn (now, or after the turns already taken);
    None, and nothing reserved, when that is more than ``max_wait`` away."""
    conn.execute(_insert_ignore(conn, ingest_pace).values(address=address, next_run=now))
    query = sa.select(ingest_pace.c.next_run).where(ingest_pace.c.address == address)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()  # instances queue on the row
    start = max(float(conn.scalar(query) or now), now)
    if start - now > max_wait:
        return None
    conn.execute(
        sa.update(ingest_pace)
        .where(ingest_pace.c.address == address)
        .values(next_run=start + interval)
    )
    return start


def prune_ingest_pacing(conn: Connection, now: float, window: float) -> None:
    conn.execute(sa.delete(ingest_failure).where(ingest_failure.c.failed_at <= now - window))
    conn.execute(sa.delete(ingest_pace).where(ingest_pace.c.next_run <= now - window))
