"""AUTOMATIC1111 WebUI / Forge / SD.Next: ``POST {base}/sdapi/v1/img2img`` on the operator's GPU.

The photo is scaled to the slot's working size (multiples of 8 within ``working_pixels``:
:mod:`photochangerd.media.working_size`) and sent as base64 JSON with our own task id
(``force_task_id``); the answer's ``images[0]`` is the result (more images may be ControlNet
maps), checked structurally, and scaled back to the photo's size when the slot asks for it.

One GPU runs one job at a time: at most ``sdwebui_concurrency`` jobs are sent at once, the
others wait in our gate within their own deadline (a job whose deadline passes there was never
sent, nor is one that gets the GPU with under :data:`MIN_GPU_SECONDS` left: 503).  A call
that ends without an answer (the deadline above all) leaves the job running on the GPU, so the
driver hands its task id to the :class:`~.sdwebui_interrupt.Interrupter`, which interrupts it
in the background if it is ours.

Outcomes (docs/providers.md, "Stable Diffusion WebUI"):

=============================================  ===============================================
200 with ``images[0]``                         success
422 ``{"detail": [...]}``                      provider_error 502 naming the field, no retry
500 with out-of-memory text                    provider_error 503 (GPU memory), no retry
other 500 ``{"error", "errors", …}``           provider_error 502, no retry (the job ran)
401 / 403, 404                                 502: bad or missing ``user:pass``; no ``--api``
502 / 503 (a proxy: the WebUI is not up)       retried while time allows, then 503
504 (a proxy gave up, the job may still run)   503, no retry; its task is interrupted
connection refused / unreachable               retried while time allows, then 503 "backend
                                               down" (nothing reached the GPU)
=============================================  ===============================================
"""

from __future__ import annotations

import base64
import logging
import secrets
from typing import Any

import httpx
import trio

from photochangerd.logs import event
from photochangerd.media.images import UnsupportedImage
from photochangerd.media.imaging import ImageWorkers
from photochangerd.media.structure import check_structure
from photochangerd.media.working_size import WorkingImage, scale_result, to_working_size
from photochangerd.providers.base import (
    ProviderError,
    ProviderRejected,
    ProviderRequest,
    ProviderResult,
    ProviderUnavailable,
)
from photochangerd.providers.cloud import CloudProvider
from photochangerd.providers.keys import ProviderKeys
from photochangerd.providers.retry import Retry, RetryPolicy, with_retries
from photochangerd.providers.sdwebui_interrupt import Interrupter
from photochangerd.providers.vendor_http import (
    JsonWithImages,
    VendorResponse,
    VendorUnreachable,
    base64_piece,
    decode_base64,
    remaining,
    send,
    truncate,
)
from shared.slot_settings import SdWebUIImg2ImgSettings

log = logging.getLogger("photochangerd.providers.sdwebui")

# Only failures before the WebUI started work are retried: a refused connection, a proxy's
# 502/503.  Back-off 1, 2, 4 s while at least 2 s remain for the attempt.
RETRY_POLICY = RetryPolicy(max_attempts=4, backoff=1.0, max_backoff=4.0, min_attempt=2.0)
RESULT_MAX_PIXELS = 50_000_000
# A job that gets the GPU with less time left than this is not sent (it could not finish).
MIN_GPU_SECONDS = 1.0
CONNECT_FAILURES = ("ConnectError", "ConnectTimeout")
OOM_MARKERS = ("out of memory", "outofmemory", "cuda oom")


