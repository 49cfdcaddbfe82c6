"""``/admin/slots/<slot_id>``: a slot's settings, templates, test run and gallery (docs/web.md).

Every form posts here and goes through the JSON API's own code: saving through
:func:`photochangerd.http.admin.slots.apply_slot_update` (``PUT /api/slots/{id}``), template
uploads through the upload reader of ``POST /api/template-media`` (its limits included), the
test run through the ingest pipeline of ``POST /api/slots/{id}/test-run``.  A 422 re-renders
the page with each message at its field and the submitted values kept; success redirects
(POST → 303 → GET) with a one-line notice.  The settings fields are generated from the
settings models' JSON schema (:mod:`.slot_form`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import ValidationError
from quart import Response, redirect, request
from werkzeug.exceptions import RequestEntityTooLarge

from photochangerd.db import repositories
from photochangerd.domain.models import JOB_ID_PATTERN, Job, Slot
from photochangerd.http.admin.media import read_image_upload, store_template
from photochangerd.http.admin.settings import current_settings
from photochangerd.http.admin.slots import Conflict, apply_slot_update
from photochangerd.http.context import AdminHandles, admin
from photochangerd.http.errors import ApiError, NotFound, PayloadTooLarge, api_error_response
from photochangerd.http.ingest import TEST_RUN, _quart_request, handle_ingest, quart_response
from photochangerd.http.validation import ValidationFailed, errors_from_pydantic
from photochangerd.media.encode import make_thumbnail
from photochangerd.web.console import NOTICE_PARAM, back, bp, page, wants_json
from photochangerd.web.console.slot_form import (
    FormField,
    FormValue,
    choices,
    field_errors,
    fields_for,
    parse_settings,
    values_from_form,
    values_from_settings,
)
from shared.api_models import KEY_OPTIONAL, PROVIDER_NAMES, SlotUpdate, TemplateBindingIn
from shared.catalogue import CATALOGUE, TEMPLATE_ROLES
from shared.fallbacks import parse_fallbacks
from shared.slot_settings import REQUIRED_TEMPLATE_ROLES
from shared.slots import NO_SUCH_SLOT, is_slot_id

GALLERY_SIZE = 12
_JOB_ID_RE = re.compile(JOB_ID_PATTERN)
_TEMPLATE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The top of the settings form; every other field is a setting of the chosen operation.
SLOT_FIELDS = ("display_name", "is_active", "provider", "operation", "size_limit_mb", "version")


@dataclass(frozen=True, slots=True)
class Fieldset:
    """One provider/operation's settings; only the chosen one is enabled (and visible)."""

    provider: str
    operation: str
    fields: tuple[FormField, ...]
    values: dict[str, FormValue]
    shown: bool

    @property
    def choice(self) -> str:
        return f"{self.provider}/{self.operation}"

    @property
    def prefix(self) -> str:
        return f"s-{self.provider}-{self.operation}".replace("_", "-")


def when(timestamp: float | None) -> str:
    """A server-local time for people: ``14:03:27`` today, else ``2025-09-18 14:03``."""
    if timestamp is None:
        return ""
    moment = datetime.fromtimestamp(timestamp).astimezone()
    if moment.date() == datetime.now().astimezone().date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M")


def iso(timestamp: float | None) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().isoformat() if timestamp else ""


def human_size(size: int | None) -> str:
    if size is None:
        return ""
    if size < 1024 * 1024:
        return f"{max(1, round(size / 1024))} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def result_available(app: AdminHandles, job: Job) -> bool:
    """True when the job's result can be downloaded (and previewed) right now."""
    return (
        job.is_finalized
        and job.failure_reason is None
        and job.result_file_path is not None
        and (job.result_expires_at or 0) > app.clock.now()
    )


def missing_key(provider: str, configured: Mapping[str, bool]) -> bool:
    """A cloud provider without an API key (stored or from the environment)."""
    if provider in KEY_OPTIONAL:
        return False
    return provider in PROVIDER_NAMES and not configured.get(provider, False)


async def key_states(app: AdminHandles) -> dict[str, bool]:
    """Whether each cloud provider has a key: the same answer as ``GET /api/settings``."""
    settings = await current_settings(app)
    return {name: state.configured for name, state in settings.provider_keys.items()}


def _gallery_item(app: AdminHandles, job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "source": "test run" if job.source == "test_run" else "booth",
        "when": when(job.finalized_at),
        "iso": iso(job.finalized_at),
        "seconds": (
            f"{job.finalized_at - job.created_at:.2f} s" if job.finalized_at is not None else ""
        ),
        "size": human_size(job.result_size_bytes),
        "available": result_available(app, job),
        "failure_reason": job.failure_reason,
        "failure_details": job.failure_details or "",
    }


