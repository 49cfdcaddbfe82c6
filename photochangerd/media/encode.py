"""Decode/encode helpers shared by the local provider and output conversion (synchronous)."""

from __future__ import annotations

import io

from PIL import Image, ImageOps

from photochangerd.media.images import FORMAT_BY_MIME, FORMATS, MIME_BY_FORMAT

JPEG_QUALITY = 92
OUTPUT_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}


def decode(data: bytes) -> Image.Image:
    """Fully decode an already validated image, applying the EXIF orientation."""
    image = Image.open(io.BytesIO(data), formats=list(FORMATS))
    image.load()
    return ImageOps.exif_transpose(image)


def target_format(output_format: str, source_mime: str) -> str:
    """Pillow format name for a slot's ``output_format`` (``original`` keeps the input's)."""
    if output_format == "original":
        return FORMAT_BY_MIME.get(source_mime, "JPEG")
    return OUTPUT_FORMATS[output_format]


def encode(image: Image.Image, fmt: str) -> tuple[bytes, str]:
    """Encode ``image`` as ``fmt``; JPEG flattens transparency onto white."""
    buffer = io.BytesIO()
    if fmt == "JPEG":
        if image.mode in ("RGBA", "LA", "P"):
            rgba = image.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            image = background
        elif image.mode not in ("RGB", "L"):  # JPEG keeps grayscale as one channel
            image = image.convert("RGB")
        image.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=False)
    elif fmt == "PNG":
        image.save(buffer, "PNG", compress_level=3)
    else:
        image.save(buffer, "WEBP", quality=90, method=3)
    return buffer.getvalue(), MIME_BY_FORMAT[fmt]


def convert(data: bytes, source_mime: str, output_format: str) -> tuple[bytes, str]:
    """Re-encode ``data`` into the slot's output format (no-op when it already matches)."""
    fmt = target_format(output_format, source_mime)
    if MIME_BY_FORMAT[fmt] == source_mime:
        return data, source_mime
    return encode(decode(data), fmt)


def prepare_for_provider(
    data: bytes, mime_type: str, max_pixels: int, *, keep_alpha: bool = True
) -> tuple[bytes, str]:
    """Downscale ``data`` to at most ``max_pixels`` for sending to a provider.

    A 24 MP photo gains nothing at a model that outputs ~1 MP and costs seconds of upload:
    above the cap the image is resized (EXIF orientation applied) and re-encoded as JPEG, or
    PNG when it has transparency worth keeping (templates).  Below it the bytes go as they are.
    """
    with Image.open(io.BytesIO(data), formats=list(FORMATS)) as probe:
        width, height = probe.size
    if width * height <= max_pixels:
        return data, mime_type
    image = decode(data)
    scale = (max_pixels / (width * height)) ** 0.5
    size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
    image = image.resize(size, Image.Resampling.LANCZOS)
    has_alpha = image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info)
    return encode(image, "PNG" if keep_alpha and has_alpha else "JPEG")


THUMBNAIL_SIZE = (320, 320)


def make_thumbnail(data: bytes) -> bytes:
    """A small WebP preview for the admin gallery (generated once per result, then cached)."""
    image = decode(data)
    image.thumbnail(THUMBNAIL_SIZE, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=80, method=4)
    return buffer.getvalue()
