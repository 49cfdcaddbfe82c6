"""ComfyUI (self-hosted): run the slot's workflow on the operator's own GPU box.

One job: ``POST {base}/upload/image`` (multipart ``image``, ``overwrite=true``, a file name of
the job's own in the ``photochanger`` subfolder) → put the name into the workflow's
``LoadImage`` node and the prompt into its place (shared/comfyui_workflow.py) → ``POST
{base}/prompt {"prompt": workflow, "client_id": uuid}`` → poll ``GET {base}/history/{id}``
(comfyui_history.py) → ``GET {base}/view?filename&subfolder&type`` of the first output image,
checked structurally before it goes to the pipeline.

Errors: connection refused/reset → 503 "backend down"; a 400 on ``/prompt`` (invalid graph,
missing model…) → 502 naming each node and its message; ``status_str: "error"`` → 502 naming
the failing node (503 for out of GPU memory); a 5xx → 503.  Nothing is retried: a GPU job is
not idempotent and rarely fails for a transient reason.

The server keeps working on a prompt whose client left, so a job that ends without its image
(the deadline, most often) has its prompt deleted from the queue or interrupted, in the
background (comfyui_cancel.py).  Jobs over ``comfyui_concurrency`` (default 1: one GPU) wait
for the gate within their own deadline rather than pile up in ComfyUI's queue, where they could
not be told apart from someone else's work.  No authentication: the server belongs on the LAN
or a VPN, or behind a proxy (docs/providers.md, "ComfyUI").
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import orjson

from photochangerd.logs import event
from photochangerd.media.images import EXT_BY_MIME, UnsupportedImage
from photochangerd.media.imaging import ImageWorkers
from photochangerd.media.structure import check_structure
from photochangerd.providers.base import (
    ProviderRejected,
    ProviderRequest,
    ProviderResult,
    ProviderUnavailable,
)
from photochangerd.providers.cloud import CloudProvider
from photochangerd.providers.comfyui_cancel import ServerCancels, SubmittedPrompt
from photochangerd.providers.comfyui_history import (
    OutputImage,
    first_image,
    refusal,
    wait_for_history,
)
from photochangerd.providers.keys import ProviderKeys
from photochangerd.providers.vendor_http import (
    VendorResponse,
    VendorUnreachable,
    send,
)
from shared.comfyui_workflow import fill_workflow
from shared.slot_settings import ComfyUIWorkflowSettings

log = logging.getLogger("photochangerd.providers.comfyui")

UPLOAD_SUBFOLDER = "photochanger"
SMALL_ANSWER = 1024 * 1024
OUTPUT_MAX_PIXELS = 200_000_000


class ComfyUIProvider(CloudProvider):
    name = "comfyui"
    gate_setting = "comfyui_concurrency"  # one GPU: its own cap (default 1)

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        images: ImageWorkers,
        cancels: ServerCancels,
        *,
        max_response_bytes: int,
        concurrency: int,
    ) -> None:
        super().__init__(
            client,
            base_url,
            ProviderKeys({}),  # no authentication
            images,
            max_response_bytes=max_response_bytes,
            concurrency=concurrency,
        )
        self._cancels = cancels

    async def process(self, request: ProviderRequest) -> ProviderResult:
        if not self._base_url:
            raise ProviderRejected("comfyui is not configured: set comfyui_base_url")
        settings = self._settings(request)
        assert isinstance(settings, ComfyUIWorkflowSettings)
        async with self._gate.slot(request.wait):
            image_name = await self._upload(request, settings.max_input_pixels)
            workflow = fill_workflow(
                settings.workflow, image_name, settings.prompt, settings.prompt_node
            )
            prompt = SubmittedPrompt(request.job_id, uuid.uuid4().hex)
            try:
                prompt.prompt_id = await self._queue(workflow, prompt)
                await request.report_reference(prompt.prompt_id)
                event(
                    log,
                    logging.INFO,
                    "comfyui.queued",
                    job_id=request.job_id,
                    prompt_id=prompt.prompt_id,
                )
                entry = await wait_for_history(prompt, self._history(prompt.prompt_id))
            finally:
                if not prompt.ended:  # the deadline, most often: free the GPU
                    self._cancels.cancel_soon(prompt)
            return await self._download(first_image(entry))

    async def _send(self, request: httpx.Request, limit: int = SMALL_ANSWER) -> VendorResponse:
        try:
            response = await send(self._client, request, limit)
        except VendorUnreachable as exc:
            raise ProviderUnavailable(f"comfyui backend down ({exc})") from None
        if response.status >= 500:
            raise ProviderUnavailable(
                f"comfyui answered {response.status} to {request.url.path}: {response.snippet()}"
            )
        return response

    async def _upload(self, request: ProviderRequest, max_pixels: int) -> str:
        photo = await self._prepare(request.photo, max_pixels)
        filename = f"{request.job_id}.{EXT_BY_MIME.get(photo.mime_type, 'jpg')}"
        upload = self._client.build_request(
            "POST",
            f"{self._base_url}/upload/image",
            data={"overwrite": "true", "type": "input", "subfolder": UPLOAD_SUBFOLDER},
            files={"image": (filename, photo.data, photo.mime_type)},
        )
        response = await self._send(upload)
        document = _json_or_none(response)
        if response.status != 200 or not isinstance(document, dict) or not document.get("name"):
            raise ProviderRejected(
                f"comfyui refused the photo upload ({response.status}): {response.snippet()}"
            )
        subfolder = str(document.get("subfolder") or "")
        name = str(document["name"])
        return f"{subfolder}/{name}" if subfolder else name

    async def _queue(self, workflow: dict[str, Any], prompt: SubmittedPrompt) -> str:
        body = orjson.dumps({"prompt": workflow, "client_id": prompt.client_id})
        queue = self._client.build_request(
            "POST",
            f"{self._base_url}/prompt",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        response = await self._send(queue)
        document = _json_or_none(response)
        if response.status == 400:
            prompt.ended = True  # nothing was queued
            raise refusal(document)
        if response.status != 200 or not isinstance(document, dict):
            raise ProviderRejected(
                f"comfyui answered {response.status} to the workflow: {response.snippet()}"
            )
        prompt_id = document.get("prompt_id")
        if not isinstance(prompt_id, str) or not prompt_id:
            raise ProviderRejected(f"comfyui queued nothing: {response.snippet()}")
        return prompt_id

    def _history(self, prompt_id: str) -> Any:
        url = f"{self._base_url}/history/{prompt_id}"

        async def fetch() -> VendorResponse:
            request = self._client.build_request("GET", url)
            return await send(self._client, request, SMALL_ANSWER * 16)

        return fetch

    async def _download(self, image: OutputImage) -> ProviderResult:
        params = {"filename": image.filename, "subfolder": image.subfolder, "type": image.type}
        view = self._client.build_request("GET", f"{self._base_url}/view", params=params)
        response = await self._send(view, self._max_response_bytes)
        if response.status != 200:
            raise ProviderRejected(
                f"comfyui /view of {image.filename} (node {image.node_id}) answered "
                f"{response.status}"
            )
        try:
            info = check_structure(response.body, OUTPUT_MAX_PIXELS)
        except UnsupportedImage as exc:
            raise ProviderRejected(
                f"comfyui output {image.filename} (node {image.node_id}) is not a usable "
                f"image: {exc}"
            ) from None
        return ProviderResult(response.body, info.mime_type)


def _json_or_none(response: VendorResponse) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