def _shown_choice(slot: Slot, provider: str | None, operation: str | None) -> tuple[str, str]:
    """The provider/operation whose settings the page shows (a known one, or the slot's)."""
    provider = provider or slot.provider
    if provider not in CATALOGUE:
        return slot.provider, slot.operation
    operations = CATALOGUE[provider]
    if operation not in operations:
        operation = slot.operation if slot.operation in operations else operations[0]
    return provider, operation


async def _test_result(
    app: AdminHandles, slot_id: str, job_id: str | None
) -> dict[str, Any] | None:
    if not job_id or _JOB_ID_RE.fullmatch(job_id) is None:
        return None
    job = await app.db.read(repositories.get_job, job_id)
    if job is None or job.slot_id != slot_id:
        return None
    return {
        **_gallery_item(app, job),
        "finalized": job.is_finalized,
        "provider": job.provider,
        "operation": job.operation,
    }


async def render_slot(
    slot_id: str,
    *,
    status: int = 200,
    choice: tuple[str | None, str | None] = (None, None),
    form: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    general: list[str] | None = None,
    template_error: str = "",
    upload_error: str = "",
    test_error: str = "",
    fallbacks_text: str | None = None,
    fallbacks_error: str = "",
) -> Response:
    """The slot page; after a failed POST with the submitted ``form`` and its ``errors``."""
    app = admin()
    slot = await app.db.read(repositories.get_slot, slot_id) if is_slot_id(slot_id) else None
    if slot is None:
        return await page("slot_missing.html", status=404, slot_id=slot_id[:40])
    bindings = await app.db.read(repositories.slot_bindings_detail, slot_id)
    library = await app.db.read(repositories.list_templates)
    recent = await app.db.read(repositories.recent_finished, slot_id, GALLERY_SIZE)
    keys = await key_states(app)
    provider, operation = _shown_choice(slot, *choice)
    fieldsets = []
    for each_provider, each_operation in choices():
        shown = (each_provider, each_operation) == (provider, operation)
        fields = fields_for(each_provider, each_operation)
        if shown and form is not None:
            values = values_from_form(fields, form)
        else:
            values = values_from_settings(fields, slot.settings)  # also carries common ones
        fieldsets.append(Fieldset(each_provider, each_operation, fields, values, shown))
    if form is not None:
        top = {
            "display_name": str(form.get("display_name", "")),
            "is_active": "is_active" in form,
            "size_limit_mb": str(form.get("size_limit_mb", "")),
            "version": str(form.get("version", slot.version)),
        }
    else:
        top = {
            "display_name": slot.display_name,
            "is_active": slot.is_active,
            "size_limit_mb": str(slot.size_limit_mb),
            "version": str(slot.version),
        }
    placed = dict(errors or {})
    known = set(SLOT_FIELDS)
    for fieldset in fieldsets:
        if fieldset.shown:
            known.update(_names(fieldset.fields))
    general = list(general or []) + [
        f"{name}: {message}" for name, message in placed.items() if name not in known
    ]
    needed = REQUIRED_TEMPLATE_ROLES.get((provider, operation))
    return await page(
        "slot.html",
        status=status,
        slot=slot,
        catalogue=CATALOGUE,
        provider=provider,
        operation=operation,
        unknown_choice=slot.provider not in CATALOGUE,
        fieldsets=fieldsets,
        top=top,
        errors=placed,
        general=general,
        keys_missing=[name for name in PROVIDER_NAMES if missing_key(name, keys)],
        required_roles={f"{p}/{o}": role for (p, o), role in REQUIRED_TEMPLATE_ROLES.items()},
        bound_roles={b.role for b in bindings},
        ingest_url=f"{app.config.effective_public_base_url}/ingest/{slot.id}",
        bindings=bindings,
        needed_role=needed,
        library=[(row, used) for row, used in library],
        roles=TEMPLATE_ROLES,
        template_error=template_error,
        upload_error=upload_error,
        upload_limit_mb=app.config.max_upload_mb,
        test_limit_mb=min(app.config.max_upload_mb, slot.size_limit_mb),
        test=await _test_result(app, slot_id, request.args.get("test_job")),
        test_error=test_error,
        gallery=[_gallery_item(app, job) for job in recent],
        fallbacks=parse_fallbacks(slot.fallbacks),
        fallbacks_text=fallbacks_json(slot) if fallbacks_text is None else fallbacks_text,
        fallbacks_error=fallbacks_error,
        updated=when(slot.updated_at),
    )


