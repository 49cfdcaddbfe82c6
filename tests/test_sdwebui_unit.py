"""The sdwebui driver's rules without a daemon: the working size, the error mapping, and — on
pytest-trio's ``autojump_clock`` (a ``MockClock``) against an in-process transport — the time
rules: the job's deadline is not delayed by the interrupt, which goes out at the deadline from
the background nursery; a task queued behind someone else's job is interrupted as it starts;
what an old WebUI (no task ids) gets; the retries before the GPU started and none after."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest
import trio

from photochangerd.domain.images import ImageInput
from photochangerd.media.imaging import ImageWorkers
from photochangerd.media.working_size import working_size
from photochangerd.providers.base import (
    ProviderError,
    ProviderRejected,
    ProviderRequest,
    ProviderResult,
    ProviderUnavailable,
)
from photochangerd.providers.keys import ProviderKeys
from photochangerd.providers.sdwebui import SdWebUIProvider, classify_error
from photochangerd.providers.sdwebui_interrupt import POLL_SECONDS, Interrupter
from photochangerd.providers.vendor_http import VendorResponse
from tests.support.images import make_jpeg, make_png

T = TypeVar("T")
PHOTO = ImageInput(make_jpeg(320, 240), "image/jpeg")
RESULT = make_png(320, 240)
BASE = "http://gpu.test:7860"


# --- the working size -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "budget", "expected"),
    [
        ((1600, 1200), 1_048_576, (1176, 880)),
        ((6000, 4000), 1_048_576, (1248, 832)),
        ((4000, 6000), 1_048_576, (832, 1248)),
        ((1024, 1024), 1_048_576, (1024, 1024)),
        ((800, 600), 1_048_576, (800, 600)),  # inside the budget: not enlarged
        ((801, 603), 1_048_576, (800, 600)),  # rounded down to the grid
        ((20000, 10), 65_536, (8192, 8)),  # the 8-pixel floor, still within the budget
    ],
)
def test_working_size(size: tuple[int, int], budget: int, expected: tuple[int, int]) -> None:
    width, height = working_size(*size, budget)
    assert (width, height) == expected
    assert width % 8 == 0 and height % 8 == 0 and width * height <= budget


def test_working_size_keeps_the_aspect_ratio() -> None:
    for w, h in [(6000, 4000), (4032, 3024), (5184, 3456), (3000, 4500), (1920, 1080)]:
        ww, wh = working_size(w, h, 1_048_576)
        assert abs(ww / wh - w / h) < 0.02
        assert ww * wh > 0.95 * 1_048_576 * min(1.0, w * h / 1_048_576) - 2 * 8 * max(ww, wh)


# --- error mapping --------------------------------------------------------------------------


def _answer(status: int, document: Any) -> VendorResponse:
    return VendorResponse(status, {}, json.dumps(document).encode())


def test_error_mapping() -> None:
    detail = [{"loc": ["body", "steps"], "msg": "value is not a valid integer"}]
    retry, error = classify_error(_answer(422, {"detail": detail}))
    assert not retry and isinstance(error, ProviderRejected)
    assert "steps: value is not a valid integer" in str(error)
    oom = {"error": "OutOfMemoryError", "detail": "", "body": "", "errors": "CUDA out of memory."}
    retry, error = classify_error(_answer(500, oom))
    assert not retry and isinstance(error, ProviderUnavailable) and "GPU memory" in str(error)
    other = {"error": "RuntimeError", "detail": "", "body": "", "errors": "tensor sizes"}
    retry, error = classify_error(_answer(500, other))
    assert not retry and isinstance(error, ProviderRejected)
    retry, error = classify_error(_answer(503, {"detail": "upstream"}))
    assert retry and isinstance(error, ProviderUnavailable)
    retry, error = classify_error(_answer(504, {"detail": "gateway timeout"}))
    assert not retry and isinstance(error, ProviderUnavailable)
    retry, error = classify_error(_answer(401, {"detail": "Incorrect username or password"}))
    assert not retry and "credentials" in str(error)


# --- time rules on the mock clock -------------------------------------------------------------


class InlineImages(ImageWorkers):
    """Pillow in the test's task: a worker thread would let the autojump clock run ahead."""

    def __init__(self) -> None:
        super().__init__(1)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return fn(*args)


