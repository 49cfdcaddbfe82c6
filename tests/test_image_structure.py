"""Structural validation of images kept as they are (photochangerd/media/structure.py)."""

from __future__ import annotations

import contextlib
import io
import random
import struct
import time
import warnings
import zlib

import pytest
from PIL import Image

from photochangerd.jobs.produce import _final_image
from photochangerd.media.images import ImageInfo, UnsupportedImage, inspect_image
from photochangerd.media.structure import check_structure
from tests.support.images import make_frame_png, make_jpeg, make_png, make_webp, png_bomb

CAP = 200_000_000
SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, payload: bytes, crc: int | None = None) -> bytes:
    if crc is None:
        crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def ihdr(width: int, height: int, depth: int = 8, colour: int = 2, interlace: int = 0) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))


def tiny_png(width: int = 2, height: int = 2) -> bytes:
    """A hand-built RGB PNG: each row a filter byte plus zeros."""
    rows = (b"\x00" + bytes(3 * width)) * height
    return (
        SIGNATURE + ihdr(width, height) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )


def chunks_of(png: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset of the chunk, total chunk length) for each chunk of ``png``."""
    out, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack_from(">I", png, pos)
        out.append((png[pos + 4 : pos + 8], pos, length + 12))
        pos += length + 12
    return out


def pillow(fmt: str, image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def refused(data: bytes, cap: int = CAP) -> str:
    with pytest.raises(UnsupportedImage) as caught:
        check_structure(data, cap)
    return str(caught.value)


# -- valid images ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "info"),
    [
        (make_png(64, 48), ImageInfo("PNG", 64, 48)),
        (make_png(33, 17, alpha=True), ImageInfo("PNG", 33, 17)),
        (make_frame_png(40, 30), ImageInfo("PNG", 40, 30)),
        (tiny_png(), ImageInfo("PNG", 2, 2)),
        (make_webp(64, 48), ImageInfo("WEBP", 64, 48)),
        (make_jpeg(120, 80), ImageInfo("JPEG", 120, 80)),
    ],
    ids=["png-rgb", "png-rgba", "png-frame", "png-by-hand", "webp-lossy", "jpeg"],
)
def test_valid_images_pass_with_their_dimensions(data: bytes, info: ImageInfo) -> None:
    assert check_structure(data, CAP) == info
    assert inspect_image(data, CAP) == info


def test_pillow_png_variants_pass() -> None:
    rgb = Image.frombytes("RGB", (37, 21), random.Random(1).randbytes(37 * 21 * 3))
    variants = {
        "palette": pillow("PNG", rgb.convert("P")),
        "grey16": pillow("PNG", rgb.convert("L").convert("I;16")),
        "grey1": pillow("PNG", rgb.convert("1")),
        "optimized": pillow("PNG", rgb, optimize=True),
        "la": pillow("PNG", rgb.convert("LA")),
    }
    for name, data in variants.items():
        assert check_structure(data, CAP) == ImageInfo("PNG", 37, 21), name


def test_pillow_webp_variants_pass() -> None:
    rgb = Image.frombytes("RGB", (37, 21), random.Random(2).randbytes(37 * 21 * 3))
    rgba = rgb.copy()
    rgba.putalpha(128)
    variants = {
        "lossless": pillow("WEBP", rgb, lossless=True),  # VP8L
        "lossy-alpha": pillow("WEBP", rgba, quality=80),  # VP8X + ALPH + VP8
        "lossless-alpha": pillow("WEBP", rgba, lossless=True),
        "exif": pillow("WEBP", rgb, quality=80, exif=Image.Exif().tobytes()),
        "animated": pillow("WEBP", rgb, save_all=True, append_images=[rgba], duration=100),
    }
    for name, data in variants.items():
        assert check_structure(data, CAP) == ImageInfo("WEBP", 37, 21), name
        Image.open(io.BytesIO(data)).load()  # and they really are images


def test_trailing_nul_padding_after_iend_is_tolerated() -> None:
    assert check_structure(make_png(16, 16) + bytes(7), CAP).width == 16


# -- PNG damage ------------------------------------------------------------------------------


def test_a_flipped_byte_inside_idat_is_a_bad_crc() -> None:
    png = make_png(64, 48)
    _, offset, length = next(c for c in chunks_of(png) if c[0] == b"IDAT")
    damaged = bytearray(png)
    damaged[offset + 8 + length // 2] ^= 0x01
    assert refused(bytes(damaged)) == "PNG chunk IDAT has a bad CRC"


def test_a_bad_crc_in_an_ancillary_chunk_is_refused_too() -> None:
    png = tiny_png()
    text = chunk(b"tEXt", b"Comment\x00hello", crc=0)
    data = png[:33] + text + png[33:]  # after the IHDR
    assert refused(data) == "PNG chunk tEXt has a bad CRC"


@pytest.mark.parametrize("keep", [0.999, 0.9, 0.6, 0.3, 0.05])
def test_truncated_pngs_are_refused(keep: float) -> None:
    png = make_png(64, 48)
    assert "truncated" in refused(png[: int(len(png) * keep)])


@pytest.mark.parametrize("cut", [9, 16, 20, 33, 40])
def test_truncated_in_the_header_is_refused(cut: int) -> None:
    assert "truncated" in refused(tiny_png()[:cut])


def test_missing_iend_is_refused() -> None:
    png = tiny_png()
    assert png.endswith(chunk(b"IEND", b""))
    assert "no IEND" in refused(png[:-12])


def test_ihdr_not_first_is_refused() -> None:
    png = tiny_png()
    gamma = chunk(b"gAMA", struct.pack(">I", 45455))
    assert refused(SIGNATURE + gamma + png[8:]) == "PNG does not start with IHDR (found gAMA)"


def test_no_idat_is_refused() -> None:
    data = SIGNATURE + ihdr(2, 2) + chunk(b"IEND", b"")
    assert refused(data) == "PNG has no IDAT chunk"


def test_data_after_iend_is_refused() -> None:
    assert refused(make_png(16, 16) + b"\x00\x00junk") == "PNG has data after IEND"


def test_split_idat_runs_are_refused() -> None:
    rows = zlib.compress((b"\x00" + bytes(6)) * 2)
    data = (
        SIGNATURE
        + ihdr(2, 2)
        + chunk(b"IDAT", rows[:5])
        + chunk(b"tEXt", b"a\x00b")
        + chunk(b"IDAT", rows[5:])
        + chunk(b"IEND", b"")
    )
    assert refused(data) == "PNG IDAT chunks are not consecutive"


def test_palette_png_without_plte_is_refused() -> None:
    data = (
        SIGNATURE
        + ihdr(2, 2, depth=8, colour=3)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00\x00" * 2))
        + chunk(b"IEND", b"")
    )
    assert refused(data) == "PNG palette image has no PLTE before IDAT"


@pytest.mark.parametrize(("depth", "colour"), [(16, 3), (4, 2), (8, 5), (3, 0)])
def test_illegal_bit_depth_and_colour_type_are_refused(depth: int, colour: int) -> None:
    data = SIGNATURE + ihdr(2, 2, depth, colour) + tiny_png()[33:]
    assert "invalid bit depth" in refused(data)


def test_idat_that_is_not_zlib_is_refused() -> None:
    data = SIGNATURE + ihdr(2, 2) + chunk(b"IDAT", b"\x00\x01garbage") + chunk(b"IEND", b"")
    assert refused(data) == "PNG image data is not a zlib stream"


def test_unknown_critical_chunk_is_refused() -> None:
    png = tiny_png()
    data = png[:33] + chunk(b"ABCD", b"x") + png[33:]
    assert refused(data) == "PNG has an unknown critical chunk ABCD"


def test_a_dimension_bomb_is_refused_from_the_header_alone() -> None:
    # Valid CRCs, an IDAT that could never hold 100000x100000 pixels: refused at the IHDR.
    data = (
        SIGNATURE
        + ihdr(100_000, 100_000)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
    started = time.perf_counter()
    message = refused(data)
    assert time.perf_counter() - started < 0.05
    assert message == f"image too large: 100000x100000 pixels (limit {CAP})"
    # Even when the rest of the file is missing: nothing past the IHDR is read.
    assert refused(data[:33]) == message
    assert "too large: 20000x20000" in refused(png_bomb())


def test_zero_width_is_refused() -> None:
    data = SIGNATURE + ihdr(0, 5) + tiny_png()[33:]
    assert refused(data) == "PNG has no pixels (0x5)"


def test_garbage_after_the_magic_is_refused() -> None:
    rng = random.Random(7)
    for _ in range(50):
        junk = rng.randbytes(rng.randrange(0, 400))
        for magic in (SIGNATURE, b"RIFF" + struct.pack("<I", len(junk) + 4) + b"WEBP"):
            with pytest.raises(UnsupportedImage):
                check_structure(magic + junk, CAP)
        with pytest.raises(UnsupportedImage):
            check_structure(b"\xff\xd8\xff" + junk, CAP)
    assert refused(b"GIF89a" + bytes(20)) == "not a JPEG, PNG or WebP image"


def test_every_single_byte_corruption_of_a_png_is_refused() -> None:
    """CRC-32 detects every error burst of up to 32 bits: one bad byte anywhere is caught.

    (No hypothesis in the test dependencies: a seeded loop over positions and values.)
    """
    png = make_png(24, 16, alpha=True)
    rng = random.Random(2024)
    positions = sorted({*range(0, 60), *rng.sample(range(len(png)), 300)})
    for position in positions:
        damaged = bytearray(png)
        damaged[position] ^= rng.randrange(1, 256)
        try:
            info = check_structure(bytes(damaged), CAP)
        except UnsupportedImage:
            continue
        # Never expected; should it happen, the file must at least still be an image.
        Image.open(io.BytesIO(bytes(damaged))).load()
        pytest.fail(f"corruption at byte {position} accepted as {info}")


# -- WebP damage -----------------------------------------------------------------------------


def with_riff_size(webp: bytes, size: int) -> bytes:
    return webp[:4] + struct.pack("<I", size) + webp[8:]


def test_webp_riff_size_larger_than_the_data_is_truncation() -> None:
    webp = make_webp(64, 48)
    assert "truncated (RIFF declares" in refused(with_riff_size(webp, len(webp)))


def test_webp_riff_size_smaller_than_its_chunk_is_refused() -> None:
    webp = make_webp(64, 48)
    assert "WebP is truncated (chunk VP8 needs" in refused(with_riff_size(webp, len(webp) - 20))


@pytest.mark.parametrize("keep", [0.99, 0.5, 0.2])
def test_truncated_webp_is_refused(keep: float) -> None:
    webp = make_webp(64, 48)
    assert "truncated" in refused(webp[: int(len(webp) * keep)])


def test_webp_truncated_chunk_with_consistent_riff_size_is_refused() -> None:
    webp = make_webp(64, 48)
    cut = webp[: len(webp) - 30]
    assert "truncated (chunk VP8 needs" in refused(with_riff_size(cut, len(cut) - 8))


def test_webp_trailing_bytes_after_the_riff_are_ignored() -> None:
    assert check_structure(make_webp(64, 48) + b"tail", CAP).height == 48


def test_webp_with_a_bad_vp8_start_code_is_refused() -> None:
    webp = bytearray(make_webp(64, 48))
    assert webp[12:16] == b"VP8 "
    webp[20 + 3] ^= 0xFF
    assert refused(bytes(webp)) == "WebP VP8 data has a bad start code"


def test_webp_vp8x_canvas_must_match_the_bitstream() -> None:
    rgba = Image.new("RGBA", (20, 10), (1, 2, 3, 100))
    webp = bytearray(pillow("WEBP", rgba, quality=80))
    assert webp[12:16] == b"VP8X"
    webp[24:27] = (30 - 1).to_bytes(3, "little")  # canvas width 30
    assert refused(bytes(webp)) == "WebP image size does not match its VP8X canvas"


def test_webp_dimensions_are_capped() -> None:
    assert refused(make_webp(64, 48), cap=64 * 48 - 1).startswith("image too large: 64x48")


def test_random_damage_never_raises_anything_but_unsupported_image() -> None:
    rng = random.Random(99)
    samples = [make_png(24, 16), make_webp(24, 16), make_jpeg(24, 16), tiny_png()]
    for sample in samples:
        for _ in range(300):
            damaged = bytearray(sample[: rng.randrange(1, len(sample) + 1)])
            for _ in range(rng.randrange(0, 3)):
                if damaged:
                    damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            with contextlib.suppress(UnsupportedImage):
                check_structure(bytes(damaged), CAP)


# -- the job pipeline ------------------------------------------------------------------------


def test_final_image_keeps_a_valid_png_and_refuses_a_damaged_one() -> None:
    png = make_png(64, 48)
    assert _final_image(png, "png", False) == (png, "image/png")
    assert _final_image(png, "original", True) == (png, "image/png")
    damaged = bytearray(png)
    damaged[len(png) // 2] ^= 0x40
    with pytest.raises(UnsupportedImage, match="bad CRC"):
        _final_image(bytes(damaged), "png", False)
    with pytest.raises(UnsupportedImage, match="bad CRC"):
        _final_image(bytes(damaged), "jpeg", True)  # passthrough keeps it as it is


def test_final_image_still_converts_by_decoding() -> None:
    data, mime = _final_image(make_png(64, 48), "jpeg", False)
    assert mime == "image/jpeg" and Image.open(io.BytesIO(data)).size == (64, 48)
    with pytest.raises(UnsupportedImage):  # Pillow's own bomb guard, before any pixel
        _final_image(png_bomb(), "jpeg", False)
    with pytest.raises(UnsupportedImage, match="not a JPEG, PNG or WebP"):
        _final_image(b"hello", "jpeg", False)


@pytest.mark.parametrize("size", [(1500, 1000), (2500, 1000)])  # Pillow's warning, then error
def test_a_photo_over_the_pixel_cap_is_too_large_not_broken(
    size: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pillow's own bomb check (our cap: configure_pillow) reads the header first: a 56 MP
    camera photo was answered "image does not decode (DecompressionBombWarning)"."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    data = make_jpeg(*size)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(UnsupportedImage) as refused:
            inspect_image(data, 1_000_000)
    pixels = size[0] * size[1]
    assert str(refused.value) == (
        f"image too large: {pixels} pixels (limit 1000000, the max_image_pixels setting)"
    )
