"""A self-hosted diffusion backend's working size: what the photo is scaled to before img2img.

Stable Diffusion works on a latent grid of 8×8 pixels, so the width and height sent to the
backend are multiples of 8; and its time and GPU memory grow with the pixel count (SD 1.5 is
trained at 512², SDXL at 1024²), so the photo is scaled to a pixel budget.  The aspect ratio is
kept as closely as the grid allows.  The result comes back at that size; a slot may ask for it
to be scaled back up to the booth photo's size.

Synchronous Pillow code: run it in the image workers (:mod:`photochangerd.media.imaging`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from PIL import Image

from photochangerd.media.encode import decode, encode, target_format

GRID = 8


def working_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """The largest ``(w, h)``, both multiples of 8, with ``w*h <= max_pixels`` and the ratio
    of ``width:height`` kept as closely as the grid allows (never below 8×8).

    A photo already inside the budget is not enlarged beyond its own size (rounded down to
    the grid).
    """
    if width <= 0 or height <= 0:
        raise ValueError("image size must be positive")
    scale = min(1.0, math.sqrt(max_pixels / (width * height)))
    w = max(GRID, int(width * scale) // GRID * GRID)
    h = max(GRID, int(height * scale) // GRID * GRID)
    # Rounding the scaled size down keeps w*h under the budget; only the 8-pixel floor can
    # push it over (an extreme panorama): shrink the long side then.
    while w * h > max_pixels and max(w, h) > GRID:
        if w >= h:
            w -= GRID
        else:
            h -= GRID
    return w, h


@dataclass(frozen=True, slots=True)
class WorkingImage:
    """The photo at the backend's working size, and the size the booth photo had."""

    data: bytes = field(repr=False)
    mime_type: str
    size: tuple[int, int]
    photo_size: tuple[int, int]  # after EXIF orientation: what the booth sees


def to_working_size(data: bytes, max_pixels: int) -> WorkingImage:
    """Decode ``data`` (EXIF orientation applied), scale it to :func:`working_size` and encode
    it as JPEG (photos have no transparency worth keeping for img2img)."""
    image = decode(data)
    photo_size = image.size
    size = working_size(*photo_size, max_pixels)
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    encoded, mime = encode(image, "JPEG")
    return WorkingImage(encoded, mime, size, photo_size)


def scale_result(data: bytes, size: tuple[int, int], output_format: str) -> tuple[bytes, str]:
    """The backend's result ``data`` resized to ``size`` and encoded in the slot's output
    format (so the pipeline does not encode it a second time)."""
    image = decode(data)
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS)
    return encode(image, target_format(output_format, "image/png"))