class Body(httpx.AsyncByteStream):
    """A response body streamed as the WebUI's would be (``send`` reads it with a cap)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data


def _json(status: int, document: Any) -> httpx.Response:
    return httpx.Response(status, stream=Body(json.dumps(document).encode()))


Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


class Backend:
    """A scripted WebUI: ``img2img`` and ``task_states`` (answered in turn, the last repeated)
    and a record of every call's path and time."""

    def __init__(self, img2img: Handler, task_states: list[dict[str, bool] | None]) -> None:
        self.img2img = img2img
        self.task_states = task_states
        self.calls: list[tuple[float, str]] = []
        self.busy = True
        self.progress_latency = 0.0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append((trio.current_time(), path))
        if path == "/sdapi/v1/img2img":
            return await self.img2img(request)
        if path == "/internal/progress":
            await trio.sleep(self.progress_latency)
            state = self.task_states.pop(0) if len(self.task_states) > 1 else self.task_states[0]
            if state is None:
                return _json(404, {"detail": "Not Found"})
            return _json(200, {**state, "progress": None, "eta": None})
        if path == "/sdapi/v1/progress":
            job_count = 1 if self.busy else 0
            return _json(200, {"progress": 0.2, "state": {"job_count": job_count}})
        if path == "/sdapi/v1/interrupt":
            return _json(200, None)
        return _json(404, {"detail": "Not Found"})

    def times(self, path: str) -> list[float]:
        return [t for t, p in self.calls if p == path]


def _state(active: bool = False, queued: bool = False, completed: bool = False) -> dict[str, bool]:
    return {"active": active, "queued": queued, "completed": completed}


async def _hang(request: httpx.Request) -> httpx.Response:
    await trio.sleep_forever()
    raise AssertionError


async def _success(request: httpx.Request) -> httpx.Response:
    import base64

    await trio.sleep(2)
    return _json(200, {"images": [base64.b64encode(RESULT).decode()], "info": "{}"})


def _request() -> ProviderRequest:
    return ProviderRequest("job-1", "slot-001", "img2img", {"prompt": "p"}, PHOTO)


async def _run(
    backend: Backend,
    deadline: float,
    interrupter_out: list[Interrupter] | None = None,
    tracks_tasks: bool | None = True,
) -> ProviderResult | ProviderError | None:
    """Process one request with a deadline ``deadline`` s from now; the background nursery
    (as open_providers has it) stays open until its work is done.  None: cut off; the error
    the driver raised is returned (not raised out of the nursery as an exception group)."""
    client = httpx.AsyncClient(transport=httpx.MockTransport(backend), trust_env=False)
    result: ProviderResult | ProviderError | None = None
    async with client, trio.open_nursery() as background:
        interrupter = Interrupter(client, background)
        interrupter.tracks_tasks = tracks_tasks  # as learnt from an earlier success
        if interrupter_out is not None:
            interrupter_out.append(interrupter)
        provider = SdWebUIProvider(
            client,
            BASE,
            ProviderKeys({}),
            InlineImages(),
            interrupter,
            max_response_bytes=1 << 24,
            concurrency=1,
        )
        with trio.move_on_after(deadline):
            try:
                result = await provider.process(_request())
            except ProviderError as exc:
                result = exc
        backend.calls.append((trio.current_time(), "<job ended>"))
    return result


