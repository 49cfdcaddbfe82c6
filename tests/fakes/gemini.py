"""Fake Google Gemini image API: ``POST {base}/v1beta/models/{model}:generateContent``.

Checks, in the order the real service applies them (none of them consumes the script):
unknown path → Google's HTML 404; key (``x-goog-api-key`` or ``?key=``) missing or wrong →
400 ``API_KEY_INVALID``; unknown model → 404 ``NOT_FOUND``; request over 20 MiB or invalid
(see ``gemini_request``) → 400 ``INVALID_ARGUMENT``.  Then the next scripted outcome answers.

Outcomes (``FakeGemini.OUTCOMES``; parameters via ``outcome(name, ...)``):

* ``success`` — a text part, then the PNG (camelCase ``inlineData``), ``finishReason: STOP``.
* ``success_image_only`` — the PNG part alone.
* ``success_with_thoughts`` — ``thought: true`` text and a thought image (small, inverted
  colours) first, then a text part and the real image last (with ``thoughtSignature``).
* ``no_image`` / ``image_safety`` / ``prohibited`` — 200, one candidate without content and
  ``finishReason`` ``NO_IMAGE`` / ``IMAGE_SAFETY`` / ``PROHIBITED_CONTENT``;
  ``finish`` with ``reason=`` (and optional ``message=``) for any other finish reason.
* ``text_only`` — 200, ``STOP`` with a single text part.
* ``blocked_prompt`` — 200, no ``candidates``, ``promptFeedback.blockReason`` (``reason=``,
  default ``PROHIBITED_CONTENT``).
* ``rate_limited`` — 429 ``RESOURCE_EXHAUSTED`` with a ``RetryInfo`` detail; ``retry_delay=``
  (``"42s"``; None omits RetryInfo), default ``FakeGemini.retry_delay``.
* ``key_suspended`` — 403 ``PERMISSION_DENIED`` whose message names the caller's key, as Google
  answers for a suspended key.
* ``permission_denied`` 403, ``internal`` 500, ``unavailable`` 503 ("The model is
  overloaded…"), ``deadline_exceeded`` 504 — Google's JSON error body.
* ``bad_gateway_html`` — 502 with Google's HTML error page.
* ``malformed_json`` — 200, ``application/json``, a success body cut in half.
* ``hang`` — no answer until the client disconnects.
* ``slow(seconds)`` — success after ``seconds``; any outcome takes ``delay=`` and ``drip=``.

The result image is the request's first inline image in greyscale (``images.derive_image``),
centre-cropped to ``aspectRatio`` when given, at most ~1 MP (3-pro: 1K/2K/4K → 1/4/16 MP; never
upscaled); a generated picture when the request had no image.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Sequence
from functools import partial
from typing import Any, ClassVar

import trio

from tests.fakes.base import Exchange, FakeServer, Outcome
from tests.fakes.gemini_request import GeminiRequest, RequestError, parse_request
from tests.fakes.images import derive_image, thought_image

__all__ = ["KNOWN_MODELS", "FakeGemini"]

KNOWN_MODELS = ("gemini-2.5-flash-image", "gemini-3-pro-image-preview")
MAX_REQUEST_BYTES = 20 * 1024 * 1024
_PATH = re.compile(r"/v1beta/models/(?P<model>[^/:]+):generateContent")
_MEGAPIXELS = {"1K": 1024 * 1024, "2K": 2048 * 2048, "4K": 4096 * 4096}
_FINISH = {
    "no_image": "NO_IMAGE",
    "image_safety": "IMAGE_SAFETY",
    "prohibited": "PROHIBITED_CONTENT",
}
_FINISH_MESSAGES = {
    "IMAGE_SAFETY": "Unable to show the generated image. The image was filtered out because it "
    "violated Google's Generative AI Prohibited Use policy.",
}
_ERRORS: dict[str, tuple[int, str, str]] = {
    "permission_denied": (403, "PERMISSION_DENIED", "The caller does not have permission"),
    "internal": (
        500,
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    "unavailable": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    "deadline_exceeded": (
        504,
        "DEADLINE_EXCEEDED",
        "Deadline expired before operation could complete.",
    ),
}
_HTML_ERROR = """<!DOCTYPE html>
<html lang=en>
  <meta charset=utf-8>
  <meta name=viewport content="initial-scale=1, minimum-scale=1, width=device-width">
  <title>Error {code} ({title})!!1</title>
  <a href=//www.google.com/><span id=logo aria-label=Google></span></a>
  <p><b>{code}.</b> <ins>That’s an error.</ins>
  <p>{text}  <ins>That’s all we know.</ins>
