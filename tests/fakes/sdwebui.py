"""Fake AUTOMATIC1111 WebUI API (``--api``, optionally ``--api-auth user:pass``): one GPU.

Routes, as the WebUI (1.6 and later) answers them:

* ``POST /sdapi/v1/img2img`` — JSON body; ``init_images`` (base64, a ``data:`` prefix allowed),
  ``width``/``height``/``steps``/``seed`` integers, ``denoising_strength``/``cfg_scale`` numbers,
  else FastAPI's ``422 {"detail": [{"loc": ["body", field], "msg", "type"}]}`` (nothing
  consumed).  The job is queued under its ``force_task_id`` (or a generated id; ``legacy=True``
  ignores ``force_task_id``, like WebUIs before 1.6) and runs when **the one GPU** is free, in
  the server's own nursery: a client that goes away does not stop it (as the real WebUI).
* ``POST /internal/progress {"id_task"}`` → ``{"active", "queued", "completed", "progress",
  "eta", "live_preview", "id_live_preview", "textinfo"}``.
* ``GET /sdapi/v1/progress`` → ``{"progress", "eta_relative", "state": {"skipped",
  "interrupted", "job", "job_count", "job_timestamp", "job_no", "sampling_step",
  "sampling_steps"}, "current_image", "textinfo"}``.
* ``POST /sdapi/v1/interrupt`` → ``200 null``; stops the running job at its next step (its
  request still answers 200 with the image so far, as the WebUI does).  Recorded with its time
  in ``fake.interrupts``.
* With ``auth="user:pass"`` every route needs it: else ``401 {"detail": "Not authenticated"}``
  (no header) or ``{"detail": "Incorrect username or password"}``.

Outcomes of an img2img job (``FakeSdWebUI.OUTCOMES``), consumed when the job is accepted:

* ``success`` — sampling takes ``step_seconds`` per step (``seconds=`` for the whole job), then
  ``200 {"images": [<png>, <controlnet map png>], "parameters", "info"}``; the image is the
  init image in greyscale at ``width``×``height``.
* ``slow(seconds)`` — success after ``seconds`` of sampling (progress advances meanwhile).
* ``validation_error`` — 422 naming ``field=`` (default ``sampler_name``).
* ``oom`` — 500 ``{"error": "OutOfMemoryError", "detail": "", "body": "", "errors": "CUDA out
  of memory. …"}`` after the GPU starts on it.
* ``server_error`` — 500 with a generic error.
* ``hang`` — sampling never ends until interrupted.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import secrets
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import trio

from tests.fakes.base import Exchange, FakeServer, Outcome
from tests.fakes.images import derive_image, generated_image, is_image

__all__ = ["FakeSdWebUI", "GpuJob"]

INTEGER_FIELDS = ("width", "height", "steps", "seed", "batch_size", "n_iter")
NUMBER_FIELDS = ("denoising_strength", "cfg_scale")
OOM_TEXT = (
    "CUDA out of memory. Tried to allocate 2.25 GiB (GPU 0; 7.79 GiB total capacity; "
    "4.12 GiB already allocated; 1.03 GiB free; 5.87 GiB reserved in total by PyTorch)"
)


@dataclass
class GpuJob:
    """One img2img job as the fake's GPU saw it (times: ``trio.current_time()``)."""

    task_id: str
    outcome: str
    steps: int
    step_seconds: float
    queued_at: float
    body: dict[str, Any] = field(repr=False)
    started_at: float | None = None
    ended_at: float | None = None
    step: int = 0
    interrupted: bool = False
    answer: tuple[int, Any] | None = None
    done: trio.Event = field(default_factory=trio.Event)

    @property
    def state(self) -> str:
        if self.ended_at is not None:
            return "completed"
        return "active" if self.started_at is not None else "queued"


