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

from photochangerd.db.tables import (
    admin_user,
    app_settings,
    job,
    media_object,
    processing_log,
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


def load_ingest_context(conn: Connection, slot_id: str) -> tuple[Slot | None, dict[str, Any]]:
    """The slot and the global settings an ingest needs, in one round trip's transaction."""
    return get_slot(conn, slot_id), get_settings(conn)


# -- admins -----------------------------------------------------------------------------------


def admin_password_hash(conn: Connection, username: str) -> str | None:
    value = conn.scalar(
        sa.select(admin_user.c.password_hash).where(admin_user.c.username == username)
    )
    return None if value is None else str(value)


def set_admin_password(conn: Connection, username: str, password_hash: str, now: float) -> None:
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


# -- jobs -------------------------------------------------------------------------------------


def _job(row: sa.Row[Any]) -> Job:
    return Job(**row._mapping)


def insert_job(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(sa.insert(job).values(**values))


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
    }
    if result is not None:
        values.update(
            result_file_path=result.path,
            result_mime_type=result.mime_type,
            result_size_bytes=result.size_bytes,
            result_checksum=result.checksum,
            result_expires_at=now + result_ttl_seconds,
        )
    updated = conn.execute(sa.update(job).where(job.c.id == job_id, _UNFINALIZED).values(**values))
    return updated.rowcount == 1


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
            response_status=504 if failure_reason == "timeout" else 500,
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


def insert_setting_if_missing(conn: Connection, key: str, value: Any, now: float) -> bool:
    """Seed a setting; False when it already existed (another instance may have won)."""
    result = conn.execute(
        _insert_ignore(conn, app_settings).values(key=key, value=value, updated_at=now)
    )
    return result.rowcount == 1


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


def set_provider_reference(conn: Connection, job_id: str, reference: str) -> None:
    conn.execute(
        sa.update(job).where(job.c.id == job_id).values(provider_job_reference=reference[:200])
    )
