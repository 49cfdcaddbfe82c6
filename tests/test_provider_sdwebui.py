"""The sdwebui (AUTOMATIC1111 WebUI) driver end to end: a real daemon, DSLR-style uploads, the
fake WebUI with one GPU (tests/fakes/sdwebui.py)."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
import trio
from PIL import Image

from tests.conftest import INGEST_PASSWORD, RunningDaemon, free_port, make_config, start_daemon
from tests.fakes import FakeSdWebUI, looks_derived_from, outcome, slow
from tests.fakes.images import image_size
from tests.support.dslr import DslrResponse, dslr_upload
from tests.support.images import make_jpeg

PHOTO = make_jpeg(1600, 1200)
AUTH = "booth:gpu-secret"
SLOT = "slot-005"


async def _setup(
    nursery: trio.Nursery,
    tmp_path: Path,
    *,
    deadline: float = 10,
    settings: dict[str, Any] | None = None,
    fake: FakeSdWebUI | None = None,
    base_url: str | None = None,
    auth: str = AUTH,
    slots: tuple[str, ...] = (SLOT,),
) -> tuple[RunningDaemon, FakeSdWebUI]:
    fake = fake or FakeSdWebUI(auth=AUTH)
    url = await nursery.start(fake.serve)
    config = make_config(tmp_path, sdwebui_base_url=url if base_url is None else base_url)
    daemon = await start_daemon(nursery, config, env={"SDWEBUI_AUTH": auth})
    await daemon.set_setting("sync_response_seconds", deadline)
    for slot in slots:
        await daemon.configure_slot(
            slot,
            provider="sdwebui",
            operation="img2img",
            settings=settings or {"prompt": "oil painting of the guests"},
        )
    return daemon, fake


async def _shoot(daemon: RunningDaemon, slot: str = SLOT) -> DslrResponse:
    response = await dslr_upload(
        "127.0.0.1", daemon.port, slot, photo=PHOTO, password=INGEST_PASSWORD
    )
    assert response is not None
    return response


async def test_success_sends_the_working_size_and_returns_the_image(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    daemon, fake = await _setup(nursery, tmp_path)
    response = await _shoot(daemon)
    assert response.status == 200, response.body[:300]
    assert response.headers["content-type"] == "image/jpeg"  # PNG from the WebUI, JPEG out
    assert looks_derived_from(response.body, PHOTO)
    [call] = fake.img2img_calls()
    body = call.json
    assert call.headers["authorization"] == "Basic " + base64.b64encode(AUTH.encode()).decode()
    # 1600x1200 in a 1 MP budget: multiples of 8, ratio kept, under the budget.
    assert (body["width"], body["height"]) == (1176, 880)
    assert body["width"] * body["height"] <= 1_048_576
    sent = base64.b64decode(body["init_images"][0])
    assert image_size(sent) == (1176, 880)
    assert image_size(response.body) == (1176, 880)  # result_size "working" (default)
    assert body["prompt"] == "oil painting of the guests"
    assert body["denoising_strength"] == 0.5 and body["steps"] == 20 and body["cfg_scale"] == 7
    assert body["seed"] == -1 and body["send_images"] is True and body["save_images"] is False
    assert "override_settings" not in body and "sampler_name" not in body
    assert fake.jobs[0].task_id == body["force_task_id"]
    job = await daemon.job(response.headers["x-job-id"])
    assert job.failure_reason is None and job.provider == "sdwebui"
    assert fake.internal_errors == []


async def test_checkpoint_sampler_and_result_at_the_photo_size(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    settings = {
        "prompt": "anime style",
        "negative_prompt": "blurry",
        "denoising_strength": 0.35,
        "steps": 12,
        "cfg_scale": 5.5,
        "sampler_name": "DPM++ 2M",
        "scheduler": "Karras",
        "seed": 42,
        "checkpoint": "sd_xl_base_1.0.safetensors",
        "working_pixels": 262_144,
        "result_size": "photo",
        "output_format": "png",
    }
    daemon, fake = await _setup(nursery, tmp_path, settings=settings)
    response = await _shoot(daemon)
    assert response.status == 200, response.body[:300]
    assert response.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(response.body)) as image:
        assert image.size == (1600, 1200)
    body = fake.img2img_calls()[0].json
    assert (body["width"], body["height"]) == (584, 440)
    assert body["override_settings"] == {"sd_model_checkpoint": "sd_xl_base_1.0.safetensors"}
    assert body["sampler_name"] == "DPM++ 2M" and body["scheduler"] == "Karras"
    assert body["steps"] == 12 and body["seed"] == 42 and body["negative_prompt"] == "blurry"


async def test_validation_error_is_502_naming_the_field(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    daemon, fake = await _setup(nursery, tmp_path)
    fake.script(outcome("validation_error", field="sampler_name"))
    response = await _shoot(daemon)
    assert response.status == 502
    assert response.json()["failure_reason"] == "provider_error"
    job = await daemon.job(response.headers["x-job-id"])
    assert "sampler_name" in (job.failure_details or ""), job.failure_details
    assert len(fake.img2img_calls()) == 1 and fake.jobs == []  # refused, never queued


async def test_out_of_memory_is_503_and_not_retried(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon, fake = await _setup(nursery, tmp_path)
    fake.script("oom")
    response = await _shoot(daemon)
    assert response.status == 503
    job = await daemon.job(response.headers["x-job-id"])
    assert job.failure_reason == "provider_error"
    assert "out of GPU memory" in (job.failure_details or "")
    assert len(fake.img2img_calls()) == 1


async def test_wrong_credentials_are_502(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon, fake = await _setup(nursery, tmp_path, auth="booth:wrong")
    response = await _shoot(daemon)
    assert response.status == 502
    job = await daemon.job(response.headers["x-job-id"])
    assert "credentials" in (job.failure_details or "")
    assert fake.img2img_calls()[0].status == 401 and fake.jobs == []


async def test_unconfigured_backend_fails_the_job_clearly(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    daemon, fake = await _setup(nursery, tmp_path, base_url="")
    response = await _shoot(daemon)
    assert response.status == 502
    job = await daemon.job(response.headers["x-job-id"])
    assert job.failure_reason == "provider_error"
    assert "sdwebui_base_url" in (job.failure_details or "")
    assert fake.requests == []


async def test_backend_down_is_503(nursery: trio.Nursery, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    daemon, _fake = await _setup(nursery, tmp_path, base_url=closed, deadline=4)
    response = await _shoot(daemon)
    assert response.status == 503 and response.elapsed < 4  # gave up before the deadline
    job = await daemon.job(response.headers["x-job-id"])
    assert "backend down" in (job.failure_details or ""), job.failure_details


@pytest.mark.parametrize("legacy", [False, True], ids=["webui-1.6+", "older-webui"])
async def test_hang_is_504_with_the_interrupt_sent_at_the_deadline(
    nursery: trio.Nursery, tmp_path: Path, legacy: bool
) -> None:
    """A WebUI before 1.6 ignores our task id: the job is interrupted because it is busy.
    Which kind the backend is, the daemon learns from the first photo it processed."""
    fake = FakeSdWebUI(auth=AUTH, legacy=legacy)
    daemon, fake = await _setup(nursery, tmp_path, deadline=3, fake=fake)
    first = await _shoot(daemon)
    assert first.status == 200
    with trio.fail_after(2):  # the daemon asked about that task once, in the background
        await fake.wait_until(lambda: bool(fake.calls("/internal/progress")))
    fake.script("hang")
    response = await _shoot(daemon)
    answered = trio.current_time()
    assert response.status == 504 and 2.9 <= response.elapsed <= 3.4
    with trio.fail_after(2):
        await fake.wait_until(lambda: bool(fake.interrupts) and fake.running is None)
    [interrupt] = fake.interrupts
    call = fake.img2img_calls()[1]
    assert call.disconnected_at is not None
    assert abs(interrupt - call.disconnected_at) <= 0.5  # sent at the deadline...
    assert abs(interrupt - answered) <= 0.5  # ...and the booth's 504 did not wait for it
    hung = fake.jobs[1]
    assert hung.interrupted and hung.ended_at is not None
    # 1.6+: our task id said "active"; older: the task was unknown and the WebUI was busy.
    assert bool(fake.calls("/sdapi/v1/progress")) == legacy
    # The GPU is free again: the next photo is processed at once.
    second = await _shoot(daemon)
    assert second.status == 200 and second.elapsed < 2
    assert fake.jobs[2].queued_at >= hung.ended_at
    assert fake.internal_errors == []


@pytest.mark.slow
async def test_two_slots_share_the_gpu_one_job_at_a_time(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    daemon, fake = await _setup(nursery, tmp_path, deadline=5, slots=(SLOT, "slot-006"))
    fake.script(slow(1.5), slow(1.5))
    responses: dict[str, DslrResponse] = {}

    async def shoot(slot: str) -> None:
        responses[slot] = await _shoot(daemon, slot)

    async with trio.open_nursery() as booths:
        booths.start_soon(shoot, SLOT)
        booths.start_soon(shoot, "slot-006")
    assert [r.status for r in responses.values()] == [200, 200]
    assert all(r.elapsed < 5 for r in responses.values())
    first, second = sorted(fake.jobs, key=lambda j: j.queued_at)
    assert first.ended_at is not None and second.started_at is not None
    # Our gate held the second job: it reached the WebUI only after the first was done.
    assert second.queued_at >= first.ended_at
    assert max(r.elapsed for r in responses.values()) >= 2.9


@pytest.mark.slow
async def test_second_job_times_out_in_our_queue_and_never_reaches_the_gpu(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    # One deadline for all jobs means a job behind another normally gets the GPU before its own
    # deadline; a deadline shortened by the operator between the two photos is the plain way
    # to have the second one time out while it still waits in our queue.
    daemon, fake = await _setup(nursery, tmp_path, deadline=10, slots=(SLOT, "slot-006"))
    fake.script(slow(3))
    responses: dict[str, DslrResponse] = {}

    async def shoot(slot: str) -> None:
        responses[slot] = await _shoot(daemon, slot)

    async with trio.open_nursery() as booths:
        booths.start_soon(shoot, SLOT)
        with trio.fail_after(5):
            await fake.wait_until(lambda: fake.running is not None)
        await daemon.set_setting("sync_response_seconds", 1.5)
        booths.start_soon(shoot, "slot-006")
    assert responses[SLOT].status == 200
    late = responses["slot-006"]
    assert late.status == 504 and late.elapsed < 2
    job = await daemon.job(late.headers["x-job-id"])
    assert "sdwebui slot" in (job.failure_details or ""), job.failure_details
    assert "sdwebui_concurrency = 1" in (job.failure_details or "")
    assert fake.jobs[0].ended_at is not None
    await trio.sleep(0.5)  # the first job is done: a second one still queued would be sent now
    assert len(fake.img2img_calls()) == 1 and len(fake.jobs) == 1
    assert fake.interrupts == []  # it never ran: nothing to interrupt
