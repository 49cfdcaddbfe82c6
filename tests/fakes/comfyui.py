"""Fake ComfyUI server: uploads, a validated prompt queue on one fake GPU, history, /view.

Routes (ComfyUI's own, as its server answers them):

* ``POST /upload/image`` multipart ``image`` (+ ``overwrite``, ``subfolder``, ``type``) →
  ``{"name", "subfolder", "type": "input"}``; without ``overwrite=true`` an existing name gets
  ``" (1)"`` appended, as ComfyUI does.  No image part → 400.
* ``POST /prompt {"prompt", "client_id"}`` → validated like ComfyUI does it (below); valid →
  ``{"prompt_id", "number", "node_errors": {}}`` and the prompt joins the queue; invalid →
  ``400 {"error": {"type", "message", "details", "extra_info"}, "node_errors": {…}}``.
* ``GET /queue`` → ``{"queue_running": [item], "queue_pending": [items]}``, an item being
  ``[number, prompt_id, workflow, {"client_id": …}, [output node ids]]``.
* ``POST /queue {"delete": [ids]}`` / ``{"clear": true}`` → removes pending prompts; 200.
* ``POST /interrupt`` (body ``{"prompt_id"}`` optional) → stops the running prompt; with a
  ``prompt_id`` that is not the running one it does nothing (ComfyUI ≥ 0.3.4x behaviour).
* ``GET /history/{id}`` → ``{}`` while queued or running, then ``{id: {"prompt", "outputs",
  "status": {"status_str", "completed", "messages"}, "meta"}}``.
* ``GET /view?filename&subfolder&type`` → the image (PNG), or 404.
* ``GET /prompt`` → ``{"exec_info": {"queue_remaining": n}}``.

Validation (nothing consumed from the script): a node without ``class_type`` or of an unknown
class (``NODE_INPUTS``) → ``invalid_prompt``; no output node → ``prompt_no_outputs``; a
missing required input, a link to a node that does not exist, a ``LoadImage`` image that was
never uploaded, a ``ckpt_name`` not in ``fake.models`` → ``prompt_outputs_failed_validation``
with that node's errors.

The GPU runs one prompt at a time, in queue order.  Its outcome is the next scripted one when it
is queued (``FakeComfyUI.OUTCOMES``):

* ``success`` — runs ``fake.run_seconds`` (``slow(s)``: ``s``), then every ``SaveImage`` /
  ``PreviewImage`` node has an image: the ``LoadImage`` photo in greyscale (PNG).
* ``error`` — runs, then ``status_str: "error"`` with an ``execution_error`` message; params
  ``node_id`` (default: the first non-loader node), ``exception_type``, ``message``.
* ``oom`` — as ``error`` with ``torch.OutOfMemoryError``.
* ``hang`` — runs until interrupted.
* ``no_output`` — succeeds with empty ``outputs``.

Interrupting ends the prompt with ``status_str: "error"`` and an ``execution_interrupted``
message, as ComfyUI records it.  Every ``/interrupt`` and ``/queue`` delete is recorded in
``fake.cancels`` with its time (``trio.current_time()``) and what it did.
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, Literal

import trio

from tests.fakes.base import Exchange, FakeServer, Outcome
from tests.fakes.images import derive_image

__all__ = ["NODE_INPUTS", "CancelCall", "FakeComfyUI", "FakePrompt"]

# class_type → required inputs (a subset of ComfyUI's core nodes, enough for img2img graphs)
NODE_INPUTS: dict[str, tuple[str, ...]] = {
    "LoadImage": ("image",),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "CLIPTextEncode": ("text", "clip"),
    "VAEEncode": ("pixels", "vae"),
    "VAEDecode": ("samples", "vae"),
    "ImageScale": ("image", "upscale_method", "width", "height", "crop"),
    "KSampler": (
        "model",
        "seed",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "positive",
        "negative",
        "latent_image",
        "denoise",
    ),
    "SaveImage": ("images", "filename_prefix"),
    "PreviewImage": ("images",),
}
OUTPUT_NODES = {"SaveImage": "output", "PreviewImage": "temp"}

PromptState = Literal["pending", "running", "success", "error", "interrupted", "deleted"]


@dataclass
class FakePrompt:
    prompt_id: str
    number: int
    workflow: dict[str, Any]
    client_id: str | None
    outcome: Outcome
    queued_at: float
    state: PromptState = "pending"
    started_at: float | None = None
    ended_at: float | None = None
    scope: trio.CancelScope | None = dataclasses.field(default=None, repr=False)

    def queue_item(self) -> list[Any]:
        outputs = [n for n, node in self.workflow.items() if node["class_type"] in OUTPUT_NODES]
        return [self.number, self.prompt_id, self.workflow, {"client_id": self.client_id}, outputs]


@dataclass
class CancelCall:
    """One ``/interrupt`` or ``/queue`` delete the fake received."""

    kind: Literal["interrupt", "delete"]
    prompt_id: str | None  # the id named (None: a bare /interrupt)
    at: float
    effect: str  # "interrupted <id>", "deleted <id>", "nothing"


class FakeComfyUI(FakeServer):
    OUTCOMES: ClassVar[frozenset[str]] = frozenset({"success", "error", "oom", "hang", "no_output"})

    def __init__(self, *, run_seconds: float = 0.2, models: tuple[str, ...] = ()) -> None:
        super().__init__(api_key="")
        self.run_seconds = run_seconds
        self.models = models or ("sd_xl_base_1.0.safetensors",)
        self.inputs: dict[str, bytes] = {}  # "subfolder/name" or "name" → data
        self.files: dict[tuple[str, str, str], bytes] = {}  # (type, subfolder, name) → PNG
        self.prompts: dict[str, FakePrompt] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.cancels: list[CancelCall] = []
        self._number = 0
        self._saved = 0
        self._work = trio.Event()

    # observing

    def prompt(self, client_id: str | None = None) -> FakePrompt:
        """The one prompt queued (or the one of ``client_id``)."""
        [found] = [p for p in self.prompts.values() if client_id in (None, p.client_id)]
        return found

    @property
    def running(self) -> FakePrompt | None:
        return next((p for p in self.prompts.values() if p.state == "running"), None)

    @property
    def pending(self) -> list[FakePrompt]:
        return [p for p in self.prompts.values() if p.state == "pending"]

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._gpu)
            await super().serve(task_status=task_status)

    # routing

    async def handle(self, exchange: Exchange) -> None:
        record = exchange.record
        route = (record.method, record.path.removeprefix("/api"))
        if route == ("POST", "/upload/image"):
            await self._upload(exchange)
        elif route == ("POST", "/prompt"):
            await self._queue_prompt(exchange)
        elif route == ("GET", "/prompt"):
            await exchange.respond_json(200, {"exec_info": {"queue_remaining": self._remaining}})
        elif route == ("GET", "/queue"):
            running = [p.queue_item() for p in self.prompts.values() if p.state == "running"]
            pending = [p.queue_item() for p in self.pending]
            await exchange.respond_json(200, {"queue_running": running, "queue_pending": pending})
        elif route == ("POST", "/queue"):
            await self._edit_queue(exchange)
        elif route == ("POST", "/interrupt"):
            await self._interrupt(exchange)
        elif record.method == "GET" and route[1].startswith("/history/"):
            prompt_id = route[1].removeprefix("/history/")
            entry = self.history.get(prompt_id)
            await exchange.respond_json(200, {prompt_id: entry} if entry else {})
        elif route == ("GET", "/view"):
            await self._view(exchange)
        else:
            await exchange.respond(404, b"404: Not Found", "text/plain; charset=utf-8")

    @property
    def _remaining(self) -> int:
        return sum(1 for p in self.prompts.values() if p.state in ("pending", "running"))

    async def _upload(self, exchange: Exchange) -> None:
        record = exchange.record
        images = [f for f in record.files if f.field == "image"]
        if not images or not images[0].filename:
            await exchange.respond(400, b"", "text/plain")
            return
        subfolder = record.form.get("subfolder", "").strip("/")
        name = images[0].filename
        overwrite = record.form.get("overwrite", "").lower() in ("true", "1")
        stem, dot, ext = name.rpartition(".")
        counter = 1
        while not overwrite and self._input_key(subfolder, name) in self.inputs:
            name = f"{stem} ({counter}){dot}{ext}"
            counter += 1
        self.inputs[self._input_key(subfolder, name)] = images[0].data
        await exchange.respond_json(200, {"name": name, "subfolder": subfolder, "type": "input"})

    @staticmethod
    def _input_key(subfolder: str, name: str) -> str:
        return f"{subfolder}/{name}" if subfolder else name

    # POST /prompt

    async def _queue_prompt(self, exchange: Exchange) -> None:
        document = exchange.record.json
        if not isinstance(document, dict) or "prompt" not in document:
            await exchange.respond_json(400, {"error": "no prompt", "node_errors": []})
            return
        workflow = document["prompt"]
        problem = self._validate(workflow)
        if problem is not None:
            await exchange.respond_json(400, problem)
            return
        chosen = self.next_outcome()
        exchange.record.outcome = chosen.name
        self._number += 1
        prompt = FakePrompt(
            prompt_id=str(uuid.uuid4()),
            number=self._number,
            workflow=workflow,
            client_id=document.get("client_id"),
            outcome=chosen,
            queued_at=trio.current_time(),
        )
        self.prompts[prompt.prompt_id] = prompt
        self._wake()
        await exchange.respond_json(
            200, {"prompt_id": prompt.prompt_id, "number": prompt.number, "node_errors": {}}
        )

    def _validate(self, workflow: Any) -> dict[str, Any] | None:
        if not isinstance(workflow, dict):
            return _graph_error("invalid_prompt", "Cannot execute because the prompt is invalid.")
        for node_id, node in workflow.items():
            class_type = node.get("class_type") if isinstance(node, dict) else None
            if class_type is None:
                return _graph_error(
                    "invalid_prompt",
                    f"Cannot execute because a node is missing the class_type property.: "
                    f"Node ID '#{node_id}'",
                )
            if class_type not in NODE_INPUTS:
                return _graph_error(
                    "invalid_prompt",
                    f"Cannot execute because node {class_type} does not exist.: "
                    f"Node ID '#{node_id}'",
                )
        if not any(node["class_type"] in OUTPUT_NODES for node in workflow.values()):
            return _graph_error("prompt_no_outputs", "Prompt has no outputs")
        node_errors: dict[str, Any] = {}
        for node_id, node in workflow.items():
            errors = self._node_errors(workflow, node)
            if errors:
                node_errors[node_id] = {
                    "errors": errors,
                    "dependent_outputs": [
                        n for n, other in workflow.items() if other["class_type"] in OUTPUT_NODES
                    ],
                    "class_type": node["class_type"],
                }
        if not node_errors:
            return None
        problem = _graph_error(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation"
        )
        problem["node_errors"] = node_errors
        return problem

    def _node_errors(self, workflow: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
        inputs = node.get("inputs") or {}
        errors = []
        for name in NODE_INPUTS[node["class_type"]]:
            value = inputs.get(name)
            if value is None:
                errors.append(_error("required_input_missing", "Required input is missing", name))
            elif isinstance(value, list) and (len(value) != 2 or str(value[0]) not in workflow):
                errors.append(
                    _error("bad_linked_input", "Bad linked input, must be a length-2 list", name)
                )
        if node["class_type"] == "LoadImage" and inputs.get("image") not in self.inputs:
            errors.append(
                _error(
                    "custom_validation_failed",
                    "Custom validation failed for node",
                    f"image - Invalid image file: {inputs.get('image')}",
                )
            )
        ckpt = inputs.get("ckpt_name")
        if node["class_type"] == "CheckpointLoaderSimple" and ckpt not in self.models:
            errors.append(
                _error(
                    "value_not_in_list",
                    "Value not in list",
                    f"ckpt_name: '{ckpt}' not in {list(self.models)}",
                )
            )
        return errors

    # the queue

    async def _edit_queue(self, exchange: Exchange) -> None:
        document = exchange.record.json if isinstance(exchange.record.json, dict) else {}
        victims: list[str] = []
        if document.get("clear"):
            victims = [p.prompt_id for p in self.pending]
        for prompt_id in document.get("delete") or ():
            victims.append(str(prompt_id))
            prompt = self.prompts.get(str(prompt_id))
            effect = "nothing"
            if prompt is not None and prompt.state == "pending":
                prompt.state = "deleted"
                prompt.ended_at = trio.current_time()
                effect = f"deleted {prompt_id}"
            self.cancels.append(CancelCall("delete", str(prompt_id), trio.current_time(), effect))
        self.notify()
        await exchange.respond(200, b"", "text/plain")

    async def _interrupt(self, exchange: Exchange) -> None:
        document = exchange.record.json if isinstance(exchange.record.json, dict) else {}
        named = document.get("prompt_id")
        running = self.running
        effect = "nothing"
        if running is not None and named in (None, running.prompt_id):
            assert running.scope is not None
            running.scope.cancel()
            effect = f"interrupted {running.prompt_id}"
        self.cancels.append(CancelCall("interrupt", named, trio.current_time(), effect))
        self.notify()
        await exchange.respond(200, b"", "text/plain")

    def _wake(self) -> None:
        self._work.set()
        self._work = trio.Event()

    async def _gpu(self) -> None:
        """One prompt at a time, in queue order."""
        while True:
            pending = self.pending
            if not pending:
                await self._work.wait()
                continue
            await self._run(min(pending, key=lambda p: p.number))

    async def _run(self, prompt: FakePrompt) -> None:
        prompt.state = "running"
        prompt.started_at = trio.current_time()
        self.notify()
        seconds = math.inf if prompt.outcome.name == "hang" else prompt.outcome.delay
        if prompt.outcome.delay == 0 and prompt.outcome.name != "hang":
            seconds = self.run_seconds
        with trio.CancelScope() as scope:
            prompt.scope = scope
            await trio.sleep(seconds)
        prompt.scope = None
        messages: list[Any] = [["execution_start", {"prompt_id": prompt.prompt_id}]]
        outputs: dict[str, Any] = {}
        if scope.cancelled_caught:
            prompt.state = "interrupted"
            node_id, node = self._working_node(prompt)
            messages.append(
                [
                    "execution_interrupted",
                    {
                        "prompt_id": prompt.prompt_id,
                        "node_id": node_id,
                        "node_type": node["class_type"],
                        "executed": [],
                    },
                ]
            )
        elif prompt.outcome.name in ("error", "oom"):
            prompt.state = "error"
            messages.append(["execution_error", self._execution_error(prompt)])
        else:
            prompt.state = "success"
            if prompt.outcome.name == "success":
                outputs = await self._save_outputs(prompt)
            messages.append(["execution_success", {"prompt_id": prompt.prompt_id}])
        failed = prompt.state != "success"
        prompt.ended_at = trio.current_time()
        self.history[prompt.prompt_id] = {
            "prompt": prompt.queue_item(),
            "outputs": outputs,
            "status": {
                "status_str": "error" if failed else "success",
                "completed": not failed,
                "messages": messages,
            },
            "meta": {n: {"node_id": n, "display_node": n} for n in outputs},
        }
        self.notify()

    def _working_node(self, prompt: FakePrompt) -> tuple[str, dict[str, Any]]:
        for node_id, node in prompt.workflow.items():
            if node["class_type"] not in ("LoadImage", "CheckpointLoaderSimple"):
                return node_id, node
        node_id = next(iter(prompt.workflow))
        return node_id, prompt.workflow[node_id]

    def _execution_error(self, prompt: FakePrompt) -> dict[str, Any]:
        params = prompt.outcome.params
        node_id, node = self._working_node(prompt)
        node_id = str(params.get("node_id", node_id))
        oom = prompt.outcome.name == "oom"
        return {
            "prompt_id": prompt.prompt_id,
            "node_id": node_id,
            "node_type": prompt.workflow.get(node_id, node)["class_type"],
            "executed": [],
            "exception_message": params.get(
                "message",
                "Allocation on device" if oom else "mat1 and mat2 shapes cannot be multiplied",
            ),
            "exception_type": params.get(
                "exception_type", "torch.OutOfMemoryError" if oom else "RuntimeError"
            ),
            "traceback": ['  File "execution.py", line 323, in execute\n'],
            "current_inputs": {},
            "current_outputs": {},
        }

    async def _save_outputs(self, prompt: FakePrompt) -> dict[str, Any]:
        [photo_name] = [
            n["inputs"]["image"] for n in prompt.workflow.values() if n["class_type"] == "LoadImage"
        ]
        photo = self.inputs.get(photo_name)
        image = await trio.to_thread.run_sync(partial(derive_image, photo, fmt="png"))
        outputs: dict[str, Any] = {}
        for node_id, node in prompt.workflow.items():
            kind = OUTPUT_NODES.get(node["class_type"])
            if kind is None:
                continue
            self._saved += 1
            prefix = (
                node["inputs"].get("filename_prefix", "ComfyUI")
                if kind == "output"
                else ("ComfyUI_temp_abcde")
            )
            name = f"{prefix}_{self._saved:05}_.png"
            self.files[(kind, "", name)] = image
            outputs[node_id] = {"images": [{"filename": name, "subfolder": "", "type": kind}]}
        return outputs

    async def _view(self, exchange: Exchange) -> None:
        query = exchange.record.query
        key = (query.get("type", "output"), query.get("subfolder", ""), query.get("filename", ""))
        data = self.files.get(key)
        if data is None:
            await exchange.respond(404, b"404: Not Found", "text/plain; charset=utf-8")
            return
        await exchange.respond(200, data, "image/png")


def _graph_error(kind: str, message: str) -> dict[str, Any]:
    return {
        "error": {"type": kind, "message": message, "details": "", "extra_info": {}},
        "node_errors": {},
    }


def _error(kind: str, message: str, details: str) -> dict[str, Any]:
    return {
        "type": kind,
        "message": message,
        "details": details,
        "extra_info": {"input_name": details.split(":")[0].split(" ")[0]},
    }
