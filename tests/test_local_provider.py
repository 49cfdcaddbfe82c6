"""The built-in Pillow provider: real images in, real images out."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from photochangerd.domain.images import ImageInput
from photochangerd.jobs.produce import _final_image
from photochangerd.media.images import UnsupportedImage
from photochangerd.media.imaging import ImageWorkers
from photochangerd.providers.base import (
    ProviderRejected,
    ProviderRequest,
    TemplateInput,
)
from photochangerd.providers.local import LocalProvider
from tests.conftest import INGEST_PASSWORD, RunningDaemon
from tests.support.dslr import dslr_upload
from tests.support.images import make_frame_png, make_jpeg, make_png

PHOTO = make_jpeg(600, 400)


def _request(
    operation: str,
    *,
    settings: dict[str, str] | None = None,
    templates: tuple[TemplateInput, ...] = (),
    photo: bytes = PHOTO,
    mime: str = "image/jpeg",
) -> ProviderRequest:
    return ProviderRequest(
        "job", "slot-001", operation, settings or {}, ImageInput(photo, mime), templates
    )


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def test_passthrough_is_byte_exact() -> None:
    result = await LocalProvider(ImageWorkers(1)).process(_request("passthrough"))
    assert result.data == PHOTO and result.mime_type == "image/jpeg"


async def test_grayscale_and_sepia() -> None:
    provider = LocalProvider(ImageWorkers(1))
    gray = _open((await provider.process(_request("grayscale"))).data)
    assert gray.size == (600, 400) and gray.format == "JPEG" and gray.mode == "L"
    sepia = _open((await provider.process(_request("sepia"))).data).convert("RGB")
    r, g, b = sepia.getpixel((300, 200))  # type: ignore[misc]
    assert r >= g >= b  # warm brown tone


async def test_enhance_stretches_contrast() -> None:
    flat = Image.new("RGB", (200, 100), (120, 120, 120))
    flat.paste((140, 140, 140), (100, 0, 200, 100))
    buffer = io.BytesIO()
    flat.save(buffer, "PNG")
    result = await LocalProvider(ImageWorkers(1)).process(
        _request("enhance", photo=buffer.getvalue(), mime="image/png")
    )
    assert result.mime_type == "image/jpeg"  # default output format
    low, high = _open(result.data).convert("L").getextrema()  # type: ignore[misc]
    assert low < 60 and high > 200


@pytest.mark.parametrize(
    ("fmt", "mime"), [("png", "image/png"), ("webp", "image/webp"), ("original", "image/jpeg")]
)
async def test_output_format(fmt: str, mime: str) -> None:
    result = await LocalProvider(ImageWorkers(1)).process(
        _request("grayscale", settings={"output_format": fmt})
    )
    assert result.mime_type == mime
    assert _open(result.data).size == (600, 400)


async def test_frame_composites_template_fitted_to_photo() -> None:
    frame = make_frame_png(300, 200, border=20)  # half the photo's size: must be fitted
    result = await LocalProvider(ImageWorkers(1)).process(
        _request("frame", templates=(TemplateInput("frame", ImageInput(frame, "image/png")),))
    )
    out = _open(result.data).convert("RGB")
    assert out.size == (600, 400)
    frame_pixel = _open(frame).convert("RGB").getpixel((5, 5))
    corner = out.getpixel((5, 5))
    assert all(abs(a - b) < 12 for a, b in zip(corner, frame_pixel, strict=True))  # type: ignore[arg-type]
    photo_centre = _open(PHOTO).convert("RGB").getpixel((300, 200))
    centre = out.getpixel((300, 200))
    assert all(abs(a - b) < 30 for a, b in zip(centre, photo_centre, strict=True))  # type: ignore[arg-type]


async def test_frame_without_template_is_rejected() -> None:
    with pytest.raises(ProviderRejected, match="frame"):
        await LocalProvider(ImageWorkers(1)).process(_request("frame"))


async def test_frame_slot_end_to_end(daemon: RunningDaemon) -> None:
    """Template bound to a slot (as the admin API will do), DSLR upload, framed JPEG back."""
    store = daemon.context.store
    frame = make_png(400, 300, alpha=True)
    template_id = await daemon.bind_template("slot-007", "frame", frame)
    await daemon.configure_slot("slot-007", operation="frame")
    response = await dslr_upload(
        "127.0.0.1", daemon.port, "slot-007", photo=PHOTO, password=INGEST_PASSWORD
    )
    assert response is not None and response.status == 200
    assert response.headers["content-type"] == "image/jpeg"
    out = _open(response.body)
    assert out.size == (600, 400) and response.body != PHOTO
    assert Path(store.templates / f"{template_id}.png").exists()  # templates are never consumed


def _corrupt_pixels(png: bytes) -> bytes:
    """Same header and IEND, broken compressed pixel data in the middle."""
    middle = len(png) // 2
    return png[:middle] + bytes(b ^ 0x5A for b in png[middle : middle + 64]) + png[middle + 64 :]


@pytest.mark.parametrize("output_format", ["jpeg", "png"])
def test_provider_output_is_checked_whether_converted_or_kept(output_format: str) -> None:
    """Converted output is checked by its one decode; kept output is inspected like an upload."""
    png = make_png(320, 240)
    data, mime = _final_image(png, output_format, passthrough=False)
    assert mime == f"image/{output_format}"
    assert _open(data).size == (320, 240)
    with pytest.raises(UnsupportedImage):
        _final_image(_corrupt_pixels(png), output_format, passthrough=False)
    with pytest.raises(UnsupportedImage):
        _final_image(png[: len(png) // 2], output_format, passthrough=False)
    with pytest.raises(UnsupportedImage):
        _final_image(b"<html>quota exceeded</html>", output_format, passthrough=False)
