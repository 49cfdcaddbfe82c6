"""OpenAI image edits: ``POST {base}/images/edits`` (multipart), ``b64_json`` result.

The photo goes first, then the slot's templates (``image[]``).  Errors (docs/providers.md,
"OpenAI"):
400 ``moderation_blocked`` and other 4xx → provider_error (502), never retried; 429
``rate_limit_exceeded`` → retried after ``Retry-After`` if it fits the deadline; 429
``insufficient_quota`` → 503 at once; 5xx → retried with back-off while time allows, then 503.
"""

from __future__ import annotations

import logging
from typing import Any

from photochangerd.logs import event
from photochangerd.media.images import EXT_BY_MIME
from photochangerd.providers.base import (
    ProviderError,
    ProviderRejected,
    ProviderRequest,
    ProviderResult,
    ProviderUnavailable,
)
from photochangerd.providers.cloud import CloudProvider
from photochangerd.providers.retry import Retry, RetryPolicy, with_retries
from photochangerd.providers.vendor_http import (
    VendorResponse,
    VendorUnreachable,
    decode_base64,
    parse_duration,
    send,
    truncate,
)
from shared.slot_settings import OpenAIEditSettings

log = logging.getLogger("photochangerd.providers.openai")

MAX_ATTEMPTS = 4
# Back-off 2, 4, 8, 16 s; a Retry-After shorter than the back-off is stretched to it, one that
# does not fit before the deadline (with 1 s left for the attempt) gives up at once.
RETRY_POLICY = RetryPolicy(
    max_attempts=MAX_ATTEMPTS,
    backoff=2.0,
    max_backoff=16.0,
    min_attempt=1.0,
    wait_at_least_backoff=True,
)
OUTPUT_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class OpenAIImagesProvider(CloudProvider):
    name = "openai"

    async def process(self, request: ProviderRequest) -> ProviderResult:
        key, settings = await self._key_and_settings(request)
        assert isinstance(settings, OpenAIEditSettings)
        files: list[tuple[str, tuple[str, bytes, str]]] = []
        inputs = [request.photo, *(t.image for t in request.templates)]
        field_name = "image[]" if len(inputs) > 1 else "image"
        for index, original in enumerate(inputs):
            image = await self._prepare(original, settings.max_input_pixels)
            data, mime = image.data, image.mime_type
            files.append((field_name, (f"input-{index}.{EXT_BY_MIME[mime]}", data, mime)))
        # Ask for the format the booth gets, so no conversion is needed afterwards.
        output = settings.output_format if settings.output_format in OUTPUT_MIME else "png"
        fields: dict[str, Any] = {
            "prompt": settings.prompt,
            "model": settings.model,
            "size": settings.size,
            "quality": settings.quality,
            "output_format": output,
            "input_fidelity": settings.input_fidelity,
            "background": settings.background,
            "n": "1",
        }
        async with self._gate.slot(request.wait):
            return await self._call(request.job_id, key, fields, files)

    async def _call(
        self,
        job_id: str,
        key: str,
        fields: dict[str, Any],
        files: list[tuple[str, tuple[str, bytes, str]]],
    ) -> ProviderResult:
        async def attempt(number: int) -> ProviderResult | Retry:
            request = self._client.build_request(
                "POST",
                f"{self._base_url}/images/edits",
                data=fields,
                files=files,
                headers={"Authorization": f"Bearer {key}"},
            )
            try:
                response = await send(self._client, request, self._max_response_bytes)
            except VendorUnreachable as exc:
                return Retry(ProviderUnavailable(f"openai unreachable ({exc})"))
            if response.status == 200:
                return _result(response, fields["output_format"])
            wait, error = _classify_error(response)
            event(
                log,
                logging.WARNING,
                "openai.attempt_failed",
                job_id=job_id,
                attempt=number,
                status=response.status,
                error=str(error),
            )
            if wait is None:
                raise error
            return Retry(error, wait)

        return await with_retries(RETRY_POLICY, attempt)


def _result(response: VendorResponse, requested: str) -> ProviderResult:
    try:
        document = response.json()
        item = document["data"][0]
        data = decode_base64(item["b64_json"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise ProviderRejected(
            f"openai answered 200 without a usable image: {response.snippet()}"
        ) from None
    output = str(document.get("output_format") or requested)
    return ProviderResult(data, OUTPUT_MIME.get(output, "image/png"))


def _classify_error(response: VendorResponse) -> tuple[float | None, ProviderError]:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    code = str(error.get("code") or error.get("type") or "")
    message = truncate(str(error.get("message") or response.snippet()))
    status = response.status
    if status == 429:
        if code == "insufficient_quota":
            return None, ProviderUnavailable(f"openai quota exhausted: {message}")
        delay = parse_duration(response.headers.get("retry-after")) or 2.0
        return delay, ProviderUnavailable(f"openai rate limited: {message}")
    if status >= 500:
        return 2.0, ProviderUnavailable(f"openai {status}: {message}")
    if status == 401:
        return None, ProviderRejected("openai rejected the API key")
    return None, ProviderRejected(f"openai {status} {code}: {message}")
