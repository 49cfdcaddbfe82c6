"""Template media (permanent) and temporary media (TTL = T_sync_response), purge."""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

import trio
from quart import request
from quart_schema import validate_response

from photochangerd.db import repositories
from photochangerd.domain.images import ImageInput
from photochangerd.domain.models import new_public_id
from photochangerd.http.admin import admin_name, bp
from photochangerd.http.admin.slots import Conflict
from photochangerd.http.context import AdminHandles, admin
from photochangerd.http.errors import InvalidRequest, NotFound, UnsupportedMediaType
from photochangerd.http.multipart import FormLimits, read_upload
from photochangerd.media.images import ImageInfo, UnsupportedImage, inspect_image
from shared.api_models import Accepted, TemplateMedia, TemplateMediaList, TemporaryMedia

MIB = 1024 * 1024
FILE_FIELD = "file"


async def _read_image(app: AdminHandles) -> tuple[bytes, ImageInfo]:
    """An uploaded image (multipart part ``file``), validated like an ingest photo."""
    data, info, _fields = await read_image_upload(app)
    return data, info


async def read_image_upload(app: AdminHandles) -> tuple[bytes, ImageInfo, dict[str, str]]:
    """:func:`_read_image`, and the form's text parts (bounded) beside the file."""
    boundary = request.mimetype_params.get("boundary")
    if request.mimetype != "multipart/form-data" or not boundary:
        raise InvalidRequest(f"expected multipart/form-data with a '{FILE_FIELD}' part")
    limit = app.config.max_upload_bytes
    spool = app.store.open_spool()
    try:
        form = await read_upload(
            request.body,
            boundary,
            FormLimits(file_bytes=limit, body_bytes=limit + MIB),
            spool,
            file_field=FILE_FIELD,
        )
        if not form.file_received or form.file_size == 0:
            raise InvalidRequest(f"the form needs a '{FILE_FIELD}' part")
        data = await spool.read_all()
    finally:
        await spool.discard()
    try:
        info = await app.images.run(inspect_image, data, app.config.max_image_pixels)
    except UnsupportedImage as exc:
        raise UnsupportedMediaType(str(exc)) from None
    return data, info, form.fields


def _template_out(row: Any, used_by: list[str]) -> TemplateMedia:
    return TemplateMedia(
        id=row.id,
        mime=row.mime_type,
        size=row.size_bytes,
        checksum=row.checksum,
        width=row.width,
        height=row.height,
        created_at=row.created_at,
        used_by=used_by,
    )


@bp.post("/template-media")
@bp.post("/template-media/register")
@validate_response(TemplateMedia, 201)
async def upload_template() -> tuple[TemplateMedia, int]:
    app = admin()
    data, info = await _read_image(app)
    return await store_template(app, data, info), 201


async def store_template(app: AdminHandles, data: bytes, info: ImageInfo) -> TemplateMedia:
    """Keep a validated template image (the API's upload and the console's slot page)."""
    template_id = new_public_id(12)
    path = await app.store.put(f"templates/{template_id}.{info.extension}", data)
    values = {
        "id": template_id,
        "path": path,
        "mime_type": info.mime_type,
        "size_bytes": len(data),
        "checksum": hashlib.sha256(data).hexdigest(),
        "width": info.width,
        "height": info.height,
        "created_at": app.clock.now(),
        "created_by": admin_name(),
    }
    await app.db.write(repositories.insert_template, values)
    row = await app.db.read(repositories.get_template, template_id)
    return _template_out(row, [])


@bp.get("/template-media")
@validate_response(TemplateMediaList, 200)
async def list_templates() -> tuple[TemplateMediaList, int]:
    rows = await admin().db.read(repositories.list_templates)
    return TemplateMediaList(template_media=[_template_out(r, used) for r, used in rows]), 200


@bp.delete("/template-media/<template_id>")
async def delete_template(template_id: str) -> tuple[str, int]:
    app = admin()
    if not template_id.replace("-", "").replace("_", "").isalnum() or len(template_id) > 64:
        raise NotFound("no such template")
    row = await app.db.read(repositories.get_template, template_id)
    users = await app.db.write(repositories.delete_template_if_unused, template_id)
    if users is None or row is None:
        raise NotFound("no such template")
    if users:
        raise Conflict(f"template is used by {', '.join(users)}")
    await app.store.remove(row.path)
    return "", 204


@bp.post("/media/register")
@validate_response(TemporaryMedia, 201)
async def register_media() -> tuple[TemporaryMedia, int]:
    app = admin()
    data, info = await _read_image(app)
    expires_at = app.clock.now() + app.jobs.runtime.sync_response_seconds
    url = await app.provider_media.publish(None, ImageInput(data, info.mime_type), expires_at)
    return TemporaryMedia(id=url.rsplit("/", 1)[1], public_url=url, expires_at=expires_at), 201


@bp.post("/media/cache/purge")
@validate_response(Accepted, 202)
async def purge_media() -> tuple[Accepted, int]:
    request_purge(admin())
    return Accepted(), 202


def request_purge(app: AdminHandles) -> None:
    """Start a purge of expired media and results (the API's purge and the console's button)."""
    # Runs in the daemon's nursery (the maintenance task), not in this request.
    with contextlib.suppress(trio.WouldBlock):  # one already queued serves this request too
        app.purge_requests.send_nowait("purge")
