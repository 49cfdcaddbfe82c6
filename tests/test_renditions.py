"""The guest page's pictures: made once per result, one at a time, the result read in turn."""

from __future__ import annotations

import io

import pytest
import trio
from PIL import Image

from photochangerd.media.imaging import ImageWorkers
from photochangerd.media.renditions import DisplayRenditions
from tests.support.images import make_jpeg

BIG = make_jpeg(2400, 1600)


async def test_a_shared_link_asked_for_at_once_is_read_and_rendered_once() -> None:
    """Sixty phones opening one guest link used to read the result sixty times (770 MB for a
    12.8 MB result) and queue sixty renderings on the booths' image threads."""
    renditions = DisplayRenditions()
    images = ImageWorkers(2)
    reads = 0

    async def read() -> bytes:
        nonlocal reads
        reads += 1
        await trio.sleep(0.01)
        return BIG

    shown: list[bytes] = []

    async def phone() -> None:
        shown.append(await renditions.get("checksum-1", read, images))

    async with trio.open_nursery() as nursery:
        for _ in range(60):
            nursery.start_soon(phone)
    assert reads == 1 and len(shown) == 60 and len(set(shown)) == 1
    with Image.open(io.BytesIO(shown[0])) as picture:
        assert picture.format == "WEBP" and max(picture.size) == 1600
    assert await renditions.get("checksum-1", read, images) == shown[0] and reads == 1


async def test_different_results_are_rendered_one_at_a_time_and_read_in_turn() -> None:
    renditions = DisplayRenditions(keep=2)
    images = ImageWorkers(2)
    holding = 0  # results read and not yet rendered
    most = 0

    async def read() -> bytes:
        nonlocal holding, most
        holding += 1
        most = max(most, holding)
        return BIG

    async def view(key: str) -> None:
        nonlocal holding
        await renditions.get(key, read, images)
        holding -= 1

    async with trio.open_nursery() as nursery:
        for number in range(6):
            nursery.start_soon(view, f"checksum-{number}")
    assert most == 1  # one result in memory at a time, whatever the queue
    assert len(renditions._made) == 2  # the last two kept


async def test_a_failed_read_lets_the_next_request_try_again() -> None:
    renditions = DisplayRenditions()
    images = ImageWorkers(1)

    async def gone() -> bytes:
        raise FileNotFoundError("results/x.png")

    async def back() -> bytes:
        return BIG

    with pytest.raises(FileNotFoundError):
        await renditions.get("checksum-x", gone, images)
    assert await renditions.get("checksum-x", back, images)


async def test_a_read_that_does_not_answer_gives_the_turn_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bucket GET that hangs held the one rendition turn, and every other guest's picture
    behind it, for boto3's timeouts and retries."""
    from photochangerd.media import renditions as module
    from photochangerd.media.objects import ObjectStoreUnavailable

    monkeypatch.setattr(module, "READ_SECONDS", 0.2)
    renditions = DisplayRenditions()
    images = ImageWorkers(1)

    async def hung() -> bytes:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def local() -> bytes:
        return BIG

    started = trio.current_time()
    async with trio.open_nursery() as nursery:

        async def stuck_guest() -> None:
            with pytest.raises(ObjectStoreUnavailable):
                await renditions.get("in-the-bucket", hung, images)

        nursery.start_soon(stuck_guest)
        await trio.sleep(0.01)
        assert await renditions.get("on-disk", local, images)  # waited for the turn, not forever
    assert trio.current_time() - started < 2
