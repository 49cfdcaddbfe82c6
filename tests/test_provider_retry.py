"""The cloud drivers' retry helper on a mock clock: back-off spacing, vendor waits that fit or
do not, no attempt started that cannot finish, max attempts, errors as the driver mapped them,
cancellation untouched — and the drivers' own cadence against an in-process fake transport.

Every test runs on pytest-trio's ``autojump_clock`` (a ``MockClock`` that jumps to the next
timer as soon as all tasks sleep): minutes of back-off take milliseconds of real time, and every
time asserted is exact.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import httpx
import pytest
import trio

from photochangerd.domain.images import ImageInput
from photochangerd.media.imaging import ImageWorkers
from photochangerd.providers import gemini, openai_images
from photochangerd.providers.base import (
    ProviderError,
    ProviderRejected,
    ProviderRequest,
    ProviderResult,
    ProviderUnavailable,
)
from photochangerd.providers.gemini import GeminiProvider
from photochangerd.providers.keys import ProviderKeys
from photochangerd.providers.openai_images import OpenAIImagesProvider
from photochangerd.providers.retry import Retry, RetryPolicy, fits_before_deadline, with_retries
from photochangerd.providers.turbotext import TurbotextProvider
from tests.support.images import make_jpeg, make_png

T = TypeVar("T")
POLICY = RetryPolicy(max_attempts=5, backoff=1.0, max_backoff=8.0, min_attempt=1.0)


class Attempts:
    """A fake attempt function: plays ``script`` (a result, a :class:`Retry`, an exception to
    raise, or a callable run first — e.g. a sleep for the vendor's latency) and records when each
    attempt started and ended."""

    def __init__(self, *script: object, latency: float = 0.0) -> None:
        self.script = list(script)
        self.latency = latency
        self.started: list[float] = []
        self.ended: list[float] = []

    async def __call__(self, number: int) -> str | Retry:
        assert number == len(self.started) + 1
        assert number <= 20, "the helper went on retrying"  # fails the test instead of a hang
        self.started.append(trio.current_time())
        await trio.sleep(self.latency)
        self.ended.append(trio.current_time())
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, BaseException):
            raise step
        assert isinstance(step, str | Retry)
        return step


def unavailable(n: int = 0) -> ProviderUnavailable:
    return ProviderUnavailable(f"overloaded #{n}")


async def test_exponential_back_off_spacing_then_the_last_error(autojump_clock: object) -> None:
    errors = [unavailable(n) for n in range(5)]
    attempts = Attempts(*(Retry(e) for e in errors))
    with pytest.raises(ProviderUnavailable) as raised:
        await with_retries(POLICY, attempts)
    assert attempts.started == [0.0, 1.0, 3.0, 7.0, 15.0]  # waits 1, 2, 4, 8 (the cap)
    assert raised.value is errors[-1]  # the last attempt's error, as the driver mapped it
    assert trio.current_time() == 15.0  # no pointless wait after the last attempt


async def test_back_off_is_capped(autojump_clock: object) -> None:
    policy = RetryPolicy(max_attempts=6, backoff=2.0, max_backoff=4.0)
    attempts = Attempts(Retry(unavailable()))
    with pytest.raises(ProviderUnavailable):
        await with_retries(policy, attempts)
    assert attempts.started == [0.0, 2.0, 6.0, 10.0, 14.0, 18.0]


async def test_success_after_retries_returns_the_result(autojump_clock: object) -> None:
    attempts = Attempts(Retry(unavailable()), Retry(unavailable()), "image")
    assert await with_retries(POLICY, attempts) == "image"
    assert attempts.started == [0.0, 1.0, 3.0]


async def test_a_wait_the_attempt_names_is_taken_as_it_is(autojump_clock: object) -> None:
    """Gemini: 1 s after NO_IMAGE, whatever the back-off has grown to."""
    attempts = Attempts(Retry(unavailable(), wait=1.0), Retry(unavailable(), wait=0.25), "image")
    await with_retries(RetryPolicy(max_attempts=5, backoff=4.0, max_backoff=8.0), attempts)
    assert attempts.started == [0.0, 1.0, 1.25]


async def test_a_wait_shorter_than_the_back_off_can_be_stretched(autojump_clock: object) -> None:
    """OpenAI: ``max(Retry-After, back-off)``."""
    policy = RetryPolicy(max_attempts=4, backoff=2.0, max_backoff=16.0, wait_at_least_backoff=True)
    attempts = Attempts(Retry(unavailable(), wait=1.0), Retry(unavailable(), wait=10.0), "image")
    await with_retries(policy, attempts)
    assert attempts.started == [0.0, 2.0, 12.0]  # 1 → the back-off's 2; 10 beats the 4


async def test_retry_after_is_honoured_when_it_fits(autojump_clock: object) -> None:
    attempts = Attempts(Retry(unavailable(), wait=8.5), "image")
    with trio.move_on_after(10) as scope:
        assert await with_retries(POLICY, attempts) == "image"
    assert attempts.started == [0.0, 8.5] and not scope.cancelled_caught


async def test_retry_after_exactly_filling_the_deadline_is_honoured(
    autojump_clock: object,
) -> None:
    attempts = Attempts(Retry(unavailable(), wait=9.0), "image")
    with trio.move_on_after(10):
        assert await with_retries(POLICY, attempts) == "image"
    assert attempts.started == [0.0, 9.0]


async def test_retry_after_that_does_not_fit_gives_up_at_once(autojump_clock: object) -> None:
    error = unavailable()
    attempts = Attempts(Retry(error, wait=9.5), "image")
    with trio.move_on_after(10) as scope, pytest.raises(ProviderUnavailable) as raised:
        await with_retries(POLICY, attempts)
    assert raised.value is error and not scope.cancelled_caught
    assert attempts.started == [0.0]
    assert trio.current_time() == 0.0  # no waiting for a retry that would never be made


async def test_no_attempt_is_started_that_cannot_finish(autojump_clock: object) -> None:
    """A vendor that takes 2 s to fail, a 10 s deadline, 2 s needed for an attempt."""
    policy = RetryPolicy(max_attempts=10, backoff=1.0, max_backoff=1.0, min_attempt=2.0)
    attempts = Attempts(Retry(unavailable()), latency=2.0)
    with trio.move_on_after(10) as scope, pytest.raises(ProviderUnavailable):
        await with_retries(policy, attempts)
    assert attempts.started == [0.0, 3.0, 6.0]  # a 4th at 9 would need until 11
    assert attempts.ended == [2.0, 5.0, 8.0]
    assert not scope.cancelled_caught and trio.current_time() == 8.0  # failed before the 504


async def test_the_minimum_attempt_time_counts(autojump_clock: object) -> None:
    """The same 1 s back-off fits a 5 s deadline with a 1 s attempt floor, not with a 4.5 s one."""
    for min_attempt, started in [(1.0, [0.0, 1.0, 2.0, 3.0, 4.0]), (4.5, [0.0])]:
        policy = RetryPolicy(max_attempts=10, backoff=1.0, max_backoff=1.0, min_attempt=min_attempt)
        attempts = Attempts(Retry(unavailable()))
        start = trio.current_time()
        with trio.move_on_after(5), pytest.raises(ProviderUnavailable):
            await with_retries(policy, attempts)
        assert [t - start for t in attempts.started] == started


async def test_outside_any_deadline_only_max_attempts_stops(autojump_clock: object) -> None:
    assert fits_before_deadline(1e9, 1e9)
    errors = [unavailable(n) for n in range(3)]
    attempts = Attempts(*(Retry(e, wait=3600.0) for e in errors))
    with pytest.raises(ProviderUnavailable) as raised:
        await with_retries(RetryPolicy(max_attempts=3, backoff=1.0, max_backoff=1.0), attempts)
    assert len(attempts.started) == 3 and raised.value is errors[2]


async def test_the_first_attempt_is_always_made(autojump_clock: object) -> None:
    """Too little time even for one attempt: it is made anyway, the deadline cuts it off (a
    timeout, not a provider error)."""
    attempts = Attempts("image", latency=2.0)
    with trio.move_on_after(0.5) as scope:
        await with_retries(POLICY, attempts)
    assert attempts.started == [0.0] and attempts.ended == []
    assert scope.cancelled_caught


async def test_an_error_the_attempt_raises_is_not_retried(autojump_clock: object) -> None:
    refused = ProviderRejected("gemini returned no image (finishReason IMAGE_SAFETY)")
    attempts = Attempts(Retry(unavailable()), refused, "image")
    with pytest.raises(ProviderRejected) as raised:
        await with_retries(POLICY, attempts)
    assert raised.value is refused
    assert raised.value.http_status == 502
    assert attempts.started == [0.0, 1.0]


@pytest.mark.parametrize("error", [ProviderUnavailable("quota"), ProviderRejected("broken")])
async def test_the_error_keeps_its_mapping(autojump_clock: object, error: ProviderError) -> None:
    attempts = Attempts(Retry(error))
    with pytest.raises(ProviderError) as raised:
        await with_retries(RetryPolicy(max_attempts=2, backoff=1.0, max_backoff=1.0), attempts)
    assert raised.value is error and type(raised.value) is type(error)
    assert raised.value.http_status == (503 if isinstance(error, ProviderUnavailable) else 502)


async def test_the_deadline_cancels_an_attempt_untouched(autojump_clock: object) -> None:
    attempts = Attempts("image", latency=60.0)
    with pytest.raises(trio.TooSlowError):  # fail_after saw its own Cancelled come back
        with trio.fail_after(5):
            await with_retries(POLICY, attempts)
    assert attempts.started == [0.0] and trio.current_time() == 5.0


async def test_cancellation_during_a_back_off_propagates(autojump_clock: object) -> None:
    attempts = Attempts(Retry(unavailable(), wait=30.0), "image")
    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as scope:
            nursery.start_soon(_cancel_after, 10.0, scope)
            await with_retries(POLICY, attempts)
            pytest.fail("the retry was made although the wait was cancelled")
    assert scope.cancelled_caught
    assert attempts.started == [0.0] and trio.current_time() == 10.0


async def _cancel_after(seconds: float, scope: trio.CancelScope) -> None:
    await trio.sleep(seconds)
    scope.cancel()


def test_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0, backoff=1.0, max_backoff=1.0)
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(max_attempts=1, backoff=2.0, max_backoff=1.0)
    with pytest.raises(ValueError, match="min_attempt"):
        RetryPolicy(max_attempts=1, backoff=1.0, max_backoff=1.0, min_attempt=-1)


# --- the drivers against an in-process fake transport (httpx.MockTransport) -------------------

RESULT_PNG = make_png(64, 48)
PHOTO = ImageInput(make_jpeg(320, 240), "image/jpeg")


class InlineImages(ImageWorkers):
    """Pillow in the test's task: a worker thread would let the autojump clock run ahead."""

    def __init__(self) -> None:
        super().__init__(1)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return fn(*args)


class Vendor:
    """Answers requests from ``script`` (last answer repeated) and records when each came."""

    def __init__(self, *script: Callable[[httpx.Request], httpx.Response]) -> None:
        self.script = list(script)
        self.requests: list[tuple[float, httpx.Request]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((trio.current_time(), request))
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return answer(request)

    @property
    def times(self) -> list[float]:
        return [t for t, _ in self.requests]


class Body(httpx.AsyncByteStream):
    """A response body streamed as the vendor's would be (``send`` reads it with a cap)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data


def response(status: int, body: Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, stream=Body(content), headers=headers)


def answer(status: int, body: Any = None, **headers: str) -> Callable[..., httpx.Response]:
    return lambda request: response(status, body, **headers)


def gemini_image() -> Callable[..., httpx.Response]:
    data = base64.b64encode(RESULT_PNG).decode()
    part = {"inlineData": {"mimeType": "image/png", "data": data}}
    return answer(200, {"candidates": [{"content": {"parts": [part]}, "finishReason": "STOP"}]})


def gemini_no_image() -> Callable[..., httpx.Response]:
    return answer(200, {"candidates": [{"content": {"parts": []}, "finishReason": "NO_IMAGE"}]})


def gemini_status(status: int, vendor_status: str, **extra: Any) -> Callable[..., httpx.Response]:
    return answer(status, {"error": {"code": status, "status": vendor_status, **extra}})


def openai_error(status: int, code: str, **headers: str) -> Callable[..., httpx.Response]:
    return answer(status, {"error": {"code": code, "message": code}}, **headers)


def _request(operation: str, settings: dict[str, Any]) -> ProviderRequest:
    async def publish(image: ImageInput) -> str:
        return "https://booth.example/public/provider-media/m1"

    return ProviderRequest("job-1", "slot-001", operation, settings, PHOTO, publish=publish)


def _client(vendor: Vendor) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(vendor), trust_env=False)


async def _gemini(vendor: Vendor, deadline: float) -> ProviderResult:
    async with _client(vendor) as client:
        keys = ProviderKeys({"GEMINI_API_KEY": "k"})
        provider = GeminiProvider(
            client,
            "https://g.test",
            keys,
            InlineImages(),
            max_response_bytes=1 << 24,
            concurrency=4,
        )
        with trio.fail_after(deadline):
            return await provider.process(_request("edit", {"prompt": "p"}))


async def _openai(vendor: Vendor, deadline: float) -> ProviderResult:
    async with _client(vendor) as client:
        keys = ProviderKeys({"OPENAI_API_KEY": "k"})
        provider = OpenAIImagesProvider(
            client,
            "https://o.test",
            keys,
            InlineImages(),
            max_response_bytes=1 << 24,
            concurrency=4,
        )
        with trio.fail_after(deadline):
            return await provider.process(_request("edit", {"prompt": "p"}))


async def test_gemini_no_image_is_retried_one_second_apart(autojump_clock: object) -> None:
    vendor = Vendor(gemini_no_image(), gemini_no_image(), gemini_image())
    result = await _gemini(vendor, deadline=10)
    assert result.data == RESULT_PNG and vendor.times == [0.0, 1.0, 2.0]


async def test_gemini_overload_gives_503_before_the_deadline(autojump_clock: object) -> None:
    vendor = Vendor(gemini_status(503, "UNAVAILABLE"))
    with pytest.raises(ProviderUnavailable, match="503 UNAVAILABLE"):
        await _gemini(vendor, deadline=6)
    assert vendor.times == [0.0, 2.0, 4.0]  # a 4th at 6 would leave no time to answer
    assert trio.current_time() == 4.0


async def test_gemini_500s_run_out_of_attempts_as_502(autojump_clock: object) -> None:
    vendor = Vendor(gemini_status(500, "INTERNAL"))
    with pytest.raises(ProviderRejected, match="500 INTERNAL"):
        await _gemini(vendor, deadline=60)
    assert vendor.times == [0.0, 2.0, 4.0, 6.0, 8.0]  # gemini.MAX_ATTEMPTS
    assert len(vendor.times) == gemini.MAX_ATTEMPTS


@pytest.mark.parametrize(("delay", "times"), [("3s", [0.0, 3.0]), ("9.5s", [0.0])])
async def test_gemini_429_waits_its_retry_delay_only_if_it_fits(
    autojump_clock: object, delay: str, times: list[float]
) -> None:
    detail = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}
    limited = gemini_status(429, "RESOURCE_EXHAUSTED", details=[detail])
    vendor = Vendor(limited, gemini_image())
    if len(times) == 2:
        assert (await _gemini(vendor, deadline=10)).data == RESULT_PNG
    else:
        with pytest.raises(ProviderUnavailable, match="rate limited"):
            await _gemini(vendor, deadline=10)
    assert vendor.times == times


async def test_gemini_safety_block_fails_at_once(autojump_clock: object) -> None:
    blocked = answer(200, {"candidates": [{"finishReason": "IMAGE_SAFETY"}]})
    vendor = Vendor(blocked, gemini_image())
    with pytest.raises(ProviderRejected, match="IMAGE_SAFETY"):
        await _gemini(vendor, deadline=10)
    assert vendor.times == [0.0]


async def test_gemini_unreachable_backs_off_exponentially(autojump_clock: object) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    vendor = Vendor(refused, refused, refused, gemini_image())
    assert (await _gemini(vendor, deadline=20)).data == RESULT_PNG
    assert vendor.times == [0.0, 1.0, 3.0, 7.0]


async def test_openai_retry_after_is_stretched_to_the_back_off(autojump_clock: object) -> None:
    ok = answer(200, {"data": [{"b64_json": base64.b64encode(RESULT_PNG).decode()}]})
    vendor = Vendor(openai_error(429, "rate_limit_exceeded", **{"retry-after": "1"}), ok)
    assert (await _openai(vendor, deadline=10)).data == RESULT_PNG
    assert vendor.times == [0.0, 2.0]


@pytest.mark.parametrize(
    ("script", "error", "times"),
    [
        (openai_error(429, "insufficient_quota"), ProviderUnavailable, [0.0]),
        (openai_error(400, "moderation_blocked"), ProviderRejected, [0.0]),
        (
            openai_error(429, "rate_limit_exceeded", **{"retry-after": "20"}),
            ProviderUnavailable,
            [0.0],
        ),
        (answer(500, b"<html>oops</html>"), ProviderUnavailable, [0.0, 2.0, 6.0]),
    ],
)
async def test_openai_outcomes(
    autojump_clock: object,
    script: Callable[..., httpx.Response],
    error: type[ProviderError],
    times: list[float],
) -> None:
    vendor = Vendor(script)
    with pytest.raises(error) as raised:
        await _openai(vendor, deadline=10)
    assert type(raised.value) is error
    assert vendor.times == times  # the 5xx: waits 2, 4; a third wait of 8 would not fit
    assert len(times) <= openai_images.MAX_ATTEMPTS


# --- Turbotext: poll cadence and the result download --------------------------------------------


class FakeTurbotextQueue:
    """create_queue → queue 42; get_result → ``reconnects`` × reconnect, then done (or never);
    the result URL 404s ``missing`` times first."""

    def __init__(self, reconnects: int | None, missing: int = 0) -> None:
        self.reconnects = reconnects
        self.missing = missing
        self.creates: list[float] = []
        self.polls: list[float] = []
        self.downloads: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        now = trio.current_time()
        if request.method == "GET":
            self.downloads.append(now)
            if len(self.downloads) <= self.missing:
                return response(404, b"not yet")
            return response(200, RESULT_PNG, **{"content-type": "image/png"})
        form = dict(httpx.QueryParams(request.content.decode()))
        if form["do"] == "create_queue":
            self.creates.append(now)
            return response(200, {"success": True, "queueid": 42})
        assert form == {"do": "get_result", "queueid": "42"}
        self.polls.append(now)
        if self.reconnects is None or len(self.polls) <= self.reconnects:
            return response(200, {"action": "reconnect"})
        return response(200, {"success": True, "uploaded_image": "/results/42.png"})


async def _turbotext(fake: FakeTurbotextQueue, deadline: float) -> ProviderResult:
    transport = httpx.MockTransport(fake)
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
        provider = TurbotextProvider(
            client,
            "https://t.test",
            ProviderKeys({"TURBOTEXT_API_KEY": "k"}),
            InlineImages(),
            max_response_bytes=1 << 24,
            concurrency=4,
            poll_interval=2.5,
        )
        with trio.fail_after(deadline):
            return await provider.process(_request("image2image", {"prompt": "anime"}))


async def test_turbotext_polls_every_interval_until_done(autojump_clock: object) -> None:
    fake = FakeTurbotextQueue(reconnects=3)
    result = await _turbotext(fake, deadline=30)
    assert result == ProviderResult(RESULT_PNG, "image/png")
    assert fake.creates == [0.0]
    assert fake.polls == [2.5, 5.0, 7.5, 10.0]
    assert fake.downloads == [10.0]


async def test_turbotext_stuck_queue_stops_polling_at_the_deadline(autojump_clock: object) -> None:
    fake = FakeTurbotextQueue(reconnects=None)
    with pytest.raises(trio.TooSlowError):
        await _turbotext(fake, deadline=9)
    assert fake.creates == [0.0] and fake.polls == [2.5, 5.0, 7.5]
    assert trio.current_time() == 9.0


async def test_turbotext_download_404_is_retried_a_second_apart(autojump_clock: object) -> None:
    fake = FakeTurbotextQueue(reconnects=0, missing=2)
    assert (await _turbotext(fake, deadline=30)).data == RESULT_PNG
    assert fake.downloads == [2.5, 3.5, 4.5] and len(fake.creates) == 1


async def test_turbotext_download_gives_up_while_time_is_left(autojump_clock: object) -> None:
    fake = FakeTurbotextQueue(reconnects=0, missing=100)
    with pytest.raises(ProviderRejected, match="download failed: HTTP 404"):
        await _turbotext(fake, deadline=4)
    assert fake.downloads == [2.5, 3.5]  # another at 4.5 would be past the deadline
    assert trio.current_time() == 3.5  # a provider error, before the deadline's timeout
