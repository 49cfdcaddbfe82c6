"""Google Gemini image editing: ``POST {base}/v1beta/models/{model}:generateContent``.

Outcomes (docs/providers.md, "Gemini") and what we do with them:

=====================================================  ==========================================
image part in the first candidate                      success (skip ``thought`` parts, take the
                                                       last image part)
``NO_IMAGE`` / ``IMAGE_OTHER`` / ``OTHER`` / no image  retry while the deadline allows (production
                                                       saw intermittent NO_IMAGE in ~1-2 s)
``promptFeedback.blockReason``, ``*SAFETY``,           provider_error (502), reason recorded,
``*PROHIBITED*``, ``RECITATION``                       no retry
429 RESOURCE_EXHAUSTED (``RetryInfo.retryDelay``)      wait that long if it fits, else 503
503 UNAVAILABLE / 500 / 504 / garbage                  back off and retry while time allows; then
                                                       503 (429/503) or 502 (the rest)
other 4xx (bad key is a 400 ``API_KEY_INVALID``)       provider_error (502), recorded
=====================================================  ==========================================
"""

from __future__ import annotations

import logging
from typing import Any

from photochangerd.logs import event
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
    JsonWithImages,
    VendorResponse,
    VendorUnreachable,
    base64_piece,
    decode_base64,
    parse_duration,
    send,
    truncate,
)
from shared.slot_settings import GeminiEditSettings

log = logging.getLogger("photochangerd.providers.gemini")

# Finish reasons that mean "the content was refused": recorded, never retried.  Anything else
# without an image (NO_IMAGE, IMAGE_OTHER, OTHER, a text-only STOP) is retried while time allows.
REFUSAL_REASONS = {
    "SAFETY",
    "IMAGE_SAFETY",
    "PROHIBITED_CONTENT",
    "IMAGE_PROHIBITED_CONTENT",
    "RECITATION",
    "IMAGE_RECITATION",
    "BLOCKLIST",
    "SPII",
}
MAX_ATTEMPTS = 5
NO_IMAGE_BACKOFF = 1.0  # NO_IMAGE answers come in ~1-2 s; a short pause is enough
# Waits the answer names are taken as they are (1 s after NO_IMAGE, 2 s after a 5xx, a 429's
# retryDelay); an unreachable vendor is backed off 1, 2, 4, 8 s.  A retry is only started
# with at least 1 s left after its wait (a NO_IMAGE answer's ~1-2 s).
RETRY_POLICY = RetryPolicy(max_attempts=MAX_ATTEMPTS, backoff=1.0, max_backoff=8.0, min_attempt=1.0)
INLINE_LIMIT = 20 * 1024 * 1024  # total request size the inline API accepts


class GeminiProvider(CloudProvider):
    name = "gemini"

    async def process(self, request: ProviderRequest) -> ProviderResult:
        key, settings = await self._key_and_settings(request)
        assert isinstance(settings, GeminiEditSettings)
        body = await self._build_body(request, settings)
        url = f"{self._base_url}/v1beta/models/{settings.model}:generateContent"
        async with self._gate.slot(request.wait):
            return await self._call_with_retries(request.job_id, url, key, body)

    async def _build_body(
        self, request: ProviderRequest, settings: GeminiEditSettings
    ) -> JsonWithImages:
        # Order: the photo first, then the slot's templates in their bound order, then the
        # prompt — the prompt can then say "the first image is the guest, the second ...".
        inputs = [request.photo, *(t.image for t in request.templates)]
        body = JsonWithImages()
        parts: list[dict[str, Any]] = []
        total = 0
        for original in inputs:
            image = await self._prepare(original, settings.max_input_pixels)
            data, mime = image.data, image.mime_type
            total += len(data) * 4 // 3
            parts.append({"inline_data": {"mime_type": mime, "data": body.image(data)}})
        if total > INLINE_LIMIT:
            raise ProviderRejected(
                "inputs exceed Gemini's 20 MB inline limit; lower max_input_pixels"
            )
        parts.append({"text": settings.prompt})
        generation: dict[str, Any] = {"responseModalities": ["IMAGE"]}
        image_config: dict[str, str] = {}
        if settings.aspect_ratio:
            image_config["aspectRatio"] = settings.aspect_ratio
        if settings.image_size:
            image_config["imageSize"] = settings.image_size
        if image_config:
            generation["imageConfig"] = image_config
        return body.seal(
            {"contents": [{"role": "user", "parts": parts}], "generationConfig": generation}
        )

    async def _call_with_retries(
        self, job_id: str, url: str, key: str, body: JsonWithImages
    ) -> ProviderResult:
        # The body is streamed, its photo base64-encoded while it is sent (vendor_http.py).
        headers = {
            "x-goog-api-key": key,
            "content-type": "application/json",
            "content-length": str(body.length),
        }

        async def attempt(number: int) -> ProviderResult | Retry:
            request = self._client.build_request(
                "POST", url, content=body.chunks(base64_piece(url)), headers=headers
            )
            try:
                response = await send(self._client, request, self._max_response_bytes)
            except VendorUnreachable as exc:
                return Retry(ProviderUnavailable(f"gemini unreachable ({exc})"))
            outcome = self._classify(response)
            if isinstance(outcome, ProviderResult):
                event(
                    log,
                    logging.INFO,
                    "gemini.success",
                    job_id=job_id,
                    attempt=number,
                    response_id=_response_id(response),
                )
                return outcome
            retry_after, error = outcome
            event(
                log,
                logging.WARNING,
                "gemini.attempt_failed",
                job_id=job_id,
                attempt=number,
                status=response.status,
                error=str(error),
                retry=retry_after is not None,
            )
            if retry_after is None:
                raise error
            return Retry(error, retry_after)

        return await with_retries(RETRY_POLICY, attempt)

    def _classify(
        self, response: VendorResponse
    ) -> ProviderResult | tuple[float | None, ProviderError]:
        """A result, or (retry after seconds | None for "do not retry", the error)."""
        status = response.status
        try:
            document = response.json()
        except ValueError:
            error: ProviderError = (
                ProviderUnavailable if status in (429, 503) or status >= 500 else ProviderRejected
            )(f"gemini answered {status} with a non-JSON body: {response.snippet()}")
            return (2.0 if status >= 500 or status == 200 else None), error
        if status != 200:
            return _classify_error(status, document)
        return _classify_success(document)


