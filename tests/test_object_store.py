"""The media store's two backends behind one interface: a local directory and a real S3 server
(SeaweedFS, tests/support/s3.py) — round trip, delete, missing objects, streaming, key safety,
and the health state an unreachable store leaves behind."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
import trio
import trio.testing

from photochangerd.media.objects import (
    ObjectStoreUnavailable,
    UnsafeKey,
    check_key,
    is_local_reference,
)
from photochangerd.media.s3 import (
    MULTIPART_THRESHOLD,
    S3Objects,
    StoreHealth,
    normalize_prefix,
)
from photochangerd.media.store import PROBE_DOWN_SECONDS, PROBE_UP_SECONDS, MediaStore, Spool
from tests.support.daemon_process import REPO
from tests.support.s3 import REGION, SeaweedS3


@pytest.fixture
def s3_env(s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> SeaweedS3:
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MediaStore]:
    if request.param == "local":
        local = MediaStore(tmp_path / "media")
        local.ensure_dirs()
        yield local
        return
    server: SeaweedS3 = request.getfixturevalue("s3_env")
    bucket = request.getfixturevalue("s3_bucket")
    remote = MediaStore(tmp_path / "media", S3Objects(server.endpoint_url, bucket, REGION, "pc/"))
    remote.ensure_dirs()
    yield remote


async def test_round_trip_and_delete(store: MediaStore) -> None:
    data = os.urandom(300_000)
    reference = await store.put("results/job_abc.png", data)
    assert await store.read(reference) == data
    stored = await store.write_result("job_def", data, "jpg", "image/jpeg")
    assert stored.size_bytes == len(data) and len(stored.checksum) == 64
    assert await store.read(stored.path) == data
    await store.remove(reference, stored.path, None)
    for gone in (reference, stored.path):
        with pytest.raises(FileNotFoundError):
            await store.read(gone)
    await store.remove(reference)  # idempotent


async def test_a_missing_object_is_none_not_an_error(store: MediaStore) -> None:
    reference = store.objects.reference("thumbs/job_nothing.webp")
    assert await store.open(reference) is None
    with pytest.raises(FileNotFoundError):
        await store.read(reference)


async def test_stat_gives_size_and_validators_without_the_bytes(store: MediaStore) -> None:
    data = os.urandom(200_000)
    reference = await store.put("results/job_stat.png", data)
    info = await store.stat(reference)
    assert info is not None and info.size == len(data) and info.last_modified is not None
    assert list(info.chunks) == []
    if store.objects.name == "s3":
        stream = await store.open(reference)
        assert stream is not None
        stream.close()
        assert info.etag is not None and info.etag == stream.etag  # what a 304 compares
    assert await store.stat(store.objects.reference("results/job_none.png")) is None


async def test_streaming_reads_in_chunks_and_ranges(store: MediaStore) -> None:
    data = os.urandom(1_500_000)
    reference = await store.put("media/abcdefgh.jpg", data)
    stream = await store.open(reference)
    assert stream is not None and stream.size == len(data)
    chunks = []
    try:
        chunks = [chunk for chunk in stream.chunks]
    finally:
        stream.close()
    assert len(chunks) > 1 and max(len(c) for c in chunks) <= 256 * 1024
    assert b"".join(chunks) == data
    part = await store.open(reference, (1000, 5000))
    assert part is not None and part.size == 4000
    try:
        assert b"".join(part.chunks) == data[1000:5000]
    finally:
        part.close()


async def test_a_big_result_goes_up_in_parts(
    s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path
) -> None:
    store = MediaStore(tmp_path, S3Objects(s3_env.endpoint_url, s3_bucket, REGION, ""))
    data = os.urandom(MULTIPART_THRESHOLD + 1_000_000)  # over the threshold: multipart
    stored = await store.write_result("job_big", data, "png", "image/png")
    assert await store.read(stored.path) == data
    head = s3_env.client().head_object(Bucket=s3_bucket, Key="results/job_big.png")
    assert head["ETag"].strip('"').endswith("-3")  # an S3 multipart ETag: three 8 MB parts
    assert head["ContentType"] == "image/png"


async def test_the_bucket_holds_the_keys_under_the_prefix(
    s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path
) -> None:
    store = MediaStore(tmp_path, S3Objects(s3_env.endpoint_url, s3_bucket, REGION, "/booths/"))
    assert store.remote
    reference = await store.put("templates/tpl_1.png", b"\x89PNG....")
    assert reference == "templates/tpl_1.png"  # what the row holds: the key, no prefix
    assert s3_env.keys(s3_bucket) == ["booths/templates/tpl_1.png"]
    assert store.thumbnail_ref("job_x") == "thumbs/job_x.webp"


@pytest.mark.parametrize(
    "key",
    [
        "../etc/passwd",
        "results/../../x.png",
        "results/a/b.png",
        "/results/a.png",
        "results/a b.png",
        "other/a.png",
        "results/.png",
        "results/a.png\n",
        "results/" + "a" * 65 + ".png",
    ],
)
def test_only_our_key_shapes_are_accepted(key: str) -> None:
    with pytest.raises(UnsafeKey):
        check_key(key)
    assert is_local_reference(key)  # and a row holding it is never sent to a bucket


def test_keys_and_paths_are_told_apart() -> None:
    assert check_key("results/job_1.png") == "results/job_1.png"
    assert not is_local_reference("media/Ab_-9.webp")
    assert is_local_reference("/var/lib/photochanger/media/results/job_1.png")
    assert is_local_reference("photochanger-data/media/results/job_1.png")  # a relative root
    assert normalize_prefix("/a/b/") == "a/b/" and normalize_prefix("") == ""


async def test_local_backend_keeps_the_old_layout(tmp_path: Path) -> None:
    store = MediaStore(tmp_path)
    store.ensure_dirs()
    reference = await store.put("media/abc.jpg", b"x")
    assert reference == str(tmp_path / "temp" / "media-abc.jpg")  # as rows held before
    assert store.thumbnail_ref("job_1") == str(store.thumbnail_path("job_1"))
    assert not store.remote and store.problem is None


async def test_an_unreachable_store_fails_fast_and_reports_why(
    s3_env: SeaweedS3, tmp_path: Path
) -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    objects = S3Objects(f"http://127.0.0.1:{port}", "nowhere", REGION, "")
    store = MediaStore(tmp_path, objects)
    started = trio.current_time()
    with pytest.raises(ObjectStoreUnavailable):
        await store.put("results/job_1.png", b"x")
    assert trio.current_time() - started < 3
    assert store.problem is not None and "unreachable" in store.problem
    with pytest.raises(ObjectStoreUnavailable):
        store.check_available()
    # A job discarding a late result does not fail for it; the cleaner learns it must retry.
    await store.remove("results/job_1.png")
    with pytest.raises(ObjectStoreUnavailable):
        await store.delete("results/job_1.png")


async def test_a_queued_photo_the_bucket_never_answers_gives_up_at_the_deadline(
    s3_env: SeaweedS3, tmp_path: Path
) -> None:
    """A bucket that accepts the connection and never answers: the photo of a job waiting for
    a worker is given up at the job's deadline (the booth gets 503), not after boto3's read
    timeout and retry (20 s and more)."""
    requests: list[bytes] = []

    async def black_hole(stream: trio.SocketStream) -> None:
        requests.append(await stream.receive_some())
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, black_hole, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        objects = S3Objects(f"http://127.0.0.1:{port}", "bucket", REGION, "")
        store = MediaStore(tmp_path, objects)
        started = trio.current_time()
        with pytest.raises(ObjectStoreUnavailable, match="deadline"):
            await store.keep_input(
                "job_1", "jpg", Spool(tmp_path / "spool"), b"photo", until=started + 0.5
            )
        waited = trio.current_time() - started
        assert 0.5 <= waited < 2, waited
        assert requests and requests[0].startswith(b"PUT /bucket/inputs/job_1.jpg ")
        nursery.cancel_scope.cancel()  # closes the connection: the abandoned PUT fails and ends


async def test_health_recovers_when_the_probe_answers(
    s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path
) -> None:
    objects = S3Objects(s3_env.endpoint_url, s3_bucket, REGION, "")
    store = MediaStore(tmp_path, objects)
    objects.health.down("object store unreachable (test)")
    assert store.problem == "object store unreachable (test)"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.watch)
        with trio.fail_after(5):
            while store.problem is not None:
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()


async def test_wrong_credentials_are_unavailable_not_missing(
    s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    store = MediaStore(tmp_path, S3Objects(s3_env.endpoint_url, s3_bucket, REGION, ""))
    with pytest.raises(ObjectStoreUnavailable):
        await store.put("results/job_1.png", b"x")
    assert store.problem is not None and "refused" in store.problem


def test_the_local_backend_never_imports_the_s3_client(tmp_path: Path) -> None:
    """boto3 (≈ 160 ms, ≈ 20 MB) is paid for by the S3 backend only (in a process of its own:
    other tests of this run have imported it)."""
    code = (
        "import sys, trio\n"
        "import photochangerd.app\n"
        "from photochangerd.config import load_config\n"
        "from photochangerd.media.backends import open_media_store\n"
        "from pathlib import Path\n"
        f"config = load_config(environ={{}}, overrides={{'data_dir': Path({str(tmp_path)!r})}})\n"
        "store = trio.run(open_media_store, config)\n"
        "assert store.objects.name == 'local'\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0, result.stderr


class _ScriptedStore:
    """A backend whose HeadBucket answers as scripted (True: the store answers)."""

    name = "scripted"

    def __init__(self, answers: list[bool]) -> None:
        self.health = StoreHealth(healthy=False, problem="object store unreachable (start)")
        self.answers = answers
        self.probed_at: list[float] = []

    def probe(self) -> None:
        self.probed_at.append(trio.current_time())
        if self.answers.pop(0):
            self.health.up()
        else:
            self.health.down("object store unreachable (scripted)")
            raise ObjectStoreUnavailable("scripted")


async def test_the_watch_probes_often_while_down_and_rarely_while_up(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    class InLine(MediaStore):  # the probe without a thread: the mock clock cannot wait for one
        async def _probe(self, probe: Callable[[], None]) -> None:
            probe()

    backend = _ScriptedStore([False, False, True, True, False, True, True])
    store = InLine(tmp_path, cast(Any, backend))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.watch)
        await trio.sleep(PROBE_DOWN_SECONDS * 3 + PROBE_UP_SECONDS * 3 + 1)
        nursery.cancel_scope.cancel()
    gaps = [b - a for a, b in itertools.pairwise(backend.probed_at)]
    down, up = PROBE_DOWN_SECONDS, PROBE_UP_SECONDS
    assert gaps == pytest.approx([down, down, up, up, down, up])
    assert store.problem is None


def test_debug_logging_keeps_the_aws_sdk_quiet() -> None:
    """At log_level = debug the AWS SDK would log signed request headers (key id, session
    token): its loggers stay at INFO whatever the daemon's level."""
    import logging

    from photochangerd.logs import configure_logging

    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        configure_logging("text", "debug")
        assert root.level == logging.DEBUG
        for name in ("botocore", "boto3", "s3transfer", "urllib3"):
            assert not logging.getLogger(f"{name}.sub").isEnabledFor(logging.DEBUG), name
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]


