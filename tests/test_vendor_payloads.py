"""Vendor answers: JSON parsed once per response, strict base64 (pure, no HTTP)."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest

from photochangerd.providers import gemini, openai_images, vendor_http
from photochangerd.providers.base import ProviderRejected, ProviderResult
from photochangerd.providers.vendor_http import VendorResponse, decode_base64

IMAGE = bytes(range(256)) * 40
ENCODED = base64.b64encode(IMAGE).decode("ascii")
# Not base64: bad padding, a character outside the alphabet, a newline, data after the
# padding, non-ASCII, not a string at all.
INVALID: list[Any] = ["abc", "ab!d", ENCODED[:8] + "\n" + ENCODED[8:], "YQ==YQ==", "ééééé", 5, []]


def response(document: Any, status: int = 200) -> VendorResponse:
    return VendorResponse(status, {}, json.dumps(document).encode())


def test_json_is_parsed_once_and_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_decode = vendor_http._decode_json

    def counting_decode(text: Any) -> Any:
        calls.append(1)
        return real_decode(text)

    monkeypatch.setattr(vendor_http, "_decode_json", counting_decode)
    answer = response({"responseId": "r-1", "candidates": []})
    assert answer.json() is answer.json()
    assert gemini._response_id(answer) == "r-1"
    assert len(calls) == 1
    assert answer == VendorResponse(200, {}, answer.body)  # the cache is not part of equality


def test_json_nested_past_the_stack_is_a_value_error() -> None:
    # Callers catch ValueError only (a vendor's garbage is a provider error, not a 500).
    deep = VendorResponse(200, {}, b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        deep.json()


def test_a_body_that_is_not_json_raises_every_time() -> None:
    answer = VendorResponse(502, {}, b"<html>bad gateway")
    for _ in range(2):
        with pytest.raises(ValueError):
            answer.json()


def test_decode_base64_round_trips_and_rejects() -> None:
    assert decode_base64(ENCODED) == IMAGE
    assert decode_base64(ENCODED.encode()) == IMAGE
    for bad in INVALID:
        with pytest.raises(ValueError):
            decode_base64(bad)


def _gemini_answer(data: Any) -> VendorResponse:
    part = {"inlineData": {"mimeType": "image/png", "data": data}}
    return response({"candidates": [{"content": {"parts": [part]}}]})


def test_gemini_decodes_the_image_and_rejects_invalid_base64() -> None:
    provider = object.__new__(gemini.GeminiProvider)  # _classify uses no instance state
    result = provider._classify(_gemini_answer(ENCODED))
    assert result == ProviderResult(IMAGE, "image/png")
    for bad in filter(None, INVALID):  # an empty value is no image part at all
        outcome = provider._classify(_gemini_answer(bad))
        assert isinstance(outcome, tuple), bad
        retry, error = outcome
        assert retry == 2.0
        assert isinstance(error, ProviderRejected)
        assert str(error) == "gemini returned an image that is not valid base64"


def test_openai_decodes_the_image_and_rejects_invalid_base64() -> None:
    ok = response({"data": [{"b64_json": ENCODED}], "output_format": "webp"})
    assert openai_images._result(ok, "png") == ProviderResult(IMAGE, "image/webp")
    for bad in INVALID:
        answer = response({"data": [{"b64_json": bad}]})
        with pytest.raises(ProviderRejected) as caught:
            openai_images._result(answer, "png")
        assert str(caught.value) == (
            f"openai answered 200 without a usable image: {answer.snippet()}"
        )


@pytest.mark.parametrize("size", [0, 1, 2, 3, 196_607, 196_608, 196_609, 1_000_001])
async def test_json_with_images_streams_exactly_what_json_would_say(size: int) -> None:
    import pybase64

    from photochangerd.providers.vendor_http import (
        BASE64_CHUNK,
        TLS_BASE64_CHUNK,
        JsonWithImages,
        base64_piece,
    )

    photo, template = os.urandom(size), os.urandom(7)
    body = JsonWithImages()
    prompt = 'a "quoted" \u0000 prompt é \\u0000'
    body.seal(
        {"parts": [{"data": body.image(photo)}, {"text": prompt}, {"data": body.image(template)}]}
    )
    sent = b"".join([chunk async for chunk in body.chunks()])
    assert len(sent) == body.length  # the Content-Length the request carries
    parts = json.loads(sent)["parts"]
    assert pybase64.b64decode(parts[0]["data"], validate=True) == photo
    assert parts[1]["text"] == prompt and pybase64.b64decode(parts[2]["data"]) == template
    assert b"".join([chunk async for chunk in body.chunks()]) == sent  # a retry sends it again
    # Over TLS in smaller pieces (vendor_http.TLS_BASE64_CHUNK): the same bytes.
    pieces = [chunk async for chunk in body.chunks(base64_piece("https://vendor.example"))]
    assert b"".join(pieces) == sent
    # three pieces of JSON text around the two images, the photo's base64 in pieces, the template's
    assert len(pieces) == 3 + -(-size // TLS_BASE64_CHUNK) + 1
    assert base64_piece("http://gpu-box.lan:7860") == BASE64_CHUNK
    with pytest.raises(ValueError, match="multiple of 3"):  # a padded middle piece: bad base64
        [chunk async for chunk in body.chunks(4)]
