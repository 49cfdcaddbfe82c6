"""``POST /ingest/{slot_id}`` (alias ``/api/ingest/{slot_id}``): DSLR Remote Pro uploads.

The checks run in the order of docs/booth-contract.md ("Order of checks"), each answering at
once without reading more of the body than needed: unknown/disabled slot → ``Content-Length``
over the limit (before any body byte is read) → not multipart → wrong password (checked as soon
as its part has arrived, before the photo) → photo over the limit (counted while streaming) →
not a valid image → queue full.
Then the job is submitted and the request waits for its outcome until the deadline, which is
measured from the request's arrival.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from typing import Any

import trio
from quart import Blueprint, Response, jsonify, request
from werkzeug.http import parse_options_header

from photochangerd.auth.passwords import MAX_PACED_WAIT, PacedOut
from photochangerd.db.engine import DatabaseUnavailable
from photochangerd.domain.models import Outcome, Slot, new_job_id
from photochangerd.domain.slots import effective_slot
from photochangerd.http.context import BoothHandles, booth
from photochangerd.http.errors import (
    ApiError,
    InvalidPassword,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RequestTooSlow,
    ServiceUnavailable,
    UnsupportedMediaType,
    api_error_body,
)
from photochangerd.http.multipart import FormLimits, read_upload
from photochangerd.jobs.admission import Overloaded
from photochangerd.jobs.run import Deadline, JobSettings
from photochangerd.logs import event
from photochangerd.media.images import ImageInfo, UnsupportedImage, inspect_image
from photochangerd.media.objects import ObjectStoreUnavailable
from photochangerd.media.qr import ANSWER_MARGIN_SECONDS, stamp_settings, stamp_within
from photochangerd.web.guest import guest_url
from shared.api_models import SlotUpdate, TestRunResult
from shared.errors import FailureReason, JobFailure, error_body
from shared.slot_settings import SlotSettingsError
from shared.slots import NO_SUCH_SLOT, is_slot_id

log = logging.getLogger("photochangerd.ingest")
bp = Blueprint("ingest", __name__)

FILE_FIELD = "fileToUpload"
PASSWORD_FIELD = "password"  # noqa: S105 - a form field name
RESERVED_FIELDS = frozenset({PASSWORD_FIELD, "hash", "slot_payload"})
FORM_OVERHEAD_BYTES = 256 * 1024  # text parts and multipart framing beyond the photo itself
RETRY_AFTER_SECONDS = "5"
MIB = 1024 * 1024
CONTEXT_READ_SECONDS = 5.0  # the slot and settings, when not cached (a few ms when it answers)


_DIGEST_BY_HEX_LENGTH = {40: "sha1", 64: "sha256", 32: "md5"}


def _hash_check(data: bytes, claimed: str | None) -> str:
    """DSLR Remote Pro's ``hash`` is undocumented: record what it matches, never reject."""
    if not claimed:
        return "absent"
    claimed = claimed.strip().lower()
    name = _DIGEST_BY_HEX_LENGTH.get(len(claimed))  # only the one that can match is computed
    if name and hashlib.new(name, data, usedforsecurity=False).hexdigest() == claimed:
        return f"verified_{name}"
    return "unverified"


def _validate(data: bytes, max_pixels: int, claimed_hash: str | None) -> tuple[ImageInfo, str]:
    return inspect_image(data, max_pixels), _hash_check(data, claimed_hash)


@dataclass(slots=True)
class IngestRequest:
    """What the pipeline reads of an HTTP request, whichever layer parsed it (the booth fast
    path in :mod:`photochangerd.http.booth` or Quart for the admin's test run)."""

    content_length: int | None
    content_type: str
    remote_addr: str
    query_string: bytes
    arrival: float  # Trio clock: connection accepted (first request) or head parsed
    body: AsyncIterable[bytes]


