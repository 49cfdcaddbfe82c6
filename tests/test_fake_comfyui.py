"""The fake ComfyUI pinned: ComfyUI's answers, the one-GPU queue, delete and interrupt (the
driver tests trust it)."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from tests.fakes import FakeComfyUI, slow
from tests.support.comfyui import img2img_workflow
from tests.support.images import make_png

PHOTO = make_png(64, 48)


async def _upload(client: httpx.AsyncClient, name: str, **form: str) -> dict[str, Any]:
    answer = await client.post(
        "/upload/image", files={"image": (name, PHOTO, "image/png")}, data=form
    )
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def _workflow(image: str) -> dict[str, Any]:
    workflow = img2img_workflow("a photo")
    workflow["10"]["inputs"]["image"] = image
    return workflow


async def _queue(client: httpx.AsyncClient, image: str, client_id: str = "c") -> str:
    answer = await client.post("/prompt", json={"prompt": _workflow(image), "client_id": client_id})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["node_errors"] == {} and isinstance(body["number"], int)
    return str(body["prompt_id"])


async def test_upload_names_and_validation_errors(nursery: trio.Nursery) -> None:
    fake = FakeComfyUI()
    url = await nursery.start(fake.serve)
    async with httpx.AsyncClient(base_url=url) as client:
        first = await _upload(client, "a.png", subfolder="booth", overwrite="true")
        assert first == {"name": "a.png", "subfolder": "booth", "type": "input"}
        again = await _upload(client, "a.png", subfolder="booth")
        assert again["name"] == "a (1).png"  # no overwrite: ComfyUI renames
        assert (await client.post("/upload/image", data={"x": "1"})).status_code == 400

        unknown = _workflow("booth/a.png")
        unknown["3"]["class_type"] = "KSamplerTurbo"
        answer = await client.post("/prompt", json={"prompt": unknown})
        assert answer.status_code == 400
        assert answer.json()["error"]["type"] == "invalid_prompt"
        assert "KSamplerTurbo does not exist" in answer.json()["error"]["message"]

        bad = _workflow("missing.png")
        del bad["6"]["inputs"]["clip"]
        bad["4"]["inputs"]["ckpt_name"] = "nope.safetensors"
        answer = await client.post("/prompt", json={"prompt": bad})
        body = answer.json()
        assert answer.status_code == 400
        assert body["error"]["type"] == "prompt_outputs_failed_validation"
        assert set(body["node_errors"]) == {"4", "6", "10"}
        assert body["node_errors"]["6"]["errors"][0]["type"] == "required_input_missing"
        assert body["node_errors"]["6"]["class_type"] == "CLIPTextEncode"
        assert (
            "Invalid image file: missing.png" in body["node_errors"]["10"]["errors"][0]["details"]
        )

        no_output = {k: v for k, v in _workflow("booth/a.png").items() if k not in ("9", "12")}
        answer = await client.post("/prompt", json={"prompt": no_output})
        assert answer.json()["error"]["type"] == "prompt_no_outputs"
    assert fake.prompts == {} and fake.internal_errors == []


async def test_one_gpu_queue_history_view_delete_and_interrupt(nursery: trio.Nursery) -> None:
    fake = FakeComfyUI()
    url = await nursery.start(fake.serve)
    fake.script(slow(0.3), "hang", "success")
    async with httpx.AsyncClient(base_url=url) as client:
        await _upload(client, "p.png")
        first = await _queue(client, "p.png", "c1")
        second = await _queue(client, "p.png", "c2")
        third = await _queue(client, "p.png", "c3")
        queue = (await client.get("/queue")).json()
        assert [item[1] for item in queue["queue_running"]] == [first]
        assert [item[1] for item in queue["queue_pending"]] == [second, third]
        assert queue["queue_pending"][0][3] == {"client_id": "c2"}
        assert (await client.get(f"/history/{first}")).json() == {}  # running: no entry yet

        with trio.fail_after(2):
            await fake.wait_until(lambda: first in fake.history)
        entry = (await client.get(f"/history/{first}")).json()[first]
        assert entry["status"]["status_str"] == "success" and entry["status"]["completed"]
        saved = entry["outputs"]["9"]["images"][0]
        assert saved["type"] == "output" and entry["outputs"]["12"]["images"][0]["type"] == "temp"
        view = await client.get("/view", params=saved)
        assert view.status_code == 200 and view.content.startswith(b"\x89PNG")
        assert (await client.get("/view", params={**saved, "type": "temp"})).status_code == 404

        # the second hangs on the GPU; the third waits behind it and is deleted
        with trio.fail_after(2):
            await fake.wait_until(lambda: fake.running is not None)
        assert fake.running is not None and fake.running.prompt_id == second
        await client.post("/queue", json={"delete": [third]})
        await client.post("/interrupt", json={"prompt_id": "someone-else"})  # not running: no-op
        assert fake.running.prompt_id == second
        await client.post("/interrupt", json={"prompt_id": second})
        with trio.fail_after(2):
            await fake.wait_until(lambda: second in fake.history)
        status = (await client.get(f"/history/{second}")).json()[second]["status"]
        assert status["status_str"] == "error" and not status["completed"]
        assert status["messages"][-1][0] == "execution_interrupted"
        await trio.sleep(0.1)
        assert fake.prompts[third].state == "deleted" and third not in fake.history
        assert (await client.get("/prompt")).json() == {"exec_info": {"queue_remaining": 0}}
    assert [(c.kind, c.effect) for c in fake.cancels] == [
        ("delete", f"deleted {third}"),
        ("interrupt", "nothing"),
        ("interrupt", f"interrupted {second}"),
    ]
    assert fake.internal_errors == []


async def test_scripted_failures_in_history(nursery: trio.Nursery) -> None:
    fake = FakeComfyUI(run_seconds=0.05)
    url = await nursery.start(fake.serve)
    fake.script("error", "oom", "no_output")
    async with httpx.AsyncClient(base_url=url) as client:
        await _upload(client, "p.png")
        ids = [await _queue(client, "p.png") for _ in range(3)]
        with trio.fail_after(2):
            await fake.wait_until(lambda: all(i in fake.history for i in ids))
        error, oom, empty = [fake.history[i] for i in ids]
    kind, data = error["status"]["messages"][-1]
    assert kind == "execution_error" and data["node_id"] == "11"
    assert data["node_type"] == "VAEEncode" and data["exception_type"] == "RuntimeError"
    assert oom["status"]["messages"][-1][1]["exception_type"] == "torch.OutOfMemoryError"
    assert empty["status"]["status_str"] == "success" and empty["outputs"] == {}
