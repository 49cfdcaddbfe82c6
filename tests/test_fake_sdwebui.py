"""The fake AUTOMATIC1111 WebUI (tests/fakes/sdwebui.py) speaks the WebUI's API over real HTTP:
its answers' shapes, HTTP Basic, FastAPI's 422, the one-GPU queue, task states, and an
interrupt that really stops the running job (which a client going away does not)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
from PIL import Image

from tests.fakes import FakeSdWebUI, looks_derived_from, outcome, slow
from tests.support.images import make_jpeg

PHOTO = make_jpeg(120, 80)
AUTH = "booth:secret"


def _body(task_id: str = "task(ours-1)", **extra: Any) -> dict[str, Any]:
    return {
        "init_images": [base64.b64encode(PHOTO).decode()],
        "prompt": "oil painting",
        "denoising_strength": 0.5,
        "steps": 10,
        "cfg_scale": 7,
        "seed": -1,
        "width": 96,
        "height": 64,
        "force_task_id": task_id,
        **extra,
    }


def _basic(auth: str = AUTH) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10, headers=_basic()) as client:
        yield client


async def _start(nursery: trio.Nursery, **options: Any) -> FakeSdWebUI:
    fake = FakeSdWebUI(auth=AUTH, **options)
    await nursery.start(fake.serve)
    return fake


async def _state(http: httpx.AsyncClient, fake: FakeSdWebUI, task_id: str) -> dict[str, Any]:
    response = await http.post(f"{fake.url}/internal/progress", json={"id_task": task_id})
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def test_success_shape(nursery: trio.Nursery, http: httpx.AsyncClient) -> None:
    fake = await _start(nursery)
    response = await http.post(f"{fake.url}/sdapi/v1/img2img", json=_body())
    assert response.status_code == 200
    document = response.json()
    first, control_map = (base64.b64decode(i) for i in document["images"])
    with Image.open(io.BytesIO(first)) as image:
        assert image.format == "PNG" and image.size == (96, 64)
    assert looks_derived_from(first, PHOTO)
    assert not looks_derived_from(control_map, PHOTO)
    assert "init_images" not in document["parameters"]
    assert json.loads(document["info"])["seed"] >= 0
    assert await _state(http, fake, "task(ours-1)") == {
        "active": False,
        "queued": False,
        "completed": True,
        "progress": None,
        "eta": None,
        "live_preview": None,
        "id_live_preview": -1,
        "textinfo": None,
    }
    assert fake.internal_errors == []


async def test_http_basic(nursery: trio.Nursery) -> None:
    fake = await _start(nursery)
    async with httpx.AsyncClient() as anonymous:
        for path in ("/sdapi/v1/img2img", "/sdapi/v1/interrupt", "/internal/progress"):
            response = await anonymous.post(fake.url + path, json={})
            assert response.status_code == 401 and response.json() == {
                "detail": "Not authenticated"
            }
            assert response.headers["www-authenticate"] == "Basic"
        wrong = await anonymous.get(f"{fake.url}/sdapi/v1/progress", headers=_basic("booth:x"))
        assert wrong.status_code == 401
        assert wrong.json() == {"detail": "Incorrect username or password"}
        right = await anonymous.get(f"{fake.url}/sdapi/v1/progress", headers=_basic())
        assert right.status_code == 200 and right.json()["state"]["job_count"] == 0
    assert fake.jobs == []


async def test_validation_errors_are_fastapi_422s(
    nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    fake = await _start(nursery)
    response = await http.post(f"{fake.url}/sdapi/v1/img2img", json=_body(steps="many"))
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "loc": ["body", "steps"],
                "msg": "value is not a valid integer",
                "type": "type_error.integer",
            }
        ]
    }
    fake.script(outcome("validation_error", field="scheduler"))
    response = await http.post(f"{fake.url}/sdapi/v1/img2img", json=_body())
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "scheduler"]
    assert fake.jobs == []  # refused by the request model: never queued


async def test_out_of_memory(nursery: trio.Nursery, http: httpx.AsyncClient) -> None:
    fake = await _start(nursery)
    fake.script("oom")
    response = await http.post(f"{fake.url}/sdapi/v1/img2img", json=_body())
    assert response.status_code == 500
    document = response.json()
    assert set(document) == {"error", "detail", "body", "errors"}
    assert document["error"] == "OutOfMemoryError" and "CUDA out of memory" in document["errors"]


async def test_one_gpu_runs_one_job_at_a_time(
    nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    fake = await _start(nursery)
    fake.script(slow(1.0), slow(0.2))
    answers: dict[str, int] = {}

    async def post(task_id: str) -> None:
        response = await http.post(f"{fake.url}/sdapi/v1/img2img", json=_body(task_id))
        answers[task_id] = response.status_code

    async with trio.open_nursery() as clients:
        clients.start_soon(post, "task(a)")
        with trio.fail_after(2):
            await fake.wait_until(lambda: fake.running is not None)
        clients.start_soon(post, "task(b)")
        with trio.fail_after(2):
            await fake.wait_until(lambda: len(fake.jobs) == 2)
        assert (await _state(http, fake, "task(a)"))["active"] is True
        assert (await _state(http, fake, "task(b)"))["queued"] is True
        progress = (await http.get(f"{fake.url}/sdapi/v1/progress")).json()
        assert progress["state"]["job_count"] == 1 and progress["state"]["sampling_steps"] == 10
    a, b = fake.jobs
    assert answers == {"task(a)": 200, "task(b)": 200}
    assert a.ended_at is not None and b.started_at is not None and b.started_at >= a.ended_at
    assert a.ended_at - a.started_at >= 0.95  # type: ignore[operator]


async def test_interrupt_stops_the_running_job_a_disconnect_does_not(
    nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    fake = await _start(nursery)
    fake.script("hang")
    with trio.move_on_after(0.5):
        await http.post(f"{fake.url}/sdapi/v1/img2img", json=_body())
    [call] = fake.calls("/sdapi/v1/img2img")
    with trio.fail_after(2):
        await fake.wait_until(lambda: call.disconnected)
    await trio.sleep(0.3)
    job = fake.jobs[0]
    assert job.state == "active" and fake.running is job  # the client left; the GPU did not
    sent = trio.current_time()
    response = await http.post(f"{fake.url}/sdapi/v1/interrupt")
    assert response.status_code == 200 and response.json() is None
    with trio.fail_after(2):
        await fake.wait_until(lambda: job.ended_at is not None)
    assert job.interrupted and fake.running is None
    assert len(fake.interrupts) == 1 and abs(fake.interrupts[0] - sent) < 0.2
    assert (await _state(http, fake, job.task_id))["completed"] is True


async def test_legacy_webui_ignores_force_task_id(
    nursery: trio.Nursery, http: httpx.AsyncClient
) -> None:
    fake = await _start(nursery, legacy=True)
    response = await http.post(f"{fake.url}/sdapi/v1/img2img", json=_body("task(ours)"))
    assert response.status_code == 200
    assert fake.jobs[0].task_id != "task(ours)"
    state = await _state(http, fake, "task(ours)")
    assert (state["active"], state["queued"], state["completed"]) == (False, False, False)
