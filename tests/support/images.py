"""Deterministic, in-memory test images built with Pillow.

Sizes at the defaults (Pillow 11-13, libjpeg-turbo), useful when choosing fixtures:

* ``make_jpeg()`` (2000x1333, q=90, grain=0.1): about 0.8 MB, ~0.15 s to build.
* grain 0.0 -> ~0.37 MB, 0.2 -> ~1.2 MB, 0.5 -> ~1.8 MB, 1.0 -> ~2.4 MB at 2000x1333.
* ``make_jpeg(4000, 3000, grain=0.3)``: about 6.5 MB (for upload-limit tests).
* ``png_bomb()``: ~50 KB file whose header claims 20000x20000 (400 Mpx).

Everything is seeded, so equal arguments always give equal bytes; the results are
cached because several tests tend to ask for the same photo.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from functools import lru_cache

from PIL import Image

__all__ = [
    "make_frame_png",
    "make_jpeg",
    "make_png",
    "make_webp",
    "png_bomb",
    "truncated",
]


def _photo(width: int, height: int, seed: int, grain: float) -> Image.Image:
    """RGB picture with smooth gradients, soft blobs and sensor-like grain.

    Pure gradients compress to almost nothing and pure noise is unrealistically big;
    mixing the two gives JPEG sizes in the range a real booth camera produces.
    """
    rng = random.Random(seed)
    size = (width, height)
    base = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").resize(size),
            Image.linear_gradient("L").rotate(90).resize(size),
            Image.radial_gradient("L").resize(size),
        ),
    )
    # Low-resolution noise scaled up bicubically looks like out-of-focus background.
    bw, bh = max(1, width // 16), max(1, height // 16)
    blobs = Image.frombytes("RGB", (bw, bh), rng.randbytes(bw * bh * 3))
    img = Image.blend(base, blobs.resize(size, Image.Resampling.BICUBIC), 0.4)
    if grain > 0:
        noise = Image.frombytes("RGB", size, rng.randbytes(width * height * 3))
        img = Image.blend(img, noise, grain)
    return img


def _encode_jpeg(img: Image.Image, quality: int, orientation: int | None) -> bytes:
    buf = io.BytesIO()
    if orientation is None:
        img.save(buf, "JPEG", quality=quality)
    else:
        # Cameras tag rotation instead of rotating pixels; servers must honour it.
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(buf, "JPEG", quality=quality, exif=exif)
    return buf.getvalue()


@lru_cache(maxsize=32)
def make_jpeg(
    width: int = 2000,
    height: int = 1333,
    quality: int = 90,
    seed: int = 0,
    *,
    grain: float = 0.1,
    target_bytes: int | None = None,
    orientation: int | None = None,
) -> bytes:
    """A photo-like baseline JPEG.

    ``target_bytes`` searches ``grain`` (0..1) until the file is within 5 % of the
    target, raising ``ValueError`` when the target is out of reach at this size and
    quality (then change width/height). ``orientation`` adds an EXIF Orientation tag.
    """
    if target_bytes is None:
        return _encode_jpeg(_photo(width, height, seed, grain), quality, orientation)

    def build(g: float) -> bytes:
        return _encode_jpeg(_photo(width, height, seed, g), quality, orientation)

    lo, hi = 0.0, 1.0
    smallest, largest = build(lo), build(hi)
    if not len(smallest) * 0.95 <= target_bytes <= len(largest) * 1.05:
        raise ValueError(
            f"{target_bytes} B unreachable at {width}x{height} q={quality}: "
            f"range is {len(smallest)}..{len(largest)} B"
        )
    best = min((smallest, largest), key=lambda d: abs(len(d) - target_bytes))
    for _ in range(12):  # size grows monotonically with grain, so bisect
        if abs(len(best) - target_bytes) <= target_bytes * 0.05:
            break
        mid = (lo + hi) / 2
        data = build(mid)
        if abs(len(data) - target_bytes) < abs(len(best) - target_bytes):
            best = data
        if len(data) < target_bytes:
            lo = mid
        else:
            hi = mid
    return best


@lru_cache(maxsize=32)
def make_png(width: int, height: int, alpha: bool = False, seed: int = 0) -> bytes:
    """A PNG (RGB, or RGBA with a left-to-right alpha ramp when ``alpha``)."""
    img = _photo(width, height, seed, grain=0.05)
    if alpha:
        img.putalpha(Image.linear_gradient("L").rotate(90).resize((width, height)))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@lru_cache(maxsize=32)
def make_webp(width: int, height: int, seed: int = 0) -> bytes:
    """A lossy WebP of the same photo-like content."""
    buf = io.BytesIO()
    _photo(width, height, seed, grain=0.05).save(buf, "WEBP", quality=80)
    return buf.getvalue()


@lru_cache(maxsize=32)
def make_frame_png(width: int, height: int, border: int | None = None) -> bytes:
    """An RGBA overlay frame: opaque coloured border, fully transparent centre.

    ``border`` defaults to a tenth of the shorter side (at least 1 px).
    """
    b = max(1, min(width, height) // 10) if border is None else border
    img = Image.new("RGBA", (width, height), (200, 30, 90, 255))
    if width > 2 * b and height > 2 * b:
        img.paste((0, 0, 0, 0), (b, b, width - b, height - b))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def truncated(data: bytes, keep: float = 0.6) -> bytes:
    """The first ``keep`` fraction of ``data``: headers parse, ``load()`` fails."""
    return data[: int(len(data) * keep)]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


@lru_cache(maxsize=4)
def png_bomb(side: int = 20000) -> bytes:
    """A valid 1-bit greyscale PNG of ``side`` x ``side`` black pixels.

    Built by hand so it never exists decoded in memory: rows are a filter byte plus
    ceil(side/8) zero bytes, streamed through zlib (~1000:1 on zeros). For 20000 that is
    50 MB of scanlines -> ~50 KB of file in well under a second. Pillow's own
    ``Image.open`` refuses it with ``DecompressionBombError`` (> 2 x MAX_IMAGE_PIXELS).
    """
    row = bytes(1 + (side + 7) // 8)
    comp = zlib.compressobj(9)
    rows_per_block = max(1, (1 << 20) // len(row))  # feed ~1 MB at a time
    parts: list[bytes] = []
    for start in range(0, side, rows_per_block):
        parts.append(comp.compress(row * min(rows_per_block, side - start)))
    parts.append(comp.flush())
    # IHDR: width, height, bit depth 1, colour type 0 (grey), deflate, filter 0, no interlace.
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )
