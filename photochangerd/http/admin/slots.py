"""Slots: list, detail, update (validated per provider), test run, cleanup."""

from __future__ import annotations

from typing import Any

from quart import Response, request
from quart_schema import validate_request, validate_response

from photochangerd.db import repositories
from photochangerd.domain.models import Job, Slot
from photochangerd.domain.slots import effective_slot
from photochangerd.http.admin import admin_name, bp
from photochangerd.http.context import AdminHandles, admin
from photochangerd.http.errors import ApiError, NotFound
from photochangerd.http.ingest import handle_test_run
from photochangerd.http.validation import ValidationFailed
from photochangerd.jobs.run import DEFAULT_SYNC_RESPONSE_SECONDS
from shared.api_models import (
    CleanupResult,
    JobSummary,
    RecentResult,
    SlotDetail,
    SlotList,
    SlotSummary,
    SlotUpdate,
    TemplateBindingOut,
)
from shared.errors import FailureReason
from shared.fallbacks import FallbackStep, validate_fallbacks
from shared.slot_settings import SlotSettingsError
from shared.slots import NO_SUCH_SLOT, is_slot_id

RECENT_RESULTS = 10


class Conflict(ApiError):
    status = 409
    reason = FailureReason.CONFLICT


def _check_slot_id(slot_id: str) -> None:
    if not is_slot_id(slot_id):
        raise NotFound(NO_SUCH_SLOT, reason=FailureReason.SLOT_NOT_FOUND)


def job_status(job: Job) -> str:
    """A job's ``status`` in the API: ``pending``, ``processing`` or ``finalized``.

    The stored column is the queue state only (pending → processing, by a claim); finalizing
    sets ``is_finalized`` and leaves it at ``processing``."""
    return "finalized" if job.is_finalized else job.status


def _summary(app: AdminHandles, slot: Slot, last: Job | None) -> dict[str, Any]:
    base = app.config.effective_public_base_url
    return {
        "id": slot.id,
        "display_name": slot.display_name,
        "provider": slot.provider,
        "operation": slot.operation,
        "is_active": slot.is_active,
        "version": slot.version,
        "updated_at": slot.updated_at,
        "updated_by": slot.updated_by,
        "ingest_url": f"{base}/ingest/{slot.id}",
        "last_job": None
        if last is None
        else JobSummary(
            job_id=last.id,
            status=job_status(last),
            is_finalized=last.is_finalized,
            failure_reason=last.failure_reason,
            created_at=last.created_at,
            finalized_at=last.finalized_at,
        ),
    }


async def slot_detail(app: AdminHandles, slot_id: str) -> SlotDetail:
    slot = await app.db.read(repositories.get_slot, slot_id)
    if slot is None:
        raise NotFound(NO_SUCH_SLOT, reason=FailureReason.SLOT_NOT_FOUND)
    bindings = await app.db.read(repositories.slot_bindings_detail, slot_id)
    recent = await app.db.read(repositories.recent_finished, slot_id, RECENT_RESULTS)
    base = app.config.effective_public_base_url
    last = recent[0] if recent else None
    return SlotDetail(
        **_summary(app, slot, last),
        settings=slot.settings,
        size_limit_mb=slot.size_limit_mb,
        fallbacks=[FallbackStep.model_validate(step) for step in slot.fallbacks],
        template_media=[
            TemplateBindingOut(
                role=b.role,
                template_id=b.template_id,
                mime_type=b.mime_type,
                width=b.width,
                height=b.height,
            )
            for b in bindings
        ],
        recent_results=[
            RecentResult(
                job_id=job.id,
                finalized_at=job.finalized_at,
                public_url=f"{base}/public/results/{job.id}" if job.result_file_path else None,
                thumbnail_url=(
                    f"{base}/public/results/{job.id}/thumbnail" if job.result_file_path else None
                ),
                size_bytes=job.result_size_bytes,
                failure_reason=job.failure_reason,
            )
            for job in recent
        ],
    )


