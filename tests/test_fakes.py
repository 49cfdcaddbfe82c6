"""The fake vendor servers speak the vendors' wire formats (docs/providers.md, "The test
fakes"), over real HTTP.

The drivers' tests trust these fakes, so every scripted outcome, key check and validation
error is pinned here: status, JSON shape, and what the fake recorded.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
import trio
from PIL import Image

from tests.fakes import (
    Exchange,
    FakeGemini,
    FakeOpenAIImages,
    FakeServer,
    FakeTurbotext,
    outcome,
    slow,
)
from tests.fakes.images import looks_derived_from
from tests.fakes.turbotext import ssl_context
from tests.support.images import make_jpeg, make_png, make_webp

PHOTO = make_jpeg(120, 80)  # landscape, colourful: a greyscale result is visibly "edited"
TEMPLATE = make_png(40, 40)
GEMINI_MODEL = "gemini-2.5-flash-image"
PRO_MODEL = "gemini-3-pro-image-preview"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10, verify=ssl_context()) as client:
        yield client


async def _started(nursery: trio.Nursery, fake: FakeServer) -> FakeServer:
    url = await nursery.start(fake.serve)
    assert url == fake.url and url.startswith("http://127.0.0.1:")
    return fake


def _no_bugs(fake: FakeServer) -> None:
    assert fake.internal_errors == []


@pytest.fixture
async def gemini(nursery: trio.Nursery) -> AsyncIterator[FakeGemini]:
    fake = FakeGemini()
    await _started(nursery, fake)
    yield fake
    _no_bugs(fake)


@pytest.fixture
async def turbotext(nursery: trio.Nursery) -> AsyncIterator[FakeTurbotext]:
    fake = FakeTurbotext(reconnects=0)
    await _started(nursery, fake)
    yield fake
    _no_bugs(fake)


@pytest.fixture
async def openai(nursery: trio.Nursery) -> AsyncIterator[FakeOpenAIImages]:
    fake = FakeOpenAIImages()
    await _started(nursery, fake)
    yield fake
    _no_bugs(fake)


# --- scripting (shared) -------------------------------------------------------------------


def test_script_vocabulary_is_checked() -> None:
    fake = FakeGemini()
    with pytest.raises(ValueError, match="unknown outcome 'sucess'"):
        fake.script("sucess")
    with pytest.raises(ValueError):
        fake.default = "moderation_blocked"  # an OpenAI outcome, not a Gemini one
    fake.script("no_image", "slow(0.25)", slow(1, then="unavailable"))
    assert [fake.next_outcome() for _ in range(4)] == [
        outcome("no_image"),
        outcome("success", delay=0.25),
        outcome("unavailable", delay=1),
        outcome("success"),
    ]
    fake.default = "internal"
    assert fake.next_outcome().name == "internal"


# --- Gemini -------------------------------------------------------------------------------


def gemini_body(
    *,
    images: tuple[bytes, ...] = (PHOTO,),
    camel: bool = False,
    prompt: str = "Make it a watercolour",
    generation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    for data in images:
        mime = "image/png" if data.startswith(b"\x89PNG") else "image/jpeg"
        if camel:
            parts.append({"inlineData": {"mimeType": mime, "data": b64(data)}})
        else:
            parts.append({"inline_data": {"mime_type": mime, "data": b64(data)}})
    parts.append({"text": prompt})
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": parts}]}
    body["generationConfig"] = (
        {"responseModalities": ["IMAGE"]} if generation is None else generation
    )
    return body


async def gemini_post(
    http: httpx.AsyncClient,
    fake: FakeGemini,
    body: Any,
    *,
    model: str = GEMINI_MODEL,
    key: str | None = "test-gemini-key",
    query: str = "",
) -> httpx.Response:
    headers = {"x-goog-api-key": key} if key is not None else {}
    url = f"{fake.url}/v1beta/models/{model}:generateContent{query}"
    return await http.post(url, json=body, headers=headers)


def image_parts(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in document["candidates"][0]["content"]["parts"] if "inlineData" in p]


@pytest.mark.parametrize("camel", [False, True], ids=["snake_case", "camelCase"])
async def test_gemini_success_both_casings(
    gemini: FakeGemini, http: httpx.AsyncClient, camel: bool
) -> None:
    response = await gemini_post(http, gemini, gemini_body(images=(PHOTO, TEMPLATE), camel=camel))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    candidate = document["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    parts = candidate["content"]["parts"]
    assert candidate["content"]["role"] == "model"
    assert list(parts[0]) == ["text"]  # a text part comes first
    inline = parts[1]["inlineData"]  # responses are camelCase whatever the request used
    assert inline["mimeType"] == "image/png"
    result = base64.b64decode(inline["data"])
    assert result.startswith(b"\x89PNG")
    assert looks_derived_from(result, PHOTO)
    assert not looks_derived_from(result, TEMPLATE)
    assert decode(result).size == (120, 80)  # not upscaled
    assert document["modelVersion"] == GEMINI_MODEL
    assert document["responseId"] == gemini.response_ids[-1]
    usage = document["usageMetadata"]
    assert usage["totalTokenCount"] >= usage["promptTokenCount"] > 0

    (record,) = gemini.requests
    assert record.outcome == "success" and record.status == 200 and record.completed
    assert not record.disconnected
    assert [f.data for f in record.files] == [PHOTO, TEMPLATE]
    assert [f.content_type for f in record.files] == ["image/jpeg", "image/png"]
    assert record.text == "Make it a watercolour"
    assert record.headers["x-goog-api-key"] == "test-gemini-key"
    assert record.json["generationConfig"] == {"responseModalities": ["IMAGE"]}


async def test_gemini_aspect_ratio_and_pro_image_size(
    gemini: FakeGemini, http: httpx.AsyncClient
) -> None:
    body = gemini_body(generation={"imageConfig": {"aspectRatio": "1:1"}})
    response = await gemini_post(http, gemini, body)
    (part,) = image_parts(response.json())
    result = base64.b64decode(part["inlineData"]["data"])
    assert decode(result).size == (80, 80)
    assert looks_derived_from(result, PHOTO)

    body = gemini_body(generation={"image_config": {"aspect_ratio": "3:2", "image_size": "2K"}})
    response = await gemini_post(http, gemini, body, model=PRO_MODEL)
    assert response.status_code == 200
    assert response.json()["modelVersion"] == PRO_MODEL


async def test_gemini_key_in_query_parameter(gemini: FakeGemini, http: httpx.AsyncClient) -> None:
    response = await gemini_post(
        http, gemini, gemini_body(), key=None, query="?key=test-gemini-key"
    )
    assert response.status_code == 200


@pytest.mark.parametrize("key", [None, "", "wrong-key"])
async def test_gemini_bad_key_is_400_api_key_invalid(
    gemini: FakeGemini, http: httpx.AsyncClient, key: str | None
) -> None:
    gemini.script("success")
    response = await gemini_post(http, gemini, gemini_body(), key=key)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 400
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == "API key not valid. Please pass a valid API key."
    assert error["details"][0] == {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }
    assert gemini.scripted_left == 1  # rejected requests consume nothing
    assert gemini.requests[0].outcome is None


async def test_gemini_unknown_model_404(gemini: FakeGemini, http: httpx.AsyncClient) -> None:
    response = await gemini_post(
        http, gemini, gemini_body(), model="gemini-2.5-flash-image-preview"
    )
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["status"] == "NOT_FOUND" and error["code"] == 404
    assert "models/gemini-2.5-flash-image-preview is not found" in error["message"]


async def test_gemini_unknown_path_is_html_404(gemini: FakeGemini, http: httpx.AsyncClient) -> None:
    response = await http.post(f"{gemini.url}/v1/models/{GEMINI_MODEL}:generateContent", json={})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")


def _bad_base64() -> dict[str, Any]:
    body = gemini_body()
    body["contents"][0]["parts"][0]["inline_data"]["data"] = "not base64!!"
    return body


def _gif() -> dict[str, Any]:
    body = gemini_body()
    body["contents"][0]["parts"][0]["inline_data"]["mime_type"] = "image/gif"
    return body


def _unknown_top_level() -> dict[str, Any]:
    return {**gemini_body(), "generation_config_typo": {}}


def _unknown_part_field() -> dict[str, Any]:
    body = gemini_body()
    body["contents"][0]["parts"].append({"image": "x"})
    return body


GEMINI_INVALID: dict[str, tuple[str, Any, str]] = {
    "response_mime_type_image": (
        GEMINI_MODEL,
        gemini_body(generation={"responseMimeType": "image/png"}),
        "response_mime_type",
    ),
    "response_mime_type_snake": (
        GEMINI_MODEL,
        gemini_body(generation={"response_mime_type": "image/jpeg"}),
        "response_mime_type",
    ),
    "aspect_ratio": (
        GEMINI_MODEL,
        gemini_body(generation={"imageConfig": {"aspectRatio": "7:5"}}),
        "aspect ratio",
    ),
    "image_size_on_2_5": (
        GEMINI_MODEL,
        gemini_body(generation={"imageConfig": {"imageSize": "1K"}}),
        "Image size is not supported",
    ),
    "image_size_lower_k": (
        PRO_MODEL,
        gemini_body(generation={"imageConfig": {"imageSize": "2k"}}),
        "Unsupported image size",
    ),
    "image_size_8k": (
        PRO_MODEL,
        gemini_body(generation={"imageConfig": {"imageSize": "8K"}}),
        "Unsupported image size",
    ),
    "modality_lower_case": (
        GEMINI_MODEL,
        gemini_body(generation={"responseModalities": ["image"]}),
        "response_modalities[0]",
    ),
    "no_contents": (GEMINI_MODEL, {"contents": []}, "contents is not specified"),
    "bad_base64": (GEMINI_MODEL, _bad_base64(), "Base64 decoding failed"),
    "gif": (GEMINI_MODEL, _gif(), "Unsupported MIME type: image/gif"),
    "not_an_image": (
        GEMINI_MODEL,
        gemini_body(images=(b"\xff\xd8 not really a jpeg",)),
        "Unable to process input image",
    ),
    "unknown_top_level": (GEMINI_MODEL, _unknown_top_level(), "Cannot find field"),
    "unknown_part_field": (GEMINI_MODEL, _unknown_part_field(), "Cannot find field"),
}


@pytest.mark.parametrize("case", sorted(GEMINI_INVALID))
async def test_gemini_invalid_requests_are_400(
    gemini: FakeGemini, http: httpx.AsyncClient, case: str
) -> None:
    model, body, needle = GEMINI_INVALID[case]
    gemini.script("success")
    response = await gemini_post(http, gemini, body, model=model)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
    assert needle in error["message"]
    assert gemini.scripted_left == 1


async def test_gemini_not_json_and_too_large(gemini: FakeGemini, http: httpx.AsyncClient) -> None:
    url = f"{gemini.url}/v1beta/models/{GEMINI_MODEL}:generateContent"
    headers = {"x-goog-api-key": "test-gemini-key", "content-type": "application/json"}
    response = await http.post(url, content=b"{not json", headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Invalid JSON payload received.")

    gemini.max_request_bytes = 1000
    response = await gemini_post(http, gemini, gemini_body())
    assert response.status_code == 400
    assert "Request payload size exceeds the limit" in response.json()["error"]["message"]


async def test_gemini_intermittent_no_image_then_success(
    gemini: FakeGemini, http: httpx.AsyncClient
) -> None:
    gemini.script("no_image", "no_image", "success")
    documents = [(await gemini_post(http, gemini, gemini_body())).json() for _ in range(4)]
    for document in documents[:2]:
        (candidate,) = document["candidates"]
        assert candidate["finishReason"] == "NO_IMAGE"
        assert "content" not in candidate
        assert document["responseId"]
    assert [len(image_parts(d)) for d in documents[2:]] == [1, 1]  # script, then default
    assert [r.outcome for r in gemini.requests] == ["no_image", "no_image", "success", "success"]


@pytest.mark.parametrize(
    ("scripted", "reason"),
    [
        ("image_safety", "IMAGE_SAFETY"),
        ("prohibited", "PROHIBITED_CONTENT"),
        (outcome("finish", reason="IMAGE_OTHER"), "IMAGE_OTHER"),
        (outcome("finish", reason="RECITATION", message="Recited"), "RECITATION"),
    ],
)
async def test_gemini_finish_reasons_without_image(
    gemini: FakeGemini, http: httpx.AsyncClient, scripted: Any, reason: str
) -> None:
    gemini.script(scripted)
    response = await gemini_post(http, gemini, gemini_body())
    assert response.status_code == 200
    (candidate,) = response.json()["candidates"]
    assert candidate["finishReason"] == reason
    assert "content" not in candidate
    if reason in ("IMAGE_SAFETY", "RECITATION"):
        assert candidate["finishMessage"]


async def test_gemini_text_only_and_blocked_prompt(
    gemini: FakeGemini, http: httpx.AsyncClient
) -> None:
    gemini.script("text_only", "blocked_prompt")
    text_only = (await gemini_post(http, gemini, gemini_body())).json()
    (candidate,) = text_only["candidates"]
    assert candidate["finishReason"] == "STOP"
    assert [list(p) for p in candidate["content"]["parts"]] == [["text"]]

    blocked = (await gemini_post(http, gemini, gemini_body())).json()
    assert "candidates" not in blocked
    assert blocked["promptFeedback"] == {"blockReason": "PROHIBITED_CONTENT"}
    assert blocked["responseId"] and blocked["usageMetadata"]


async def test_gemini_thoughts_come_before_the_final_image(
    gemini: FakeGemini, http: httpx.AsyncClient
) -> None:
    gemini.script("success_with_thoughts")
    document = (await gemini_post(http, gemini, gemini_body(), model=PRO_MODEL)).json()
    parts = document["candidates"][0]["content"]["parts"]
    assert [bool(p.get("thought")) for p in parts] == [True, True, False, False]
    thought_image = base64.b64decode(parts[1]["inlineData"]["data"])
    final = base64.b64decode(parts[-1]["inlineData"]["data"])
    assert "thoughtSignature" in parts[-1]
    assert looks_derived_from(final, PHOTO)
    assert not looks_derived_from(thought_image, PHOTO)
    assert document["usageMetadata"]["thoughtsTokenCount"] > 0


async def test_gemini_image_only_and_no_input_image(
    gemini: FakeGemini, http: httpx.AsyncClient
) -> None:
    gemini.script("success_image_only", "success")
    document = (await gemini_post(http, gemini, gemini_body())).json()
    assert [list(p) for p in document["candidates"][0]["content"]["parts"]] == [["inlineData"]]
    # A prompt without an image still gets a (generated) picture.
    document = (await gemini_post(http, gemini, gemini_body(images=()))).json()
    (part,) = image_parts(document)
    generated = base64.b64decode(part["inlineData"]["data"])
    assert decode(generated).format == "PNG"
    assert not looks_derived_from(generated, PHOTO)


@pytest.mark.parametrize(
    ("scripted", "status", "google_status"),
    [
        ("permission_denied", 403, "PERMISSION_DENIED"),
        ("internal", 500, "INTERNAL"),
        ("unavailable", 503, "UNAVAILABLE"),
        ("deadline_exceeded", 504, "DEADLINE_EXCEEDED"),
        ("rate_limited", 429, "RESOURCE_EXHAUSTED"),
    ],
)
async def test_gemini_json_errors(
    gemini: FakeGemini, http: httpx.AsyncClient, scripted: str, status: int, google_status: str
) -> None:
    gemini.script(scripted)
    response = await gemini_post(http, gemini, gemini_body())
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == status and error["status"] == google_status
    if scripted == "unavailable":
        assert "The model is overloaded" in error["message"]


async def test_gemini_rate_limit_retry_delay_is_configurable(
    gemini: FakeGemini, http: httpx.AsyncClient
) -> None:
    gemini.script("rate_limited", outcome("rate_limited", retry_delay="42s"))
    gemini.script(outcome("rate_limited", retry_delay=None))
    delays = []
    for _ in range(3):
        details = (await gemini_post(http, gemini, gemini_body())).json()["error"]["details"]
        retry = [d for d in details if d["@type"] == "type.googleapis.com/google.rpc.RetryInfo"]
        delays.append(retry[0]["retryDelay"] if retry else None)
    assert delays == ["1s", "42s", None]


async def test_gemini_html_502_and_malformed_json(
    gemini: FakeGemini, http: httpx.AsyncClient
) -> None:
    gemini.script("bad_gateway_html", "malformed_json")
    response = await gemini_post(http, gemini, gemini_body())
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text
    response = await gemini_post(http, gemini, gemini_body())
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_gemini_slow_answers_after_the_delay(
    gemini: FakeGemini, http: httpx.AsyncClient
) -> None:
    gemini.script("slow(0.3)")
    started = trio.current_time()
    response = await gemini_post(http, gemini, gemini_body())
    assert response.status_code == 200
    assert trio.current_time() - started >= 0.3
    (record,) = gemini.requests
    assert record.responded_at is not None and record.responded_at - record.received_at >= 0.3


async def test_gemini_drip_spreads_the_body(gemini: FakeGemini, http: httpx.AsyncClient) -> None:
    gemini.script(outcome("success", drip=0.3))
    started = trio.current_time()
    response = await gemini_post(http, gemini, gemini_body())
    assert trio.current_time() - started >= 0.25
    assert len(image_parts(response.json())) == 1


async def _walk_away_once_scripted(
    fake: FakeServer, post: Callable[[], Awaitable[object]]
) -> float:
    """Send a request and abandon it as soon as the fake plays its scripted outcome; the time
    the client left.  (A fixed client timeout raced the fake's first request under CI load.)"""
    before = len(fake.requests)

    def scripted() -> bool:
        return len(fake.requests) > before and fake.requests[before].outcome is not None

    async with trio.open_nursery() as nursery:
        nursery.start_soon(post)
        with trio.fail_after(10):
            await fake.wait_until(scripted)
        nursery.cancel_scope.cancel()
    return trio.current_time()


@pytest.mark.parametrize("scripted", ["hang", "slow(30)"])
async def test_gemini_client_disconnect_is_recorded(
    gemini: FakeGemini, http: httpx.AsyncClient, scripted: str
) -> None:
    gemini.script(scripted)
    left_at = await _walk_away_once_scripted(
        gemini, lambda: gemini_post(http, gemini, gemini_body())
    )
    (record,) = gemini.requests
    with trio.fail_after(5):
        await gemini.wait_until(lambda: record.disconnected)
    assert record.disconnected_at is not None
    assert left_at - 0.1 <= record.disconnected_at <= left_at + 1
    assert not record.completed and record.status is None
    assert record.outcome == ("hang" if scripted == "hang" else "success")
    # The fake stays usable afterwards.
    assert (await gemini_post(http, gemini, gemini_body())).status_code == 200


# --- Turbotext ----------------------------------------------------------------------------


class MediaServer(FakeServer):
    """Stands in for the daemon's /public/provider-media/{id} links."""

    OUTCOMES = frozenset({"success"})

    def __init__(self) -> None:
        super().__init__(api_key="")
        self.files: dict[str, tuple[int, bytes, str]] = {
            "/photo.jpg": (200, PHOTO, "image/jpeg"),
            "/style.png": (200, TEMPLATE, "image/png"),
            "/face.webp": (200, make_webp(40, 40), "image/webp"),
            "/expired": (410, b'{"error":"gone"}', "application/json"),
            "/text": (200, b"hello", "text/plain"),
        }

    async def handle(self, exchange: Exchange) -> None:
        status, body, content_type = self.files.get(
            exchange.record.path, (404, b"not found", "text/plain")
        )
        await exchange.respond(status, body, content_type)


@pytest.fixture
async def media(nursery: trio.Nursery) -> MediaServer:
    server = MediaServer()
    await _started(nursery, server)
    return server


TT_KEY = {"Authorization": "Bearer test-turbotext-key"}


async def tt_post(
    http: httpx.AsyncClient,
    fake: FakeTurbotext,
    method: str,
    fields: dict[str, str],
    headers: dict[str, str] = TT_KEY,
) -> httpx.Response:
    return await http.post(f"{fake.url}/api_ai/{method}", data=fields, headers=headers)


async def tt_create(
    http: httpx.AsyncClient, fake: FakeTurbotext, method: str, fields: dict[str, str]
) -> int:
    response = await tt_post(http, fake, method, {"do": "create_queue", **fields})
    document = response.json()
    assert response.status_code == 200 and document["success"] is True, document
    assert set(document) == {"success", "queueid"}
    queueid = document["queueid"]
    assert isinstance(queueid, int)
    return queueid


async def tt_poll_until_done(
    http: httpx.AsyncClient, fake: FakeTurbotext, method: str, queueid: int
) -> tuple[int, dict[str, Any]]:
    """(number of reconnects, final document); polls back to back, no sleeping."""
    reconnects = 0
    with trio.fail_after(5):
        while True:
            response = await tt_post(
                http, fake, method, {"do": "get_result", "queueid": str(queueid)}
            )
            document = response.json()
            if document != {"action": "reconnect"}:
                return reconnects, document
            reconnects += 1
            await trio.sleep(0.01)  # let the fake's background fetch run


def tt_fields(media: MediaServer, method: str) -> dict[str, str]:
    if method == "generate_image2image":
        return {"url": f"{media.url}/photo.jpg", "content": "superhero costume"}
    if method == "mix_images":
        return {"url_image_target": f"{media.url}/photo.jpg", "url": f"{media.url}/style.png"}
    return {"url": f"{media.url}/photo.jpg", "url_image_target": f"{media.url}/face.webp"}


async def test_turbotext_image2image_relative_result_after_reconnects(
    turbotext: FakeTurbotext, media: MediaServer, http: httpx.AsyncClient
) -> None:
    turbotext.script(outcome("success", reconnects=3))
    fields = {**tt_fields(media, "generate_image2image"), "strength": "50", "seed": "77"}
    queueid = await tt_create(http, turbotext, "generate_image2image", fields)
    reconnects, document = await tt_poll_until_done(
        http, turbotext, "generate_image2image", queueid
    )
    assert reconnects >= 3
    assert document["success"] is True and document["error"] == ""
    assert "uploaded_image" not in document
    data = document["data"]
    assert data["image"] == [f"image/generate_image2image_id{queueid}_0.png"]
    assert data["prompt"] == "superhero costume" and data["strength"] == 50 and data["seed"] == 77

    # The fake really fetched our URL, once.
    (fetch,) = turbotext.jobs[queueid].fetches
    assert (fetch.field, fetch.url, fetch.status, fetch.ok) == ("url", fields["url"], 200, True)
    assert [r.path for r in media.requests] == ["/photo.jpg"]

    download = await http.get(urljoin(turbotext.url + "/", data["image"][0]))
    assert download.status_code == 200 and download.headers["content-type"] == "image/png"
    assert looks_derived_from(download.content, PHOTO)
    assert (data["width"], data["height"]) == decode(download.content).size

    # Records answer "how many creates / polls, and when".
    assert len(turbotext.calls(do="create_queue")) == 1
    assert len(turbotext.creates("generate_image2image")) == 1
    polls = turbotext.polls(queueid)
    assert len(polls) == reconnects + 1
    assert all(r.form["queueid"] == str(queueid) for r in polls)
    assert polls[0].headers["authorization"] == "Bearer test-turbotext-key"
    assert polls[0].headers["content-type"] == "application/x-www-form-urlencoded"
    assert turbotext.calls(do="get_result", since=polls[-1].received_at) == []
    # Later polls repeat the answer.
    again = await tt_post(
        http, turbotext, "generate_image2image", {"do": "get_result", "queueid": str(queueid)}
    )
    assert again.json() == document


@pytest.mark.parametrize(
    ("method", "shape", "top", "in_data_image", "in_data"),
    [
        ("mix_images", None, True, False, False),
        ("deepfake_photo", None, True, True, False),
        ("mix_images", "data_uploaded_image", False, False, True),
        ("deepfake_photo", "relative", False, True, False),
    ],
)
async def test_turbotext_result_shapes(
    turbotext: FakeTurbotext,
    media: MediaServer,
    http: httpx.AsyncClient,
    method: str,
    shape: str | None,
    top: bool,
    in_data_image: bool,
    in_data: bool,
) -> None:
    if shape:
        turbotext.script(outcome("success", shape=shape))
    queueid = await tt_create(http, turbotext, method, tt_fields(media, method))
    _, document = await tt_poll_until_done(http, turbotext, method, queueid)
    assert document["success"] is True
    assert ("uploaded_image" in document) is top
    assert ("image" in document["data"]) is in_data_image
    assert ("uploaded_image" in document["data"]) is in_data
    link = document.get("uploaded_image") or document["data"].get("uploaded_image")
    link = link or urljoin(turbotext.url + "/", document["data"]["image"][0])
    download = await http.get(link)
    assert download.status_code == 200
    assert looks_derived_from(download.content, PHOTO)  # the guest's photo, not the style/face
    assert len(turbotext.jobs[queueid].fetches) == 2
    assert sorted(r.path for r in media.requests) == sorted(
        "/" + u.rsplit("/", 1)[1] for u in tt_fields(media, method).values()
    )


async def test_turbotext_download_404s_once(
    turbotext: FakeTurbotext, media: MediaServer, http: httpx.AsyncClient
) -> None:
    turbotext.script(outcome("success", download_404_once=True))
    queueid = await tt_create(http, turbotext, "mix_images", tt_fields(media, "mix_images"))
    _, document = await tt_poll_until_done(http, turbotext, "mix_images", queueid)
    first = await http.get(document["uploaded_image"])
    second = await http.get(document["uploaded_image"])
    assert (first.status_code, second.status_code) == (404, 200)
    assert looks_derived_from(second.content, PHOTO)
    assert turbotext.jobs[queueid].downloads == 2


@pytest.mark.parametrize("path", ["/missing", "/expired", "/text"])
async def test_turbotext_unfetchable_url_fails_with_url_error(
    turbotext: FakeTurbotext, media: MediaServer, http: httpx.AsyncClient, path: str
) -> None:
    fields = {"url": f"{media.url}{path}", "content": "x"}
    queueid = await tt_create(http, turbotext, "generate_image2image", fields)
    _, document = await tt_poll_until_done(http, turbotext, "generate_image2image", queueid)
    assert document == {"success": False, "error": "url_error"}
    (fetch,) = turbotext.jobs[queueid].fetches
    assert fetch.status == {"/missing": 404, "/expired": 410, "/text": 200}[path]
    assert not fetch.ok


async def test_turbotext_unreachable_url_fails_with_url_error(
    turbotext: FakeTurbotext, http: httpx.AsyncClient
) -> None:
    with trio.socket.socket() as sock:  # a port nobody listens on
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fields = {"url_image_target": f"http://127.0.0.1:{port}/p.jpg", "url": "not a url"}
    queueid = await tt_create(http, turbotext, "mix_images", fields)
    _, document = await tt_poll_until_done(http, turbotext, "mix_images", queueid)
    assert document == {"success": False, "error": "url_error"}
    assert [f.status for f in turbotext.fetches] == [None, None]
    assert all(f.error for f in turbotext.fetches)


async def test_turbotext_fetch_delay_keeps_the_job_pending(
    turbotext: FakeTurbotext, media: MediaServer, http: httpx.AsyncClient
) -> None:
    turbotext.script(outcome("success", fetch_delay=0.3, reconnects=0))
    fields = tt_fields(media, "generate_image2image")
    queueid = await tt_create(http, turbotext, "generate_image2image", fields)
    reconnects, document = await tt_poll_until_done(
        http, turbotext, "generate_image2image", queueid
    )
    assert document["success"] is True and reconnects >= 1
    job = turbotext.jobs[queueid]
    assert job.fetches[0].started_at - job.created_at >= 0.3
    assert media.requests[0].received_at - job.created_at >= 0.3


MISSING_FIELD = [
    ("generate_image2image", {"url": "http://x/p.jpg"}),
    ("generate_image2image", {"content": "x"}),
    ("generate_image2image", {"url": "http://x/p.jpg", "content": "x", "strength": "81"}),
    ("mix_images", {"url": "http://x/s.png"}),
    ("mix_images", {"url_image_target": "http://x/p.jpg", "url": ""}),
    ("deepfake_photo", {"url": "http://x/p.jpg"}),
    ("deepfake_photo", {"url": "a", "url_image_target": "b", "face_restore": "yes"}),
]


@pytest.mark.parametrize(("method", "fields"), MISSING_FIELD)
async def test_turbotext_params_error(
    turbotext: FakeTurbotext, http: httpx.AsyncClient, method: str, fields: dict[str, str]
) -> None:
    turbotext.script("success")
    response = await tt_post(http, turbotext, method, {"do": "create_queue", **fields})
    assert response.status_code == 200
    assert response.json() == {"success": False, "error": "params_error"}
    assert turbotext.jobs == {} and turbotext.scripted_left == 1


async def test_turbotext_requests_without_do_or_as_json(
    turbotext: FakeTurbotext, http: httpx.AsyncClient
) -> None:
    response = await tt_post(http, turbotext, "mix_images", {"url": "a"})
    assert response.json() == {"success": False, "error": "params_error"}
    # Only form bodies count: the same fields as JSON are no fields at all.
    response = await http.post(
        f"{turbotext.url}/api_ai/mix_images",
        json={"do": "create_queue", "url": "a", "url_image_target": "b"},
        headers=TT_KEY,
    )
    assert response.json() == {"success": False, "error": "params_error"}
    response = await tt_post(http, turbotext, "upscale", {"do": "create_queue"})
    assert response.json() == {"success": False, "error": "method_not_found"}


@pytest.mark.parametrize("mode", ["401", "json"])
@pytest.mark.parametrize("header", [None, "Bearer wrong", "test-turbotext-key"])
async def test_turbotext_bad_token(
    nursery: trio.Nursery, http: httpx.AsyncClient, mode: Any, header: str | None
) -> None:
    fake = FakeTurbotext(bad_token=mode)
    await _started(nursery, fake)
    headers = {"Authorization": header} if header else {}
    fields = {"do": "create_queue", "url": "a", "content": "b"}
    response = await tt_post(http, fake, "generate_image2image", fields, headers)
    assert response.status_code == (401 if mode == "401" else 200)
    assert response.json() == {"success": False, "error": "bad_token"}
    assert fake.jobs == {}


async def test_turbotext_unknown_queueid(
    turbotext: FakeTurbotext, media: MediaServer, http: httpx.AsyncClient
) -> None:
    queueid = await tt_create(http, turbotext, "mix_images", tt_fields(media, "mix_images"))
    for method, qid in [("mix_images", "999"), ("mix_images", ""), ("deepfake_photo", queueid)]:
        response = await tt_post(http, turbotext, method, {"do": "get_result", "queueid": str(qid)})
        assert response.json() == {"success": False, "error": "queue_not_found"}


async def test_turbotext_stuck_and_errors(
    turbotext: FakeTurbotext, media: MediaServer, http: httpx.AsyncClient
) -> None:
    method = "deepfake_photo"
    fields = tt_fields(media, method)
    turbotext.script(
        "stuck", "face_not_detected", outcome("error", code="quality_limit", reconnects=2)
    )
    stuck = await tt_create(http, turbotext, method, fields)
    await turbotext.wait_until(lambda: turbotext.jobs[stuck].fetched.is_set())
    for _ in range(10):
        poll = await tt_post(http, turbotext, method, {"do": "get_result", "queueid": str(stuck)})
        assert poll.json() == {"action": "reconnect"}

    failed = await tt_create(http, turbotext, method, fields)
    _, document = await tt_poll_until_done(http, turbotext, method, failed)
    assert document == {"success": False, "error": "face_not_detected"}

    quality = await tt_create(http, turbotext, method, fields)
    reconnects, document = await tt_poll_until_done(http, turbotext, method, quality)
    assert document == {"success": False, "error": "quality_limit"} and reconnects >= 2


async def test_turbotext_errors_at_create(
    turbotext: FakeTurbotext, media: MediaServer, http: httpx.AsyncClient
) -> None:
    fields = {"do": "create_queue", **tt_fields(media, "mix_images")}
    turbotext.script("limit", outcome("error", code="balance", at="create"), "html_500_create")
    answers = [await tt_post(http, turbotext, "mix_images", fields) for _ in range(3)]
    assert answers[0].json() == {"success": False, "error": "LIMIT"}
    assert answers[1].json() == {"success": False, "error": "balance"}
    assert answers[2].status_code == 500
    assert answers[2].headers["content-type"].startswith("text/html")
    assert turbotext.jobs == {} and media.requests == []
    assert len(turbotext.creates()) == 3


async def test_turbotext_html_500_on_poll(
    turbotext: FakeTurbotext, media: MediaServer, http: httpx.AsyncClient
) -> None:
    method = "mix_images"
    turbotext.script(outcome("html_500_poll", times=2), "html_500_poll")
    transient = await tt_create(http, turbotext, method, tt_fields(media, method))
    forever = await tt_create(http, turbotext, method, tt_fields(media, method))
    with trio.fail_after(5):
        await turbotext.wait_until(lambda: all(j.fetched.is_set() for j in turbotext.jobs.values()))
    statuses = []
    for _ in range(3):
        poll = await tt_post(
            http, turbotext, method, {"do": "get_result", "queueid": str(transient)}
        )
        statuses.append(poll.status_code)
    assert statuses == [500, 500, 200]
    assert poll.json()["success"] is True
    for _ in range(4):
        poll = await tt_post(http, turbotext, method, {"do": "get_result", "queueid": str(forever)})
        assert poll.status_code == 500 and "<html>" in poll.text


async def test_turbotext_hang_on_create_records_disconnect(
    turbotext: FakeTurbotext, http: httpx.AsyncClient
) -> None:
    turbotext.script("hang")
    fields = {"do": "create_queue", "url": "a", "content": "b"}
    await _walk_away_once_scripted(
        turbotext, lambda: tt_post(http, turbotext, "generate_image2image", fields)
    )
    (record,) = turbotext.requests
    with trio.fail_after(5):
        await turbotext.wait_until(lambda: record.disconnected)
    assert record.do == "create_queue" and not record.completed and turbotext.jobs == {}


# --- OpenAI images ------------------------------------------------------------------------

OPENAI_KEY = {"Authorization": "Bearer test-openai-key"}
FileSpec = tuple[str, tuple[str, bytes, str]]


def edit_fields(**overrides: str | None) -> dict[str, str]:
    fields: dict[str, str | None] = {
        "prompt": "Turn the guest into a superhero",
        "model": "gpt-image-1",
        "quality": "low",
        "input_fidelity": "high",
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


def photo_file(name: str = "image") -> FileSpec:
    return (name, ("photo.jpg", PHOTO, "image/jpeg"))


async def openai_post(
    http: httpx.AsyncClient,
    fake: FakeOpenAIImages,
    fields: dict[str, str] | None = None,
    files: list[FileSpec] | None = None,
    headers: dict[str, str] = OPENAI_KEY,
) -> httpx.Response:
    return await http.post(
        f"{fake.url}/v1/images/edits",
        data=edit_fields() if fields is None else fields,
        files=[photo_file()] if files is None else files,
        headers=headers,
    )


async def test_openai_success_single_image_png(
    openai: FakeOpenAIImages, http: httpx.AsyncClient
) -> None:
    response = await openai_post(http, openai)
    assert response.status_code == 200, response.text
    document = response.json()
    assert set(document) >= {"created", "data", "output_format", "size", "quality", "usage"}
    assert document["output_format"] == "png"
    assert document["size"] == "1536x1024"  # auto + landscape photo
    assert document["quality"] == "low"
    assert document["usage"]["total_tokens"] > 0
    (item,) = document["data"]
    image = base64.b64decode(item["b64_json"])
    assert decode(image).format == "PNG" and decode(image).size == (1536, 1024)
    assert looks_derived_from(image, PHOTO)
    assert response.headers["x-request-id"].startswith("req_")
    (record,) = openai.requests
    assert record.form["prompt"] == "Turn the guest into a superhero"
    assert record.form["input_fidelity"] == "high"
    assert [(f.field, f.filename, f.content_type, f.size) for f in record.files] == [
        ("image", "photo.jpg", "image/jpeg", len(PHOTO))
    ]


@pytest.mark.parametrize(
    ("fmt", "pil_format", "size"),
    [("jpeg", "JPEG", "1024x1024"), ("webp", "WEBP", "1024x1536"), ("png", "PNG", "1536x1024")],
)
async def test_openai_image_array_formats_and_sizes(
    openai: FakeOpenAIImages, http: httpx.AsyncClient, fmt: str, pil_format: str, size: str
) -> None:
    files = [
        photo_file("image[]"),
        ("image[]", ("style.png", TEMPLATE, "image/png")),
        ("image[]", ("face.webp", make_webp(40, 40), "image/webp")),
    ]
    fields = edit_fields(output_format=fmt, size=size, quality="auto", n="2")
    response = await openai_post(http, openai, fields, files)
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["output_format"] == fmt and document["size"] == size
    assert document["quality"] == "medium"  # auto is reported resolved
    assert len(document["data"]) == 2
    image = base64.b64decode(document["data"][0]["b64_json"])
    decoded = decode(image)
    assert decoded.format == pil_format
    assert f"{decoded.width}x{decoded.height}" == size
    assert looks_derived_from(image, PHOTO)
    assert [f.field for f in openai.requests[0].files] == ["image[]"] * 3


OPENAI_INVALID: list[tuple[str, dict[str, str] | None, list[FileSpec] | None, str | None, str]] = [
    ("model", edit_fields(model="dall-e-3"), None, "model", "invalid_value"),
    ("no_model", edit_fields(model=None), None, "model", "invalid_value"),
    ("size", edit_fields(size="512x512"), None, "size", "invalid_value"),
    ("quality", edit_fields(quality="hd"), None, "quality", "invalid_value"),
    ("format", edit_fields(output_format="gif"), None, "output_format", "invalid_value"),
    ("fidelity", edit_fields(input_fidelity="max"), None, "input_fidelity", "invalid_value"),
    ("n", edit_fields(n="0"), None, "n", "integer_out_of_range"),
    (
        "png_compression",
        edit_fields(output_compression="50"),
        None,
        "output_compression",
        "invalid_value",
    ),
    ("no_prompt", edit_fields(prompt=None), None, "prompt", "missing_required_parameter"),
    ("long_prompt", edit_fields(prompt="x" * 32_001), None, "prompt", "string_above_max_length"),
    ("no_image", None, [], "image", "missing_required_parameter"),
    (
        "gif",
        None,
        [("image", ("a.gif", b"GIF89a...", "image/gif"))],
        "image",
        "unsupported_file_mimetype",
    ),
    (
        "octet_stream",
        None,
        [("image", ("blob", PHOTO, "application/octet-stream"))],
        "image",
        "unsupported_file_mimetype",
    ),
    (
        "garbage",
        None,
        [("image", ("a.png", b"\x89PNG garbage", "image/png"))],
        "image",
        "invalid_image_file",
    ),
    (
        "response_format",
        edit_fields(response_format="b64_json"),
        None,
        "response_format",
        "unknown_parameter",
    ),
]


@pytest.mark.parametrize(
    ("fields", "files", "param", "code"),
    [case[1:] for case in OPENAI_INVALID],
    ids=[case[0] for case in OPENAI_INVALID],
)
async def test_openai_invalid_requests_are_400(
    openai: FakeOpenAIImages,
    http: httpx.AsyncClient,
    fields: dict[str, str] | None,
    files: list[FileSpec] | None,
    param: str,
    code: str,
) -> None:
    openai.script("success")
    if files == []:  # httpx sends urlencoded without files: force multipart with a text part
        response = await http.post(
            f"{openai.url}/v1/images/edits",
            files={"prompt": (None, b"hello"), "model": (None, b"gpt-image-1")},
            headers=OPENAI_KEY,
        )
    else:
        response = await openai_post(http, openai, fields, files)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert openai.scripted_left == 1


async def test_openai_not_multipart(openai: FakeOpenAIImages, http: httpx.AsyncClient) -> None:
    response = await http.post(
        f"{openai.url}/v1/images/edits", json={"prompt": "x"}, headers=OPENAI_KEY
    )
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, None), ({"Authorization": "Bearer sk-wrong-key-123"}, "invalid_api_key")],
)
async def test_openai_bad_key_401(
    openai: FakeOpenAIImages, http: httpx.AsyncClient, headers: dict[str, str], code: str | None
) -> None:
    response = await openai_post(http, openai, headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", code)
    assert "sk-wrong-key-123" not in error["message"]  # the key is masked, as OpenAI does


@pytest.mark.parametrize(
    ("scripted", "status", "error_type", "code"),
    [
        ("moderation_blocked", 400, "image_generation_user_error", "moderation_blocked"),
        ("rate_limited", 429, "requests", "rate_limit_exceeded"),
        ("insufficient_quota", 429, "insufficient_quota", "insufficient_quota"),
        ("server_error", 500, "server_error", None),
        ("unavailable", 503, "server_error", None),
    ],
)
async def test_openai_error_outcomes(
    openai: FakeOpenAIImages,
    http: httpx.AsyncClient,
    scripted: str,
    status: int,
    error_type: str,
    code: str | None,
) -> None:
    openai.script(scripted)
    response = await openai_post(http, openai)
    assert response.status_code == status
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (error_type, code, None)
    assert response.headers.get("retry-after") == ("1" if scripted == "rate_limited" else None)


async def test_openai_retry_after_is_configurable(
    openai: FakeOpenAIImages, http: httpx.AsyncClient
) -> None:
    openai.script(
        outcome("rate_limited", retry_after="7"), outcome("rate_limited", retry_after=None)
    )
    first, second = [await openai_post(http, openai) for _ in range(2)]
    assert first.headers["retry-after"] == "7"
    assert "retry-after" not in second.headers and second.status_code == 429


async def test_openai_html_502_malformed_slow_and_hang(
    openai: FakeOpenAIImages, http: httpx.AsyncClient
) -> None:
    openai.script("bad_gateway_html", "malformed_json", "slow(0.2)", "hang")
    response = await openai_post(http, openai)
    assert response.status_code == 502 and "<html>" in response.text
    response = await openai_post(http, openai)
    with pytest.raises(json.JSONDecodeError):
        response.json()
    started = trio.current_time()
    response = await openai_post(http, openai)
    assert response.status_code == 200 and trio.current_time() - started >= 0.2
    await _walk_away_once_scripted(openai, lambda: openai_post(http, openai))
    record = openai.requests[-1]
    with trio.fail_after(5):
        await openai.wait_until(lambda: record.disconnected)
    assert record.outcome == "hang" and not record.completed
    assert record.disconnected_at is not None and record.disconnected_at >= record.received_at


async def test_wait_until_blocks_until_a_change(gemini: FakeGemini) -> None:
    # wait_until has no timeout of its own: callers bound it (trio.fail_after).
    with trio.move_on_after(0.05) as scope:
        await gemini.wait_until(lambda: len(gemini.requests) > 0)
    assert scope.cancelled_caught


async def test_stopping_a_fake_ends_hung_requests(http: httpx.AsyncClient) -> None:
    fake = FakeGemini()
    with pytest.raises(RuntimeError, match="not serving"):
        _ = fake.url
    fake.default = "hang"
    errors: list[Exception] = []
    server_scope = trio.CancelScope()

    async def run_server(task_status: trio.TaskStatus[str]) -> None:
        with server_scope:
            await fake.serve(task_status=task_status)

    async def call() -> None:
        try:
            await gemini_post(http, fake, gemini_body())
        except httpx.HTTPError as exc:
            errors.append(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_server)
            nursery.start_soon(call)
            await fake.wait_until(lambda: any(r.outcome == "hang" for r in fake.requests))
            server_scope.cancel()  # what the end of a test's nursery does
    # Hypercorn closed the connection: the client got an error instead of waiting forever.
    assert [type(e) for e in errors] == [httpx.RemoteProtocolError]
    assert not fake.requests[0].completed
