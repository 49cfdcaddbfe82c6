"""Fake Turbotext photo API: ``POST {base}/api_ai/{method}``, form-encoded, two steps.

``do=create_queue`` (+ the method's fields) → ``{"success":true,"queueid":N}`` and a job; the
fake then really GETs every input URL (in the background, after the job's ``fetch_delay``)
with its own ``httpx.AsyncClient``, and records each ``Fetch``.  ``do=get_result&queueid=N``
→ ``{"action":"reconnect"}`` while the fetches are running or for the job's first
``reconnects`` polls, then the job's answer (repeated for any later poll).  A failed fetch
(non-200, unreachable, not an image) fails the job with ``url_error``.

Checks before scripting (nothing consumed): unknown path → HTML 404; wrong/missing Bearer
token → ``bad_token`` mode ``"401"`` (HTTP 401) or ``"json"`` (HTTP 200), both with
``{"success":false,"error":"bad_token"}``; unknown method → ``method_not_found``; missing ``do``
or required field, or an optional field out of range → ``params_error``; unknown queueid →
``queue_not_found``.  Only urlencoded bodies are read (a JSON or multipart body has no fields).

Outcomes, one consumed per ``create_queue`` (``FakeTurbotext.OUTCOMES``):

* ``success`` — params ``reconnects`` (default ``FakeTurbotext.reconnects``), ``shape`` (below,
  default per method), ``download_404_once`` (bool), ``fetch_delay`` (seconds),
  ``forbidden_content`` (bool, ``data.forbidden_content``).
* ``error`` — ``{"success":false,"error":code}``; params ``code`` (``LIMIT``…), ``at``
  (``"result"`` default: after the reconnects; ``"create"``: instead of a queueid).
  Shortcuts: ``limit`` (``LIMIT`` at create), ``face_not_detected`` (at result).
* ``stuck`` — reconnect forever.
* ``html_500_create`` — nginx HTML 500 instead of a queueid (no job made).
* ``html_500_poll`` — the first ``times`` polls (default: all) get HTML 500, then as success.
* ``hang`` — create never answers until the client disconnects; ``slow(s)`` delays create.

Result shapes: ``relative`` (image2image, vendor example: only ``data.image[0]``, a path such
as ``image/generate_image2image_id12_0.png`` relative to the base URL); ``uploaded_image``
(mix_images: top-level absolute ``uploaded_image``, no ``data.image``);
``uploaded_image_and_data_image`` (deepfake_photo: both absolute); ``data_uploaded_image``
(only ``data.uploaded_image``).
The fake serves the result (the photo input in greyscale, PNG) at ``/image/<name>.png`` and
``/download.php?f=<name>.png``.
"""

from __future__ import annotations

import dataclasses
import ssl
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, ClassVar, Literal

import httpx
import trio

from tests.fakes.base import Exchange, FakeServer, Outcome, RecordedRequest
from tests.fakes.images import derive_image, image_size, is_image

__all__ = ["METHODS", "SHAPES", "FakeTurbotext", "Fetch", "TurbotextJob"]

