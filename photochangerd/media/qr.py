"""QR codes of a photo's guest page (``{public_base_url}/r/{job_id}``).

- :func:`qr_svg` / :func:`qr_png`: the code as an image, for the guest page and its links;
- :func:`stamp`: the code pasted, with its white quiet zone, into a corner of the photo the
  booth gets back (and prints); :func:`stamp_within` runs it off the event loop and gives up
  (answering the clean photo) when it cannot finish before the booth's deadline.

Everything but :func:`stamp_within` is synchronous (segno is pure Python; Pillow is CPU work).
"""

from __future__ import annotations

import io
import logging
from typing import Any

import segno
import trio
from PIL import Image
from pydantic import ValidationError

from photochangerd.logs import event
from photochangerd.media.encode import JPEG_QUALITY, decode
from photochangerd.media.images import FORMAT_BY_MIME
from photochangerd.media.imaging import ImageWorkers
from shared.slot_settings import QrStampSettings

log = logging.getLogger("photochangerd.qr")

QUIET_ZONE = 4  # modules of white around the code, as the QR standard asks
MIN_MODULE_PX = 3  # below this a printed code (after JPEG) stops scanning reliably
EDGE_MARGIN = 0.03  # of the shorter edge: borderless printing crops a few millimetres
# What the booth's answer still needs after the stamp (building and sending it).
ANSWER_MARGIN_SECONDS = 0.1


def make_qr(url: str) -> segno.QRCode:
    """The code for ``url``: error level M at least (segno raises it when the size allows)."""
    return segno.make(url, error="m", micro=False)


def qr_svg(url: str, *, scale: int = 4, inline: bool = False) -> str:
    """The code as SVG: a standalone document, or (``inline``) an ``<svg>`` element for an
    HTML page, sized by CSS.  Black on an opaque white square, so it scans on dark pages too."""
    buffer = io.BytesIO()
    make_qr(url).save(
        buffer,
        kind="svg",
        scale=scale,
        border=QUIET_ZONE,
        dark="#000",
        light="#fff",
        xmldecl=not inline,
        svgns=True,
        nl=not inline,
        omitsize=inline,
        svgclass="qr" if inline else None,
        lineclass=None,
        title="QR code of this page" if inline else None,
    )
    return buffer.getvalue().decode("utf-8")


def qr_png(url: str, *, scale: int = 8) -> bytes:
    buffer = io.BytesIO()
    make_qr(url).save(buffer, kind="png", scale=scale, border=QUIET_ZONE, dark="#000", light="#fff")
    return buffer.getvalue()


def _code_image(code: segno.QRCode, scale: int) -> Image.Image:
    """The code with its quiet zone as a grayscale image, ``scale`` pixels per module."""
    size = int(code.symbol_size(scale=1, border=QUIET_ZONE)[0])
    image = Image.new("L", (size, size), 255)
    pixels = image.load()
    assert pixels is not None
    for y, row in enumerate(code.matrix):
        for x, dark in enumerate(row):
            if dark:
                pixels[x + QUIET_ZONE, y + QUIET_ZONE] = 0
    return image.resize((size * scale, size * scale), Image.Resampling.NEAREST)


def _save_options(image: Image.Image, fmt: str) -> dict[str, Any]:
    """Keep what printing and colour depend on: ICC profile, DPI, EXIF (orientation applied)."""
    options: dict[str, Any] = {}
    for key in ("icc_profile", "dpi"):
        if image.info.get(key):
            options[key] = image.info[key]
    exif = image.getexif()
    if exif:
        options["exif"] = exif
    if fmt == "JPEG":
        options["quality"] = JPEG_QUALITY
    elif fmt == "PNG":
        options["compress_level"] = 3
    else:
        options.update(quality=90, method=3)
    return options


def stamp(data: bytes, mime_type: str, url: str, position: str, size_percent: int) -> bytes:
    """``data`` with the QR code of ``url`` in the ``position`` corner, re-encoded in the same
    format.  The white square (code and quiet zone) is ``size_percent`` of the shorter edge,
    at least :data:`MIN_MODULE_PX` per module, inset by :data:`EDGE_MARGIN`.  A photo too
    small to carry a scannable code comes back unchanged."""
    fmt = FORMAT_BY_MIME[mime_type]
    image = decode(data)
    width, height = image.size
    shorter = min(width, height)
    code = make_qr(url)
    modules = int(code.symbol_size(scale=1, border=QUIET_ZONE)[0])
    scale = max(MIN_MODULE_PX, round(shorter * size_percent / 100) // modules)
    side = modules * scale
    margin = round(shorter * EDGE_MARGIN)
    if side + 2 * margin > shorter:
        return data
    x = margin if position.endswith("left") else width - margin - side
    y = margin if position.startswith("top") else height - margin - side
    options = _save_options(image, fmt)
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    image.paste(_code_image(code, scale).convert(image.mode), (x, y))
    if fmt == "JPEG" and image.mode in ("RGBA", "LA"):  # JPEG has no alpha (cannot happen
        image = image.convert("RGB")  # for a decoded JPEG; kept for safety)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def stamp_settings(settings: dict[str, Any]) -> QrStampSettings | None:
    """A slot's ``qr_stamp`` setting when it is enabled (validated when it was saved)."""
    raw = settings.get("qr_stamp")
    if not raw:
        return None
    try:
        parsed = QrStampSettings.model_validate(raw)
    except ValidationError:
        return None
    return parsed if parsed.enabled else None


async def stamp_within(
    images: ImageWorkers,
    data: bytes,
    mime_type: str,
    url: str,
    settings: QrStampSettings,
    answer_by: float,
) -> bytes:
    """:func:`stamp` in an image thread if it finishes before ``answer_by`` (Trio time), else
    ``data`` unchanged at ``answer_by``: a clean photo in time beats a stamped one too late.

    A stamp still running then is abandoned (its thread finishes in the background and only
    then frees its place in the image limiter).  A failure also answers the clean photo."""
    if trio.current_time() >= answer_by:
        event(log, logging.WARNING, "qr_stamp.skipped", reason="no time left")
        return data
    with trio.move_on_at(answer_by):
        try:
            return await trio.to_thread.run_sync(
                stamp,
                data,
                mime_type,
                url,
                settings.position,
                settings.size_percent,
                limiter=images.limiter,
                abandon_on_cancel=True,
            )
        except Exception:
            log.exception("qr_stamp.failed")
            return data
    event(log, logging.WARNING, "qr_stamp.skipped", reason="deadline")
    return data
