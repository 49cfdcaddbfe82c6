"""Process-wide memory tuning, applied once at daemon start: the garbage collector and glibc's
allocator.

**The cyclic garbage collector.**  After start-up the daemon holds ~100 000 long-lived objects
(modules, classes, routes, pydantic schemas).  A full collection walks all of them: ≈ 30-70 ms
with the event loop stopped, every time the collector decides it is due under load — a booth's
p99 and a load balancer's ``/healthz`` then wait for it.  :func:`freeze_startup_objects` moves
them to the permanent generation once the daemon is ready (``gc.freeze``): they are never
walked again; what requests allocate is collected as before.

**glibc's allocator.**  Measured with the daemon's page faults (``/proc/<pid>/stat``, field
``minflt``) over sequential uploads of a 1 MB photo through Gemini:

- glibc serves allocations above a threshold with their own ``mmap`` and unmaps them on
  ``free``; after the first such block is freed it raises the threshold to that block's size
  (up to 32 MiB), so the next big allocation comes from the heap and stays there.  An argon2id
  verification (19 MiB) at a first start or after a rotation then kept ~19 MiB resident for the
  life of the process (idle 109 MiB after a first start, 90 MiB after a restart).  A fixed
  threshold of 4 MiB turns that adjustment off: blocks of 4 MiB and more (a KDF's memory, a
  20 MB upload read back) go back at once, while a photo's 1-2 MB buffers come from the heap.
  32 MiB (no faults for any block) raised the peak under 30 concurrent uploads by 45 MiB.
- Fixing the mmap threshold also fixes the trim threshold, at 128 KiB: memory freed at the top
  of the heap past that went back to the system and the next photo faulted it in again, page
  by page: 550 faults per upload with a tiny result (≈ 2 ms of kernel time here).  At 8 MiB:
  5 faults, but 2 000 in one run of three with a 1.5 MB result (a photo's churn is about that
  size); at 32 MiB: 2-5 faults in every run (``tests/test_footprint.py``).
- What a burst leaves free on the heap goes back once the daemon is idle: :func:`trim_while_idle`
  calls ``malloc_trim`` every 30 s while no upload and no job is in flight (µs when there is
  nothing to give back), and :func:`freeze_startup_objects` once when the daemon is ready.  The
  threshold is per allocator arena (glibc gives threads up to 8 per core), so under steady load
  the heap can keep more than 32 MiB free in all; measured, the peak under 30 booths with tiny
  results went from 143 to 154-158 MiB.

Elsewhere than glibc none of this applies.  Measured and not taken: ``MALLOC_ARENA_MAX=2``
(fewer per-thread arenas) left the peak under 30 concurrent uploads where it was (180 vs
177 MiB).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import platform
from collections.abc import Callable

import trio

M_TRIM_THRESHOLD = -1  # malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024
IDLE_TRIM_SECONDS = 30.0


def _glibc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def tune_malloc() -> bool:
    """Fix glibc's mmap and trim thresholds; True when they were applied."""
    libc = _glibc()
    if libc is None:
        return False
    try:
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
        )
    except AttributeError:
        return False


async def trim_while_idle(idle: Callable[[], bool], every: float = IDLE_TRIM_SECONDS) -> None:
    """Every ``every`` seconds, give the heap's free memory back to the system if ``idle()``
    (glibc's ``malloc_trim``, in a thread: it walks every arena).  Returns at once elsewhere."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return
    while True:
        await trio.sleep(every)
        if idle():
            await trio.to_thread.run_sync(libc.malloc_trim, 0)


def freeze_startup_objects() -> None:
    """Collect once, then exempt everything alive from later collections (``gc.freeze``); give
    back what start-up left free on the heap (a first start's two argon2id hashes)."""
    gc.collect()
    gc.freeze()
    libc = _glibc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
