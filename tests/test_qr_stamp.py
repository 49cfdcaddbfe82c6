"""The ``qr_stamp`` slot setting: validated like every setting, and when enabled the photo the
booth gets back carries a scannable QR code of its guest page in the chosen corner, while the
stored result (guest page, download) stays clean.  Real Pillow, real ``zbarimg``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from PIL import Image

from pcctl import slotdoc
from photochangerd.http import ingest
from photochangerd.media import qr
from photochangerd.media.imaging import ImageWorkers
from shared.api_models import SlotDetail
from shared.slot_settings import QrStampSettings, validate_slot
from tests.conftest import ADMIN_PASSWORD, INGEST_PASSWORD, RunningDaemon
from tests.support.browser import decode_qr
from tests.support.dslr import DslrResponse, dslr_upload
from tests.support.images import make_jpeg

PHOTO = make_jpeg(1600, 1200)
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


def _guest_url(daemon: RunningDaemon, job_id: str) -> str:
    return f"{daemon.config.effective_public_base_url}/r/{job_id}"


async def _shoot(daemon: RunningDaemon, slot: str, photo: bytes = PHOTO) -> DslrResponse:
    response = await dslr_upload(
        "127.0.0.1", daemon.port, slot, photo=photo, password=INGEST_PASSWORD
    )
    assert response is not None and response.status == 200, response and response.body[:300]
    return response


def _decode(data: bytes, where: Path) -> list[str]:
    where.write_bytes(data)
    return decode_qr(where)


def _quadrants(data: bytes, tmp_path: Path) -> dict[str, list[str]]:
    """What zbarimg finds in each quarter of the image, by corner name."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = image.size
    found = {}
    for corner in CORNERS:
        left = 0 if corner.endswith("left") else width // 2
        top = 0 if corner.startswith("top") else height // 2
        part = image.crop((left, top, left + width // 2, top + height // 2))
        path = tmp_path / f"{corner}.png"
        part.save(path)
        found[corner] = decode_qr(path)
    return found


# -- validation (admin API, the existing 422 path) ---------------------------------------------


async def _admin(client: httpx.AsyncClient) -> httpx.AsyncClient:
    login = await client.post("/api/login", json={"username": "serg", "password": ADMIN_PASSWORD})
    client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    return client


@pytest.mark.parametrize(
    ("qr_stamp", "field"),
    [
        ({"enabled": True, "colour": "red"}, "settings.qr_stamp.colour"),
        ({"enabled": True, "position": "center"}, "settings.qr_stamp.position"),
        ({"enabled": True, "size_percent": 7}, "settings.qr_stamp.size_percent"),
        ({"enabled": True, "size_percent": 31}, "settings.qr_stamp.size_percent"),
        ({"enabled": "sometimes"}, "settings.qr_stamp.enabled"),
        ("yes", "settings.qr_stamp"),
    ],
)
async def test_bad_qr_stamp_settings_are_422(
    client: httpx.AsyncClient, qr_stamp: Any, field: str
) -> None:
    admin = await _admin(client)
    response = await admin.put(
        "/api/slots/slot-004", json={"settings": {"output_format": "jpeg", "qr_stamp": qr_stamp}}
    )
    assert response.status_code == 422, response.text
    assert list(response.json()["errors"]) == [field]
    stored = (await admin.get("/api/slots/slot-004")).json()["settings"]
    assert "qr_stamp" not in stored


async def test_qr_stamp_settings_are_stored_and_defaulted(client: httpx.AsyncClient) -> None:
    admin = await _admin(client)
    wanted = {"enabled": True, "position": "top-left", "size_percent": 30}
    response = await admin.put("/api/slots/slot-004", json={"settings": {"qr_stamp": wanted}})
    assert response.status_code == 200, response.text
    assert response.json()["settings"]["qr_stamp"] == wanted
    parsed = validate_slot("local", "passthrough", {"qr_stamp": {"enabled": True}})
    assert parsed.qr_stamp == QrStampSettings(
        enabled=True, position="bottom-right", size_percent=14
    )
    assert validate_slot("local", "passthrough", {}).qr_stamp.enabled is False


def test_pcctl_edit_document_round_trips_the_table() -> None:
    """``pcctl slot edit`` writes the table inline under [settings] and reads it back."""
    stamp = {"enabled": True, "position": "top-right", "size_percent": 20}
    slot = SlotDetail(
        id="slot-004",
        display_name="Slot 4",
        provider="local",
        operation="passthrough",
        is_active=True,
        version=3,
        updated_at=None,
        updated_by=None,
        ingest_url="http://127.0.0.1:8080/ingest/slot-004",
        last_job=None,
        settings={"qr_stamp": stamp, "output_format": "png"},
        size_limit_mb=15,
        template_media=[],
        recent_results=[],
    )
    text = slotdoc.render(slot)
    assert 'qr_stamp = { enabled = true, position = "top-right", size_percent = 20 }' in text
    assert "qr_stamp.size_percent: integer (≥ 8, ≤ 30) = 14" in text
    update = slotdoc.update_from_document(slotdoc.parse(text), slot)
    assert update.settings == {"output_format": "png", "qr_stamp": stamp}


# -- the stamp on the booth's answer ------------------------------------------------------------


@pytest.mark.parametrize("corner", CORNERS)
async def test_booth_answer_carries_the_guest_page_qr_in_its_corner(
    daemon: RunningDaemon, tmp_path: Path, corner: str
) -> None:
    await daemon.configure_slot(
        "slot-005", settings={"qr_stamp": {"enabled": True, "position": corner}}
    )
    response = await _shoot(daemon, "slot-005")
    job_id = response.headers["x-job-id"]
    assert response.headers["content-type"] == "image/jpeg"
    assert response.body != PHOTO
    with Image.open(io.BytesIO(response.body)) as answer:
        assert answer.format == "JPEG" and answer.size == (1600, 1200)
    url = _guest_url(daemon, job_id)
    assert _decode(response.body, tmp_path / "answer.jpg") == [url]
    found = _quadrants(response.body, tmp_path)
    assert found == {c: ([url] if c == corner else []) for c in CORNERS}

    job = await daemon.job(job_id)
    stored = Path(job.result_file_path or "").read_bytes()
    assert stored == PHOTO  # passthrough: the stored result is the photo itself
    assert _decode(stored, tmp_path / "stored.jpg") == []
    async with httpx.AsyncClient(base_url=daemon.url) as http:
        download = await http.get(f"/public/results/{job_id}")
    assert download.status_code == 200 and download.content == PHOTO


async def test_stamp_keeps_the_output_format_and_its_size(
    daemon: RunningDaemon, tmp_path: Path
) -> None:
    await daemon.configure_slot(
        "slot-006",
        operation="grayscale",
        settings={
            "output_format": "png",
            "qr_stamp": {"enabled": True, "position": "bottom-left", "size_percent": 30},
        },
    )
    response = await _shoot(daemon, "slot-006")
    job_id = response.headers["x-job-id"]
    assert response.headers["content-type"] == "image/png"
    assert _decode(response.body, tmp_path / "answer.png") == [_guest_url(daemon, job_id)]
    with Image.open(io.BytesIO(response.body)) as answer:
        assert answer.format == "PNG"
        rgb = answer.convert("RGB")
    # The white square: 30 % of the shorter edge (1200 px) at most, inset 3 % (36 px) from
    # the left and bottom edges; its outer ring (the quiet zone) is pure white.
    side = int(qr.make_qr(_guest_url(daemon, job_id)).symbol_size(border=qr.QUIET_ZONE)[0])
    square = side * (360 // side)
    assert 0.25 * 1200 < square <= 0.30 * 1200
    left, bottom = 36, 1200 - 36
    for offset in range(0, square, 7):
        assert rgb.getpixel((left + offset, bottom - 1)) == (255, 255, 255)
        assert rgb.getpixel((left, bottom - 1 - offset)) == (255, 255, 255)
    assert rgb.getpixel((left - 3, bottom - 10)) != (255, 255, 255)  # photo beside it
    stored = Path((await daemon.job(job_id)).result_file_path or "").read_bytes()
    assert _decode(stored, tmp_path / "stored.png") == []


async def test_disabled_stamp_leaves_the_answer_untouched(daemon: RunningDaemon) -> None:
    await daemon.configure_slot(
        "slot-007", settings={"qr_stamp": {"enabled": False, "position": "top-left"}}
    )
    response = await _shoot(daemon, "slot-007")
    assert response.body == PHOTO


async def test_no_time_left_answers_the_clean_photo_in_time(
    daemon: RunningDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stamp that cannot be done before the deadline is skipped: clean photo, on time."""
    await daemon.configure_slot("slot-008", settings={"qr_stamp": {"enabled": True}})
    # The whole deadline (48 s) is needed for sending the answer: no time to stamp.
    monkeypatch.setattr(ingest, "ANSWER_MARGIN_SECONDS", 48.0)
    response = await _shoot(daemon, "slot-008")
    assert response.body == PHOTO
    assert response.elapsed < 5
    assert _decode(response.body, tmp_path / "answer.jpg") == []


# -- stamp_within: the deadline, directly ----------------------------------------------------------

SETTINGS = QrStampSettings(enabled=True)
URL = "http://192.168.1.20:8080/r/AAAAAAAAAAAAAAAAAAAAAA"


async def test_stamp_within_gives_up_at_its_deadline(tmp_path: Path) -> None:
    big = make_jpeg(6000, 4000)
    images = ImageWorkers(2)
    start = trio.current_time()
    answer = await qr.stamp_within(images, big, "image/jpeg", URL, SETTINGS, start + 0.02)
    took = trio.current_time() - start
    assert answer is big and took < 0.2  # the 24 MP stamp takes far longer than 20 ms

    late = await qr.stamp_within(images, big, "image/jpeg", URL, SETTINGS, start - 1)
    assert late is big

    small = make_jpeg(1200, 800)
    stamped = await qr.stamp_within(
        images, small, "image/jpeg", URL, SETTINGS, trio.current_time() + 30
    )
    assert stamped != small and _decode(stamped, tmp_path / "s.jpg") == [URL]


def test_stamp_keeps_icc_profile_and_dpi(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    profile = b"\x00" * 128  # only carried along, never interpreted by Pillow's encoder
    Image.new("RGB", (1200, 900), (40, 90, 160)).save(
        buffer, "JPEG", quality=90, dpi=(300, 300), icc_profile=profile
    )
    stamped = qr.stamp(buffer.getvalue(), "image/jpeg", URL, "top-right", 14)
    with Image.open(io.BytesIO(stamped)) as image:
        assert image.info.get("icc_profile") == profile
        assert tuple(round(v) for v in image.info["dpi"]) == (300, 300)
    assert _decode(stamped, tmp_path / "s.jpg") == [URL]


def test_a_photo_too_small_for_a_scannable_code_is_left_alone() -> None:
    tiny = make_jpeg(120, 90)
    assert qr.stamp(tiny, "image/jpeg", URL, "top-left", 8) == tiny