# method → (URL fields in fetch order, required fields, the field holding the guest's photo)
METHODS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "generate_image2image": (("url",), ("url", "content"), "url"),
    "mix_images": (("url_image_target", "url"), ("url_image_target", "url"), "url_image_target"),
    "deepfake_photo": (("url", "url_image_target"), ("url", "url_image_target"), "url"),
}
SHAPES = ("relative", "uploaded_image", "uploaded_image_and_data_image", "data_uploaded_image")
_DEFAULT_SHAPE = {
    "generate_image2image": "relative",
    "mix_images": "uploaded_image",
    "deepfake_photo": "uploaded_image_and_data_image",
}
_NGINX_500 = (
    "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n"
    "<center><h1>500 Internal Server Error</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_NGINX_404 = _NGINX_500.replace("500 Internal Server Error", "404 Not Found")


@dataclass
class Fetch:
    """One GET the fake made of an input URL."""

    field: str  # form field the URL came in ("url", "url_image_target")
    url: str
    started_at: float
    finished_at: float | None = None
    status: int | None = None  # None: no HTTP answer (refused, timeout, bad URL)
    error: str | None = None
    content_type: str | None = None
    data: bytes = dataclasses.field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        return self.status == 200 and is_image(self.data)


@dataclass
class TurbotextJob:
    queueid: int
    method: str
    form: dict[str, str]
    outcome: Outcome
    created_at: float
    polls: int = 0
    fetches: list[Fetch] = dataclasses.field(default_factory=list)
    fetched: trio.Event = dataclasses.field(default_factory=trio.Event)
    result_name: str | None = None  # served file name once the job succeeded
    result: bytes | None = dataclasses.field(default=None, repr=False)
    result_document: dict[str, Any] | None = None
    downloads: int = 0  # GETs of the result file (including a 404)

    @property
    def fetch_failed(self) -> bool:
        return any(not f.ok for f in self.fetches)


@cache
def ssl_context() -> ssl.SSLContext:
    """One verifying context for every fake's fetch client (building one costs ~50 ms)."""
    return httpx.create_ssl_context()


class FakeTurbotext(FakeServer):
    OUTCOMES: ClassVar[frozenset[str]] = frozenset(
        {
            "success",
            "error",
            "limit",
            "face_not_detected",
            "stuck",
            "html_500_create",
            "html_500_poll",
            "hang",
        }
    )

    def __init__(
        self,
        *,
        api_key: str = "test-turbotext-key",
        bad_token: Literal["401", "json"] = "401",
        reconnects: int = 1,
        first_queueid: int = 12345,
        fetch_timeout: float = 10.0,
        json_content_type: str = "application/json; charset=utf-8",
    ) -> None:
        super().__init__(api_key=api_key)
        self.bad_token = bad_token
        self.reconnects = reconnects  # default reconnects before a job's answer
        self.fetch_timeout = fetch_timeout
        self.json_content_type = json_content_type
        self.jobs: dict[int, TurbotextJob] = {}
        self._next_queueid = first_queueid
        self._files: dict[str, TurbotextJob] = {}
        self._http: httpx.AsyncClient | None = None

    @property
    def fetches(self) -> list[Fetch]:
        """Every input-URL fetch of every job, in job order."""
        return [f for job in self.jobs.values() for f in job.fetches]

    def creates(self, method: str | None = None) -> list[RecordedRequest]:
        """Recorded ``create_queue`` calls (of ``method``, e.g. ``"mix_images"``)."""
        path = f"/api_ai/{method}" if method else None
        return self.calls(path, do="create_queue")

    def polls(self, queueid: int | None = None) -> list[RecordedRequest]:
        """Recorded ``get_result`` calls (for ``queueid``)."""
        if queueid is None:
            return self.calls(do="get_result")
        return self.calls(do="get_result", queueid=str(queueid))

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        async with httpx.AsyncClient(
            timeout=self.fetch_timeout, follow_redirects=True, verify=ssl_context()
        ) as http:
            self._http = http
            await super().serve(task_status=task_status)

    # routing

    async def handle(self, exchange: Exchange) -> None:
        record = exchange.record
        if record.method == "GET" and (
            record.path.startswith("/image/") or record.path == "/download.php"
        ):
            await self._download(exchange)
            return
        if record.method != "POST" or not record.path.startswith("/api_ai/"):
            await exchange.respond_html(404, _NGINX_404)
            return
        if record.headers.get("authorization") != f"Bearer {self.api_key}":
            status = 401 if self.bad_token == "401" else 200
            await self._json(exchange, {"success": False, "error": "bad_token"}, status)
            return
        method = record.path.removeprefix("/api_ai/")
        if method not in METHODS:
            await self._json(exchange, {"success": False, "error": "method_not_found"})
            return
        do = record.form.get("do")
        if do == "create_queue":
            await self._create(exchange, method)
        elif do == "get_result":
            await self._poll(exchange, method)
        else:
            await self._json(exchange, {"success": False, "error": "params_error"})

    async def _json(self, exchange: Exchange, document: Any, status: int = 200) -> None:
        await exchange.respond_json(status, document, content_type=self.json_content_type)

    # create_queue

    async def _create(self, exchange: Exchange, method: str) -> None:
        form = exchange.record.form
        _, required, _ = METHODS[method]
        if any(not form.get(name, "").strip() for name in required) or not _optional_ok(form):
            await self._json(exchange, {"success": False, "error": "params_error"})
            return
        chosen = await self.start_outcome(exchange)
        if chosen is None:
            return
        if chosen.name == "html_500_create":
            await exchange.respond_html(500, _NGINX_500)
            return
        code = _create_error(chosen)
        if code is not None:
            await self._json(exchange, {"success": False, "error": code})
            return
        queueid = self._next_queueid
        self._next_queueid += 1
        job = TurbotextJob(queueid, method, dict(form), chosen, trio.current_time())
        self.jobs[queueid] = job
        self.nursery.start_soon(self._fetch_inputs, job)
        await self._json(exchange, {"success": True, "queueid": queueid})

    async def _fetch_inputs(self, job: TurbotextJob) -> None:
        await trio.sleep(float(job.outcome.params.get("fetch_delay", 0.0)))
        url_fields, _, _ = METHODS[job.method]
        for name in url_fields:
            fetch = Fetch(name, job.form[name], trio.current_time())
            job.fetches.append(fetch)
            try:
                assert self._http is not None
                response = await self._http.get(fetch.url)
            except (httpx.HTTPError, ValueError) as exc:  # refused, timeout, not a URL
                fetch.error = f"{type(exc).__name__}: {exc}"
            else:
                fetch.status = response.status_code
                fetch.content_type = response.headers.get("content-type")
                fetch.data = response.content
            fetch.finished_at = trio.current_time()
            self.notify()
        job.fetched.set()
        self.notify()

    # get_result

    async def _poll(self, exchange: Exchange, method: str) -> None:
        raw = exchange.record.form.get("queueid", "")
        job = self.jobs.get(int(raw)) if raw.strip().isdigit() else None
        if job is None or job.method != method:
            await self._json(exchange, {"success": False, "error": "queue_not_found"})
            return
        job.polls += 1
        exchange.record.outcome = job.outcome.name
        params = job.outcome.params
        if job.outcome.name == "html_500_poll":
            times = params.get("times")
            if times is None or job.polls <= int(times):
                await exchange.respond_html(500, _NGINX_500)
                return
        if job.outcome.name == "stuck" or not job.fetched.is_set():
            await self._json(exchange, {"action": "reconnect"})
            return
        if job.fetch_failed:
            await self._json(exchange, {"success": False, "error": "url_error"})
            return
        if job.polls <= int(params.get("reconnects", self.reconnects)):
            await self._json(exchange, {"action": "reconnect"})
            return
        code = _result_error(job.outcome)
        if code is not None:
            await self._json(exchange, {"success": False, "error": code})
            return
        if job.result_document is None:
            await self._finish(job)
        await self._json(exchange, job.result_document)

    async def _finish(self, job: TurbotextJob) -> None:
        _, _, photo_field = METHODS[job.method]
        photo = next(f.data for f in job.fetches if f.field == photo_field)
        job.result = await trio.to_thread.run_sync(partial(derive_image, photo, fmt="png"))
        width, height = image_size(job.result)
        name = f"{job.method}_id{job.queueid}_0.png"
        job.result_name = name
        self._files[name] = job
        relative = f"image/{name}"
        absolute = f"{self.url}/download.php?f={name}"
        shape = job.outcome.params.get("shape", _DEFAULT_SHAPE[job.method])
        data: dict[str, Any] = {"width": width, "height": height}
        if job.method == "generate_image2image":
            data.update(
                user_id=int(job.form.get("user_id", "1") or 1),
                prompt=job.form.get("content", ""),
                scale=float(job.form.get("scale", "7.5") or 7.5),
                seed=int(job.form.get("seed", "5443937701") or 5443937701),
                strength=int(job.form.get("strength", "40") or 40),
                original_language=job.form.get("original_language", "ru"),
            )
        elif job.method == "mix_images":
            data.update(prompt=job.form.get("content", ""), seed=9147962925, strength=50)
            data["pattern_prompt"] = False
        else:
            data["face_restore"] = job.form.get("face_restore", "False")
        data["forbidden_content"] = bool(job.outcome.params.get("forbidden_content", False))
        document: dict[str, Any] = {"success": True, "error": "", "data": data}
        if shape == "relative":
            data["image"] = [relative]
        elif shape == "uploaded_image":
            document["uploaded_image"] = absolute
        elif shape == "uploaded_image_and_data_image":
            data["image"] = [absolute]
            document["uploaded_image"] = absolute
        elif shape == "data_uploaded_image":
            data["uploaded_image"] = absolute
        else:
            raise ValueError(f"unknown Turbotext result shape {shape!r} ({', '.join(SHAPES)})")
        job.result_document = document

    # result downloads

    async def _download(self, exchange: Exchange) -> None:
        record = exchange.record
        if record.path == "/download.php":
            name = record.query.get("f", "")
        else:
            name = record.path.removeprefix("/image/")
        job = self._files.get(name)
        if job is None or job.result is None:
            await exchange.respond_html(404, _NGINX_404)
            return
        job.downloads += 1
        if job.outcome.params.get("download_404_once") and job.downloads == 1:
            await exchange.respond_html(404, _NGINX_404)
            return
        await exchange.respond(200, job.result, "image/png")


def _create_error(chosen: Outcome) -> str | None:
    if chosen.name == "limit":
        return "LIMIT"
    if chosen.name == "error" and chosen.params.get("at", "result") == "create":
        return str(chosen.params.get("code", "LIMIT"))
    return None


def _result_error(chosen: Outcome) -> str | None:
    if chosen.name == "face_not_detected":
        return "face_not_detected"
    if chosen.name == "error":
        return str(chosen.params.get("code", "error"))
    return None


def _number_in(form: dict[str, str], name: str, low: float, high: float) -> bool:
    value = form.get(name)
    if value is None or value == "":
        return True
    try:
        return low <= float(value) <= high
    except ValueError:
        return False


def _optional_ok(form: dict[str, str]) -> bool:
    """Optional fields within the documented ranges."""
    return (
        _number_in(form, "strength", 0, 80)
        and _number_in(form, "scale", 0.1, 20)
        and _number_in(form, "seed", 1, 10**10)
        and form.get("face_restore", "True") in ("True", "False")
    )
