"""Temporary public copies of job inputs for providers that fetch by URL (Turbotext).

Each copy gets an unguessable id, is stored as ``media/<id>.<ext>`` (the local backend keeps it
under ``MEDIA_ROOT/temp/``, the S3 one in the bucket, so any instance serves it), and is served at
``{public_base_url}/public/provider-media/{id}`` until the job's deadline (410 after).  The
cleaner deletes expired copies.
"""

from __future__ import annotations

from photochangerd.clock import WallClock
from photochangerd.db import repositories
from photochangerd.db.engine import Database
from photochangerd.domain.images import ImageInput
from photochangerd.domain.models import new_public_id
from photochangerd.errors import ProviderRejected
from photochangerd.media.images import EXT_BY_MIME
from photochangerd.media.store import MediaStore


class ProviderMedia:
    def __init__(
        self, db: Database, store: MediaStore, clock: WallClock, public_base_url: str
    ) -> None:
        self._db = db
        self._store = store
        self._clock = clock
        self._base = public_base_url.rstrip("/")

    def publisher(self, job_id: str, expires_at: float) -> _JobPublisher:
        return _JobPublisher(self, job_id, expires_at)

    async def publish(self, job_id: str | None, image: ImageInput, expires_at: float) -> str:
        extension = EXT_BY_MIME.get(image.mime_type)
        if extension is None:
            raise ProviderRejected(f"cannot publish {image.mime_type}")
        media_id = new_public_id(16)
        reference = await self._store.put(f"media/{media_id}.{extension}", image.data)
        await self._db.write(
            repositories.insert_media_object,
            {
                "id": media_id,
                "job_id": job_id,
                "path": reference,
                "mime_type": image.mime_type,
                "size_bytes": len(image.data),
                "created_at": self._clock.now(),
                "expires_at": expires_at,
            },
        )
        return f"{self._base}/public/provider-media/{media_id}"


class _JobPublisher:
    """The :class:`~photochangerd.providers.base.MediaPublisher` handed to one job's provider."""

    def __init__(self, media: ProviderMedia, job_id: str, expires_at: float) -> None:
        self._media = media
        self._job_id = job_id
        self._expires_at = expires_at

    async def __call__(self, image: ImageInput) -> str:
        return await self._media.publish(self._job_id, image, self._expires_at)