@dataclass(slots=True)
class Answer:
    """The response, before any framework turns it into bytes on the wire."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    failure_reason: str | None = None


def json_answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Answer:
    answer = Answer(
        status,
        json.dumps(body).encode(),
        "application/json",
        {"Cache-Control": "no-store", **(headers or {})},
    )
    answer.failure_reason = body.get("failure_reason")
    return answer


def _error_answer(error: ApiError) -> Answer:
    return json_answer(error.status, api_error_body(error), error.headers)


def _success_answer(job_id: str, outcome: Outcome, data: bytes, guest: str) -> Answer:
    assert outcome.result is not None
    headers = {
        "Cache-Control": "no-store",
        # Only where a result exists: the file, and the guest page (what the QR codes open).
        "Link": f'</public/results/{job_id}>; rel="alternate", '
        f'<{guest}>; rel="alternate"; type="text/html"',
    }
    if outcome.served_by:  # who made it: the slot's provider or one of its fallbacks
        headers["X-Provider"] = outcome.served_by
    return Answer(200, data, outcome.result.mime_type, headers)


def _failure_answer(outcome: Outcome) -> Answer:
    if outcome.failure is JobFailure.TIMEOUT:
        reason, status = FailureReason.PROVIDER_TIMEOUT, 504
    elif outcome.failure is JobFailure.PROVIDER_ERROR:
        reason, status = FailureReason.PROVIDER_ERROR, outcome.response_status
    elif outcome.failure is JobFailure.CANCELLED:
        reason, status = FailureReason.SERVICE_UNAVAILABLE, 503
    else:
        return json_answer(
            500, error_body(FailureReason.INTERNAL_ERROR, "the job failed inside the server")
        )
    return json_answer(status, error_body(reason, outcome.details))


class _Attempt:
    """One ingest attempt: its timings and what the processing log records about it."""

    def __init__(self, app: BoothHandles, slot_id: str, source: str, arrival: float) -> None:
        self.app = app
        self.slot_id = slot_id
        self.source = source
        self.arrival = arrival
        self.created_at = app.clock.now() - (trio.current_time() - arrival)
        self.job_id: str | None = None
        self.body_read = False

    def record(self, status: int, reason: str | None, size: int | None = None) -> None:
        elapsed_ms = (trio.current_time() - self.arrival) * 1000
        self.app.activity.record(
            created_at=self.created_at,
            slot_id=self.slot_id if is_slot_id(self.slot_id) else None,
            job_id=self.job_id,
            source=self.source,
            status_code=status,
            failure_reason=reason,
            duration_ms=elapsed_ms,
        )
        event(
            log,
            logging.INFO if status < 500 else logging.WARNING,
            "ingest",
            slot_id=self.slot_id[:20],
            job_id=self.job_id,
            status=status,
            reason=reason,
            ms=round(elapsed_ms, 1),
            bytes=size,
        )


@dataclass(frozen=True, slots=True)
class _Mode:
    """What differs between a booth's ingest and an admin's test run."""

    source: str
    file_field: str
    password_required: bool
    field_bytes: int = 4096


BOOTH = _Mode("ingest", FILE_FIELD, password_required=True)
TEST_RUN = _Mode("test_run", "test_image", password_required=False, field_bytes=64 * 1024)


async def handle_ingest(
    app: BoothHandles, slot_id: str, req: IngestRequest, mode: _Mode = BOOTH
) -> Answer:
    attempt = _Attempt(app, slot_id, mode.source, req.arrival)
    try:
        answer, size = await _ingest(app, attempt, slot_id, mode, req)
    except ApiError as error:
        answer = _with_job_id(_error_answer(error), attempt.job_id)
        if not attempt.body_read:
            # Answered before the body was read to its end: the connection cannot be reused,
            # and a client still sending must not keep it open (docs/http.md, "Early answers").
            answer.headers["Connection"] = "close"
        attempt.record(error.status, error.reason.value)
        return answer
    except ClientGone:
        raise
    except Exception:
        # A defect of ours: 500, logged with its traceback — and, when a job was submitted,
        # with its X-Job-Id like every other answer about a job.
        log.exception("http.internal_error", extra={"fields": {"job_id": attempt.job_id}})
        answer = json_answer(500, error_body(FailureReason.INTERNAL_ERROR), {"Connection": "close"})
        attempt.record(500, FailureReason.INTERNAL_ERROR.value)
        return _with_job_id(answer, attempt.job_id)
    attempt.record(answer.status, answer.failure_reason, size)
    return _with_job_id(answer, attempt.job_id)


class ClientGone(Exception):
    """The client disconnected before its upload was complete."""


def _with_job_id(answer: Answer, job_id: str | None) -> Answer:
    """Every answer about a job names it (200, and 502/503/504/500 alike): the id finds the
    job in ``pcctl job show`` and the logs whatever the outcome."""
    if job_id is not None:
        answer.headers["X-Job-Id"] = job_id
    return answer


def _quart_request() -> IngestRequest:
    extensions: dict[str, Any] = request.scope.get("extensions") or {}
    return IngestRequest(
        content_length=request.content_length,
        content_type=request.headers.get("Content-Type", ""),
        remote_addr=request.remote_addr or "",
        query_string=request.query_string,
        arrival=float(extensions.get("photochanger.arrival", trio.current_time())),
        body=request.body,
    )


def quart_response(answer: Answer) -> Response:
    response = Response(answer.body, status=answer.status, content_type=answer.content_type)
    for name, value in answer.headers.items():
        response.headers[name] = value
    return response


async def handle_test_run(app: BoothHandles, slot_id: str) -> Response:
    """``POST /api/slots/{slot_id}/test-run`` (admin): the ingest pipeline without the ingest
    password, optional unsaved ``slot_payload`` overrides, a JSON answer.  ``app`` is the
    booth's handle the admin side holds (:attr:`~photochangerd.http.context.AdminHandles.booth`)."""
    started = trio.current_time()
    answer = await handle_ingest(app, slot_id, _quart_request(), TEST_RUN)
    if answer.status != 200:
        return quart_response(answer)
    job_id = answer.headers["X-Job-Id"]
    base = app.config.effective_public_base_url
    body = TestRunResult(
        job_id=job_id,
        public_result_url=f"{base}/public/results/{job_id}",
        guest_url=guest_url(base, job_id),
        completed_in_seconds=round(trio.current_time() - started, 3),
    )
    response = jsonify(body.model_dump())
    response.headers["Cache-Control"] = "no-store"
    return response


