"""Turbotext: ``POST {base}/api_ai/{method}`` — create a queue, poll it, download the result.

Inputs travel only as URLs: the photo (and the slot's style/face template) are published at
``/public/provider-media/{id}`` under ``public_base_url`` until the job's deadline, and
Turbotext's servers fetch them.  ``do=create_queue`` is billed: it is sent exactly once per
job, never retried blindly.  ``do=get_result`` is polled every ``poll_interval`` seconds;
``{"action": "reconnect"}`` means "not yet".  The poll loop lives inside the job's cancel
scope: at the deadline it simply stops (no poll is sent after it).

The vendor's own examples disagree on where the result is (docs/providers.md, "Turbotext"):
top-level ``uploaded_image``, else ``data.uploaded_image``, else ``data.image[0]`` — possibly a
relative path, resolved against the base URL.  A result download that 404s is retried while time
allows.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urljoin

import httpx
import trio

from photochangerd.domain.images import ImageInput
from photochangerd.logs import event
from photochangerd.media.imaging import ImageWorkers
from photochangerd.providers.base import (
    ProviderRejected,
    ProviderRequest,
    ProviderResult,
    ProviderUnavailable,
)
from photochangerd.providers.cloud import CloudProvider
from photochangerd.providers.keys import ProviderKeys
from photochangerd.providers.retry import Retry, RetryPolicy, with_retries
from photochangerd.providers.vendor_http import (
    VendorResponse,
    VendorUnreachable,
    send,
    truncate,
)
from shared.slot_settings import (
    CommonSettings,
    TurbotextFaceSwapSettings,
    TurbotextImage2ImageSettings,
    TurbotextMixImagesSettings,
)

log = logging.getLogger("photochangerd.providers.turbotext")

METHODS = {
    "image2image": "generate_image2image",
    "mix_images": "mix_images",
    "face_swap": "deepfake_photo",
}
MAX_POLL_ERRORS = 5
MAX_DOWNLOAD_ATTEMPTS = 5
# The result download (a 404 while the vendor's storage catches up): 1 s apart, while 0.5 s
# are left for another try.
DOWNLOAD_RETRY = RetryPolicy(
    max_attempts=MAX_DOWNLOAD_ATTEMPTS, backoff=1.0, max_backoff=1.0, min_attempt=0.5
)


class TurbotextProvider(CloudProvider):
    name = "turbotext"

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        keys: ProviderKeys,
        images: ImageWorkers,
        *,
        max_response_bytes: int,
        concurrency: int,
        poll_interval: float = 2.5,
    ) -> None:
        super().__init__(
            client,
            base_url,
            keys,
            images,
            max_response_bytes=max_response_bytes,
            concurrency=concurrency,
        )
        self.poll_interval = poll_interval

    async def process(self, request: ProviderRequest) -> ProviderResult:
        method = METHODS.get(request.operation)
        if method is None:
            raise ProviderRejected(f"turbotext has no operation {request.operation!r}")
        key, settings = await self._key_and_settings(request)
        async with self._gate.slot(request.wait):
            fields = await self._fields(request, settings)
            url = f"{self._base_url}/api_ai/{method}"
            headers = {"Authorization": f"Bearer {key}"}
            queue_id = await self._create(url, headers, fields)
            await request.report_reference(queue_id)
            event(
                log,
                logging.INFO,
                "turbotext.queued",
                job_id=request.job_id,
                queueid=queue_id,
                method=method,
            )
            result_url = await self._poll(request.job_id, url, headers, queue_id)
            return await self._download(result_url, headers)

    async def _publish(self, request: ProviderRequest, image: ImageInput, max_pixels: int) -> str:
        return await request.publish(await self._prepare(image, max_pixels))

    async def _fields(self, request: ProviderRequest, settings: CommonSettings) -> dict[str, str]:
        photo_url = await self._publish(request, request.photo, settings.max_input_pixels)
        fields: dict[str, str] = {"do": "create_queue"}
        if isinstance(settings, TurbotextImage2ImageSettings):
            fields.update(
                url=photo_url,
                content=settings.prompt,
                strength=str(settings.strength),
                scale=str(settings.scale),
                original_language=settings.original_language,
                user_id="1",
            )
            if settings.seed is not None:
                fields["seed"] = str(settings.seed)
            if settings.negative_prompt:
                fields["negative_prompt"] = settings.negative_prompt
        elif isinstance(settings, TurbotextMixImagesSettings):
            styles = request.templates_with_role("style")
            if not styles:
                raise ProviderRejected("turbotext/mix_images needs a template with role 'style'")
            fields.update(
                url_image_target=photo_url,
                url=await self._publish(request, styles[0], settings.max_input_pixels),
            )
            if settings.prompt:
                fields["content"] = settings.prompt
        elif isinstance(settings, TurbotextFaceSwapSettings):
            faces = request.templates_with_role("face")
            if not faces:
                raise ProviderRejected("turbotext/face_swap needs a template with role 'face'")
            fields.update(
                url=photo_url,
                url_image_target=await self._publish(request, faces[0], settings.max_input_pixels),
                face_restore="True" if settings.face_restore else "False",
            )
        return fields

    async def _post(
        self, url: str, headers: dict[str, str], data: dict[str, str]
    ) -> VendorResponse:
        request = self._client.build_request("POST", url, data=data, headers=headers)
        return await send(self._client, request, 1024 * 1024)

    async def _create(self, url: str, headers: dict[str, str], fields: dict[str, str]) -> str:
        try:
            response = await self._post(url, headers, fields)
        except VendorUnreachable as exc:
            raise ProviderUnavailable(f"turbotext unreachable ({exc})") from None
        document = _json_or_none(response)
        if response.status == 401:
            raise ProviderRejected("turbotext rejected the API key")
        if response.status >= 500 or document is None:
            # Not retried: the queue may exist (and be billed) even though the answer broke.
            raise ProviderUnavailable(
                f"turbotext create_queue answered {response.status}: {response.snippet()}"
            )
        if not document.get("success") or not document.get("queueid"):
            raise ProviderRejected(
                f"turbotext refused the job: {truncate(str(document.get('error', document)))}"
            )
        return str(document["queueid"])

    async def _poll(self, job_id: str, url: str, headers: dict[str, str], queue_id: str) -> str:
        errors = 0
        polls = 0
        while True:
            await trio.sleep(self.poll_interval)
            polls += 1
            try:
                response = await self._post(url, headers, {"do": "get_result", "queueid": queue_id})
            except VendorUnreachable:
                document, status = None, 0
            else:
                document, status = _json_or_none(response), response.status
            if document is None or status >= 500:
                errors += 1
                if errors >= MAX_POLL_ERRORS:
                    raise ProviderUnavailable(f"turbotext polling failed {errors} times in a row")
                continue
            errors = 0
            if document.get("action") == "reconnect":
                continue
            if not document.get("success"):
                raise ProviderRejected(
                    f"turbotext failed the job: {truncate(str(document.get('error', document)))}"
                )
            raw_data = document.get("data")
            data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
            if data.get("forbidden_content"):
                raise ProviderRejected("turbotext flagged the content (forbidden_content)")
            found = _result_location(document, data)
            if found is None:
                raise ProviderRejected("turbotext reported success without a result image")
            event(log, logging.INFO, "turbotext.done", job_id=job_id, queueid=queue_id, polls=polls)
            return urljoin(self._base_url + "/", found)

    async def _download(self, url: str, headers: dict[str, str]) -> ProviderResult:
        async def attempt(number: int) -> ProviderResult | Retry:
            request = self._client.build_request("GET", url, headers=headers)
            try:
                response = await send(self._client, request, self._max_response_bytes)
            except VendorUnreachable as exc:
                last = f"unreachable ({exc})"
            else:
                if response.status == 200 and response.body:
                    mime = response.headers.get("content-type", "image/png").split(";")[0]
                    return ProviderResult(response.body, mime)
                last = f"HTTP {response.status}"
            return Retry(ProviderRejected(f"turbotext result download failed: {last}"))

        return await with_retries(DOWNLOAD_RETRY, attempt)


def _json_or_none(response: VendorResponse) -> dict[str, Any] | None:
    try:
        document = response.json()
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _result_location(document: dict[str, Any], data: dict[str, Any]) -> str | None:
    for candidate in (document.get("uploaded_image"), data.get("uploaded_image")):
        if isinstance(candidate, str) and candidate:
            return candidate
    images = data.get("image")
    if isinstance(images, list) and images and isinstance(images[0], str):
        return images[0]
    if isinstance(images, str) and images:
        return images
    return None
