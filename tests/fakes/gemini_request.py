"""Gemini ``generateContent`` request checks, as strict as the real API where it matters.

Proto3 JSON accepts every field in camelCase or snake_case, so names are normalised to camelCase
before checking.  Unknown names are rejected at the levels where a typo is likely and the field
list is stable (top level, contents, parts), as Google does ("Cannot find field").
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.base import UploadedFile
from tests.fakes.images import is_image

__all__ = ["ASPECT_RATIOS", "GeminiRequest", "RequestError", "parse_request"]

ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
IMAGE_SIZES = ("1K", "2K", "4K")
INPUT_MIME_TYPES = ("image/png", "image/jpeg", "image/webp", "image/heic", "image/heif")
MODALITIES = ("TEXT", "IMAGE", "AUDIO")

_TOP_LEVEL = {
    "contents",
    "generationConfig",
    "safetySettings",
    "systemInstruction",
    "tools",
    "toolConfig",
    "cachedContent",
    "model",
}
_CONTENT = {"role", "parts"}
_PART = {
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
    "thought",
    "thoughtSignature",
    "videoMetadata",
    "partMetadata",
    "mediaResolution",
}


class RequestError(Exception):
    """A 400 INVALID_ARGUMENT the real API would send."""

    def __init__(self, message: str, field_violation: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field_violation = field_violation  # location for a google.rpc.BadRequest detail


@dataclass
class GeminiRequest:
    images: list[UploadedFile] = field(default_factory=list)
    text: str = ""
    aspect_ratio: str | None = None
    image_size: str | None = None


def _camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


def _normalised(obj: dict[str, Any], known: set[str] | None, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = _camel(key)
        if known is not None and name not in known:
            at = f" at '{where}'" if where else ""
            raise RequestError(
                f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.',
                where or None,
            )
        out[name] = value
    return out


def _parse_part(raw: Any, where: str, result: GeminiRequest) -> None:
    if not isinstance(raw, dict):
        raise RequestError(f"Invalid JSON payload received. Expected an object at '{where}'.")
    part = _normalised(raw, _PART, where)
    if "text" in part:
        if not isinstance(part["text"], str):
            raise RequestError(f"Invalid value at '{where}.text' (TYPE_STRING)", where)
        result.text = f"{result.text}\n{part['text']}" if result.text else part["text"]
        return
    if "inlineData" not in part:
        if part.keys() & {"fileData", "functionCall", "functionResponse"}:
            return  # legal, but nothing a photo booth sends; ignored
        raise RequestError(
            f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have one "
            "initialized field\n",
            where,
        )
    blob = part["inlineData"]
    if not isinstance(blob, dict):
        raise RequestError(f"Invalid JSON payload received. Expected an object at '{where}'.")
    blob = _normalised(blob, {"mimeType", "data", "displayName"}, f"{where}.inline_data")
    mime = blob.get("mimeType")
    data = blob.get("data")
    if not mime:
        raise RequestError(
            f"* GenerateContentRequest.{where}.inline_data.mime_type: "
            "mime_type must be specified\n",
            where,
        )
    if not isinstance(data, str) or not data:
        raise RequestError(f"* GenerateContentRequest.{where}.inline_data.data: missing data\n")
    try:
        # Proto3 JSON bytes: standard or URL-safe alphabet, padding optional.
        standard = data.replace("-", "+").replace("_", "/").rstrip("=")
        decoded = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(
            f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), "
            f'Base64 decoding failed for "{data[:40]}"',
            where,
        ) from None
    if mime not in INPUT_MIME_TYPES:
        raise RequestError(f"Unsupported MIME type: {mime}")
    if mime in ("image/png", "image/jpeg", "image/webp") and not is_image(decoded):
        raise RequestError(
            "Unable to process input image. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting"
        )
    result.images.append(UploadedFile(where, None, mime, decoded))


def _parse_generation_config(raw: Any, model: str, result: GeminiRequest) -> None:
    if not isinstance(raw, dict):
        raise RequestError(
            "Invalid JSON payload received. Expected an object at 'generation_config'."
        )
    config = _normalised(raw, None, "generation_config")
    mime = config.get("responseMimeType")
    if isinstance(mime, str) and mime.startswith("image/"):
        raise RequestError(
            "* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes are "
            "`text/plain`, `application/json`, `application/xml`, `application/yaml` and "
            "`text/x.enum`.\n"
        )
    for index, modality in enumerate(config.get("responseModalities") or []):
        if modality not in MODALITIES:
            raise RequestError(
                f"Invalid value at 'generation_config.response_modalities[{index}]' "
                "(type.googleapis.com/google.ai.generativelanguage.v1beta.GenerationConfig"
                f'.Modality), "{modality}"'
            )
    image_config = config.get("imageConfig")
    if image_config is None:
        return
    if not isinstance(image_config, dict):
        raise RequestError("Invalid JSON payload received. Expected an object at 'image_config'.")
    image_config = _normalised(image_config, None, "generation_config.image_config")
    ratio = image_config.get("aspectRatio")
    if ratio is not None:
        if ratio not in ASPECT_RATIOS:
            raise RequestError(
                f"Unsupported aspect ratio: {ratio}. Supported values are: "
                + ", ".join(ASPECT_RATIOS)
            )
        result.aspect_ratio = ratio
    size = image_config.get("imageSize")
    if size is not None:
        if not model.startswith("gemini-3"):
            raise RequestError(f"Image size is not supported for model {model}.")
        if size not in IMAGE_SIZES:
            raise RequestError(
                f"Unsupported image size: {size}. Supported values are: " + ", ".join(IMAGE_SIZES)
            )
        result.image_size = size


def parse_request(document: Any, model: str) -> GeminiRequest:
    """Validate a parsed JSON body; raises ``RequestError`` with Google's wording."""
    if not isinstance(document, dict):
        raise RequestError("Invalid JSON payload received. Expected an object.")
    body = _normalised(document, _TOP_LEVEL, "")
    contents = body.get("contents")
    if not contents:
        raise RequestError("* GenerateContentRequest.contents: contents is not specified\n")
    if not isinstance(contents, list):
        raise RequestError("Invalid JSON payload received. 'contents' must be a list.")
    result = GeminiRequest()
    for c_index, raw_content in enumerate(contents):
        where = f"contents[{c_index}]"
        if not isinstance(raw_content, dict):
            raise RequestError(f"Invalid JSON payload received. Expected an object at '{where}'.")
        content = _normalised(raw_content, _CONTENT, where)
        parts = content.get("parts")
        if not parts or not isinstance(parts, list):
            raise RequestError(
                f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n"
            )
        for p_index, part in enumerate(parts):
            _parse_part(part, f"{where}.parts[{p_index}]", result)
    if "generationConfig" in body:
        _parse_generation_config(body["generationConfig"], model, result)
    return result