async def test_the_deadline_is_not_delayed_and_the_interrupt_goes_out_at_it(
    autojump_clock: object,
) -> None:
    backend = Backend(_hang, [_state(active=True)])
    backend.progress_latency = 2.0  # a slow backend must not hold the booth's answer
    start = trio.current_time()
    assert await _run(backend, 10) is None
    [ended] = backend.times("<job ended>")
    assert ended - start == pytest.approx(10)  # the job ended exactly at its deadline
    [asked] = backend.times("/internal/progress")
    [interrupted] = backend.times("/sdapi/v1/interrupt")
    assert asked - start == pytest.approx(10)
    assert interrupted - start == pytest.approx(12)


async def test_a_queued_task_is_interrupted_when_it_starts(autojump_clock: object) -> None:
    states = [_state(queued=True)] * 3 + [_state(active=True)]
    backend = Backend(_hang, states)
    start = trio.current_time()
    await _run(backend, 10)
    asked = backend.times("/internal/progress")
    assert [t - start for t in asked] == pytest.approx([10 + i * POLL_SECONDS for i in range(4)])
    [interrupted] = backend.times("/sdapi/v1/interrupt")
    assert interrupted == pytest.approx(asked[-1])


async def test_a_completed_task_is_not_interrupted(autojump_clock: object) -> None:
    backend = Backend(_hang, [_state(completed=True)])
    await _run(backend, 10)
    assert backend.times("/sdapi/v1/interrupt") == []


async def test_an_old_webui_is_interrupted_only_when_busy(autojump_clock: object) -> None:
    backend = Backend(_hang, [_state()])  # knows none of our task ids
    await _run(backend, 10, tracks_tasks=False)
    assert len(backend.times("/sdapi/v1/progress")) == 1
    assert len(backend.times("/sdapi/v1/interrupt")) == 1
    idle = Backend(_hang, [None])  # no /internal/progress at all
    idle.busy = False
    await _run(idle, 10, tracks_tasks=False)
    assert idle.times("/sdapi/v1/interrupt") == []


async def test_before_the_backend_is_known_an_unknown_task_is_left_alone(
    autojump_clock: object,
) -> None:
    """Until a success told us whether the backend reports our task ids, an unknown task may
    be one that never arrived, and the running job another of ours: no interrupt."""
    backend = Backend(_hang, [_state()])
    await _run(backend, 10, tracks_tasks=None)
    assert backend.times("/sdapi/v1/interrupt") == []
    assert backend.times("/sdapi/v1/progress") == []


@pytest.mark.parametrize(
    ("state", "learnt"), [(_state(completed=True), True), (_state(), False), (None, False)]
)
async def test_the_first_success_tells_whether_task_ids_are_reported(
    autojump_clock: object, state: dict[str, bool] | None, learnt: bool
) -> None:
    backend = Backend(_success, [state])
    interrupters: list[Interrupter] = []
    assert isinstance(await _run(backend, 10, interrupters, tracks_tasks=None), ProviderResult)
    assert interrupters[0].tracks_tasks is learnt
    assert len(backend.times("/internal/progress")) == 1  # asked once, after the answer
    assert backend.times("/sdapi/v1/interrupt") == []


async def test_a_task_that_never_arrived_is_left_alone(autojump_clock: object) -> None:
    """A backend that has reported our tasks before: an unknown task never reached it."""
    backend = Backend(_hang, [_state()])
    interrupters: list[Interrupter] = []
    client = httpx.AsyncClient(transport=httpx.MockTransport(backend), trust_env=False)
    async with client, trio.open_nursery() as background:
        interrupter = Interrupter(client, background)
        interrupter.tracks_tasks = True
        interrupters.append(interrupter)
        interrupter.schedule(BASE, {}, "task(x)", "job-1")
    assert backend.times("/sdapi/v1/interrupt") == []
    assert backend.times("/sdapi/v1/progress") == []


async def test_success_sends_no_interrupt(autojump_clock: object) -> None:
    backend = Backend(_success, [_state(active=True)])
    result = await _run(backend, 10)
    assert (
        isinstance(result, ProviderResult)
        and result.mime_type == "image/png"
        and result.data == RESULT
    )
    assert backend.times("/internal/progress") == []


