"""Cancelling a job's prompt on the ComfyUI server after the job has ended without it.

ComfyUI keeps working on a prompt whose client went away, so when a job's deadline passes (or it
fails) while its prompt is queued or running, the GPU would spend the next seconds on a photo
nobody will get — and the next booth's photo would wait behind it.  So the driver hands the
prompt to :class:`ServerCancels`, which, in a nursery of its own (opened with the providers in
``registry.py``), looks at ``GET {base}/queue`` and:

* deletes it while it is pending: ``POST {base}/queue {"delete": [prompt_id]}``;
* interrupts it while it is the one running: ``POST {base}/interrupt {"prompt_id": …}`` (newer
  ComfyUI interrupts only that prompt; older versions ignore the body and interrupt whatever
  runs, which is why it is sent only when the queue says ours is running);
* does nothing when it is in neither (it finished, or never arrived).

A prompt whose id the driver never got (the deadline cut ``POST /prompt`` short) is found by
the job's ``client_id``, which ComfyUI keeps in the queue entry's ``extra_data``.

This runs outside the job's cancel scope: the booth's 504 is not delayed by it.  Each cancel has
its own short time limit (:data:`CANCEL_TIMEOUT`), and every outcome is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import trio

from photochangerd.logs import event
from photochangerd.providers.vendor_http import VendorUnreachable, send

log = logging.getLogger("photochangerd.providers.comfyui")

CANCEL_TIMEOUT = 5.0
QUEUE_ANSWER_LIMIT = 64 * 1024 * 1024  # /queue lists every queued workflow in full

Place = Literal["running", "pending", "absent"]
QUEUES: tuple[tuple[Place, str], ...] = (("running", "queue_running"), ("pending", "queue_pending"))


@dataclass(slots=True)
class SubmittedPrompt:
    """A job's prompt on the server: ``prompt_id`` once ``POST /prompt`` has answered."""

    job_id: str
    client_id: str
    prompt_id: str | None = None
    # Nothing of it left on the server: its history entry is in, or ComfyUI refused to queue it.
    ended: bool = False


def find(queue: Any, prompt: SubmittedPrompt) -> tuple[Place, str | None]:
    """Where ``prompt`` is in a ``GET /queue`` answer, and its id there.

    Queue items are ``[number, prompt_id, workflow, extra_data, outputs…]``.
    """
    if not isinstance(queue, Mapping):
        return "absent", None
    for place, key in QUEUES:
        for item in queue.get(key) or ():
            if not isinstance(item, list) or len(item) < 4:
                continue
            extra = item[3] if isinstance(item[3], Mapping) else {}
            if (prompt.prompt_id is not None and item[1] == prompt.prompt_id) or (
                extra.get("client_id") == prompt.client_id
            ):
                return place, str(item[1])
    return "absent", None


class ServerCancels:
    """Cancels prompts on the server in the background; see the module docstring."""

    def __init__(
        self,
        nursery: trio.Nursery,
        client: httpx.AsyncClient,
        base_url: str,
        timeout: float = CANCEL_TIMEOUT,
    ) -> None:
        self._nursery = nursery
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout

    def cancel_soon(self, prompt: SubmittedPrompt) -> None:
        """Start cancelling ``prompt`` (returns at once; safe in a ``finally`` of a cancelled
        job: it does not wait)."""
        self._nursery.start_soon(self._cancel, prompt)

    async def _cancel(self, prompt: SubmittedPrompt) -> None:
        started = trio.current_time()
        done: str = "timed out"
        with trio.move_on_after(self._timeout):
            try:
                done = await self._cancel_on_server(prompt)
            except VendorUnreachable as exc:
                done = f"failed: comfyui unreachable ({exc})"
            except Exception as exc:  # a background task must not take the daemon down
                done = f"failed: {type(exc).__name__}: {exc}"
        event(
            log,
            logging.WARNING if done.startswith(("failed", "timed out")) else logging.INFO,
            "comfyui.cancel",
            job_id=prompt.job_id,
            prompt_id=prompt.prompt_id,
            outcome=done,
            seconds=round(trio.current_time() - started, 3),
        )

    async def _cancel_on_server(self, prompt: SubmittedPrompt) -> str:
        actions: list[str] = []
        for _ in range(2):  # again if it moved from pending to running meanwhile
            place, prompt_id = await self._where(prompt)
            if place == "absent" or prompt_id is None:
                break
            if place == "pending":
                await self._post("/queue", {"delete": [prompt_id]})
                actions.append("deleted from the queue")
            else:
                await self._post("/interrupt", {"prompt_id": prompt_id})
                actions.append("interrupted")
                break  # an interrupted prompt stays "running" until its node notices
        return ", then ".join(actions) or "nothing to do (not queued or running)"

    async def _where(self, prompt: SubmittedPrompt) -> tuple[Place, str | None]:
        request = self._client.build_request("GET", f"{self._base_url}/queue")
        response = await send(self._client, request, QUEUE_ANSWER_LIMIT)
        if response.status != 200:
            raise RuntimeError(f"GET /queue answered {response.status}")
        return find(response.json(), prompt)

    async def _post(self, path: str, body: dict[str, Any]) -> None:
        request = self._client.build_request("POST", f"{self._base_url}{path}", json=body)
        response = await send(self._client, request, 64 * 1024)
        if response.status != 200:
            raise RuntimeError(f"POST {path} answered {response.status}")
