"""The media store a configuration asks for (``media_backend``)."""

from __future__ import annotations

import logging

import trio

from photochangerd.config import Config
from photochangerd.logs import event
from photochangerd.media.objects import ObjectStoreUnavailable
from photochangerd.media.store import MediaStore

log = logging.getLogger("photochangerd.media")


async def open_media_store(config: Config) -> MediaStore:
    """The local store, or one whose objects are in the configured bucket.

    The S3 client (and boto3's import) is made here, in a thread, only for ``s3``.  An
    unreachable store does not stop the start: the daemon comes up unready for uploads
    (``/readyz`` says why) and the store's watch task notices when it is back."""
    if config.media_backend != "s3":
        return MediaStore(config.media_root)

    def make() -> MediaStore:
        from photochangerd.media.s3 import S3Objects

        objects = S3Objects(
            config.s3_endpoint_url, config.s3_bucket, config.s3_region, config.s3_prefix
        )
        try:
            objects.probe()
        except ObjectStoreUnavailable as exc:
            event(log, logging.ERROR, "object_store.unavailable_at_start", problem=str(exc))
        return MediaStore(config.media_root, objects)

    store = await trio.to_thread.run_sync(make)
    event(
        log,
        logging.INFO,
        "object_store.configured",
        bucket=config.s3_bucket,
        endpoint=config.s3_endpoint_url or "aws",
        prefix=config.s3_prefix,
    )
    return store
