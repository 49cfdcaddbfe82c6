"""The guest page's screen-size pictures, made once and one at a time.

A guest link is shared (a QR code on a print, a group chat), so its picture is asked for by many
phones at once.  Each request used to read the whole result (up to 20 MB) into memory, then
queue for an image thread to render it — the same two threads the booths' photos need: sixty
requests for one 12.8 MB result held 770 MB and stalled a booth upload for 2.3 s (a review,
2026-12-02).  Here a result is read only once a rendition's turn has come; one rendition is
made at a time (an image thread is always left to the booths); concurrent requests for the same
picture share one making; and the last few made are kept in memory (a WebP of at most 1600 px
is a few hundred KB).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

import trio

from photochangerd.media.display import display_rendition
from photochangerd.media.imaging import ImageWorkers
from photochangerd.media.objects import ObjectStoreUnavailable

KEEP = 16  # renditions kept in memory (≈ 0.2-0.5 MB each)
READ_SECONDS = 10.0  # to read a result for its rendition (a bucket's GET of 20 MB: ~1 s)


class DisplayRenditions:
    def __init__(self, keep: int = KEEP) -> None:
        self._keep = keep
        self._turn = trio.Lock()  # one rendition at a time, whatever the image threads
        self._made: OrderedDict[str, bytes] = OrderedDict()
        self._making: dict[str, trio.Event] = {}

    async def get(
        self, key: str, read: Callable[[], Awaitable[bytes]], images: ImageWorkers
    ) -> bytes:
        """The rendition named ``key`` (the result's checksum), made from ``read()`` if it is
        not kept; concurrent callers for the same key share one making."""
        while True:
            made = self._made.get(key)
            if made is not None:
                self._made.move_to_end(key)
                return made
            pending = self._making.get(key)
            if pending is None:
                break
            await pending.wait()  # and look again: kept, or the maker failed (then our turn)
        done = self._making[key] = trio.Event()
        try:
            async with self._turn:
                # Only now: waiting requests hold no result in memory.  Bounded: a bucket that
                # does not answer must not hold every other guest's picture behind this one.
                with trio.move_on_after(READ_SECONDS) as late:
                    data = await read()
                if late.cancelled_caught:
                    raise ObjectStoreUnavailable(f"no answer in {READ_SECONDS:g} s")
                made = await images.run(display_rendition, data)
                del data
        finally:
            del self._making[key]
            done.set()
        self._made[key] = made
        while len(self._made) > self._keep:
            self._made.popitem(last=False)
        return made
