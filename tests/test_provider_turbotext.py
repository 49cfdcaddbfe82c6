"""Turbotext driver end to end: the fake fetches our provider-media links for real, the queue is
created once and polled until done, and the poll loop stops at the deadline."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import INGEST_PASSWORD, RunningDaemon, free_port, make_config, start_daemon
from tests.fakes import FakeTurbotext, looks_derived_from, outcome
from tests.support.dslr import DslrResponse, dslr_upload
from tests.support.images import make_jpeg, make_png

PHOTO = make_jpeg(800, 600)
KEY = "test-turbotext-key"
POLL = 0.1


async def _setup(
    nursery: trio.Nursery,
    tmp_path: Path,
    operation: str = "image2image",
    settings: dict[str, object] | None = None,
    deadline: float = 10,
) -> tuple[RunningDaemon, FakeTurbotext]:
    fake = FakeTurbotext(api_key=KEY)
    url = await nursery.start(fake.serve)
    port = free_port()
    config = make_config(
        tmp_path,
        turbotext_base_url=url,
        bind=(f"127.0.0.1:{port}",),
        public_base_url=f"http://127.0.0.1:{port}",
        turbotext_poll_interval_seconds=POLL,
    )
    daemon = await start_daemon(nursery, config, env={"TURBOTEXT_API_KEY": KEY})
    await daemon.set_setting("sync_response_seconds", deadline)
    if settings is None:
        settings = {"prompt": "anime style", "strength": 55} if operation == "image2image" else {}
    await daemon.configure_slot(
        "slot-004", provider="turbotext", operation=operation, settings=settings
    )
    return daemon, fake


async def _template(daemon: RunningDaemon, role: str) -> bytes:
    data = make_png(320, 240)
    await daemon.bind_template("slot-004", role, data)
    return data


async def _shoot(daemon: RunningDaemon) -> DslrResponse:
    response = await dslr_upload(
        "127.0.0.1", daemon.port, "slot-004", photo=PHOTO, password=INGEST_PASSWORD
    )
    assert response is not None
    return response


async def test_image2image_fetches_our_link_polls_and_downloads(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    daemon, fake = await _setup(nursery, tmp_path)
    fake.script(outcome("success", reconnects=3))  # relative data.image[0], as in the vendor docs
    response = await _shoot(daemon)
    assert response.status == 200, response.body[:300]
    assert response.headers["content-type"] == "image/jpeg"
    assert looks_derived_from(response.body, PHOTO)

    [create] = fake.creates()
    assert create.headers["authorization"] == f"Bearer {KEY}"
    assert create.form["content"] == "anime style" and create.form["strength"] == "55"
    photo_url = create.form["url"]
    assert photo_url.startswith(f"{daemon.config.public_base_url}/public/provider-media/")
    [fetch] = fake.fetches
    assert fetch.status == 200 and fetch.url == photo_url
    assert len(fake.polls()) >= 4
    job = await daemon.job(response.headers["x-job-id"])
    assert job.provider_job_reference == create_queueid(fake)

    # The link lives until the job's deadline, then answers 410 (and the cleaner removes it).
    async with httpx.AsyncClient() as client:
        assert (await client.get(photo_url)).status_code == 200
        daemon.clock.offset = 11
        gone = await client.get(photo_url)
    assert gone.status_code == 410
    from photochangerd.media.cleaner import Cleaner

    report = await Cleaner(daemon.context.db, daemon.context.store, daemon.clock).run_once()
    assert report.expired_media == 1
    assert not any(p.name.startswith("media-") for p in daemon.context.store.temp.iterdir())


def create_queueid(fake: FakeTurbotext) -> str:
    return str(next(iter(fake.jobs)))


@pytest.mark.parametrize(
    ("operation", "role", "target_field"),
    [
        ("mix_images", "style", "url"),
        ("face_swap", "face", "url_image_target"),
    ],
)
async def test_template_operations(
    nursery: trio.Nursery, tmp_path: Path, operation: str, role: str, target_field: str
) -> None:
    daemon, fake = await _setup(
        nursery,
        tmp_path,
        operation=operation,
        settings={"face_restore": True} if role == "face" else {},
    )
    await _template(daemon, role)
    response = await _shoot(daemon)
    assert response.status == 200, response.body[:300]
    [create] = fake.creates()
    assert len(fake.fetches) == 2 and all(f.status == 200 for f in fake.fetches)
    assert create.form[target_field] != create.form.get(
        "url" if target_field == "url_image_target" else "url_image_target"
    )
    if role == "face":
        assert create.form["face_restore"] == "True"


@pytest.mark.slow
async def test_result_download_404_once_is_retried(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon, fake = await _setup(nursery, tmp_path)
    fake.script(outcome("success", download_404_once=True, shape="uploaded_image"))
    response = await _shoot(daemon)
    assert response.status == 200
    [job] = fake.jobs.values()
    assert job.downloads >= 2


async def test_vendor_error_is_502_and_queue_not_recreated(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    daemon, fake = await _setup(nursery, tmp_path)
    fake.script("face_not_detected")
    response = await _shoot(daemon)
    assert response.status == 502 and "face_not_detected" in response.json()["details"]
    assert len(fake.creates()) == 1


async def test_html_500_on_create_is_not_retried(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon, fake = await _setup(nursery, tmp_path)
    fake.script("html_500_create")
    response = await _shoot(daemon)
    assert response.status == 503
    assert len(fake.creates()) == 1  # billed per create: never blindly re-created


@pytest.mark.slow
async def test_stuck_queue_polling_stops_at_the_deadline(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    daemon, fake = await _setup(nursery, tmp_path, deadline=1.5)
    fake.script("stuck")
    sent = trio.current_time()  # the fake records on the same clock
    response = await _shoot(daemon)
    assert response.status == 504
    deadline = sent + 1.5  # the daemon's arrival is a hair after ``sent``
    polls_at_answer = len(fake.polls())
    await trio.sleep(5 * POLL)
    assert len(fake.polls()) == polls_at_answer  # no poll after the deadline
    assert polls_at_answer >= 5
    assert max(p.received_at for p in fake.polls()) <= deadline + 0.05


async def test_wrong_token(nursery: trio.Nursery, tmp_path: Path) -> None:
    fake = FakeTurbotext(api_key="another-key")
    url = await nursery.start(fake.serve)
    port = free_port()
    config = make_config(
        tmp_path,
        turbotext_base_url=url,
        bind=(f"127.0.0.1:{port}",),
        public_base_url=f"http://127.0.0.1:{port}",
    )
    daemon = await start_daemon(nursery, config, env={"TURBOTEXT_API_KEY": KEY})
    await daemon.configure_slot(
        "slot-004", provider="turbotext", operation="image2image", settings={"prompt": "x"}
    )
    response = await _shoot(daemon)
    assert response.status == 502 and "API key" in response.json()["details"]
    assert KEY not in response.body.decode()