@bp.get("/slots")
@validate_response(SlotList, 200)
async def list_slots() -> tuple[SlotList, int]:
    app = admin()
    slots = await app.db.read(repositories.list_slots)
    last = await app.db.read(repositories.last_job_per_slot)
    return SlotList(slots=[SlotSummary(**_summary(app, s, last.get(s.id))) for s in slots]), 200


@bp.get("/slots/<slot_id>")
@validate_response(SlotDetail, 200)
async def get_slot(slot_id: str) -> tuple[SlotDetail, int]:
    _check_slot_id(slot_id)
    return await slot_detail(admin(), slot_id), 200


async def apply_slot_update(
    app: AdminHandles, slot_id: str, data: SlotUpdate, expected_version: int | None = None
) -> None:
    """Validate ``data`` against the slot as a whole and store it: ``PUT /api/slots/{id}`` and
    the console's forms alike.  Raises 404, 422 (:class:`ValidationFailed`) or 409."""
    _check_slot_id(slot_id)
    slot = await app.db.read(repositories.get_slot, slot_id)
    if slot is None:
        raise NotFound(NO_SUCH_SLOT, reason=FailureReason.SLOT_NOT_FOUND)
    if data.template_media is not None:
        roles = [b.role for b in data.template_media]
        bindings: list[tuple[str, str]] | None = [
            (b.role, b.template_id) for b in data.template_media
        ]
    else:
        current = await app.db.read(repositories.slot_bindings_detail, slot_id)
        roles, bindings = [b.role for b in current], None
    errors: dict[str, str] = {}
    try:
        new = effective_slot(slot, data, roles)
    except SlotSettingsError as exc:
        errors.update(exc.errors)
    fallbacks: list[FallbackStep] = []
    if data.fallbacks is not None:
        runtime = await app.db.read(repositories.get_settings)
        deadline = float(runtime.get("sync_response_seconds", DEFAULT_SYNC_RESPONSE_SECONDS))
        try:
            fallbacks = validate_fallbacks(data.fallbacks, deadline)
        except SlotSettingsError as exc:
            errors.update(exc.errors)
    if errors:
        raise ValidationFailed(errors)
    values = {
        "display_name": new.display_name,
        "provider": new.provider,
        "operation": new.operation,
        "is_active": new.is_active,
        "size_limit_mb": new.size_limit_mb,
        "settings": new.settings,
        "updated_at": app.clock.now(),
        "updated_by": admin_name(),
    }
    if data.fallbacks is not None:
        values["fallbacks"] = [step.stored() for step in fallbacks]
    fallback_templates = [t.template_id for step in fallbacks for t in step.templates]
    outcome = await app.db.write(
        repositories.update_slot_checked,
        slot_id,
        values,
        bindings,
        expected_version,
        fallback_templates,
    )
    if outcome == "missing_template":
        raise ValidationFailed({"template_media": "unknown template id"})
    if outcome == "missing_fallback_template":
        raise ValidationFailed({"fallbacks": "unknown template id"})
    if outcome == "conflict":
        raise Conflict("the slot changed since you read it (version mismatch)")


@bp.put("/slots/<slot_id>")
@validate_request(SlotUpdate)
@validate_response(SlotDetail, 200)
async def update_slot(slot_id: str, data: SlotUpdate) -> tuple[SlotDetail, int]:
    app = admin()
    expected = request.headers.get("If-Match", "").strip('" ')
    await apply_slot_update(app, slot_id, data, int(expected) if expected.isdigit() else None)
    return await slot_detail(app, slot_id), 200


@bp.post("/slots/<slot_id>/cleanup")
@validate_response(CleanupResult, 200)
async def cleanup_slot(slot_id: str) -> tuple[CleanupResult, int]:
    _check_slot_id(slot_id)
    report = await admin().cleaner.run_once(slot_id)
    return CleanupResult(deleted_results=report.expired_results), 200


@bp.post("/slots/<slot_id>/test-run")
async def test_run(slot_id: str) -> Response:
    return await handle_test_run(admin().booth, slot_id)
