"""Process-wide memory tuning, applied once at daemon start: the garbage collector and glibc's
allocator.

**The cyclic garbage collector.**  After start-up the daemon holds ~100 000 long-lived objects
(modules, classes, routes, pydantic schemas).  A full collection walks all of them: ≈ 30-70 ms
with the event loop stopped, every time the collector decides it is due under load — a booth's
p99 and a load balancer's ``/healthz`` then wait for it.  :func:`freeze_startup_objects` moves
them to the permanent generation once the daemon is ready (``gc.freeze``): they are never
walked again; what requests allocate is collected as before.

**glibc's allocator.**

glibc serves allocations above a threshold with their own ``mmap`` and gives them back to the
system on ``free``; but after the first such block is freed it raises the threshold to that
block's size (up to 32 MiB), so the next big allocation comes from the heap and stays there
after it is freed.  An argon2id verification (19 MiB) at a first start or after a rotation then
kept ~19 MiB resident for the life of the process (measured: idle 109 MiB after a first start,
90 MiB after a restart).  A fixed threshold of 4 MiB turns that adjustment off: blocks of 4 MiB
and more (a KDF's memory, a 20 MB upload read back) are returned at once, while the 1-2 MB
buffers of a typical photo stay on the heap, reused without page faults (a 256 KiB threshold
cost ≈ 10 ms of CPU per upload with a 1.5 MB result).  Elsewhere than glibc this does nothing.

Measured and not taken: ``MALLOC_ARENA_MAX=2`` (fewer per-thread arenas) left the peak under
30 concurrent uploads where it was (180 vs 177 MiB), so the systemd unit does not set it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import platform

M_MMAP_THRESHOLD = -3  # malloc.h
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024


def tune_malloc() -> bool:
    """Fix glibc's mmap threshold; True when it was applied."""
    if platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False


def freeze_startup_objects() -> None:
    """Collect once, then exempt everything alive from later collections (``gc.freeze``)."""
    gc.collect()
    gc.freeze()
