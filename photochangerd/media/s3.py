"""The S3 backend (``media_backend = "s3"``): boto3, called from Trio threads.

boto3 is imported here only, and this module only when the S3 backend is configured: a daemon
on the default local backend never pays its ≈ 160 ms import and ≈ 20 MB (docs/architecture.md,
"Object storage", says why boto3).  Credentials come from boto3's standard chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` and the shared credentials and
config files, container and instance roles); never from our config file, never logged.

A failed call that means "the store is not there" (no connection, a time-out, a 5xx, refused
credentials) marks the backend unhealthy (:class:`StoreHealth`); the store's watch task probes it
with a ``HeadBucket`` every few seconds until it answers again.  While it is unhealthy the ingest
answers 503 at once instead of waiting for a deadline.
"""

from __future__ import annotations

import io
import logging
import mimetypes
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from photochangerd.logs import event
from photochangerd.media.objects import ObjectStoreUnavailable, ObjectStream, check_key

log = logging.getLogger("photochangerd.media")

CHUNK = 256 * 1024
MULTIPART_THRESHOLD = 16 * 1024 * 1024  # above this boto3 uploads in parts (and aborts them)
CONNECT_TIMEOUT_SECONDS = 2.0
READ_TIMEOUT_SECONDS = 10.0
MISSING = {"NoSuchKey", "404", "NotFound"}
HEALTH_KEY = "media/photochanger-health.txt"  # the probe writes it after a refused write
# S3's "slow down" answers: the store is there but busy; one call fails, health stays up.
THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded"}

T = TypeVar("T")


@dataclass(slots=True)
class StoreHealth:
    """Whether the object store answered lately, and why not (thread-safe)."""

    healthy: bool = True
    problem: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def down(self, problem: str) -> None:
        with self._lock:
            was, self.healthy, self.problem = self.healthy, False, problem
        if was:
            event(log, logging.WARNING, "object_store.unavailable", problem=problem)

    def up(self) -> None:
        with self._lock:
            was, self.healthy, self.problem = self.healthy, True, ""
        if not was:
            event(log, logging.INFO, "object_store.available")


def normalize_prefix(prefix: str) -> str:
    """``photos`` / ``/photos/`` → ``photos/``; empty stays empty."""
    stripped = prefix.strip("/")
    return f"{stripped}/" if stripped else ""