def fallbacks_json(slot: Slot) -> str:
    """The slot's chain as the console's editor shows it (an empty list when it has none)."""
    return json.dumps(slot.fallbacks, indent=2) if slot.fallbacks else "[]"


def _names(fields: tuple[FormField, ...]) -> set[str]:
    names = set()
    for item in fields:
        names.add(item.name)
        names.update(_names(item.children))
    return names


def _to_slot(slot_id: str, notice: str, anchor: str = "", **params: str) -> Response:
    """303 back to the slot page with a notice (and a section to scroll to)."""
    query = urlencode({**params, NOTICE_PARAM: notice} if notice else params, quote_via=quote)
    target = f"/admin/slots/{slot_id}" + (f"?{query}" if query else "") + anchor
    return redirect(target, 303)  # type: ignore[return-value]


def _check_slot(slot_id: str) -> None:
    if not is_slot_id(slot_id):
        raise NotFound(NO_SUCH_SLOT)


# -- the page and its settings form -----------------------------------------------------------


@bp.get("/slots/<slot_id>")
async def slot_page(slot_id: str) -> Response:
    """``?provider=&operation=`` shows another choice's settings (the no-JavaScript switch)."""
    return await render_slot(
        slot_id, choice=(request.args.get("provider"), request.args.get("operation"))
    )


@bp.post("/slots/<slot_id>")
async def save_slot(slot_id: str) -> Response:
    _check_slot(slot_id)
    app = admin()
    form = await request.form
    provider = str(form.get("provider", ""))
    operation = str(form.get("operation", ""))
    settings = parse_settings(fields_for(provider, operation), form)
    limit = str(form.get("size_limit_mb", "")).strip()
    version = str(form.get("version", "")).strip()
    submitted = {
        "display_name": str(form.get("display_name", "")).strip(),
        "is_active": "is_active" in form,
        "provider": provider,
        "operation": operation,
        "settings": settings,
    }
    if limit:
        submitted["size_limit_mb"] = limit
    try:
        update = SlotUpdate.model_validate(submitted)
        await apply_slot_update(app, slot_id, update, int(version) if version.isdigit() else None)
    except (ValidationError, ValidationFailed) as exc:
        problems = exc.errors if isinstance(exc, ValidationFailed) else errors_from_pydantic(exc)
        placed, general = field_errors(problems)
        return await render_slot(
            slot_id,
            status=422,
            errors=placed,
            general=general,
            choice=(provider, operation),
            form=form,
        )
    except Conflict:
        current = await app.db.read(repositories.get_slot, slot_id)
        by = f" by {current.updated_by}" if current and current.updated_by else ""
        message = (
            f"The slot was changed{by} since you opened it: nothing was saved. "
            "Save again to replace that change with yours."
        )
        fresh = {**form, "version": str(current.version if current else "")}
        return await render_slot(
            slot_id, status=409, general=[message], choice=(provider, operation), form=fresh
        )
    return _to_slot(slot_id, "Saved.")


@bp.post("/slots/<slot_id>/active")
async def toggle_slot(slot_id: str) -> Response:
    """The dashboard's on/off switch: ``is_active`` only, through the API's update."""
    _check_slot(slot_id)
    form = await request.form
    active = str(form.get("is_active", "")) == "true"
    try:
        await apply_slot_update(admin(), slot_id, SlotUpdate(is_active=active))
    except ApiError as error:
        return back("/admin/", f"{slot_id} not changed: {error.details or error.reason.value}")
    return back("/admin/", f"{slot_id} is {'on' if active else 'off'}.")


# -- templates --------------------------------------------------------------------------------


async def _bindings(app: AdminHandles, slot_id: str) -> list[TemplateBindingIn]:
    rows = await app.db.read(repositories.slot_bindings_detail, slot_id)
    return [_binding(row.role, row.template_id) for row in rows]


async def _set_bindings(
    app: AdminHandles, slot_id: str, bindings: list[TemplateBindingIn]
) -> str | None:
    """Store the slot's template list with the API's validation: None, or the message."""
    try:
        await apply_slot_update(app, slot_id, SlotUpdate(template_media=bindings))
    except ValidationFailed as exc:
        return "; ".join(exc.errors.values())
    except ApiError as error:
        return error.details or error.reason.value
    return None


def _role(value: str) -> str | None:
    return value if value in TEMPLATE_ROLES else None


def _binding(role: str, template_id: str) -> TemplateBindingIn:
    return TemplateBindingIn.model_validate({"role": role, "template_id": template_id})