def _slot_with_overrides(slot: Slot, raw: str | None, roles: list[str]) -> Slot:
    if not raw:
        return slot
    from pydantic import ValidationError

    from photochangerd.http.validation import ValidationFailed, errors_from_pydantic

    try:
        update = SlotUpdate.model_validate_json(raw)
    except ValidationError as exc:
        raise ValidationFailed(
            {f"slot_payload.{k}": v for k, v in errors_from_pydantic(exc).items()}
        ) from None
    if update.template_media is not None:
        raise ValidationFailed({"slot_payload.template_media": "save template bindings first"})
    try:
        return effective_slot(slot, update, roles)
    except SlotSettingsError as exc:
        raise ValidationFailed(exc.errors) from None


async def _ingest(
    app: BoothHandles, attempt: _Attempt, slot_id: str, mode: _Mode, req: IngestRequest
) -> tuple[Answer, int]:
    if not app.intake.open:
        raise ServiceUnavailable("shutting down", headers={"Retry-After": "10"})
    if not is_slot_id(slot_id):
        raise NotFound(NO_SUCH_SLOT, reason=FailureReason.SLOT_NOT_FOUND)
    try:
        # Before the job's deadline exists (it comes from these settings): bounded on its own,
        # so a database that stopped answering cannot keep the booth (docs/jobs.md).
        with trio.fail_after(CONTEXT_READ_SECONDS):
            slot, settings, bindings = await app.ingest_context.load(slot_id)
    except (DatabaseUnavailable, trio.TooSlowError):
        raise ServiceUnavailable("database unavailable", headers={"Retry-After": "5"}) from None
    if slot is None:
        raise NotFound(NO_SUCH_SLOT, reason=FailureReason.SLOT_NOT_FOUND)
    if not slot.is_active and mode.password_required:  # admins may test a disabled slot
        raise NotFound("slot is disabled", reason=FailureReason.SLOT_DISABLED)

    # The job's own settings and its one deadline, from the request's arrival (docs/jobs.md).
    job_settings = JobSettings.snapshot(settings, slot, bindings)
    deadline = Deadline.after_arrival(
        attempt.arrival, attempt.created_at, job_settings.sync_response_seconds
    )
    file_limit = min(app.config.max_upload_bytes, slot.size_limit_mb * MIB)
    limits = FormLimits(
        file_bytes=file_limit,
        body_bytes=file_limit + FORM_OVERHEAD_BYTES,
        field_bytes=mode.field_bytes,
    )
    if req.content_length is not None and req.content_length > limits.body_bytes:
        raise PayloadTooLarge(f"upload larger than {file_limit // MIB} MiB")
    mimetype, options = parse_options_header(req.content_type)
    boundary = options.get("boundary")
    if mimetype.lower() != "multipart/form-data" or not boundary:
        raise InvalidRequest("expected multipart/form-data with a boundary")

    password_hash = str((settings.get("ingest_password") or {}).get("hash", ""))
    password_ok: bool | None = None

    async def on_field(name: str, value: str) -> None:
        nonlocal password_ok
        if name == PASSWORD_FIELD and mode.password_required:
            try:
                password_ok = await app.ingest_passwords.check(
                    password_hash, value, req.remote_addr
                )
            except PacedOut:
                raise RateLimited(
                    "too many new wrong passwords from this address; try again in a few seconds",
                    headers={"Retry-After": str(int(MAX_PACED_WAIT))},
                ) from None
            if not password_ok:
                raise InvalidPassword("wrong ingest password")

    if app.store.problem is not None:  # the result could not be kept: say so now, not at the end
        raise ServiceUnavailable(app.store.problem, headers={"Retry-After": "5"})
    spool = app.store.open_spool()
    try:
        with trio.move_on_at(deadline.trio) as body_scope:
            form = await read_upload(
                req.body,
                boundary,
                limits,
                spool,
                file_field=mode.file_field,
                on_field=on_field,
                reserved=RESERVED_FIELDS,
            )
        if body_scope.cancelled_caught:
            raise RequestTooSlow("the upload did not complete before the deadline")
        attempt.body_read = True
        if mode.password_required:
            if PASSWORD_FIELD not in form.fields or not form.file_received:
                raise InvalidRequest(f"the form needs '{PASSWORD_FIELD}' and '{FILE_FIELD}' parts")
            if password_ok is None:  # pragma: no cover - on_field always ran for the password
                raise InvalidPassword("wrong ingest password")
        elif not form.file_received:
            raise InvalidRequest(f"the form needs a '{mode.file_field}' part")
        if form.file_size == 0:
            raise UnsupportedMediaType("the photo is empty")
        if mode is TEST_RUN:
            slot = _slot_with_overrides(
                slot, form.fields.pop("slot_payload", None), [b.role for b in bindings]
            )

        data = await spool.read_all()
        try:
            image, hash_check = await app.images.run(
                _validate, data, app.config.max_image_pixels, form.fields.get("hash")
            )
        except UnsupportedImage as exc:
            raise UnsupportedMediaType(str(exc)) from None
        if hash_check == "unverified":
            event(log, logging.WARNING, "ingest.hash_unverified", slot_id=slot_id)

        metadata: dict[str, Any] = {
            "fields": {k: v for k, v in form.fields.items() if k not in (PASSWORD_FIELD,)},
            "hash_check": hash_check,
            "query": req.query_string.decode("latin-1")[:512],
            "width": image.width,
            "height": image.height,
            "size_bytes": form.file_size,
        }
        if form.dropped_fields:
            metadata["dropped_fields"] = form.dropped_fields
        try:
            with app.admission.admit(slot_id):
                attempt.job_id = new_job_id()
                try:
                    run = await app.jobs.submit(
                        job_id=attempt.job_id,
                        slot=slot,
                        source=attempt.source,
                        spool=spool,
                        data=data,
                        image=image,
                        metadata=metadata,
                        created_at=attempt.created_at,
                        deadline=deadline,
                        settings=job_settings,
                    )
                except DatabaseUnavailable:
                    attempt.job_id = None
                    raise ServiceUnavailable(
                        "database unavailable", headers={"Retry-After": "5"}
                    ) from None
                except ObjectStoreUnavailable as exc:  # a queued job's photo: not kept
                    attempt.job_id = None
                    raise ServiceUnavailable(str(exc), headers={"Retry-After": "5"}) from None
                # The job has the photo now; this frame lets go of it, so it is freed as soon as
                # the provider is done with it rather than when the booth has its answer
                # (with 30 booths and 1.5 MB results: ~10 MiB less at the peak).
                del data
                outcome = await app.jobs.wait(run)
        except Overloaded as exc:
            raise RateLimited(
                f"too many photos in progress ({exc.scope})",
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            ) from None
    finally:
        with trio.CancelScope(shield=True):
            await spool.discard()

    if not outcome.ok:
        if outcome.failure is JobFailure.INTERNAL_ERROR and outcome.response_status == 503:
            # The result could not be stored (the bucket went away during the job).
            raise ServiceUnavailable(outcome.details, headers={"Retry-After": "5"})
        return _failure_answer(outcome), 0
    assert outcome.result is not None and attempt.job_id is not None
    try:  # a result made on another instance: read back from the store
        result = (
            outcome.data if outcome.data is not None else await app.store.read(outcome.result.path)
        )
    except ObjectStoreUnavailable as exc:
        raise ServiceUnavailable(str(exc), headers={"Retry-After": "5"}) from None
    guest = guest_url(app.config.effective_public_base_url, attempt.job_id)
    stamp = stamp_settings(slot.settings) if mode is BOOTH else None
    if stamp is not None:  # the booth's copy only; the stored result stays clean
        answer_by = deadline.trio - ANSWER_MARGIN_SECONDS
        result = await stamp_within(
            app.images, result, outcome.result.mime_type, guest, stamp, answer_by
        )
    answer = _success_answer(attempt.job_id, outcome, result, guest)
    # Server-Timing: what the daemon itself spent around the provider (operators, benchmarks).
    total_ms = (trio.current_time() - attempt.arrival) * 1000
    provider_ms = (outcome.provider_seconds or 0.0) * 1000
    answer.headers["Server-Timing"] = (
        f"provider;dur={provider_ms:.2f}, daemon;dur={total_ms - provider_ms:.2f}"
    )
    return answer, len(result)


# Booth uploads are served by photochangerd.http.booth in front of Quart (no framework
# request/response plumbing on the hot path).  These routes document the contract in the
# OpenAPI document and serve the same pipeline if a request reaches Quart anyway.


@bp.route("/ingest/<path:slot_id>", methods=["POST"])
async def ingest(slot_id: str) -> Response:
    return quart_response(await handle_ingest(booth(), slot_id, _quart_request()))


@bp.route("/api/ingest/<path:slot_id>", methods=["POST"])
async def ingest_alias(slot_id: str) -> Response:
    return quart_response(await handle_ingest(booth(), slot_id, _quart_request()))
