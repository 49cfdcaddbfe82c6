"""The 15 fixed ingest slots."""

from __future__ import annotations

import re

SLOT_COUNT = 15
SLOT_IDS: tuple[str, ...] = tuple(f"slot-{n:03d}" for n in range(1, SLOT_COUNT + 1))

# Strict: exactly three digits.  Anything else (``..``, NUL, backslashes, ``slot-1``) is not a
# slot id and never reaches the database or the file system.
SLOT_ID_PATTERN = r"slot-[0-9]{3}"
_SLOT_ID_RE = re.compile(SLOT_ID_PATTERN)


def is_slot_id(value: str) -> bool:
    """True for a well-formed slot id that names one of the 15 slots."""
    return _SLOT_ID_RE.fullmatch(value) is not None and value in SLOT_IDS


# What a request naming no slot is told (``slot-1``, ``SLOT-001``, ``slot-016``).
NO_SUCH_SLOT = f"no such slot (slots are {SLOT_IDS[0]} to {SLOT_IDS[-1]})"  # ASCII: JSON bodies
