"""ComfyUI's answers read: the history poll loop, error texts, and which output to download.

``GET {base}/history/{prompt_id}`` answers ``{}`` until the prompt has finished (ComfyUI keeps
no history entry for a queued or running prompt), then ``{prompt_id: {"outputs": {node id:
{"images": [{"filename", "subfolder", "type"}]}}, "status": {"status_str": "success"|"error",
"completed": bool, "messages": [[event, data], …]}}}``.

Poll timing (:func:`poll_delay`): 0.1 s after queueing, then a quarter of the time waited so
far, at most 1 s, and at most a quarter of the time left before the deadline — a photo that
takes 6 s on the GPU is seen within ~1 s of its end, at ~17 requests; one that finishes just
before the deadline is still seen in time.  The loop runs in the job's cancel scope: at the
deadline it stops where it is (the server-side cancel is :mod:`comfyui_cancel`'s job).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from photochangerd.providers.base import ProviderError, ProviderRejected, ProviderUnavailable
from photochangerd.providers.comfyui_cancel import SubmittedPrompt
from photochangerd.providers.vendor_http import VendorResponse, VendorUnreachable, truncate

MIN_POLL = 0.1
MAX_POLL = 1.0
MAX_POLL_ERRORS = 5  # unreachable / 5xx / not JSON in a row before the job gives up


def poll_delay(waited: float, left: float) -> float:
    """Seconds before the next history poll, ``waited`` s after queueing with ``left`` s to go."""
    return max(MIN_POLL, min(MAX_POLL, waited / 4, left / 4))


@dataclass(frozen=True, slots=True)
class OutputImage:
    node_id: str
    filename: str
    subfolder: str
    type: str


Fetch = Callable[[], Awaitable[VendorResponse]]


async def wait_for_history(prompt: SubmittedPrompt, fetch: Fetch) -> Mapping[str, Any]:
    """Poll with ``fetch`` (one ``GET /history/{prompt_id}``) until the prompt has an entry
    that says it is done; returns it, or raises the error it reports.  ``prompt.ended`` is set
    once the entry is there (nothing left to cancel on the server)."""
    prompt_id = prompt.prompt_id
    assert prompt_id is not None
    queued = trio.current_time()
    errors = 0
    while True:
        now = trio.current_time()
        await trio.sleep(poll_delay(now - queued, trio.current_effective_deadline() - now))
        try:
            response = await fetch()
            document = response.json() if response.status == 200 else None
        except (VendorUnreachable, ValueError):
            document = None
        if not isinstance(document, Mapping):
            errors += 1
            if errors >= MAX_POLL_ERRORS:
                raise ProviderUnavailable(f"comfyui history polling failed {errors} times in a row")
            continue
        errors = 0
        entry = document.get(prompt_id)
        if not isinstance(entry, Mapping):
            continue  # queued or running
        status = entry.get("status")
        status = status if isinstance(status, Mapping) else {}
        prompt.ended = True
        if status.get("status_str") == "error":
            raise run_error(status.get("messages"))
        if status.get("completed") or status.get("status_str") == "success":
            return entry


def run_error(messages: Any) -> ProviderError:
    """The error of a prompt whose history says ``status_str: "error"``.

    ``execution_error`` names the node, its class and the exception; an out-of-memory error is
    503 (the GPU may have room for the next photo), anything else 502.
    """
    events = [m for m in messages or () if isinstance(m, list | tuple) and len(m) == 2]
    for name, data in events:
        if name == "execution_error" and isinstance(data, Mapping):
            where = f"node {data.get('node_id')} ({data.get('node_type')})"
            kind = str(data.get("exception_type", ""))
            text = truncate(f"{kind}: {data.get('exception_message', '')}".strip(": "))
            if "OutOfMemory" in kind:
                return ProviderUnavailable(f"comfyui ran out of GPU memory at {where}: {text}")
            return ProviderRejected(f"comfyui failed at {where}: {text}")
    for name, data in events:
        if name == "execution_interrupted" and isinstance(data, Mapping):
            where = f"node {data.get('node_id')} ({data.get('node_type')})"
            return ProviderRejected(f"comfyui: the workflow was interrupted at {where}")
    names = ", ".join(str(name) for name, _ in events) or "no messages"
    return ProviderRejected(f"comfyui reported an error ({truncate(names)})")


def refusal(document: Any) -> ProviderRejected:
    """A ``400`` answer to ``POST /prompt``: the graph's error and each node's errors."""
    if not isinstance(document, Mapping):
        return ProviderRejected("comfyui refused the workflow (HTTP 400)")
    error = document.get("error")
    summary = error.get("message") if isinstance(error, Mapping) else error
    parts = [str(summary or "invalid workflow")]
    node_errors = document.get("node_errors")
    for node_id, info in node_errors.items() if isinstance(node_errors, Mapping) else ():
        if not isinstance(info, Mapping):
            continue
        for item in info.get("errors") or ():
            if not isinstance(item, Mapping):
                continue
            text = str(item.get("message", ""))
            if item.get("details"):
                text += f": {item['details']}"
            parts.append(f"node {node_id} ({info.get('class_type', '?')}): {text}")
    return ProviderRejected(truncate("comfyui refused the workflow: " + "; ".join(parts), 600))


def first_image(entry: Mapping[str, Any]) -> OutputImage:
    """The image to download: the first saved one (``type: output``), else the first preview."""
    outputs = entry.get("outputs")
    found: list[OutputImage] = []
    for node_id, output in outputs.items() if isinstance(outputs, Mapping) else ():
        images = output.get("images") if isinstance(output, Mapping) else None
        for image in images if isinstance(images, list) else ():
            if isinstance(image, Mapping) and isinstance(image.get("filename"), str):
                found.append(
                    OutputImage(
                        str(node_id),
                        image["filename"],
                        str(image.get("subfolder") or ""),
                        str(image.get("type") or "output"),
                    )
                )
    if not found:
        raise ProviderRejected("comfyui finished the workflow without an output image")
    saved = [image for image in found if image.type == "output"]
    return (saved or found)[0]
