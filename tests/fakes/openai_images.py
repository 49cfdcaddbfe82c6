"""Fake OpenAI image edits: ``POST {base}/v1/images/edits`` (multipart).

Checks before scripting (nothing consumed), each answered with OpenAI's
``{"error":{"message","type","param","code"}}``: unknown path → 404 ``Invalid URL``; missing
Bearer → 401 (code null), wrong → 401 ``invalid_api_key``; not multipart → 400; unknown
parameter → 400 ``unknown_parameter`` (``response_format`` included: gpt-image models have none);
``image``/``image[]`` missing → 400 ``missing_required_parameter``, more than 16, over 50 MB, a
part Content-Type other than image/png|jpeg|webp (guessed from the filename when absent) →
``unsupported_file_mimetype``, undecodable → ``invalid_image_file``; ``prompt`` missing or over
32 000 chars; ``model``, ``size``, ``quality``, ``output_format``, ``input_fidelity``,
``background``, ``n``, ``output_compression`` out of their sets → 400 ``invalid_value``.

Outcomes (``FakeOpenAIImages.OUTCOMES``):

* ``success`` — ``{"created","background","data":[{"b64_json"}]*n,"output_format","quality",
  "size","usage"}``; the image is the first input in greyscale, centre-cropped and resized to
  the size (``auto``: 1536x1024 / 1024x1536 / 1024x1024 by the input's shape), encoded in
  ``output_format``.  ``quality``/``size`` in the body are the resolved values (never ``auto``).
* ``moderation_blocked`` — 400, type ``image_generation_user_error``.
* ``rate_limited`` — 429 ``rate_limit_exceeded`` with ``Retry-After`` (``retry_after=``,
  default ``FakeOpenAIImages.retry_after`` = ``"1"``; None omits the header).
* ``insufficient_quota`` — 429 ``insufficient_quota`` (no Retry-After).
* ``server_error`` 500, ``unavailable`` 503, ``bad_gateway_html`` 502 (HTML),
  ``malformed_json`` (200, truncated body), ``hang``, ``slow(seconds)``; any outcome takes
  ``delay=`` and ``drip=``.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import secrets
import time
from collections.abc import Sequence
from functools import partial
from typing import Any, ClassVar

import trio

from tests.fakes.base import Exchange, FakeServer, Outcome, RecordedRequest, UploadedFile
from tests.fakes.images import derive_image, image_size, is_image

__all__ = ["MODELS", "FakeOpenAIImages"]

MODELS = ("gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5")
SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
QUALITIES = ("low", "medium", "high", "auto")
FORMATS = ("png", "jpeg", "webp")
FIDELITIES = ("high", "low")
BACKGROUNDS = ("transparent", "opaque", "auto")
INPUT_TYPES = ("image/png", "image/jpeg", "image/webp")
MAX_IMAGES = 16
MAX_IMAGE_BYTES = 50 * 1024 * 1024
MAX_PROMPT = 32_000
_KNOWN_FIELDS = {
    "image",
    "image[]",
    "mask",
    "prompt",
    "model",
    "size",
    "quality",
    "output_format",
    "output_compression",
    "input_fidelity",
    "background",
    "n",
    "user",
    "stream",
    "partial_images",
}
_HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    "</body>\r\n</html>\r\n"
)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.document = {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _invalid(param: str, value: str, allowed: Sequence[str]) -> ApiError:
    listed = ", ".join(f"'{a}'" for a in allowed[:-1]) + f", and '{allowed[-1]}'"
    return ApiError(
        400,
        f"Invalid value: '{value}'. Supported values are: {listed}.",
        param=param,
        code="invalid_value",
    )


def _choice(form: dict[str, str], name: str, allowed: Sequence[str], default: str) -> str:
    value = form.get(name, default)
    if value not in allowed:
        raise _invalid(name, value, allowed)
    return value


def _int_in(form: dict[str, str], name: str, low: int, high: int, default: int) -> int:
    raw = form.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(
            400, f"Invalid type for '{name}': expected an integer.", param=name, code="invalid_type"
        ) from None
    if not low <= value <= high:
        raise ApiError(
            400,
            f"Invalid '{name}': {value} is out of range, expected {low}..{high}.",
            param=name,
            code="integer_out_of_range",
        )
    return value


def _file_type(upload: UploadedFile) -> str:
    content_type = (upload.content_type or "").split(";")[0].strip().lower()
    if not content_type and upload.filename:
        content_type = mimetypes.guess_type(upload.filename)[0] or ""
    return content_type or "application/octet-stream"


class EditRequest:
    """A validated edit request."""

    def __init__(self, record: RecordedRequest) -> None:
        form = record.form
        if not record.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ApiError(
                400,
                "Invalid Content-Type header "
                f"({record.headers.get('content-type', 'none')}), expected multipart/form-data.",
            )
        fields = set(form) | {f.field for f in record.files}
        unknown = sorted(fields - _KNOWN_FIELDS)
        if unknown:
            raise ApiError(
                400,
                f"Unknown parameter: '{unknown[0]}'.",
                param=unknown[0],
                code="unknown_parameter",
            )
        self.images = [f for f in record.files if f.field in ("image", "image[]")]
        if not self.images:
            raise ApiError(
                400,
                "Missing required parameter: 'image'.",
                param="image",
                code="missing_required_parameter",
            )
        if len(self.images) > MAX_IMAGES:
            raise ApiError(
                400,
                f"Invalid 'image': too many images, expected at most {MAX_IMAGES}.",
                param="image",
                code="array_above_max_length",
            )
        for number, upload in enumerate(self.images, start=1):
            self._check_image(number, upload)
        prompt = form.get("prompt")
        if not prompt:
            raise ApiError(
                400,
                "Missing required parameter: 'prompt'.",
                param="prompt",
                code="missing_required_parameter",
            )
        if len(prompt) > MAX_PROMPT:
            raise ApiError(
                400,
                f"Invalid 'prompt': string too long. Expected a string with maximum length "
                f"{MAX_PROMPT}, but got a string with length {len(prompt)} instead.",
                param="prompt",
                code="string_above_max_length",
            )
        if "model" not in form:
            # The API's default is dall-e-2, which this booth never wants.
            raise _invalid("model", "dall-e-2", MODELS)
        self.model = _choice(form, "model", MODELS, "")
        self.size = _choice(form, "size", SIZES, "auto")
        self.quality = _choice(form, "quality", QUALITIES, "auto")
        self.output_format = _choice(form, "output_format", FORMATS, "png")
        _choice(form, "input_fidelity", FIDELITIES, "low")
        self.background = _choice(form, "background", BACKGROUNDS, "auto")
        self.n = _int_in(form, "n", 1, 10, 1)
        compression = _int_in(form, "output_compression", 0, 100, 100)
        if self.output_format == "png" and compression < 100:
            raise ApiError(
                400,
                "Compression less than 100 is not supported for PNG output format.",
                param="output_compression",
                code="invalid_value",
            )
        if self.background == "transparent" and self.output_format == "jpeg":
            raise ApiError(
                400,
                "Transparent background is not supported for jpeg output format.",
                param="background",
                code="invalid_value",
            )
        self.prompt = prompt

    @staticmethod
    def _check_image(number: int, upload: UploadedFile) -> None:
        content_type = _file_type(upload)
        if content_type not in INPUT_TYPES:
            raise ApiError(
                400,
                f"Invalid file '{upload.field}': unsupported mimetype ('{content_type}'). "
                "Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'.",
                param=upload.field,
                code="unsupported_file_mimetype",
            )
        if upload.size > MAX_IMAGE_BYTES:
            raise ApiError(
                400,
                f"Invalid file '{upload.field}': file too large, expected at most 50MB.",
                param=upload.field,
                code="file_too_large",
            )
        if not is_image(upload.data):
            raise ApiError(
                400,
                f"Invalid image file or mode for image {number}, please check your image file.",
                param=upload.field,
                code="invalid_image_file",
            )

    def resolved_size(self) -> tuple[int, int]:
        if self.size != "auto":
            width_text, height_text = self.size.split("x")
            return int(width_text), int(height_text)
        width, height = image_size(self.images[0].data)
        if width > height * 1.15:
            return 1536, 1024
        if height > width * 1.15:
            return 1024, 1536
        return 1024, 1024


class FakeOpenAIImages(FakeServer):
    OUTCOMES: ClassVar[frozenset[str]] = frozenset(
        {
            "success",
            "moderation_blocked",
            "rate_limited",
            "insufficient_quota",
            "server_error",
            "unavailable",
            "bad_gateway_html",
            "malformed_json",
            "hang",
        }
    )

    def __init__(self, *, api_key: str = "test-openai-key", retry_after: str | None = "1") -> None:
        super().__init__(api_key=api_key)
        self.retry_after = retry_after

    async def handle(self, exchange: Exchange) -> None:
        record = exchange.record
        try:
            if record.method != "POST" or record.path != "/v1/images/edits":
                raise ApiError(404, f"Invalid URL ({record.method} {record.path})")
            self._check_key(record.headers.get("authorization", ""))
            request = EditRequest(record)
        except ApiError as exc:
            await exchange.respond_json(exc.status, exc.document, _headers())
            return
        chosen = await self.start_outcome(exchange)
        if chosen is not None:
            await self._answer(exchange, chosen, request)

    def _check_key(self, authorization: str) -> None:
        if not authorization.startswith("Bearer ") or not authorization[7:].strip():
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), "
                "or as the password field (with blank username) if you're accessing the API from "
                "your browser and are prompted for a username and password. You can obtain an "
                "API key from https://platform.openai.com/account/api-keys.",
            )
        key = authorization[7:].strip()
        if key != self.api_key:
            shown = f"{key[:3]}{'*' * 10}{key[-4:]}" if len(key) > 8 else "*" * len(key)
            raise ApiError(
                401,
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )

    async def _answer(self, exchange: Exchange, chosen: Outcome, request: EditRequest) -> None:
        name, params = chosen.name, chosen.params
        drip = float(params.get("drip", 0.0))
        headers = _headers()
        if name == "success":
            document = await self._success(request)
            await exchange.respond_json(200, document, headers, drip=drip)
        elif name == "malformed_json":
            body = json.dumps({"created": int(time.time()), "data": [{"b64_json": "iVBORw0K"}]})
            cut = body.encode()[: len(body) // 2]
            await exchange.respond(200, cut, "application/json", headers, drip=drip)
        elif name == "bad_gateway_html":
            await exchange.respond_html(502, _HTML_502, drip=drip)
        else:
            error = _error_for(name, request.model)
            if name == "rate_limited":
                retry_after = params.get("retry_after", self.retry_after)
                if retry_after is not None:
                    headers.append(("retry-after", str(retry_after)))
                headers += [
                    ("x-ratelimit-limit-requests", "50"),
                    ("x-ratelimit-remaining-requests", "0"),
                    ("x-ratelimit-reset-requests", f"{retry_after or 1}s"),
                ]
            await exchange.respond_json(error.status, error.document, headers, drip=drip)

    async def _success(self, request: EditRequest) -> dict[str, Any]:
        size = request.resolved_size()
        image = await trio.to_thread.run_sync(
            partial(
                derive_image, request.images[0].data, fmt=request.output_format, exact_size=size
            )
        )
        encoded = base64.b64encode(image).decode("ascii")
        image_tokens = 323 * len(request.images)
        text_tokens = max(1, len(request.prompt) // 4)
        output_tokens = {"low": 272, "medium": 1056, "high": 4160}.get(request.quality, 1056)
        return {
            "created": int(time.time()),
            "background": "opaque" if request.background == "auto" else request.background,
            "data": [{"b64_json": encoded} for _ in range(request.n)],
            "output_format": request.output_format,
            "quality": "medium" if request.quality == "auto" else request.quality,
            "size": f"{size[0]}x{size[1]}",
            "usage": {
                "input_tokens": image_tokens + text_tokens,
                "input_tokens_details": {"image_tokens": image_tokens, "text_tokens": text_tokens},
                "output_tokens": output_tokens * request.n,
                "total_tokens": image_tokens + text_tokens + output_tokens * request.n,
            },
        }


def _headers() -> list[tuple[str, str]]:
    return [
        ("x-request-id", f"req_{secrets.token_hex(16)}"),
        ("openai-version", "2020-10-01"),
        ("openai-processing-ms", "1234"),
    ]


def _error_for(name: str, model: str) -> ApiError:
    if name == "moderation_blocked":
        return ApiError(
            400,
            "Your request was rejected as a result of our safety system. Your request may "
            "contain content that is not allowed by our safety system.",
            type_="image_generation_user_error",
            code="moderation_blocked",
        )
    if name == "rate_limited":
        return ApiError(
            429,
            f"Rate limit reached for {model} in organization org-fake on images per min "
            "(IPM): Limit 5, Used 5, Requested 1. Please try again in 1s. Visit "
            "https://platform.openai.com/account/rate-limits to learn more.",
            type_="requests",
            code="rate_limit_exceeded",
        )
    if name == "insufficient_quota":
        return ApiError(
            429,
            "You exceeded your current quota, please check your plan and billing details. For "
            "more information on this error, read the docs: "
            "https://platform.openai.com/docs/guides/error-codes/api-errors.",
            type_="insufficient_quota",
            code="insufficient_quota",
        )
    if name == "server_error":
        return ApiError(
            500,
            "The server had an error while processing your request. Sorry about that!",
            type_="server_error",
        )
    if name == "unavailable":
        return ApiError(
            503,
            "The engine is currently overloaded, please try again later.",
            type_="server_error",
        )
    raise ValueError(f"no error for outcome {name!r}")
