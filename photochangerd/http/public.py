"""Public, unauthenticated links: ``GET /public/results/{job_id}`` (72 h, then 410).

Every file is served by the daemon itself, from the media dir or streamed from the bucket
(``media_backend = "s3"``), so a link works on whichever instance a request reaches."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from pathlib import Path

import trio
from quart import Blueprint, Response

from photochangerd.db import repositories
from photochangerd.db.engine import DatabaseUnavailable
from photochangerd.domain.models import JOB_ID_PATTERN, MEDIA_ID_PATTERN, Job
from photochangerd.http.context import public
from photochangerd.http.errors import NotFound, ResultExpired, ServiceUnavailable
from photochangerd.http.files import send_stored
from photochangerd.media.encode import make_thumbnail
from photochangerd.media.images import EXT_BY_MIME
from photochangerd.media.objects import is_local_reference
from shared.errors import FailureReason

bp = Blueprint("public", __name__)
_JOB_ID_RE = re.compile(JOB_ID_PATTERN)


def _not_found() -> NotFound:
    return NotFound("no result for this link", reason=FailureReason.RESULT_NOT_FOUND)


async def _live_result(job_id: str) -> tuple[Job, str]:
    """The finished job and its result's reference, or the documented 404/410.

    A local file is checked here; an object in a bucket when it is opened (one round trip)."""
    # Strict id check: nothing but a well-formed job id reaches the DB, never the file system.
    if _JOB_ID_RE.fullmatch(job_id) is None:
        raise _not_found()
    app = public()
    try:
        job = await app.db.read(repositories.get_job, job_id)
    except DatabaseUnavailable:
        raise ServiceUnavailable("database unavailable") from None
    if job is None or not job.is_finalized or job.failure_reason is not None:
        raise _not_found()
    if job.result_expires_at is None or job.result_mime_type is None:
        raise _not_found()
    if job.result_expires_at <= app.clock.now():
        raise ResultExpired("this result has expired")
    if job.result_file_path is None:  # removed by the cleaner
        raise ResultExpired("this result has expired")
    reference = job.result_file_path
    if is_local_reference(reference) and not await trio.to_thread.run_sync(Path(reference).is_file):
        raise ResultExpired("this result is no longer stored")
    return job, reference


CACHE_CAP_SECONDS = 3600  # a new look of a page, or a new public_base_url, shows within an hour
NOINDEX = {"X-Robots-Tag": "noindex, nofollow"}  # guests' photos are nobody's search results


def cache_privately(response: Response, job: Job) -> Response:
    """A guest's photo (and its pages) may be kept by the guest's browser, never by a shared
    cache, and not past the result's expiry (nor past :data:`CACHE_CAP_SECONDS`)."""
    assert job.result_expires_at is not None
    remaining = math.floor(job.result_expires_at - public().clock.now())
    max_age = max(0, min(remaining, CACHE_CAP_SECONDS))
    response.headers["Cache-Control"] = f"private, max-age={max_age}"
    response.headers.pop("Expires", None)
    response.headers.update(NOINDEX)
    return response


@bp.route("/public/results/<job_id>", methods=["GET", "HEAD"])
async def result(job_id: str) -> Response:
    job, reference = await _live_result(job_id)
    assert job.result_mime_type is not None
    extension = EXT_BY_MIME.get(job.result_mime_type, "bin")
    response = await send_stored(
        public().store,
        reference,
        job.result_mime_type,
        last_modified=datetime.fromtimestamp(job.finalized_at or 0, UTC),
        cache_timeout=3600,
    )
    if response is None:
        raise ResultExpired("this result is no longer stored")
    # Quoted, as docs/booth-contract.md shows it (the name is ours: a job id and a known
    # extension).
    response.headers["Content-Disposition"] = f'attachment; filename="{job_id}.{extension}"'
    return cache_privately(response, job)


_MEDIA_ID_RE = re.compile(MEDIA_ID_PATTERN)


@bp.route("/public/provider-media/<media_id>", methods=["GET", "HEAD"])
async def provider_media(media_id: str) -> Response:
    """Short-lived inputs a provider fetches by URL: 200 until the job's deadline, then 410."""
    if _MEDIA_ID_RE.fullmatch(media_id) is None:
        raise NotFound("no such media")
    app = public()
    try:
        row = await app.db.read(repositories.get_media_object, media_id)
    except DatabaseUnavailable:
        raise ServiceUnavailable("database unavailable") from None
    if row is None:
        raise NotFound("no such media")
    if row.cleaned_at is not None or row.expires_at <= app.clock.now():
        raise ResultExpired("this media link has expired")
    response = await send_stored(app.store, row.path, row.mime_type)
    if response is None:
        raise ResultExpired("this media link has expired")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/public/results/<job_id>/thumbnail", methods=["GET", "HEAD"])
async def thumbnail(job_id: str) -> Response:
    """A small WebP preview (gallery), made on first request and kept beside the result."""
    job, reference = await _live_result(job_id)
    app = public()
    thumb = app.store.thumbnail_ref(job.id)
    response = await send_stored(app.store, thumb, "image/webp", cache_timeout=3600)
    if response is None:
        try:
            data = await app.store.read(reference)
        except FileNotFoundError:
            raise ResultExpired("this result is no longer stored") from None
        preview = await app.images.run(make_thumbnail, data)
        thumb = await app.store.put(f"thumbs/{job.id}.webp", preview)
        response = await send_stored(app.store, thumb, "image/webp", cache_timeout=3600)
    if response is None:  # removed again at once (the cleaner): as expired
        raise ResultExpired("this result is no longer stored")
    return cache_privately(response, job)