"""


def google_error(
    code: int, status: str, message: str, details: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """Google's JSON error envelope."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return {"error": error}


def _html_error(code: int) -> str:
    if code == 404:
        return _HTML_ERROR.format(
            code=404,
            title="Not Found",
            text="The requested URL was not found on this server.",
        )
    return _HTML_ERROR.format(
        code=code,
        title="Server Error",
        text="The server encountered a temporary error and could not complete your request."
        "<p>Please try again in 30 seconds.",
    )


class FakeGemini(FakeServer):
    OUTCOMES: ClassVar[frozenset[str]] = frozenset(
        {
            "success",
            "success_image_only",
            "success_with_thoughts",
            "key_suspended",
            "no_image",
            "image_safety",
            "prohibited",
            "finish",
            "text_only",
            "blocked_prompt",
            "rate_limited",
            "permission_denied",
            "internal",
            "unavailable",
            "deadline_exceeded",
            "bad_gateway_html",
            "malformed_json",
            "hang",
        }
    )

    def __init__(
        self,
        *,
        api_key: str = "test-gemini-key",
        models: Sequence[str] = KNOWN_MODELS,
        retry_delay: str | None = "1s",
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        super().__init__(api_key=api_key)
        self.models = tuple(models)
        self.retry_delay = retry_delay  # RetryInfo.retryDelay of rate_limited (None: omitted)
        self.max_request_bytes = max_request_bytes
        self.response_ids: list[str] = []  # responseId of every 200 JSON answer, in order

    async def handle(self, exchange: Exchange) -> None:
        record = exchange.record
        match = _PATH.fullmatch(record.path)
        if record.method != "POST" or match is None:
            await exchange.respond_html(404, _html_error(404))
            return
        key = record.headers.get("x-goog-api-key") or record.query.get("key")
        if key != self.api_key:
            await exchange.respond_json(400, _api_key_invalid())
            return
        model = match["model"]
        if model not in self.models:
            message = (
                f"models/{model} is not found for API version v1beta, or is not supported for "
                "generateContent. Call ListModels to see the list of available models and their "
                "supported methods."
            )
            await exchange.respond_json(404, google_error(404, "NOT_FOUND", message))
            return
        try:
            parsed = self._parse(record.body, model)
        except RequestError as exc:
            details = []
            if exc.field_violation:
                details.append(
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [
                            {"field": exc.field_violation, "description": exc.message}
                        ],
                    }
                )
            body = google_error(400, "INVALID_ARGUMENT", exc.message, details)
            await exchange.respond_json(400, body)
            return
        record.files, record.text = parsed.images, parsed.text
        chosen = await self.start_outcome(exchange)
        if chosen is not None:
            await self._answer(exchange, chosen, model, parsed)

    def _parse(self, body: bytes, model: str) -> GeminiRequest:
        if len(body) > self.max_request_bytes:
            raise RequestError(
                f"Request payload size exceeds the limit: {self.max_request_bytes} bytes."
            )
        try:
            document = json.loads(body)
        except ValueError:
            raise RequestError(
                "Invalid JSON payload received. Unexpected token.\n" + body[:40].decode("latin-1")
            ) from None
        return parse_request(document, model)

    async def _answer(
        self, exchange: Exchange, chosen: Outcome, model: str, request: GeminiRequest
    ) -> None:
        name, params = chosen.name, chosen.params
        drip = float(params.get("drip", 0.0))
        if name in _ERRORS:
            code, status, message = _ERRORS[name]
            await exchange.respond_json(code, google_error(code, status, message), drip=drip)
        elif name == "key_suspended":  # Google's 403 names the caller's key
            message = f"Permission denied: Consumer 'api_key:{self.api_key}' has been suspended."
            error = google_error(403, "PERMISSION_DENIED", message)
            await exchange.respond_json(403, error, drip=drip)
        elif name == "rate_limited":
            delay = params.get("retry_delay", self.retry_delay)
            await exchange.respond_json(429, _rate_limited(model, delay), drip=drip)
        elif name == "bad_gateway_html":
            await exchange.respond_html(502, _html_error(502), drip=drip)
        elif name == "malformed_json":
            document = self._document(model, request, _candidate([_text_part("Here")], "STOP"))
            whole = json.dumps(document).encode()
            body = whole[: len(whole) // 2]
            await exchange.respond(200, body, "application/json; charset=UTF-8", drip=drip)
        else:
            document = await self._success_like(name, params, model, request)
            await exchange.respond_json(200, document, drip=drip)

    async def _success_like(
        self, name: str, params: Any, model: str, request: GeminiRequest
    ) -> dict[str, Any]:
        if name == "blocked_prompt":
            document = self._document(model, request, None)
            document["promptFeedback"] = {"blockReason": params.get("reason", "PROHIBITED_CONTENT")}
            return document
        if name == "text_only":
            text = "I can describe the photo, but I can't edit it as requested."
            return self._document(model, request, _candidate([_text_part(text)], "STOP"))
        if name in _FINISH or name == "finish":
            reason = _FINISH.get(name) or str(params["reason"])
            candidate = _candidate(
                None, reason, params.get("message", _FINISH_MESSAGES.get(reason))
            )
            return self._document(model, request, candidate)
        source = request.images[0].data if request.images else None
        final = await trio.to_thread.run_sync(partial(self._result_image, source, model, request))
        if name == "success_image_only":
            parts = [_image_part(final)]
        elif name == "success_with_thoughts":
            draft = await trio.to_thread.run_sync(thought_image, source)
            parts = [
                {
                    "text": "**Planning the edit**\n\nKeeping the face, changing the style.",
                    "thought": True,
                },
                {**_image_part(draft), "thought": True},
                _text_part("Here is the edited photo."),
                {
                    **_image_part(final),
                    "thoughtSignature": base64.b64encode(secrets.token_bytes(24)).decode(),
                },
            ]
        else:
            parts = [_text_part("Here is the edited photo."), _image_part(final)]
        thoughts = 180 if name == "success_with_thoughts" else 0
        return self._document(model, request, _candidate(parts, "STOP"), thoughts=thoughts)

    def _result_image(self, source: bytes | None, model: str, request: GeminiRequest) -> bytes:
        ratio = None
        if request.aspect_ratio:
            width, height = request.aspect_ratio.split(":")
            ratio = int(width) / int(height)
        pixels = (
            _MEGAPIXELS[request.image_size or "1K"]
            if model.startswith("gemini-3")
            else _MEGAPIXELS["1K"]
        )
        return derive_image(source, fmt="png", max_pixels=pixels, aspect_ratio=ratio)

    def _document(
        self,
        model: str,
        request: GeminiRequest,
        candidate: dict[str, Any] | None,
        *,
        thoughts: int = 0,
    ) -> dict[str, Any]:
        response_id = secrets.token_urlsafe(16)[:22]
        self.response_ids.append(response_id)
        text_tokens = max(1, len(request.text) // 4)
        image_tokens = 258 * len(request.images)
        output_tokens = 1290 if candidate and "content" in candidate else 0
        usage: dict[str, Any] = {
            "promptTokenCount": text_tokens + image_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": text_tokens + image_tokens + output_tokens + thoughts,
            "promptTokensDetails": [
                {"modality": "TEXT", "tokenCount": text_tokens},
                {"modality": "IMAGE", "tokenCount": image_tokens},
            ],
        }
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        document: dict[str, Any] = {}
        if candidate is not None:
            document["candidates"] = [candidate]
        document.update(usageMetadata=usage, modelVersion=model, responseId=response_id)
        return document


def _text_part(text: str) -> dict[str, Any]:
    return {"text": text}


def _image_part(png: bytes) -> dict[str, Any]:
    return {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode("ascii")}}


def _candidate(
    parts: list[dict[str, Any]] | None, reason: str, message: str | None = None
) -> dict[str, Any]:
    candidate: dict[str, Any] = {}
    if parts is not None:  # refusals come without content, as in production
        candidate["content"] = {"parts": parts, "role": "model"}
    candidate["finishReason"] = reason
    if message:
        candidate["finishMessage"] = message
    candidate["index"] = 0
    return candidate


def _api_key_invalid() -> dict[str, Any]:
    message = "API key not valid. Please pass a valid API key."
    return google_error(
        400,
        "INVALID_ARGUMENT",
        message,
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": message,
            },
        ],
    )


def _rate_limited(model: str, retry_delay: str | None) -> dict[str, Any]:
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {
                    "quotaMetric": (
                        "generativelanguage.googleapis.com/generate_content_free_tier_requests"
                    ),
                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    "quotaDimensions": {"location": "global", "model": model},
                    "quotaValue": "10",
                }
            ],
        },
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }
            ],
        },
    ]
    if retry_delay is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}
        )
    message = (
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
    )
    return google_error(429, "RESOURCE_EXHAUSTED", message, details)