def _response_id(response: VendorResponse) -> str | None:
    try:
        value = response.json().get("responseId")
    except (ValueError, AttributeError):
        return None
    return str(value) if value else None


def _classify_error(status: int, document: Any) -> tuple[float | None, ProviderError]:
    error = document.get("error", {}) if isinstance(document, dict) else {}
    message = truncate(str(error.get("message", "")))
    vendor_status = str(error.get("status", ""))
    reasons = [
        str(d.get("reason"))
        for d in error.get("details", [])
        if isinstance(d, dict) and d.get("reason")
    ]
    if status == 429:
        delay = None
        for detail in error.get("details", []):
            if isinstance(detail, dict) and "retryDelay" in detail:
                delay = parse_duration(detail.get("retryDelay"))
        return (delay if delay is not None else 2.0), ProviderUnavailable(
            f"gemini rate limited ({vendor_status or 429}): {message}"
        )
    if status in (500, 502, 503, 504):
        cls = ProviderUnavailable if status in (502, 503) else ProviderRejected
        return 2.0, cls(f"gemini {status} {vendor_status}: {message}")
    if "API_KEY_INVALID" in reasons:
        return None, ProviderRejected("gemini rejected the API key (API_KEY_INVALID)")
    return None, ProviderRejected(f"gemini {status} {vendor_status}: {message}")


def _classify_success(document: Any) -> ProviderResult | tuple[float | None, ProviderError]:
    if not isinstance(document, dict):
        return 2.0, ProviderRejected("gemini answered an unexpected document")
    block = (document.get("promptFeedback") or {}).get("blockReason")
    candidates = document.get("candidates") or []
    if block and not candidates:
        return None, ProviderRejected(f"gemini blocked the prompt: {block}")
    if not candidates:
        return NO_IMAGE_BACKOFF, ProviderRejected("gemini returned no candidates")
    candidate = candidates[0] or {}
    parts = (candidate.get("content") or {}).get("parts") or []
    images = []
    for part in parts:
        if not isinstance(part, dict) or part.get("thought"):
            continue
        inline = part.get("inlineData") or part.get("inline_data")
        if isinstance(inline, dict) and inline.get("data"):
            images.append(inline)
    if images:
        final = images[-1]
        try:
            data = decode_base64(final["data"])
        except ValueError:
            return 2.0, ProviderRejected("gemini returned an image that is not valid base64")
        mime = str(final.get("mimeType") or final.get("mime_type") or "image/png")
        return ProviderResult(data, mime)
    reason = str(candidate.get("finishReason") or "NO_IMAGE")
    detail = truncate(str(candidate.get("finishMessage") or ""))
    text = f"gemini returned no image (finishReason {reason})" + (f": {detail}" if detail else "")
    if reason in REFUSAL_REASONS:
        return None, ProviderRejected(text)
    return NO_IMAGE_BACKOFF, ProviderRejected(text)
