"""Stopping an AUTOMATIC1111 job on the GPU when nobody will get its photo.

The WebUI does not stop working on a job because its client went away: a job cut off by our
deadline would keep the GPU busy (20-60 s of sampling) while the next guest's photo waits
behind it.  So when a call ends without an answer (the deadline, a dropped connection, a
proxy's 504), the driver hands the job's task id to :class:`Interrupter`, which, in the
providers' background nursery (never in the cancelled job's scope: the booth's 504 must not
wait for it), asks the WebUI what became of that task and interrupts it only if it is ours:

* WebUI ≥ 1.6 takes the task id we choose (``force_task_id`` in the img2img body) and reports
  it through ``POST /internal/progress {"id_task": …}`` → ``active`` / ``queued`` /
  ``completed``.  ``active``: ``POST /sdapi/v1/interrupt`` (it interrupts whatever runs now,
  which is ours).  ``queued`` (behind someone else's job): an interrupt now would stop *theirs*
  and not prevent ours, so the task is watched (every 0.5 s, at most :data:`WATCH_SECONDS`) and
  interrupted as it starts.  ``completed``: nothing to do.
* Older versions ignore ``force_task_id`` and know none of our ids (all three false).  Which
  kind a backend is, is learnt from the first task it finishes for us (:meth:`Interrupter.learn`
  asks about it once, in the background).  On a backend that reports our ids an unknown task is
  one that never reached it (cut off while uploading): nothing to do.  On an old one it is
  interrupted when ``GET /sdapi/v1/progress`` says a job is running (the GPU box is assumed to
  serve this daemon; docs/providers.md says so).  Before the first success it is left alone:
  an interrupt could stop another job of ours sent after this one was cut off.

Every call has its own short timeout (:data:`CALL_TIMEOUT`), every outcome is logged, and no
error leaves this module (a failed interrupt must not take the daemon down).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from typing import Any

import httpx
import trio

from photochangerd.logs import event
from photochangerd.providers.vendor_http import VendorResponse, send

log = logging.getLogger("photochangerd.providers.sdwebui")

CALL_TIMEOUT = 3.0  # one progress or interrupt call
WATCH_SECONDS = 120.0  # how long a task queued behind another job is watched
POLL_SECONDS = 0.5
MAX_ANSWER_BYTES = 1024 * 1024  # progress answers can hold a live preview image


class TaskState(enum.Enum):
    ACTIVE = "active"
    QUEUED = "queued"
    COMPLETED = "completed"
    UNKNOWN = "unknown"  # never heard of it (an old WebUI, or the request never arrived)


def task_state(document: Any) -> TaskState:
    """The state of a task from ``/internal/progress``'s answer."""
    if not isinstance(document, dict):
        return TaskState.UNKNOWN
    for state in (TaskState.ACTIVE, TaskState.QUEUED, TaskState.COMPLETED):
        if document.get(state.value) is True:
            return state
    return TaskState.UNKNOWN


def backend_busy(document: Any) -> bool:
    """Whether ``GET /sdapi/v1/progress`` says a job is running."""
    if not isinstance(document, dict):
        return False
    state = document.get("state")
    if not isinstance(state, dict):
        return False
    job_count = state.get("job_count")
    return (isinstance(job_count, int) and job_count > 0) or bool(state.get("job"))


