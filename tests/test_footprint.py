"""The daemon's resident footprint: what a start on the embedded defaults loads.

A daemon on SQLite never imports the PostgreSQL stack (asyncpg, trio-asyncio, greenlet), an
idle one no PyJWT (admin tokens load it on first use), no cryptography (stored provider keys
load it on first use) and no httpx command-line client (rich, pygments) — together ≈ 23 MB of
the import-time footprint.  Checked on the real process
(``python -m photochangerd``) through its memory map and status.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from photochangerd import memory
from tests.conftest import ADMIN_PASSWORD, INGEST_PASSWORD
from tests.fakes import FakeGemini
from tests.fakes.gemini_request import GeminiRequest
from tests.fakes.images import photo_png
from tests.support.daemon_process import DaemonProcess
from tests.support.dslr import dslr_upload
from tests.support.images import make_jpeg

PHOTO = make_jpeg(2000, 1333)


def _status(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) // 1024
    return values


@pytest.mark.slow
def test_an_idle_sqlite_daemon_loads_only_what_it_uses(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path / "data")
    daemon.start(scripted=False)  # first start: the passwords are hashed
    daemon.stop()
    daemon.start(scripted=False)  # a restart: what an operator's box runs all day
    try:
        assert daemon.proc is not None
        time.sleep(1.0)
        maps = Path(f"/proc/{daemon.proc.pid}/maps").read_text()
        for library in ("asyncpg", "greenlet", "cryptography"):
            assert library not in maps, f"{library} loaded by an idle SQLite daemon"
        status = _status(daemon.proc.pid)
        # Measured 2026-12-01: ≈ 80 MiB idle, HWM the same (no start-up spike).  A regression
        # guard with head room, not the README figure.
        assert status["VmRSS"] < 100, status
        assert status["VmHWM"] < status["VmRSS"] + 10, status
    finally:
        daemon.stop()


def test_start_up_objects_are_frozen_out_of_the_collector() -> None:
    import subprocess
    import sys

    # In a process of its own: freezing is process-wide (the daemon does it only when it owns
    # its process; an embedded daemon, as in these tests, leaves the collector alone).
    code = (
        "import gc, photochangerd.app\n"
        "from photochangerd.memory import freeze_startup_objects\n"
        "freeze_startup_objects()\n"
        "assert gc.get_freeze_count() > 50_000, gc.get_freeze_count()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


class _BigAnswerGemini(FakeGemini):
    """Gemini answering every edit with the same photo-like 1.5 MB PNG (what it really returns)."""

    def __init__(self, result: bytes) -> None:
        super().__init__()
        self.result = result

    def _result_image(self, source: bytes | None, model: str, request: GeminiRequest) -> bytes:
        return self.result


def _minor_faults(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[7])  # minflt: the 10th field of stat(5), the 8th after the name


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's allocator")
async def test_a_photo_through_gemini_does_not_fault_its_buffers_in_again(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """A photo's 1-2 MB buffers are reused from the heap, not mapped and faulted in anew for
    every upload (photochangerd/memory.py): measured 2-5 minor faults per upload; 550 with
    glibc's 128 KiB trim threshold, 2 000-2 500 with orjson's 22 MiB parse buffer as well."""
    fake = _BigAnswerGemini(await trio.to_thread.run_sync(photo_png))
    daemon = DaemonProcess(tmp_path / "data")
    daemon.env.update(
        GEMINI_API_KEY=fake.api_key, PHOTOCHANGER_GEMINI_BASE_URL=await nursery.start(fake.serve)
    )
    await trio.to_thread.run_sync(lambda: daemon.start(scripted=False))
    try:
        assert daemon.proc is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.port}") as client:
            login = await client.post(
                "/api/login", json={"username": "serg", "password": ADMIN_PASSWORD}
            )
            auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
            slot = await client.put(
                "/api/slots/slot-001",
                headers=auth,
                json={
                    "provider": "gemini",
                    "operation": "edit",
                    "settings": {"prompt": "ink", "output_format": "png"},
                },
            )
            assert slot.status_code == 200, slot.text

        async def uploads(count: int) -> None:
            for _ in range(count):
                answer = await dslr_upload(
                    "127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD
                )
                assert answer is not None and answer.status == 200, answer
                assert answer.body == fake.result
                fake.requests.clear()

        await uploads(5)  # the heap grows to a photo's working set once
        before = _minor_faults(daemon.proc.pid)
        await uploads(20)
        per_upload = (_minor_faults(daemon.proc.pid) - before) / 20
        assert per_upload < 100, f"{per_upload:.0f} minor page faults per upload"
    finally:
        daemon.stop()


async def test_free_heap_goes_back_only_while_idle(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    trims: list[float] = []

    class FakeLibc:
        def malloc_trim(self, pad: int) -> int:
            assert pad == 0
            trims.append(trio.current_time())
            return 1

    async def inline(fn: Callable[..., Any], *args: Any) -> Any:  # no thread: the mock clock
        return fn(*args)  # would move on while one runs

    monkeypatch.setattr(memory, "_glibc", FakeLibc)
    monkeypatch.setattr(trio.to_thread, "run_sync", inline)
    busy = False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(memory.trim_while_idle, lambda: not busy, 30.0)
        await trio.sleep(31)
        busy = True  # uploads in flight at 60 and 90 s: left alone
        await trio.sleep(60)
        busy = False
        await trio.sleep(30)
        nursery.cancel_scope.cancel()
    assert trims == [30.0, 120.0]


def test_the_postgresql_stack_leaves_the_orm_out() -> None:
    import subprocess
    import sys

    # A process of its own: what a PostgreSQL daemon imports to build its engine.
    code = (
        "import sys, sqlalchemy as sa\n"
        "from photochangerd.db.engine import _postgresql_engine\n"
        "engine = _postgresql_engine(sa.make_url('postgresql://u@127.0.0.1/db'), 3.0)\n"
        "assert 'sqlalchemy.orm' not in sys.modules, 'the ORM was imported'\n"
        # Everyone else still sees the whole package: the rest loads on first use.
        "import threading\n"
        "import sqlalchemy.ext.asyncio as package\n"
        "errors = []\n"
        "def use():\n"
        "    try:\n"
        "        from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession\n"
        "    except Exception as exc:\n"
        "        errors.append(exc)\n"
        "threads = [threading.Thread(target=use) for _ in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "assert not errors, errors\n"
        "assert isinstance(engine, package.AsyncEngine) and 'sqlalchemy.orm' in sys.modules\n"
        "assert 'async_sessionmaker' in dir(package)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