class S3Objects:
    """Objects in one bucket (under an optional prefix) of an S3-compatible store."""

    name = "s3"

    def __init__(self, endpoint_url: str, bucket: str, region: str, prefix: str) -> None:
        import boto3
        import botocore.config
        import botocore.exceptions

        self._errors = botocore.exceptions
        self.bucket = bucket
        self.prefix = normalize_prefix(prefix)
        self.endpoint_url = endpoint_url
        self.health = StoreHealth()
        self._writes_refused = False  # the last write failed: only a write clears it
        config = botocore.config.Config(
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
            retries={"max_attempts": 2, "mode": "standard"},
            max_pool_connections=64,
            # Path-style for a custom endpoint (MinIO, SeaweedFS, most self-hosted stores);
            # AWS itself picks virtual-hosted style.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            # Checksums only where the API requires them: R2, Yandex and older gateways reject
            # the newer default trailing CRC headers.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session()
        self._client = session.client(
            "s3", endpoint_url=endpoint_url or None, region_name=region or None, config=config
        )
        from boto3.s3.transfer import TransferConfig

        # Parts one after the other in the calling (worker) thread: one 8 MB part in memory
        # beside the result, not ten at once.
        self._transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=8 * 1024 * 1024,
            use_threads=False,
        )

    def _key(self, reference: str) -> str:
        return self.prefix + check_key(reference)

    def reference(self, key: str) -> str:
        return check_key(key)

    def _call(self, work: Callable[[], T], write: bool = False) -> T:
        """Run one S3 call; "store not there" errors become :class:`ObjectStoreUnavailable`
        (and mark the health down), anything else (a missing object, a bug) passes through.

        A store that refused the last write (disk full, a write-denied policy) is marked up
        again only by a write: it may answer reads and ``HeadBucket`` all along."""
        errors = self._errors
        try:
            result = work()
        except (
            errors.EndpointConnectionError,
            errors.ConnectionError,
            errors.ConnectTimeoutError,
            errors.ReadTimeoutError,
            errors.ConnectionClosedError,
            errors.NoCredentialsError,
            errors.PartialCredentialsError,
        ) as exc:
            problem = f"object store unreachable ({type(exc).__name__})"
            self.health.down(problem)
            raise ObjectStoreUnavailable(problem) from None
        except errors.ClientError as exc:
            if self._missing(exc):
                self.health.up()
                raise
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in THROTTLED:  # busy, not gone: this call fails, the store stays up
                raise ObjectStoreUnavailable(f"object store throttled: {code}") from None
            if status >= 500 or status in (401, 403) or code in ("NoSuchBucket",):
                problem = f"object store refused: {code or status}"
                self.health.down(problem)
                raise ObjectStoreUnavailable(problem) from None
            raise
        except errors.BotoCoreError as exc:
            # Every other failure of the SDK (a credential refresh from an instance role or
            # SSO, an HTTP client or stream error …): the store cannot be used right now.
            problem = f"object store unusable ({type(exc).__name__})"
            self.health.down(problem)
            raise ObjectStoreUnavailable(problem) from None
        if write:
            self._writes_refused = False
        if not self._writes_refused:
            self.health.up()
        return result

    def _missing(self, exc: Exception) -> bool:
        if not isinstance(exc, self._errors.ClientError):
            return False
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return code in MISSING

    def put(self, key: str, data: bytes) -> str:
        target = self._key(key)
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        try:
            if len(data) <= MULTIPART_THRESHOLD:
                self._call(
                    lambda: self._client.put_object(
                        Bucket=self.bucket, Key=target, Body=data, ContentType=content_type
                    ),
                    write=True,
                )
            else:  # multipart: s3transfer uploads the parts and aborts the upload if one fails
                self._call(
                    lambda: self._client.upload_fileobj(
                        io.BytesIO(data),
                        self.bucket,
                        target,
                        ExtraArgs={"ContentType": content_type},
                        Config=self._transfer,
                    ),
                    write=True,
                )
        except ObjectStoreUnavailable:
            self._writes_refused = True
            raise
        return key

    def get(self, reference: str) -> bytes | None:
        stream = self.open(reference)
        if stream is None:
            return None
        try:
            return b"".join(stream.chunks)
        finally:
            stream.close()

    def open(self, reference: str, span: tuple[int, int] | None = None) -> ObjectStream | None:
        options: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(reference)}
        if span is not None:
            options["Range"] = f"bytes={span[0]}-{span[1] - 1}"
        try:
            answer = self._call(lambda: self._client.get_object(**options))
        except self._errors.ClientError as exc:
            if self._missing(exc):
                return None
            raise
        body = answer["Body"]
        modified = answer.get("LastModified")
        return ObjectStream(
            int(answer["ContentLength"]),
            answer.get("ETag"),
            modified.timestamp() if modified is not None else None,
            self._chunks(body),
            body.close,
        )

    def stat(self, reference: str) -> ObjectStream | None:
        """``HeadObject``: a revalidation or a HEAD does not start a download (a GET closed
        unread also costs its pooled connection)."""
        options = {"Bucket": self.bucket, "Key": self._key(reference)}
        try:
            answer = self._call(lambda: self._client.head_object(**options))
        except self._errors.ClientError as exc:
            if self._missing(exc):
                return None
            raise
        modified = answer.get("LastModified")
        return ObjectStream(
            int(answer["ContentLength"]),
            answer.get("ETag"),
            modified.timestamp() if modified is not None else None,
            iter(()),
            lambda: None,
        )

    def _chunks(self, body: Any) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(CHUNK)
        except (self._errors.ReadTimeoutError, self._errors.ConnectionClosedError) as exc:
            self.health.down(f"object store unreachable ({type(exc).__name__})")
            raise ObjectStoreUnavailable("object store read failed") from None

    def delete(self, references: list[str]) -> None:
        keys = [self._key(reference) for reference in references]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            self._delete_batch([{"Key": key} for key in keys[start : start + 1000]])

    def _delete_batch(self, batch: list[dict[str, str]]) -> None:
        answer = self._call(
            lambda: self._client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
            )
        )
        # DeleteObjects answers 200 and lists the keys it could not delete (no permission, an
        # object lock): the cleaner must not forget rows whose objects are still there.
        failed = [e for e in answer.get("Errors", []) if e.get("Code") not in MISSING]
        if failed:
            first = failed[0]
            raise ObjectStoreUnavailable(
                f"object store kept {len(failed)} object(s) it was asked to delete "
                f"({first.get('Code')}: {first.get('Key')})"
            )

    def probe(self) -> None:
        """``HeadBucket``, the light call that tells whether the store is back; after a refused
        write, a small ``PUT`` (only a write tells that writes work again)."""
        if self._writes_refused:
            self.put(HEALTH_KEY, b"ok\n")
            return
        try:
            self._call(lambda: self._client.head_bucket(Bucket=self.bucket))
        except self._errors.ClientError as exc:  # 404: the bucket is not there
            problem = f"object store bucket {self.bucket!r} not usable ({exc})"
            self.health.down(problem)
            raise ObjectStoreUnavailable(problem) from None
