"""ComfyUI's pure parts: workflow checks and filling, the history poll timing (MockClock), error
texts, and finding a job's prompt in ``GET /queue``."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
import trio

from photochangerd.config import ConfigError, load_config
from photochangerd.providers.base import ProviderRejected, ProviderUnavailable
from photochangerd.providers.comfyui_cancel import SubmittedPrompt, find
from photochangerd.providers.comfyui_history import (
    MAX_POLL,
    MIN_POLL,
    first_image,
    poll_delay,
    refusal,
    run_error,
    wait_for_history,
)
from photochangerd.providers.vendor_http import VendorResponse, VendorUnreachable
from photochangerd.web.console.slot_form import fields_for, parse_settings, values_from_settings
from shared.comfyui_workflow import WorkflowError, fill_workflow, parse_workflow
from tests.support.comfyui import img2img_workflow

# -- workflows ---------------------------------------------------------------------------------


def test_fill_workflow_replaces_placeholders_and_leaves_the_original_alone() -> None:
    workflow = img2img_workflow("{{prompt}}, masterpiece")
    workflow["7"]["inputs"]["text"] = "not {{prompt}}-ish, blurry"
    before = json.dumps(workflow)
    filled = fill_workflow(workflow, "photochanger/job.jpg", "anime", None)
    assert json.dumps(workflow) == before
    assert filled["10"]["inputs"] == {"image": "photochanger/job.jpg", "upload": "image"}
    assert filled["6"]["inputs"]["text"] == "anime, masterpiece"
    assert filled["7"]["inputs"]["text"] == "not anime-ish, blurry"
    assert filled["3"] is workflow["3"]  # untouched nodes are shared, not copied

    by_node = fill_workflow(img2img_workflow("a photo"), "x.jpg", "oil", "7")
    assert by_node["7"]["inputs"]["text"] == "oil" and by_node["6"]["inputs"]["text"] == "a photo"


def test_parse_workflow_takes_json_text_and_names_a_bad_node() -> None:
    workflow = img2img_workflow()
    assert parse_workflow(json.dumps(workflow)) == workflow
    with pytest.raises(WorkflowError, match="has a node '3' that is not in the API format"):
        parse_workflow({**workflow, "3": {"inputs": {}}})
    with pytest.raises(WorkflowError, match="not valid JSON"):
        parse_workflow("{'3': 1}")
    huge_seed = img2img_workflow()
    huge_seed["3"]["inputs"]["seed"] = 2**70  # json.loads takes it; the driver could not send it
    with pytest.raises(WorkflowError, match="cannot be sent as JSON"):
        parse_workflow(huge_seed)
    with pytest.raises(WorkflowError, match="KB"):
        parse_workflow({"1": {"class_type": "LoadImage", "inputs": {"image": "x" * 3_000_000}}})


# -- the history poll --------------------------------------------------------------------------


def test_poll_delay_grows_with_the_wait_and_shrinks_near_the_deadline() -> None:
    assert poll_delay(0, 48) == MIN_POLL
    assert poll_delay(2, 46) == 0.5
    assert poll_delay(30, 18) == MAX_POLL
    assert poll_delay(30, 2) == 0.5  # 2 s left: a quarter of it
    assert poll_delay(30, 0.1) == MIN_POLL


def _prompt() -> SubmittedPrompt:
    return SubmittedPrompt("job", "client", "p1")


def _answer(document: Any, status: int = 200) -> VendorResponse:
    return VendorResponse(status, {}, json.dumps(document).encode())


DONE = {
    "outputs": {"9": {"images": [{"filename": "out.png", "subfolder": "", "type": "output"}]}},
    "status": {"status_str": "success", "completed": True, "messages": []},
}


async def test_polls_until_the_entry_appears_then_soon_after_it(autojump_clock: object) -> None:
    polls: list[float] = []
    finished_at = 6.0

    async def fetch() -> VendorResponse:
        polls.append(trio.current_time())
        return _answer({"p1": DONE} if trio.current_time() >= finished_at else {})

    start = trio.current_time()
    prompt = _prompt()
    entry = await wait_for_history(prompt, fetch)
    assert entry == DONE and prompt.ended
    offsets = [t - start for t in polls]
    assert offsets[0] == pytest.approx(MIN_POLL)
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(gaps))  # never faster
    assert max(gaps) <= MAX_POLL + 1e-9
    assert finished_at <= offsets[-1] <= finished_at + MAX_POLL + 1e-9
    assert len(polls) <= 20  # ~6 s of GPU work: 17 requests (5 in its first half second)


async def test_polling_stops_at_the_deadline_and_polls_faster_before_it(
    autojump_clock: object,
) -> None:
    polls: list[float] = []

    async def fetch() -> VendorResponse:
        polls.append(trio.current_time())
        return _answer({})

    start = trio.current_time()
    with trio.move_on_after(10) as scope:
        await wait_for_history(_prompt(), fetch)
    assert scope.cancelled_caught
    assert polls[-1] <= start + 10
    await trio.sleep(5)
    assert max(polls) <= start + 10  # nothing after the deadline
    last_second = [t for t in polls if t > start + 9]
    assert len(last_second) >= 3  # ≤ 0.25 s apart once less than a second is left


async def test_five_failed_polls_in_a_row_are_503(autojump_clock: object) -> None:
    answers = [
        _answer({}, 502),
        _answer({}),
        *[_answer({}, 500)] * 4,
        VendorResponse(200, {}, b"<"),
    ]
    calls = 0

    async def fetch() -> VendorResponse:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise VendorUnreachable("ConnectError")
        return answers.pop(0)

    prompt = _prompt()
    with pytest.raises(ProviderUnavailable, match="failed 5 times in a row"):
        await wait_for_history(prompt, fetch)
    assert not prompt.ended  # it may still be on the GPU: the driver cancels it
    assert calls == 7  # the good answer in between reset the count


async def test_an_error_entry_is_raised(autojump_clock: object) -> None:
    error = {
        "status": {
            "status_str": "error",
            "completed": False,
            "messages": [
                ["execution_start", {"prompt_id": "p1"}],
                [
                    "execution_error",
                    {
                        "node_id": "3",
                        "node_type": "KSampler",
                        "exception_type": "RuntimeError",
                        "exception_message": "boom",
                    },
                ],
            ],
        },
        "outputs": {},
    }

    async def fetch() -> VendorResponse:
        return _answer({"p1": error})

    prompt = _prompt()
    with pytest.raises(ProviderRejected, match=r"at node 3 \(KSampler\): RuntimeError: boom"):
        await wait_for_history(prompt, fetch)
    assert prompt.ended  # it ended on the server: nothing to cancel


# -- error texts and outputs -------------------------------------------------------------------


def test_run_errors() -> None:
    oom = run_error(
        [["execution_error", {"node_id": "8", "node_type": "VAEDecode", "exception_type":
          "torch.OutOfMemoryError", "exception_message": "Allocation on device"}]]
    )  # fmt: skip
    assert isinstance(oom, ProviderUnavailable) and "node 8 (VAEDecode)" in str(oom)
    interrupted = run_error(
        [["execution_interrupted", {"node_id": "3", "node_type": "KSampler", "executed": []}]]
    )
    assert str(interrupted) == "comfyui: the workflow was interrupted at node 3 (KSampler)"
    assert "execution_start" in str(run_error([["execution_start", {}]]))


def test_refusal_names_every_node() -> None:
    error = refusal(
        {
            "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs "
                      "failed validation", "details": "", "extra_info": {}},
            "node_errors": {
                "4": {"errors": [{"type": "value_not_in_list", "message": "Value not in list",
                                  "details": "ckpt_name: 'a' not in []"}],
                      "dependent_outputs": ["9"], "class_type": "CheckpointLoaderSimple"},
                "6": {"errors": [{"type": "required_input_missing", "message":
                                  "Required input is missing", "details": "clip"}],
                      "dependent_outputs": ["9"], "class_type": "CLIPTextEncode"},
            },
        }
    )  # fmt: skip
    assert str(error) == (
        "comfyui refused the workflow: Prompt outputs failed validation; "
        "node 4 (CheckpointLoaderSimple): Value not in list: ckpt_name: 'a' not in []; "
        "node 6 (CLIPTextEncode): Required input is missing: clip"
    )
    assert "no prompt" in str(refusal({"error": "no prompt", "node_errors": []}))


def test_first_image_prefers_a_saved_image_over_a_preview() -> None:
    entry = {
        "outputs": {
            "12": {"images": [{"filename": "t.png", "subfolder": "", "type": "temp"}]},
            "9": {"images": [{"filename": "o.png", "subfolder": "s", "type": "output"}]},
        }
    }
    image = first_image(entry)
    assert (image.node_id, image.filename, image.subfolder, image.type) == (
        "9",
        "o.png",
        "s",
        "output",
    )
    del entry["outputs"]["9"]
    assert first_image(entry).type == "temp"
    with pytest.raises(ProviderRejected, match="without an output image"):
        first_image({"outputs": {"5": {"text": ["hello"]}}})


# -- finding our prompt in the queue -----------------------------------------------------------


def test_find_by_prompt_id_or_by_client_id() -> None:
    def item(number: int, prompt_id: str, client_id: str | None) -> list[Any]:
        return [number, prompt_id, {}, {"client_id": client_id}, ["9"]]

    queue = {
        "queue_running": [item(1, "theirs", None)],
        "queue_pending": [item(2, "other", "c-2"), item(3, "ours", "c-3")],
    }
    assert find(queue, SubmittedPrompt("j", "c-3", "ours")) == ("pending", "ours")
    # the deadline cut POST /prompt short: the id is unknown, the client_id finds it
    assert find(queue, SubmittedPrompt("j", "c-3")) == ("pending", "ours")
    assert find(queue, SubmittedPrompt("j", "c-9", "theirs")) == ("running", "theirs")
    assert find(queue, SubmittedPrompt("j", "c-9", "gone")) == ("absent", None)
    assert find({"error": "x"}, SubmittedPrompt("j", "c-9")) == ("absent", None)


# -- configuration ------------------------------------------------------------------------------


def test_comfyui_settings() -> None:
    config = load_config(environ={})
    assert config.comfyui_base_url == "" and config.comfyui_concurrency == 1
    config = load_config(
        environ={
            "PHOTOCHANGER_COMFYUI_BASE_URL": "http://gpu-box:8188",
            "PHOTOCHANGER_COMFYUI_CONCURRENCY": "2",
        }
    )
    assert config.comfyui_base_url == "http://gpu-box:8188" and config.comfyui_concurrency == 2
    with pytest.raises(ConfigError, match="comfyui_base_url: an http"):
        load_config(environ={"PHOTOCHANGER_COMFYUI_BASE_URL": "gpu-box:8188"})
    with pytest.raises(ConfigError, match="comfyui_concurrency: must be positive"):
        load_config(environ={"PHOTOCHANGER_COMFYUI_CONCURRENCY": "0"})


# -- the web console's slot form ------------------------------------------------------------------


def test_console_form_shows_the_workflow_as_json_and_reads_it_back() -> None:
    fields = fields_for("comfyui", "workflow")
    [workflow_field] = [f for f in fields if f.name == "workflow"]
    assert workflow_field.kind == "textarea" and workflow_field.value_type == "json"
    workflow = img2img_workflow()
    shown = values_from_settings(fields, {"workflow": workflow, "prompt": "anime"})
    assert json.loads(str(shown["workflow"])) == workflow and shown["prompt"] == "anime"
    form = {name: str(value) for name, value in shown.items() if not isinstance(value, bool)}
    settings = parse_settings(fields, form)
    assert settings["workflow"] == workflow and settings["prompt"] == "anime"
    assert parse_settings(fields, {"workflow": "{oops"})["workflow"] == "{oops"  # the API says why
