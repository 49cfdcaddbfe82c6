"""Two real daemons on one PostgreSQL behind Debian's nginx (round robin), one killed under load.

The shipped nginx example with two ``server`` lines; two ``photochangerd`` processes with their
own data dirs, one shared media directory and the same keys; ten DSLR-style booths shooting
back to back through nginx.  Then ``kill -9`` of instance A:

* only the uploads A was holding fail (nginx does not replay a POST); every other upload, before
  and after, is answered 200 — by B alone once A is gone;
* the jobs A was running are finalized by B's sweeper within deadline + sweep;
* every result link works through nginx from the survivor (the media directory is shared).
"""

from __future__ import annotations

import base64
import os
import signal
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import INGEST_PASSWORD
from tests.support.daemon_process import DaemonProcess
from tests.support.dslr import DslrConnectionError, dslr_upload
from tests.support.images import make_jpeg
from tests.support.nginx import nginx_binary, run_nginx
from tests.support.postgres import PostgresCluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

BOOTHS = 10
PROVIDER_SECONDS = 0.5  # each job: long enough that A holds several when it dies
DEADLINE = 10.0  # the smallest sync_response_seconds
SWEEP = 1.0


def _instance(tmp_path: Path, name: str, url: str, media: Path, public: str) -> DaemonProcess:
    daemon = DaemonProcess(tmp_path / name / "data")
    daemon.env.update(
        {
            "PHOTOCHANGER_DATABASE_URL": url,
            "PHOTOCHANGER_MEDIA_DIR": str(media),
            "PHOTOCHANGER_JWT_SECRET": "scale-out-jwt-secret-shared-by-both-0123456789",
            "PHOTOCHANGER_SECRET_KEY": base64.b64encode(b"s" * 32).decode(),
            "PHOTOCHANGER_TRUSTED_PROXIES": "127.0.0.1/32",
            "PHOTOCHANGER_PUBLIC_BASE_URL": public,
            "PHOTOCHANGER_INSTANCE_ID": name,
            "PHOTOCHANGER_SWEEP_INTERVAL_SECONDS": str(SWEEP),
            "PHOTOCHANGER_SWEEP_GRACE_SECONDS": "0.5",
            "PHOTOCHANGER_WORKERS": "10",
        }
    )
    return daemon


async def test_two_instances_behind_nginx_survive_a_kill(
    tmp_path: Path, pg_cluster: PostgresCluster
) -> None:
    nginx_binary()
    name = f"scale_{os.getpid()}"
    url = pg_cluster.create_database(name)
    media = tmp_path / "shared-media"
    a = _instance(tmp_path, "a", url, media, "http://booth.test")
    b = _instance(tmp_path, "b", url, media, "http://booth.test")
    proxy = run_nginx([a.port, b.port], tmp_path / "nginx")
    try:
        a.start()  # the first migrates the shared database
        b.start()
        pg_cluster._psql(
            "UPDATE slot SET provider = 'script', operation = 'echo', "
            f"settings = '{{\"seconds\": {PROVIDER_SECONDS}}}'; "
            f"UPDATE app_settings SET value = '{DEADLINE}' WHERE key = 'sync_response_seconds'",
            database=name,
        )
        server = await trio.to_thread.run_sync(next, proxy)
        await _shoot_and_kill(server.http_port, server.https_port, a, b, pg_cluster, name)
    finally:
        for daemon in (a, b):
            daemon.stop()
        await trio.to_thread.run_sync(lambda: next(proxy, None))


async def _shoot_and_kill(
    port: int,
    https_port: int,
    a: DaemonProcess,
    b: DaemonProcess,
    pg: PostgresCluster,
    database: str,
) -> None:
    photo = make_jpeg(640, 480)
    answers: list[tuple[float, int, str]] = []  # (sent at, status or 0, job id)
    killed_at: list[float] = []
    stop = trio.Event()

    async def booth(number: int) -> None:
        while not stop.is_set():
            sent = trio.current_time()
            try:
                response = await dslr_upload(
                    "127.0.0.1",
                    port,
                    f"slot-{number % 15 + 1:03d}",
                    photo=photo,
                    password=INGEST_PASSWORD,
                    timeout=DEADLINE + 10,
                )
            except (DslrConnectionError, OSError):
                answers.append((sent, 0, ""))
                continue
            assert response is not None
            answers.append((sent, response.status, response.headers.get("x-job-id", "")))

    async def killer() -> None:
        await trio.sleep(2.0)
        assert a.proc is not None
        os.kill(a.proc.pid, signal.SIGKILL)
        killed_at.append(trio.current_time())
        await trio.sleep(3.0)
        stop.set()

    async with trio.open_nursery() as booths:
        booths.start_soon(killer)
        for number in range(BOOTHS):
            booths.start_soon(booth, number)

    kill = killed_at[0]
    failed = [entry for entry in answers if entry[1] != 200]
    # Only what A held at the kill: sent before it, at most one per booth.
    assert len(failed) <= BOOTHS, failed
    assert all(sent < kill for sent, _, _ in failed), (kill, failed)
    assert all(status in (0, 502, 504) for _, status, _ in failed), failed
    after = [entry for entry in answers if entry[0] > kill + 0.5]
    assert len(after) >= 10 and all(status == 200 for _, status, _ in after)
    served = [job for _, status, job in answers if status == 200]
    assert len(served) >= 30

    # A's jobs: finalized by B's sweeper once their deadline (+ grace) passed.
    with trio.fail_after(DEADLINE + 4 * SWEEP + 5):
        while True:
            left = pg._psql("SELECT count(*) FROM job WHERE NOT is_finalized", database=database)
            if left.strip() == "0":
                break
            await trio.sleep(0.5)
    claimed = pg._psql("SELECT DISTINCT claimed_by FROM job ORDER BY 1", database=database)
    assert claimed.split() == ["a", "b"]  # both instances worked before the kill

    # Every result link works through nginx (https: plain HTTP carries the booths' uploads
    # only), now served by B alone.
    async with httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{https_port}", verify=False, headers={"Host": "booth.test"}
    ) as http:
        for job_id in served[:: max(1, len(served) // 20)]:
            result = await http.get(f"/public/results/{job_id}")
            assert result.status_code == 200 and result.content == photo
    assert b.proc is not None and b.proc.poll() is None