class FakeSdWebUI(FakeServer):
    OUTCOMES: ClassVar[frozenset[str]] = frozenset(
        {"success", "validation_error", "oom", "server_error", "hang"}
    )

    def __init__(
        self, *, auth: str | None = None, legacy: bool = False, step_seconds: float = 0.01
    ) -> None:
        super().__init__(api_key=auth or "")
        self.auth = auth
        self.legacy = legacy
        self.step_seconds = step_seconds
        self.jobs: list[GpuJob] = []
        self.interrupts: list[float] = []  # when each POST /sdapi/v1/interrupt arrived
        self._gpu = trio.Lock()
        self._current: GpuJob | None = None

    # -- observing ------------------------------------------------------------------------

    def job(self, task_id: str) -> GpuJob | None:
        return next((j for j in self.jobs if j.task_id == task_id), None)

    @property
    def running(self) -> GpuJob | None:
        return self._current

    def img2img_calls(self) -> list[Any]:
        return self.calls("/sdapi/v1/img2img", http_method="POST")

    # -- routing --------------------------------------------------------------------------

    async def handle(self, exchange: Exchange) -> None:
        record = exchange.record
        if not await self._authorized(exchange):
            return
        route = (record.method, record.path)
        if route == ("POST", "/sdapi/v1/img2img"):
            await self._img2img(exchange)
        elif route == ("POST", "/internal/progress"):
            await self._task_progress(exchange)
        elif route == ("GET", "/sdapi/v1/progress"):
            await exchange.respond_json(200, self._progress())
        elif route == ("POST", "/sdapi/v1/interrupt"):
            self.interrupts.append(record.received_at)
            if self._current is not None:
                self._current.interrupted = True
            self.notify()
            await exchange.respond_json(200, None)
        else:
            await exchange.respond_json(404, {"detail": "Not Found"})

    async def _authorized(self, exchange: Exchange) -> bool:
        if self.auth is None:
            return True
        header = exchange.record.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            await exchange.respond_json(
                401, {"detail": "Not authenticated"}, [("www-authenticate", "Basic")]
            )
            return False
        try:
            given = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            given = ""
        if given != self.auth:
            await exchange.respond_json(
                401, {"detail": "Incorrect username or password"}, [("www-authenticate", "Basic")]
            )
            return False
        return True

    # -- img2img --------------------------------------------------------------------------

    async def _img2img(self, exchange: Exchange) -> None:
        body = exchange.record.json
        problems = _validate(body)
        if problems:
            await exchange.respond_json(422, {"detail": problems})
            return
        chosen = self.next_outcome()
        exchange.record.outcome = chosen.name
        self.notify()
        if chosen.name == "validation_error":  # the request model refuses it: never queued
            where = str(chosen.params.get("field", "sampler_name"))
            problem = {"loc": ["body", where], "msg": "str type expected", "type": "type_error.str"}
            await exchange.respond_json(422, {"detail": [problem]})
            return
        forced = body.get("force_task_id")
        task_id = forced if forced and not self.legacy else f"task({secrets.token_hex(8)})"
        job = GpuJob(
            task_id=task_id,
            outcome=chosen.name,
            steps=int(body.get("steps", 20)),
            step_seconds=self._step_seconds(chosen, int(body.get("steps", 20))),
            queued_at=trio.current_time(),
            body=body,
        )
        self.jobs.append(job)
        self.notify()
        # The job belongs to the server, not to this connection: it runs even if we go away.
        self.nursery.start_soon(self._run, job, chosen)
        with trio.CancelScope() as watch:
            self.nursery.start_soon(self._cancel_on, job.done, watch)
            await exchange.hang()  # returns when the client disconnects
        if job.answer is not None and not exchange.record.disconnected:
            status, document = job.answer
            await exchange.respond_json(status, document)

    async def _cancel_on(self, event: trio.Event, scope: trio.CancelScope) -> None:
        await event.wait()
        scope.cancel()

    def _step_seconds(self, chosen: Outcome, steps: int) -> float:
        if "seconds" in chosen.params:
            return float(chosen.params["seconds"]) / max(1, steps)
        if chosen.delay:
            return chosen.delay / max(1, steps)
        return self.step_seconds

    async def _run(self, job: GpuJob, chosen: Outcome) -> None:
        try:
            async with self._gpu:
                self._current = job
                job.started_at = trio.current_time()
                self.notify()
                try:
                    job.answer = await self._work(job, chosen)
                finally:
                    self._current = None
                    job.ended_at = trio.current_time()
        finally:
            job.done.set()
            self.notify()

    async def _work(self, job: GpuJob, chosen: Outcome) -> tuple[int, Any]:
        if chosen.name == "oom":
            await trio.sleep(job.step_seconds)
            return 500, {
                "error": "OutOfMemoryError",
                "detail": "",
                "body": "",
                "errors": OOM_TEXT,
            }
        if chosen.name == "server_error":
            return 500, {
                "error": "RuntimeError",
                "detail": "",
                "body": "",
                "errors": "Sizes of tensors must match except in dimension 1.",
            }
        total = math.inf if chosen.name == "hang" else job.steps
        while job.step < total and not job.interrupted:
            await trio.sleep(job.step_seconds)
            job.step += 1
            self.notify()
        return 200, await self._success(job)

    async def _success(self, job: GpuJob) -> dict[str, Any]:
        body = job.body
        size = (int(body["width"]), int(body["height"]))
        source = _image_bytes(body["init_images"][0])
        image = await trio.to_thread.run_sync(
            partial(derive_image, source, fmt="png", exact_size=size)
        )
        control_map = generated_image((64, 64))
        seed = int(body.get("seed", -1))
        seed = seed if seed >= 0 else 1234567
        info = {"prompt": body.get("prompt", ""), "seed": seed, "width": size[0]}
        parameters = {k: v for k, v in body.items() if k != "init_images"}
        return {
            "images": [base64.b64encode(i).decode("ascii") for i in (image, control_map)],
            "parameters": parameters,
            "info": json.dumps(info),
        }

    # -- progress -------------------------------------------------------------------------

    async def _task_progress(self, exchange: Exchange) -> None:
        document = exchange.record.json if isinstance(exchange.record.json, dict) else {}
        job = self.job(str(document.get("id_task")))
        state = job.state if job is not None else None
        active = state == "active"
        progress = job.step / job.steps if job is not None and active and job.steps else 0
        text = {None: "Waiting...", "queued": "In queue...", "completed": None}.get(state)
        await exchange.respond_json(
            200,
            {
                "active": active,
                "queued": state == "queued",
                "completed": state == "completed",
                "progress": progress if active else None,
                "eta": None,
                "live_preview": None,
                "id_live_preview": -1,
                "textinfo": text,
            },
        )

    def _progress(self) -> dict[str, Any]:
        job = self._current
        waiting = sum(1 for j in self.jobs if j.state == "queued")
        return {
            "progress": job.step / job.steps if job and job.steps else 0.0,
            "eta_relative": (job.steps - job.step) * job.step_seconds if job else 0.0,
            "state": {
                "skipped": False,
                "interrupted": bool(job and job.interrupted),
                "job": "scripts_img2img" if job else "",
                "job_count": 1 if job else 0,
                "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
                "job_no": 0,
                "sampling_step": job.step if job else 0,
                "sampling_steps": job.steps if job else 0,
                "queued": waiting,
            },
            "current_image": None,
            "textinfo": None,
        }


def _image_bytes(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return None


def _validate(body: Any) -> list[dict[str, Any]]:
    """FastAPI/pydantic-v1 style errors for what the WebUI's request model would refuse."""
    if not isinstance(body, dict):
        return [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}]
    problems = []
    for name in INTEGER_FIELDS:
        if name in body and (isinstance(body[name], bool) or not isinstance(body[name], int)):
            problems.append(
                {
                    "loc": ["body", name],
                    "msg": "value is not a valid integer",
                    "type": "type_error.integer",
                }
            )
    for name in NUMBER_FIELDS:
        value = body.get(name)
        if name in body and (isinstance(value, bool) or not isinstance(value, int | float)):
            problems.append(
                {
                    "loc": ["body", name],
                    "msg": "value is not a valid float",
                    "type": "type_error.float",
                }
            )
    images = body.get("init_images")
    if not isinstance(images, list) or not images or not is_image(_image_bytes(images[0]) or b""):
        problems.append(
            {"loc": ["body", "init_images"], "msg": "no usable init image", "type": "value_error"}
        )
    return problems