class Interrupter:
    """Stops our abandoned tasks on one WebUI backend (see the module's docstring)."""

    def __init__(self, client: httpx.AsyncClient, nursery: trio.Nursery) -> None:
        self._client = client
        self._nursery = nursery
        # Whether the backend reports our task ids (WebUI >= 1.6 takes force_task_id): learnt
        # from the first task it finished for us (:meth:`learn`).  None: not known yet.
        self.tracks_tasks: bool | None = None
        self._learning = False

    def note_state(self, state: TaskState) -> None:
        if state is not TaskState.UNKNOWN:
            self.tracks_tasks = True

    def learn(self, base_url: str, headers: Mapping[str, str], task_id: str) -> None:
        """After a success: ask the backend about that task once, in the background, to know
        whether it reports our task ids (until then an unknown task is never interrupted)."""
        if self.tracks_tasks is not None or self._learning:
            return
        self._learning = True
        try:
            self._nursery.start_soon(self._learn, base_url, dict(headers), task_id)
        except RuntimeError:  # the providers are closing
            self._learning = False

    async def _learn(self, base_url: str, headers: dict[str, str], task_id: str) -> None:
        try:
            state = await self._task_state(base_url, headers, task_id)
            if self.tracks_tasks is None:
                self.tracks_tasks = state is not TaskState.UNKNOWN
            event(log, logging.INFO, "sdwebui.task_ids", reported=self.tracks_tasks)
        except Exception as exc:  # asked again after the next success
            event(log, logging.WARNING, "sdwebui.task_ids", error=type(exc).__name__)
        finally:
            self._learning = False

    def schedule(
        self, base_url: str, headers: Mapping[str, str], task_id: str, job_id: str
    ) -> None:
        """Start stopping ``task_id`` in the background; returns at once (sync: safe to call
        from a ``finally`` of a cancelled job)."""
        try:
            self._nursery.start_soon(self._stop, base_url, dict(headers), task_id, job_id)
        except RuntimeError:  # the providers are closing (shutdown): too late to ask
            _report(logging.WARNING, job_id, task_id, "not checked: shutting down")

    async def _stop(
        self, base_url: str, headers: dict[str, str], task_id: str, job_id: str
    ) -> None:
        started = trio.current_time()
        try:
            with trio.move_on_after(WATCH_SECONDS):
                outcome = await self._stop_when_ours(base_url, headers, task_id)
                seconds = round(trio.current_time() - started, 3)
                _report(logging.INFO, job_id, task_id, outcome, seconds=seconds)
                return
            outcome = f"still queued after {WATCH_SECONDS:.0f} s: not interrupted"
            _report(logging.WARNING, job_id, task_id, outcome)
        except Exception as exc:  # logged: a failed interrupt must not take the daemon down
            outcome = f"could not stop it: {type(exc).__name__} {exc}"
            _report(logging.WARNING, job_id, task_id, outcome)

    async def _stop_when_ours(self, base_url: str, headers: dict[str, str], task_id: str) -> str:
        """What was done: ``interrupted``, ``finished``, ``never arrived``…"""
        while True:
            state = await self._task_state(base_url, headers, task_id)
            self.note_state(state)
            if state is TaskState.ACTIVE:
                await self._interrupt(base_url, headers)
                return "interrupted (it was running)"
            if state is TaskState.COMPLETED:
                return "finished already: nothing to interrupt"
            if state is TaskState.UNKNOWN:
                if self.tracks_tasks:
                    return "never reached the backend: nothing to interrupt"
                if self.tracks_tasks is None:
                    # Not known whether this backend reports task ids: an interrupt now could
                    # stop another job of ours that was sent after this one was cut off.
                    return "unknown to the backend (task ids not known yet): not interrupted"
                if not await self._busy(base_url, headers):
                    return "backend idle: nothing to interrupt"
                await self._interrupt(base_url, headers)
                return "interrupted the running job (the backend does not report task ids)"
            await trio.sleep(POLL_SECONDS)  # queued behind another job: interrupt it as it starts

    async def _call(
        self, method: str, url: str, headers: dict[str, str], json: Any = None
    ) -> VendorResponse:
        request = self._client.build_request(method, url, headers=headers, json=json)
        with trio.move_on_after(CALL_TIMEOUT):
            return await send(self._client, request, MAX_ANSWER_BYTES)
        raise _CallTimedOut(f"{method} {url} took over {CALL_TIMEOUT} s")

    async def _task_state(self, base_url: str, headers: dict[str, str], task_id: str) -> TaskState:
        body = {"id_task": task_id, "id_live_preview": -1, "live_preview": False}
        response = await self._call("POST", f"{base_url}/internal/progress", headers, body)
        if response.status != 200:
            return TaskState.UNKNOWN  # a WebUI without the endpoint: an old one
        return task_state(response.json())

    async def _busy(self, base_url: str, headers: dict[str, str]) -> bool:
        response = await self._call(
            "GET", f"{base_url}/sdapi/v1/progress?skip_current_image=true", headers
        )
        return response.status == 200 and backend_busy(response.json())

    async def _interrupt(self, base_url: str, headers: dict[str, str]) -> None:
        response = await self._call("POST", f"{base_url}/sdapi/v1/interrupt", headers)
        if response.status != 200:
            raise ValueError(f"interrupt answered {response.status}: {response.snippet()}")


def _report(level: int, job_id: str, task_id: str, outcome: str, **fields: Any) -> None:
    """What became of an abandoned task (one log event per task)."""
    event(
        log,
        level,
        "sdwebui.abandoned_task",
        job_id=job_id,
        task_id=task_id,
        outcome=outcome,
        **fields,
    )


class _CallTimedOut(Exception):
    pass
