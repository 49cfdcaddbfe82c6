"""Result pictures the fakes send back, and a check that a result came from a given input.

A fake vendor "edits" a photo by turning it grey (and cropping/resizing it the way the vendor
would).  That keeps results cheap to make yet traceable: ``looks_derived_from(result, photo)``
tells a test that the bytes the daemon returned really went through the fake, not that the
daemon echoed the input (the input is in colour) or invented something.

Everything here is synchronous CPU work; the fakes run it in a worker thread.
"""

from __future__ import annotations

import hashlib
import io
import random
import tempfile
import warnings
from pathlib import Path

from PIL import Image, ImageChops, ImageOps, ImageStat
from PIL import __version__ as PILLOW_VERSION

__all__ = [
    "ACCEPTED_FORMATS",
    "derive_image",
    "generated_image",
    "image_size",
    "is_image",
    "looks_derived_from",
    "photo_png",
    "thought_image",
]

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")
_PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}


def _open(data: bytes) -> Image.Image:
    # Only the formats the vendors take; decompression-bomb warnings become errors here
    # (pytest runs with warnings as errors anyway, this keeps the fakes' behaviour the same
    # outside pytest).
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))


def is_image(data: bytes) -> bool:
    """True when ``data`` starts like a JPEG/PNG/WebP Pillow can read (header only)."""
    try:
        with _open(data):
            return True
    except Exception:
        return False