class _WritesDenied:
    """The real S3 client, with every PUT refused as a write-denied bucket policy would."""

    def __init__(self, client: object) -> None:
        self._client = client

    def put_object(self, **kwargs: object) -> object:
        from botocore.exceptions import ClientError

        error = {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}
        raise ClientError({**error, "ResponseMetadata": {"HTTPStatusCode": 403}}, "PutObject")

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)


async def test_a_store_that_refuses_writes_stays_down_until_a_write_works(
    s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path
) -> None:
    """HeadBucket and reads succeed on a store that refuses writes (disk full, a policy):
    only a write may say it is usable again, or every upload would pay its provider and fail."""
    objects = S3Objects(s3_env.endpoint_url, s3_bucket, REGION, "w/")
    store = MediaStore(tmp_path, objects)
    kept = await store.put("results/job_old.png", b"kept")
    real = objects._client
    objects._client = _WritesDenied(real)
    with pytest.raises(ObjectStoreUnavailable):
        await store.put("results/job_new.png", b"new")
    assert store.problem is not None and "AccessDenied" in store.problem
    assert await store.read(kept) == b"kept"  # reads still work ...
    with pytest.raises(ObjectStoreUnavailable):
        await trio.to_thread.run_sync(objects.probe)
    assert store.problem is not None  # ... and neither they nor the probe say it is back
    objects._client = real  # writes work again
    await trio.to_thread.run_sync(objects.probe)
    assert store.problem is None
