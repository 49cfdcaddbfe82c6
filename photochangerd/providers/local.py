"""The built-in offline provider (Pillow): the zero-configuration default.

Operations: ``passthrough`` (the photo unchanged — to check a booth's connection and for
benchmarks), ``enhance`` (auto-contrast + sharpen), ``grayscale``, ``sepia`` and ``frame``
(a PNG template with alpha composited over the photo, fitted to its size).
"""

from __future__ import annotations

from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from photochangerd.media.encode import decode, encode, target_format
from photochangerd.media.imaging import ImageWorkers
from photochangerd.providers.base import (
    ProviderRejected,
    ProviderRequest,
    ProviderResult,
)

_SEPIA_DARK = (38, 24, 12)
_SEPIA_LIGHT = (255, 240, 205)


def _enhance(image: Image.Image) -> Image.Image:
    image = ImageOps.autocontrast(image.convert("RGB"), cutoff=1)
    image = image.filter(ImageFilter.UnsharpMask(radius=2, percent=60, threshold=3))
    return ImageEnhance.Color(image).enhance(1.1)


def _grayscale(image: Image.Image) -> Image.Image:
    return ImageOps.grayscale(image)


def _sepia(image: Image.Image) -> Image.Image:
    return ImageOps.colorize(ImageOps.grayscale(image), _SEPIA_DARK, _SEPIA_LIGHT)


def _frame(image: Image.Image, frame: Image.Image) -> Image.Image:
    base = image.convert("RGBA")
    overlay = ImageOps.fit(frame.convert("RGBA"), base.size, Image.Resampling.LANCZOS)
    return Image.alpha_composite(base, overlay)


class LocalProvider:
    """Pillow operations run in threads behind the shared image limiter."""

    name = "local"

    def __init__(self, images: ImageWorkers) -> None:
        self._images = images

    async def process(self, request: ProviderRequest) -> ProviderResult:
        operation = request.operation
        if operation == "passthrough":
            return ProviderResult(request.photo.data, request.photo.mime_type)
        output_format = str(request.settings.get("output_format", "jpeg"))
        fmt = target_format(output_format, request.photo.mime_type)
        frame_data: bytes | None = None
        if operation == "frame":
            frames = [t for t in request.templates if t.role == "frame"]
            if not frames:
                raise ProviderRejected("local/frame needs a template with role 'frame'")
            frame_data = frames[0].image.data
        elif operation not in ("enhance", "grayscale", "sepia"):
            raise ProviderRejected(f"local provider has no operation {operation!r}")

        def work() -> tuple[bytes, str]:
            image = decode(request.photo.data)
            if operation == "enhance":
                image = _enhance(image)
            elif operation == "grayscale":
                image = _grayscale(image)
            elif operation == "sepia":
                image = _sepia(image)
            else:
                assert frame_data is not None
                image = _frame(image, decode(frame_data))
            return encode(image, fmt)

        data, mime = await self._images.run(work)
        return ProviderResult(data, mime)
