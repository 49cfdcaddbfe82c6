"""The guest page ``/r/<job_id>`` (docs/web.md, "Guest page").

What a guest scans or types to get their photo: the picture at screen size, a Download button
(the full result, ``/public/results/<id>``), until when it is available, the page's own QR code
(to pass it on to another phone) and, where the browser has it, a Web Share button.  No login:
the unguessable job id is the capability, the same as for the public result link, with the
same rules — unknown, unfinished or failed jobs are 404, a result past its expiry 410 — but
answered as short HTML pages.  The page shows nothing the booth sent (no metadata, no slot
name): only the picture, the links and the expiry time.

``/r/<id>/photo`` (the picture shown), ``/r/<id>/qr.svg`` and ``/r/<id>/qr.png`` follow the
same rules.  Every answer is ``Cache-Control: private`` until the expiry, at most an hour
(:func:`~photochangerd.http.public.cache_privately`, as the result's download); errors are not
stored (a 404 may be a mistyped id).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup
from quart import Blueprint, Response, render_template, request

from photochangerd.domain.models import Job
from photochangerd.http.context import public
from photochangerd.http.errors import ApiError, ResultExpired, ServiceUnavailable
from photochangerd.http.files import send_stored
from photochangerd.http.public import NOINDEX, _live_result, cache_privately
from photochangerd.media.display import (
    DISPLAY_DIRECT_BYTES,
    DISPLAY_MIME,
    fits_display,
)
from photochangerd.media.images import EXT_BY_MIME
from photochangerd.media.objects import ObjectStoreUnavailable, is_local_reference
from photochangerd.media.qr import qr_png, qr_svg

bp = Blueprint("guest", __name__)

GUEST_PATH = "/r/{job_id}"
# The standalone SVG draws nothing active; a CSP keeps it so when opened on its own.
SVG_CSP = "default-src 'none'; frame-ancestors 'none'"

_PROBLEMS = {
    404: (
        "Photo not found",
        "This link does not lead to a photo. Check that it was typed exactly as printed, "
        "or scan the QR code again.",
    ),
    410: (
        "This photo has expired",
        "Photos are kept for a limited time only, and this one is no longer available.",
    ),
    503: ("Please try again", "The photo server is busy right now. Try again in a moment."),
}


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {}}}


_GUEST_ERRORS = {
    "404": _html("unknown, unfinished or failed job, or a malformed id: a short HTML page"),
    "410": _html("the result has expired: a short HTML page"),
    "503": _html("the database is unreachable: a short HTML page"),
}
_IMAGES: dict[str, Any] = {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}
# What the OpenAPI document says these routes answer (photochangerd.http.app adds it):
# HTML pages and images, with their errors as HTML pages rather than the JSON error shape.
OPENAPI_RESPONSES: dict[str, dict[str, Any]] = {
    "/r/{job_id}": {"200": _html("the guest page"), **_GUEST_ERRORS},
    "/r/{job_id}/photo": {
        "200": {"description": "the result, or its rendition at screen size", **_IMAGES},
        **_GUEST_ERRORS,
    },
    "/r/{job_id}/qr.svg": {
        "200": {"description": "QR code of the guest page", "content": {"image/svg+xml": {}}},
        **_GUEST_ERRORS,
    },
    "/r/{job_id}/qr.png": {
        "200": {"description": "QR code of the guest page", "content": {"image/png": {}}},
        **_GUEST_ERRORS,
    },
}


def guest_url(public_base_url: str, job_id: str) -> str:
    """The guest page's absolute address: what its QR codes (page, stamp, pcctl) encode."""
    return public_base_url.rstrip("/") + GUEST_PATH.format(job_id=job_id)