def image_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of an encoded image."""
    with _open(data) as img:
        return img.size


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    pil_format = _PIL_FORMAT[fmt.lower()]
    if pil_format == "PNG":
        img.save(buf, "PNG", compress_level=1)  # speed over size: tests pay for every encode
    else:
        img.save(buf, pil_format, quality=85)
    return buf.getvalue()


def _crop_to_ratio(img: Image.Image, ratio: float) -> Image.Image:
    width, height = img.size
    if width / height > ratio:
        new_width = max(1, round(height * ratio))
        left = (width - new_width) // 2
        return img.crop((left, 0, left + new_width, height))
    new_height = max(1, round(width / ratio))
    top = (height - new_height) // 2
    return img.crop((0, top, width, top + new_height))


def _fit_pixels(img: Image.Image, max_pixels: int) -> Image.Image:
    width, height = img.size
    if width * height <= max_pixels:
        return img  # never upscale: tests use small photos and pay for every pixel
    scale = (max_pixels / (width * height)) ** 0.5
    return img.resize((max(1, int(width * scale)), max(1, int(height * scale))))


def _load_rgb(data: bytes, max_pixels: int) -> Image.Image:
    with _open(data) as img:
        # JPEG draft mode decodes at 1/2..1/8 scale: a 24 MP photo costs a fraction to read.
        side = int(max_pixels**0.5)
        img.draft("RGB", (side, side))
        return ImageOps.exif_transpose(img).convert("RGB")


def derive_image(
    source: bytes | None,
    *,
    fmt: str = "png",
    max_pixels: int = 1024 * 1024,
    aspect_ratio: float | None = None,
    exact_size: tuple[int, int] | None = None,
) -> bytes:
    """The fake's "edited" picture: ``source`` in greyscale (stored as RGB, as vendors do).

    ``aspect_ratio`` (width/height) centre-crops; ``exact_size`` crops to its ratio and resizes
    to it (OpenAI's fixed sizes); otherwise at most ``max_pixels``.  A ``source`` that is None
    or not a readable image gives ``generated_image()`` instead.
    """
    try:
        img = _load_rgb(source, max_pixels) if source else None
    except Exception:
        img = None
    if img is None:
        return generated_image(exact_size or (512, 512), fmt=fmt)
    if exact_size is not None:
        img = _crop_to_ratio(img, exact_size[0] / exact_size[1]).resize(exact_size)
    else:
        if aspect_ratio is not None:
            img = _crop_to_ratio(img, aspect_ratio)
        img = _fit_pixels(img, max_pixels)
    return _encode(ImageOps.grayscale(img).convert("RGB"), fmt)


def thought_image(source: bytes | None) -> bytes:
    """A small colour-inverted draft: what a 3-pro "thought" image stands for.

    Deliberately *not* derived-looking, so a driver that keeps a thought image fails a test.
    """
    try:
        img = _load_rgb(source, 128 * 128) if source else None
    except Exception:
        img = None
    if img is None:
        img = Image.new("RGB", (128, 128), (255, 0, 0))
    img.thumbnail((128, 128))
    return _encode(ImageOps.invert(img), "png")


def generated_image(size: tuple[int, int] = (512, 512), *, fmt: str = "png") -> bytes:
    """A deterministic colourful picture for requests that carried no usable input image."""
    red = Image.linear_gradient("L").resize(size)
    green = Image.linear_gradient("L").rotate(90).resize(size)
    blue = Image.radial_gradient("L").resize(size)
    img = Image.merge("RGB", (red, green, blue))
    return _encode(img, fmt)


def looks_derived_from(result: bytes, source: bytes, *, tolerance: float = 16.0) -> bool:
    """True when ``result`` is a fake's greyscale edit of ``source``.

    Compares 32x32 luminance thumbnails (after centre-cropping ``source`` to the result's
    aspect ratio, as the fakes do) and requires the result to be colourless, so returning the
    colour input unchanged does not pass.  ``tolerance`` is the mean absolute difference
    allowed, in 0..255 levels (JPEG/WebP re-encoding moves values by a few levels).
    """
    with _open(result) as res_img:
        res = ImageOps.exif_transpose(res_img).convert("RGB")
    src = _load_rgb(source, 4 * 1024 * 1024)
    src = _crop_to_ratio(src, res.width / res.height)
    thumb = (32, 32)
    diff = ImageChops.difference(
        ImageOps.grayscale(res).resize(thumb), ImageOps.grayscale(src).resize(thumb)
    )
    if ImageStat.Stat(diff).mean[0] > tolerance:
        return False
    # Colourless: chroma channels stay near neutral (128) everywhere.
    _, cb, cr = res.resize(thumb).convert("YCbCr").split()
    return all(abs(ImageStat.Stat(ch).mean[0] - 128) < 4 for ch in (cb, cr)) and all(
        lo >= 120 and hi <= 136 for lo, hi in (ImageStat.Stat(ch).extrema[0] for ch in (cb, cr))
    )


def _photo_rgb(size: tuple[int, int], seed: int, grain: float) -> Image.Image:
    """Gradients, soft blobs and sensor-like grain: compresses like a photo, not like a chart."""
    rng = random.Random(seed)
    width, height = size
    base = Image.merge(
        "RGB",
        (
            Image.linear_gradient("L").resize(size),
            Image.linear_gradient("L").rotate(90).resize(size),
            Image.radial_gradient("L").resize(size),
        ),
    )
    bw, bh = max(1, width // 16), max(1, height // 16)
    blobs = Image.frombytes("RGB", (bw, bh), rng.randbytes(bw * bh * 3))
    img = Image.blend(base, blobs.resize(size, Image.Resampling.BICUBIC), 0.4)
    noise = Image.frombytes("RGB", size, rng.randbytes(width * height * 3))
    return Image.blend(img, noise, grain)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")  # Pillow's default level 6, as an image service would use
    return buf.getvalue()


def photo_png(
    size: tuple[int, int] = (1024, 1024),
    target_bytes: int = 1_500_000,
    *,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> bytes:
    """A photo-like RGB PNG of about ``target_bytes`` (within 2 %): what Gemini really returns.

    Deterministic (seeded grain found by bisection; equal arguments, Pillow and zlib give
    equal bytes).  Building it takes a few seconds, so the result is cached as a file in
    ``cache_dir`` (default: the system temp dir), keyed by the arguments and Pillow's version.
    """
    key = hashlib.sha256(f"{size} {target_bytes} {seed} {PILLOW_VERSION}".encode()).hexdigest()
    path = (cache_dir or Path(tempfile.gettempdir())) / f"photochanger-photo-{key[:16]}.png"
    try:
        data = path.read_bytes()
        if is_image(data):
            return data
    except OSError:
        pass
    lo, hi = 0.0, 0.25  # size grows with grain: at 1024x1024 about 0.5 MB .. 2.7 MB
    best = b""
    for _ in range(16):
        mid = (lo + hi) / 2
        data = _png(_photo_rgb(size, seed, mid))
        if abs(len(data) - target_bytes) < abs(len(best) - target_bytes):
            best = data
        if abs(len(data) - target_bytes) <= target_bytes * 0.02:
            break
        if len(data) < target_bytes:
            lo = mid
        else:
            hi = mid
    partial = path.with_suffix(f".{random.randrange(1 << 30)}.tmp")
    try:
        partial.write_bytes(best)
        partial.replace(path)  # atomic: a concurrent reader never sees half a file
    except OSError:
        partial.unlink(missing_ok=True)
    return best
