"""ComfyUI driver end to end: a real daemon, DSLR-style uploads, the fake ComfyUI on a real socket
(one fake GPU, a real queue), and what happens on the server at the job's deadline."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import (
    ADMIN_PASSWORD,
    INGEST_PASSWORD,
    RunningDaemon,
    free_port,
    make_config,
    start_daemon,
)
from tests.fakes import FakeComfyUI, looks_derived_from, outcome, slow
from tests.support.comfyui import img2img_workflow, size_of
from tests.support.dslr import DslrResponse, dslr_upload
from tests.support.images import make_jpeg

PHOTO = make_jpeg(800, 600)
SLOT = "slot-005"


async def _setup(
    nursery: trio.Nursery,
    tmp_path: Path,
    settings: dict[str, Any] | None = None,
    deadline: float = 10,
    **config: Any,
) -> tuple[RunningDaemon, FakeComfyUI]:
    fake = FakeComfyUI(run_seconds=0.3)
    url = await nursery.start(fake.serve)
    config.setdefault("comfyui_base_url", url)
    daemon = await start_daemon(nursery, make_config(tmp_path, **config))
    await daemon.set_setting("sync_response_seconds", deadline)
    if settings is None:
        settings = {"workflow": img2img_workflow(), "prompt": "anime portrait"}
    await daemon.configure_slot(SLOT, provider="comfyui", operation="workflow", settings=settings)
    return daemon, fake


async def _shoot(daemon: RunningDaemon) -> DslrResponse:
    response = await dslr_upload(
        "127.0.0.1", daemon.port, SLOT, photo=PHOTO, password=INGEST_PASSWORD, timeout=30
    )
    assert response is not None
    return response


async def test_workflow_runs_through_history_end_to_end(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    # A large exported workflow (~300 KB) goes through the settings row and the queue.
    workflow = img2img_workflow(padding_nodes=900)
    assert size_of(workflow) > 300_000
    daemon, fake = await _setup(
        nursery, tmp_path, {"workflow": workflow, "prompt": "anime portrait"}
    )
    response = await _shoot(daemon)
    assert response.status == 200, response.body[:300]
    assert response.headers["content-type"] == "image/jpeg"
    assert looks_derived_from(response.body, PHOTO)
    job_id = response.headers["x-job-id"]

    [upload] = fake.calls("/upload/image")
    [image] = upload.files
    assert image.field == "image" and image.filename == f"{job_id}.jpg"
    assert upload.form["overwrite"] == "true" and upload.form["subfolder"] == "photochanger"
    [queued] = fake.calls("/prompt", http_method="POST")
    sent = queued.json["prompt"]
    assert sent["10"]["inputs"]["image"] == f"photochanger/{job_id}.jpg"
    assert sent["6"]["inputs"]["text"] == "anime portrait, masterpiece, best quality"
    assert sent["7"] == workflow["7"] and len(sent) == len(workflow)
    prompt = fake.prompt(queued.json["client_id"])
    assert prompt.state == "success"
    assert fake.calls(f"/history/{prompt.prompt_id}")
    [view] = fake.calls("/view")
    assert view.query["type"] == "output"  # the SaveImage, not the PreviewImage before it
    assert view.query["filename"].startswith("photochanger_")
    job = await daemon.job(job_id)
    assert job.provider_job_reference == prompt.prompt_id
    assert fake.cancels == [] and fake.internal_errors == []


async def test_prompt_node_gets_the_prompt(nursery: trio.Nursery, tmp_path: Path) -> None:
    workflow = img2img_workflow("a photo")
    settings = {"workflow": workflow, "prompt": "oil painting", "prompt_node": "6"}
    daemon, fake = await _setup(nursery, tmp_path, settings)
    assert (await _shoot(daemon)).status == 200
    [queued] = fake.calls("/prompt", http_method="POST")
    assert queued.json["prompt"]["6"]["inputs"]["text"] == "oil painting"


async def test_node_errors_at_run_time_are_502_naming_the_node(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    # Valid for the slot, refused by this server: it has no such checkpoint.
    workflow = img2img_workflow(checkpoint="dreamshaper_8.safetensors")
    daemon, fake = await _setup(nursery, tmp_path, {"workflow": workflow, "prompt": "x"})
    response = await _shoot(daemon)
    assert response.status == 502, response.body[:300]
    details = response.json()["details"]
    assert "Prompt outputs failed validation" in details
    assert "node 4 (CheckpointLoaderSimple): Value not in list" in details
    assert "dreamshaper_8.safetensors" in details
    job = await daemon.job(response.headers["x-job-id"])
    assert job.failure_reason == "provider_error" and job.failure_details == details
    assert fake.prompts == {} and fake.calls("/queue") == []  # nothing queued, nothing to cancel


@pytest.mark.parametrize(
    ("script", "status", "text"),
    [
        (
            outcome("error", message="mat1 and mat2 shapes cannot be multiplied"),
            502,
            "comfyui failed at node 11 (VAEEncode): RuntimeError: mat1 and mat2",
        ),
        (outcome("oom"), 503, "comfyui ran out of GPU memory at node 11 (VAEEncode)"),
        (outcome("no_output"), 502, "without an output image"),
    ],
)
async def test_execution_errors(
    nursery: trio.Nursery, tmp_path: Path, script: Any, status: int, text: str
) -> None:
    daemon, fake = await _setup(nursery, tmp_path)
    fake.script(script)
    response = await _shoot(daemon)
    assert response.status == status, response.body[:300]
    assert text in response.json()["details"]
    assert fake.calls("/queue") == []  # it ended on the server: nothing to cancel


async def test_unconfigured_and_unreachable_backends(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon, _ = await _setup(nursery, tmp_path / "a", comfyui_base_url="")
    response = await _shoot(daemon)
    assert response.status == 502
    assert "comfyui is not configured: set comfyui_base_url" in response.json()["details"]

    closed = f"http://127.0.0.1:{free_port()}"
    daemon, _ = await _setup(nursery, tmp_path / "b", comfyui_base_url=closed)
    response = await _shoot(daemon)
    assert response.status == 503 and "comfyui backend down" in response.json()["details"]


async def _occupy_gpu(fake: FakeComfyUI) -> str:
    """Someone else's prompt, running until interrupted (ComfyUI is shared)."""
    fake.script("hang")
    fake.inputs["theirs.png"] = PHOTO
    workflow = img2img_workflow("their prompt")
    workflow["10"]["inputs"]["image"] = "theirs.png"
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{fake.url}/prompt", json={"prompt": workflow})
    assert answer.status_code == 200, answer.text
    prompt_id: str = answer.json()["prompt_id"]
    with trio.fail_after(2):
        await fake.wait_until(lambda: fake.running is not None)
    return prompt_id


@pytest.mark.slow
async def test_pending_prompt_is_deleted_at_the_deadline(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    daemon, fake = await _setup(nursery, tmp_path, deadline=1.5)
    theirs = await _occupy_gpu(fake)
    sent = trio.current_time()
    response = await _shoot(daemon)
    answered = trio.current_time()
    assert response.status == 504
    assert answered - sent < 1.5 + 0.5  # the cancel does not hold the booth's answer
    with trio.fail_after(3):
        await fake.wait_until(lambda: bool(fake.cancels))
    [cancel] = fake.cancels
    ours = next(p for p in fake.prompts.values() if p.prompt_id != theirs)
    assert cancel.kind == "delete" and cancel.prompt_id == ours.prompt_id
    assert cancel.effect == f"deleted {ours.prompt_id}" and ours.state == "deleted"
    assert sent + 1.5 <= cancel.at <= sent + 1.5 + 0.5
    assert fake.running is not None and fake.running.prompt_id == theirs  # theirs untouched


@pytest.mark.slow
async def test_running_prompt_is_interrupted_at_the_deadline_and_the_gpu_freed(
    nursery: trio.Nursery, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    daemon, fake = await _setup(nursery, tmp_path, deadline=1.5)
    logging.getLogger().addHandler(caplog.handler)  # the daemon's start replaced the handlers
    caplog.set_level(logging.INFO, logger="photochangerd.providers.comfyui")
    fake.script("hang")
    sent = trio.current_time()
    response = await _shoot(daemon)
    assert response.status == 504
    with trio.fail_after(3):
        await fake.wait_until(lambda: bool(fake.cancels))
    [cancel] = fake.cancels
    [ours] = fake.prompts.values()
    assert cancel.kind == "interrupt" and cancel.prompt_id == ours.prompt_id
    assert cancel.effect == f"interrupted {ours.prompt_id}"
    assert sent + 1.5 <= cancel.at <= sent + 1.5 + 0.5
    with trio.fail_after(1):
        await fake.wait_until(lambda: fake.running is None)
    assert ours.state == "interrupted"
    assert fake.history[ours.prompt_id]["status"]["status_str"] == "error"

    def logged() -> list[dict[str, Any]]:
        return [getattr(r, "fields", {}) for r in caplog.records if r.msg == "comfyui.cancel"]

    with trio.fail_after(2):  # logged once the interrupt's answer is in
        while not logged():
            await trio.sleep(0.02)
    [cancel_log] = logged()
    assert cancel_log["prompt_id"] == ours.prompt_id and cancel_log["outcome"] == "interrupted"
    assert cancel_log["job_id"] == response.headers["x-job-id"]
    # The GPU is free: the next photo is served at once.
    assert (await _shoot(daemon)).status == 200


async def test_second_job_waits_for_the_one_gpu(nursery: trio.Nursery, tmp_path: Path) -> None:
    daemon, fake = await _setup(nursery, tmp_path, deadline=5)
    fake.default = slow(0.6)
    answers: list[DslrResponse] = []

    async def shoot() -> None:
        answers.append(await _shoot(daemon))

    async with trio.open_nursery() as booths:
        booths.start_soon(shoot)
        booths.start_soon(shoot)
    assert [a.status for a in answers] == [200, 200]
    first, second = sorted(fake.prompts.values(), key=lambda p: p.queued_at)
    assert first.ended_at is not None and second.queued_at >= first.ended_at
    assert fake.cancels == []


@pytest.mark.slow
async def test_a_job_waiting_for_the_gpu_times_out_in_the_gate_and_says_so(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    daemon, fake = await _setup(nursery, tmp_path, deadline=1.5)
    fake.default = "hang"
    answers: list[DslrResponse] = []

    async def shoot() -> None:
        answers.append(await _shoot(daemon))

    async with trio.open_nursery() as booths:
        booths.start_soon(shoot)
        await fake.wait_until(lambda: bool(fake.prompts))
        booths.start_soon(shoot)
    assert [a.status for a in answers] == [504, 504]
    waited = await daemon.wait_job_final(answers[1].headers["x-job-id"])
    assert waited.failure_details is not None
    assert "for a comfyui slot (1 call in flight, comfyui_concurrency = 1)" in (
        waited.failure_details
    )
    # The second job got the GPU gate when the first timed out, with too little time left: its
    # prompt, queued behind the first (still being interrupted), is deleted too.
    with trio.fail_after(3):
        await fake.wait_until(
            lambda: all(p.state in ("interrupted", "deleted") for p in fake.prompts.values())
        )
    effects = {c.effect for c in fake.cancels}  # (a delete that lost a race to the GPU: "nothing")
    for prompt in fake.prompts.values():
        assert (
            f"{'interrupted' if prompt.state == 'interrupted' else 'deleted'} {prompt.prompt_id}"
            in effects
        )


# -- validated on save -----------------------------------------------------------------------


@asynccontextmanager
async def _admin(daemon: RunningDaemon) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as client:
        login = await client.post(
            "/api/login", json={"username": "serg", "password": ADMIN_PASSWORD}
        )
        client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        yield client


def _without(workflow: dict[str, Any], *class_types: str) -> dict[str, Any]:
    return {k: v for k, v in workflow.items() if v["class_type"] not in class_types}


@pytest.mark.parametrize(
    ("settings", "field", "text"),
    [
        (
            {"workflow": _without(img2img_workflow(), "LoadImage"), "prompt": "x"},
            "settings.workflow",
            "exactly one LoadImage node",
        ),
        (
            {"workflow": {**img2img_workflow(), "99": img2img_workflow()["10"]}, "prompt": "x"},
            "settings.workflow",
            "(found 2: '10', '99')",
        ),
        (
            {"workflow": _without(img2img_workflow(), "SaveImage", "PreviewImage"), "prompt": "x"},
            "settings.workflow",
            "at least one image output node",
        ),
        (
            {"workflow": {"nodes": [], "links": [], "version": 0.4}},
            "settings.workflow",
            "UI format",
        ),
        (
            {"workflow": img2img_workflow(), "prompt": "x", "prompt_node": "42"},
            "settings.prompt_node",
            "no node '42'",
        ),
        (
            {"workflow": img2img_workflow(), "prompt": "x", "prompt_node": "3"},
            "settings.prompt_node",
            "(KSampler) has no text input",
        ),
        ({"workflow": img2img_workflow()}, "settings.prompt", "{{prompt}} placeholders"),
        (
            {"workflow": img2img_workflow("a photo"), "prompt": "x"},
            "settings.prompt",
            "nothing in the workflow receives it",
        ),
        ({"workflow": img2img_workflow(padding_nodes=7000)}, "settings.workflow", "nodes"),
    ],
)
async def test_invalid_workflow_is_refused_at_save_with_422(
    daemon: RunningDaemon, settings: dict[str, Any], field: str, text: str
) -> None:
    async with _admin(daemon) as admin:
        response = await admin.put(
            f"/api/slots/{SLOT}",
            json={"provider": "comfyui", "operation": "workflow", "settings": settings},
        )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["failure_reason"] == "validation_error"
    assert text in body["errors"][field], body["errors"]


async def test_a_large_valid_workflow_is_saved(daemon: RunningDaemon) -> None:
    workflow = img2img_workflow(padding_nodes=1200)
    assert size_of(workflow) > 400_000
    async with _admin(daemon) as admin:
        response = await admin.put(
            f"/api/slots/{SLOT}",
            json={
                "provider": "comfyui",
                "operation": "workflow",
                "settings": {"workflow": workflow, "prompt": "anime"},
            },
        )
        assert response.status_code == 200, response.text[:300]
        saved = (await admin.get(f"/api/slots/{SLOT}")).json()
    assert saved["settings"]["workflow"] == workflow