async def test_backend_down_is_retried_then_503(autojump_clock: object) -> None:
    async def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    backend = Backend(refused, [_state()])
    start = trio.current_time()
    error = await _run(backend, 10)
    assert isinstance(error, ProviderUnavailable) and "backend down" in str(error)
    # 1, 2, 4 s apart while 2 s are left for an attempt; nothing reached the GPU: no interrupt.
    sent = [t - start for t in backend.times("/sdapi/v1/img2img")]
    assert sent == pytest.approx([0, 1, 3, 7])
    assert backend.times("/internal/progress") == []


async def test_a_dropped_connection_is_not_retried_and_its_task_is_checked(
    autojump_clock: object,
) -> None:
    async def dropped(request: httpx.Request) -> httpx.Response:
        await trio.sleep(5)
        raise httpx.ReadError("connection reset", request=request)

    backend = Backend(dropped, [_state(active=True)])
    error = await _run(backend, 30)
    assert isinstance(error, ProviderUnavailable) and "connection lost" in str(error)
    assert len(backend.times("/sdapi/v1/img2img")) == 1  # the GPU had started: no retry
    assert len(backend.times("/sdapi/v1/interrupt")) == 1


async def test_user_pass_goes_as_http_basic(autojump_clock: object) -> None:
    seen: list[str] = []

    async def check(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return await _success(request)

    backend = Backend(check, [_state()])
    client = httpx.AsyncClient(transport=httpx.MockTransport(backend), trust_env=False)
    async with client, trio.open_nursery() as background:
        provider = SdWebUIProvider(
            client,
            BASE,
            ProviderKeys({"SDWEBUI_AUTH": "booth:s3cret"}),
            InlineImages(),
            Interrupter(client, background),
            max_response_bytes=1 << 24,
            concurrency=1,
        )
        await provider.process(_request())
        bad = SdWebUIProvider(
            client,
            BASE,
            ProviderKeys({"SDWEBUI_AUTH": "no-colon"}),
            InlineImages(),
            Interrupter(client, background),
            max_response_bytes=1 << 24,
            concurrency=1,
        )
        with pytest.raises(ProviderRejected, match="user:pass"):
            await bad.process(_request())
    assert seen == ["Basic Ym9vdGg6czNjcmV0"]


async def test_one_job_at_a_time_and_none_sent_without_time_to_finish(
    autojump_clock: object,
) -> None:
    async def long_job(request: httpx.Request) -> httpx.Response:
        await trio.sleep(7)  # _success adds 2 s: 9 s on the GPU
        return await _success(request)

    backend = Backend(long_job, [_state(active=True)])
    client = httpx.AsyncClient(transport=httpx.MockTransport(backend), trust_env=False)
    outcomes: dict[str, object] = {}
    async with client, trio.open_nursery() as background:
        provider = SdWebUIProvider(
            client,
            BASE,
            ProviderKeys({}),
            InlineImages(),
            Interrupter(client, background),
            max_response_bytes=1 << 24,
            concurrency=1,
        )

        async def job(name: str, deadline: float) -> None:
            with trio.move_on_after(deadline):
                try:
                    outcomes[name] = await provider.process(_request())
                except ProviderError as exc:
                    outcomes[name] = exc

        start = trio.current_time()
        async with trio.open_nursery() as jobs:
            jobs.start_soon(job, "first", 10)
            await trio.sleep(0.1)
            jobs.start_soon(job, "second", 9.5)  # gets the GPU at 9 s with 0.6 s left
    assert isinstance(outcomes["first"], ProviderResult)
    second = outcomes["second"]
    assert isinstance(second, ProviderUnavailable) and "not sent" in str(second)
    assert [t - start for t in backend.times("/sdapi/v1/img2img")] == pytest.approx([0])
    assert backend.times("/sdapi/v1/interrupt") == []