class SdWebUIProvider(CloudProvider):
    name = "sdwebui"
    # One GPU: its own cap (default 1), not the cloud providers' provider_concurrency.
    gate_setting = "sdwebui_concurrency"

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        keys: ProviderKeys,
        images: ImageWorkers,
        interrupter: Interrupter,
        *,
        max_response_bytes: int,
        concurrency: int,
    ) -> None:
        super().__init__(
            client,
            base_url,
            keys,
            images,
            max_response_bytes=max_response_bytes,
            concurrency=concurrency,
        )
        self._interrupter = interrupter

    async def process(self, request: ProviderRequest) -> ProviderResult:
        if not self._base_url:
            raise ProviderRejected("sdwebui backend not configured (set sdwebui_base_url)")
        settings = self._settings(request)
        assert isinstance(settings, SdWebUIImg2ImgSettings)
        headers = await self._headers()
        photo = request.photo
        working = await self._images.run(to_working_size, photo.data, settings.working_pixels)
        task_id = f"task(photochanger-{request.job_id}-{secrets.token_hex(3)})"
        body = _request_body(settings, working, task_id)
        async with self._gate.slot(request.wait):
            left = remaining()
            if left < MIN_GPU_SECONDS:  # the GPU would only start on it to be interrupted
                raise ProviderUnavailable(
                    f"sdwebui: {max(left, 0):.1f} s left after waiting for the GPU; not sent"
                )
            response = await self._call(request.job_id, task_id, headers, body)
        data = _image_from(response)
        try:
            mime = (await self._images.run(check_structure, data, RESULT_MAX_PIXELS)).mime_type
        except UnsupportedImage as exc:
            raise ProviderRejected(f"sdwebui returned a broken image: {exc}") from None
        if settings.result_size == "photo":
            data, mime = await self._images.run(
                scale_result, data, working.photo_size, settings.output_format
            )
        return ProviderResult(data, mime)

    async def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        auth = await self._keys.get(self.name)
        if auth:
            if ":" not in auth:
                raise ProviderRejected("sdwebui key must be user:pass (the WebUI's --api-auth)")
            headers["authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
        return headers

    async def _call(
        self, job_id: str, task_id: str, headers: dict[str, str], body: JsonWithImages
    ) -> VendorResponse:
        url = f"{self._base_url}/sdapi/v1/img2img"
        sent_headers = {**headers, "content-length": str(body.length)}
        started = trio.current_time()

        async def attempt(number: int) -> VendorResponse | Retry:
            answered = False
            try:
                request = self._client.build_request(
                    "POST", url, content=body.chunks(base64_piece(url)), headers=sent_headers
                )
                try:
                    response = await send(self._client, request, self._max_response_bytes)
                except VendorUnreachable as exc:
                    if str(exc) not in CONNECT_FAILURES:
                        raise ProviderUnavailable(f"sdwebui connection lost ({exc})") from None
                    answered = True  # nothing reached the backend
                    return Retry(ProviderUnavailable(f"sdwebui backend down ({exc})"))
                answered = response.status != 504
                if response.status == 200:
                    self._interrupter.learn(self._base_url, headers, task_id)
                return self._outcome(job_id, task_id, number, response, started)
            finally:
                if not answered:  # the deadline, a dropped connection, a 504: it may still run
                    self._interrupter.schedule(self._base_url, headers, task_id, job_id)

        result = await with_retries(RETRY_POLICY, attempt)
        assert isinstance(result, VendorResponse)
        return result

    def _outcome(
        self, job_id: str, task_id: str, number: int, response: VendorResponse, started: float
    ) -> VendorResponse | Retry:
        fields = {
            "job_id": job_id,
            "task_id": task_id,
            "attempt": number,
            "status": response.status,
            "seconds": round(trio.current_time() - started, 3),
        }
        if response.status == 200:
            event(log, logging.INFO, "sdwebui.success", **fields)
            return response
        retry, error = classify_error(response)
        event(log, logging.WARNING, "sdwebui.failed", **fields, error=str(error), retry=retry)
        if retry:
            return Retry(error)
        raise error


def _request_body(
    settings: SdWebUIImg2ImgSettings, working: WorkingImage, task_id: str
) -> JsonWithImages:
    body = JsonWithImages()
    width, height = working.size
    document: dict[str, Any] = {
        "init_images": [body.image(working.data)],
        "prompt": settings.prompt,
        "negative_prompt": settings.negative_prompt,
        "denoising_strength": settings.denoising_strength,
        "steps": settings.steps,
        "cfg_scale": settings.cfg_scale,
        "seed": settings.seed,
        "width": width,
        "height": height,
        "batch_size": 1,
        "n_iter": 1,
        "send_images": True,
        "save_images": False,
        "force_task_id": task_id,
    }
    if settings.sampler_name:
        document["sampler_name"] = settings.sampler_name
    if settings.scheduler:
        document["scheduler"] = settings.scheduler
    if settings.checkpoint:
        document["override_settings"] = {"sd_model_checkpoint": settings.checkpoint}
        # Keep it loaded for the next photo: restoring the previous one costs a model swap.
        document["override_settings_restore_afterwards"] = False
    return body.seal(document)


def _image_from(response: VendorResponse) -> bytes:
    """``images[0]`` of a 200 answer (a ``data:`` prefix, as some forks send, is dropped)."""
    try:
        text = response.json()["images"][0]
        if isinstance(text, str) and text.startswith("data:"):
            text = text.split(",", 1)[1]
        return decode_base64(text)
    except (ValueError, KeyError, IndexError, TypeError):
        raise ProviderRejected(
            f"sdwebui answered 200 without an image: {response.snippet()}"
        ) from None


def classify_error(response: VendorResponse) -> tuple[bool, ProviderError]:
    """(retry?, the error) for a non-200 answer of ``/sdapi/v1/img2img``."""
    status = response.status
    try:
        document: Any = response.json()
    except ValueError:
        document = None
    if status == 422:
        return False, ProviderRejected(f"sdwebui rejected the request: {_fields(document)}")
    if status in (401, 403):
        return False, ProviderRejected(
            "sdwebui refused our HTTP Basic credentials (provider key sdwebui = user:pass)"
        )
    if status == 404:
        return False, ProviderRejected(
            "sdwebui has no /sdapi/v1/img2img: start the WebUI with --api"
        )
    text = _error_text(document) or response.snippet()
    if status == 500 and any(marker in text.lower() for marker in OOM_MARKERS):
        return False, ProviderUnavailable(f"sdwebui out of GPU memory: {truncate(text)}")
    if status in (502, 503):
        return True, ProviderUnavailable(f"sdwebui backend down ({status}): {truncate(text)}")
    if status >= 500:
        cls = ProviderUnavailable if status == 504 else ProviderRejected
        return False, cls(f"sdwebui {status}: {truncate(text)}")
    return False, ProviderRejected(f"sdwebui {status}: {truncate(text)}")


def _fields(document: Any) -> str:
    """FastAPI's ``{"detail": [{"loc": ["body", "steps"], "msg": …}]}`` as ``steps: msg``."""
    detail = document.get("detail") if isinstance(document, dict) else None
    if isinstance(detail, str):
        return truncate(detail)
    if not isinstance(detail, list) or not detail:
        return "422 without details"
    parts = []
    for item in detail[:5]:
        if not isinstance(item, dict):
            continue
        loc = [str(p) for p in item.get("loc") or [] if p != "body"]
        parts.append(f"{'.'.join(loc) or '?'}: {item.get('msg', 'invalid')}")
    return truncate("; ".join(parts) or "422 without details")


def _error_text(document: Any) -> str:
    """The WebUI's ``{"error", "detail", "body", "errors"}`` 500 answer as one line."""
    if not isinstance(document, dict):
        return ""
    parts = [str(document.get(key) or "") for key in ("error", "detail", "errors")]
    return " ".join(part for part in parts if part)