@bp.post("/slots/<slot_id>/templates")
async def upload_template(slot_id: str) -> Response:
    """Multipart (``file``, ``role``), the CSRF token in the action URL: the body streams into
    the API's upload reader with its limits (``POST /api/template-media``)."""
    _check_slot(slot_id)
    app = admin()
    try:
        data, info, fields = await read_image_upload(app)
    except (ApiError, RequestEntityTooLarge) as exc:
        error = exc if isinstance(exc, ApiError) else PayloadTooLarge(exc.name)
        if wants_json():
            if isinstance(exc, RequestEntityTooLarge):
                raise  # the app's own 413 answer, exactly as the API gives it
            return api_error_response(error)
        message = error.details or error.reason.value
        return await render_slot(slot_id, status=error.status, upload_error=message)
    role = _role(fields.get("role", ""))
    template = await store_template(app, data, info)
    if role is None:
        return _to_slot(slot_id, f"Template {template.id} uploaded.", "#templates")
    bindings = await _bindings(app, slot_id)
    problem = await _set_bindings(app, slot_id, [*bindings, _binding(role, template.id)])
    if problem:
        return await render_slot(
            slot_id,
            status=422,
            template_error=f"Template {template.id} uploaded but not bound: {problem}",
        )
    return _to_slot(slot_id, f"Template {template.id} uploaded and bound as {role}.", "#templates")


@bp.post("/slots/<slot_id>/templates/bind")
async def bind_template(slot_id: str) -> Response:
    _check_slot(slot_id)
    app = admin()
    form = await request.form
    role = _role(str(form.get("role", "")))
    template_id = str(form.get("template_id", ""))
    if role is None or not _TEMPLATE_ID_RE.fullmatch(template_id):
        return await render_slot(
            slot_id, status=422, template_error="Choose a template and its role."
        )
    bindings = await _bindings(app, slot_id)
    if any(b.role == role and b.template_id == template_id for b in bindings):
        return _to_slot(
            slot_id, f"Template {template_id} is already bound as {role}.", "#templates"
        )
    problem = await _set_bindings(app, slot_id, [*bindings, _binding(role, template_id)])
    if problem:
        return await render_slot(slot_id, status=422, template_error=problem)
    return _to_slot(slot_id, f"Template {template_id} bound as {role}.", "#templates")


@bp.post("/slots/<slot_id>/templates/unbind")
async def unbind_template(slot_id: str) -> Response:
    _check_slot(slot_id)
    app = admin()
    form = await request.form
    position = str(form.get("position", ""))
    template_id = str(form.get("template_id", ""))
    bindings = await _bindings(app, slot_id)
    index = int(position) if position.isdigit() else -1
    if not 0 <= index < len(bindings) or bindings[index].template_id != template_id:
        return await render_slot(
            slot_id, status=409, template_error="The templates changed meanwhile: try again."
        )
    removed = bindings.pop(index)
    problem = await _set_bindings(app, slot_id, bindings)
    if problem:
        return await render_slot(slot_id, status=422, template_error=problem)
    return _to_slot(
        slot_id, f"Template {removed.template_id} ({removed.role}) unbound.", "#templates"
    )


@bp.get("/templates/<template_id>/preview")
async def template_preview(template_id: str) -> Response:
    """A small WebP of a template image (the slot page's previews)."""
    app = admin()
    row = None
    if _TEMPLATE_ID_RE.fullmatch(template_id):
        row = await app.db.read(repositories.get_template, template_id)
    if row is None:
        raise NotFound("no such template")
    data = await app.store.read(row.path)
    preview = await app.images.run(make_thumbnail, data)
    return Response(
        preview, mimetype="image/webp", headers={"Cache-Control": "private, max-age=3600"}
    )


# -- test run ---------------------------------------------------------------------------------


@bp.post("/slots/<slot_id>/test-run")
async def test_run(slot_id: str) -> Response:
    """Multipart ``test_image`` (CSRF token in the action URL): the ingest pipeline of
    ``POST /api/slots/{id}/test-run``, then the page shows the job's result or failure."""
    _check_slot(slot_id)
    answer = await handle_ingest(admin().booth, slot_id, _quart_request(), TEST_RUN)
    job_id = answer.headers.get("X-Job-Id")
    if job_id is not None:  # the job ran (succeeded, or failed: the page says how)
        return _to_slot(slot_id, "", "#test-run", test_job=job_id)
    if wants_json():
        return quart_response(answer)
    details = _answer_details(answer.body)
    return await render_slot(slot_id, status=answer.status, test_error=details)


def _answer_details(body: bytes) -> str:
    """The message of the pipeline's JSON error answer."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return "the test run failed"
    errors = parsed.get("errors")
    if isinstance(errors, dict) and errors:
        return "; ".join(f"{k}: {v}" for k, v in errors.items())
    return str(parsed.get("details") or parsed.get("failure_reason") or "the test run failed")
