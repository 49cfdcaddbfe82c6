"""The guest page's picture: the result at screen size (synchronous Pillow work).

Results range from a ~300 KB 1 MP AI image to the 10–20 MB 24 MP original a ``passthrough``
slot hands back; venue Wi-Fi and phone screens want neither more than ~1600 px nor megabytes.
The download link keeps the full result; this is only what the page shows.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps

from photochangerd.media.images import FORMATS

DISPLAY_EDGE = 1600  # px, long edge: a 3x phone screen at 375 css px is 1125 px wide
DISPLAY_DIRECT_BYTES = 1_500_000  # a result this small and no larger than DISPLAY_EDGE is shown
DISPLAY_MIME = "image/webp"  # keeps transparency (PNG results), smaller than JPEG at equal looks


def fits_display(path: Path | BinaryIO, size_bytes: int) -> bool:
    """Whether the stored result can be shown as it is (reads only the header)."""
    if size_bytes > DISPLAY_DIRECT_BYTES:
        return False
    with Image.open(path, formats=list(FORMATS)) as probe:
        return max(probe.size) <= DISPLAY_EDGE


def display_rendition(data: bytes) -> bytes:
    """``data`` at most :data:`DISPLAY_EDGE` px on its long edge, as WebP, upright.

    JPEG is decoded DCT-scaled (``draft``): a 24 MP photo decodes at 1/2–1/8 of its size,
    a fraction of the time and memory of a full decode."""
    with Image.open(io.BytesIO(data), formats=list(FORMATS)) as image:
        if image.format == "JPEG":
            image.draft("RGB", (DISPLAY_EDGE, DISPLAY_EDGE))
        image.load()
        upright = ImageOps.exif_transpose(image)
    upright.thumbnail((DISPLAY_EDGE, DISPLAY_EDGE), Image.Resampling.LANCZOS)
    if upright.mode not in ("RGB", "RGBA"):
        has_alpha = "A" in upright.getbands() or "transparency" in upright.info
        upright = upright.convert("RGBA" if has_alpha else "RGB")
    buffer = io.BytesIO()
    upright.save(buffer, "WEBP", quality=82, method=4)
    return buffer.getvalue()