async def _problem(status: int) -> Response:
    """The short HTML page for 404/410/503: no stack, no id, nothing the client sent."""
    title, message = _PROBLEMS.get(status, _PROBLEMS[503])
    html = await render_template("guest/problem.html", title=title, message=message)
    response = Response(html, status=status if status in _PROBLEMS else 503, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(NOINDEX)
    return response


async def _result(job_id: str) -> tuple[Job, str] | Response:
    """The finished job and its file, or the problem page to answer instead."""
    try:
        return await _live_result(job_id)  # strict id check, then the database
    except ResultExpired:
        return await _problem(410)
    except ServiceUnavailable:
        return await _problem(503)
    except ApiError as error:
        return await _problem(404 if error.status == 404 else 503)


@bp.route("/r/<job_id>", methods=["GET"])
async def guest_page(job_id: str) -> Response:
    """The guest page of a result: picture, Download, expiry, the page's QR code (HTML)."""
    found = await _result(job_id)
    if isinstance(found, Response):
        return found
    job, _ = found
    assert job.result_expires_at is not None and job.result_mime_type is not None
    expires = datetime.fromtimestamp(job.result_expires_at, UTC)
    url = guest_url(public().public_base_url(), job.id)
    html = await render_template(
        "guest/page.html",
        job_id=job.id,
        page_url=url,
        filename=f"{job.id}.{EXT_BY_MIME.get(job.result_mime_type, 'bin')}",
        expires_iso=expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        expires_text=f"{expires.day} {expires:%b %Y, %H:%M} UTC",
        # Generated by segno from our base URL and a checked id: path data, no client text.
        qr=Markup(qr_svg(url, inline=True)),  # noqa: S704
    )
    return cache_privately(Response(html, mimetype="text/html"), job)


@bp.route("/r/<job_id>/photo", methods=["GET"])
async def guest_photo(job_id: str) -> Response:
    """The picture the guest page shows (the full file is the Download link).

    The result itself when it is screen-sized already, else a 1600 px WebP rendition."""
    found = await _result(job_id)
    if isinstance(found, Response):
        return found
    job, reference = found
    try:
        return await _photo(job, reference)
    except FileNotFoundError:
        return await _problem(410)
    except ObjectStoreUnavailable:
        return await _problem(503)


async def _photo(job: Job, reference: str) -> Response:
    assert job.result_mime_type is not None and job.result_checksum is not None
    app = public()
    size = job.result_size_bytes or 0
    data: bytes | None = None
    if is_local_reference(reference):  # the header alone tells
        fits = await app.images.run(fits_display, Path(reference), size)
    elif size <= DISPLAY_DIRECT_BYTES:  # small enough to fetch whole and look at
        data = await app.store.read(reference)
        fits = await app.images.run(fits_display, io.BytesIO(data), size)
    else:
        fits = False
    if fits:
        response = await send_stored(app.store, reference, job.result_mime_type)
        if response is None:
            raise FileNotFoundError(reference)
        return cache_privately(response, job)
    etag = f"display-{job.result_checksum[:32]}"
    if request.if_none_match.contains_weak(etag):
        response = Response(b"", status=304)
    else:
        fetched = data  # a small remote result, already read to look at: not read twice

        async def read() -> bytes:  # only when the rendition's turn comes (media/renditions.py)
            return fetched if fetched is not None else await app.store.read(reference)

        del data
        picture = await app.renditions.get(job.result_checksum, read, app.images)
        response = Response(picture, mimetype=DISPLAY_MIME)
    response.set_etag(etag)
    return cache_privately(response, job)


@bp.route("/r/<job_id>/qr.svg", methods=["GET"])
async def guest_qr_svg(job_id: str) -> Response:
    """The guest page's QR code as SVG."""
    found = await _result(job_id)
    if isinstance(found, Response):
        return found
    job, _ = found
    svg = qr_svg(guest_url(public().public_base_url(), job.id))
    response = Response(svg, mimetype="image/svg+xml")
    response.headers["Content-Security-Policy"] = SVG_CSP
    return cache_privately(response, job)


@bp.route("/r/<job_id>/qr.png", methods=["GET"])
async def guest_qr_png(job_id: str) -> Response:
    """The guest page's QR code as PNG."""
    found = await _result(job_id)
    if isinstance(found, Response):
        return found
    job, _ = found
    url = guest_url(public().public_base_url(), job.id)
    response = Response(await public().images.run(qr_png, url), mimetype="image/png")
    return cache_privately(response, job)
