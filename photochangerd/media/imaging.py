"""Pillow work (decode, transform, encode) off the event loop, bounded by memory.

A 24 MP decode holds ~270 MB; the limiter bounds how many run at once so a burst of uploads
cannot exhaust memory, and threads keep the event loop free while Pillow works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

T = TypeVar("T")


class ImageWorkers:
    """``await images.run(fn, *args)``: run Pillow code in a thread under a capacity limit."""

    def __init__(self, threads: int) -> None:
        self.limiter = trio.CapacityLimiter(threads)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)
