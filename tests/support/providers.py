"""A scripted provider for tests: the outside world's behaviour on demand.

Registered as provider ``script``; the slot's operation picks the behaviour and its settings
tune it (``seconds``).  It records what happened to each call so tests can assert that work
was really cancelled at the deadline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from photochangerd.providers.base import (
    ProviderRejected,
    ProviderRequest,
    ProviderResult,
    ProviderUnavailable,
)


@dataclass
class CallRecord:
    job_id: str
    operation: str
    started: float
    ended: float | None = None
    cancelled: bool = False


@dataclass
class ScriptedProvider:
    name: str = "script"
    calls: list[CallRecord] = field(default_factory=list)
    finished: trio.Event = field(default_factory=trio.Event)

    async def process(self, request: ProviderRequest) -> ProviderResult:
        record = CallRecord(request.job_id, request.operation, trio.current_time())
        self.calls.append(record)
        try:
            return await self._behave(request)
        except trio.Cancelled:
            record.cancelled = True
            raise
        finally:
            record.ended = trio.current_time()
            self.finished.set()

    async def _behave(self, request: ProviderRequest) -> ProviderResult:
        seconds = float(request.settings.get("seconds", 0))
        operation = request.operation
        if operation == "echo":
            await trio.sleep(seconds)
            return ProviderResult(request.photo.data, request.photo.mime_type)
        if operation == "hang":
            await trio.sleep_forever()
        if operation == "reject":
            raise ProviderRejected("the vendor refused: IMAGE_SAFETY")
        if operation == "unavailable":
            raise ProviderUnavailable("vendor overloaded (503 after retries)")
        if operation == "boom":
            raise RuntimeError("bug in provider")
        if operation == "garbage":
            return ProviderResult(b"not an image at all", "text/plain")
        raise ProviderRejected(f"unknown scripted operation {operation}")
