"""The shipped nginx example (deploy/nginx/) in front of a real daemon, with Debian's nginx.

The test renders the example with test ports and a self-signed certificate, starts nginx as a
child process (unprivileged ports, its own prefix; stopped at the end) and sends DSLR-style
uploads and logins through it: the booth contract must survive the proxy (Expect: 100-continue,
early 401 and 413 with JSON bodies, the image back), and the daemon must see each client's own
address (login throttle) and the https scheme (Secure cookie) — from nginx only.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import ADMIN_PASSWORD, INGEST_PASSWORD, make_config, start_daemon
from tests.support.dslr import dslr_upload
from tests.support.images import make_jpeg
from tests.support.nginx import Nginx, nginx_binary, run_nginx


@pytest.mark.slow
async def test_booth_uploads_and_logins_through_nginx(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    nginx_binary()
    config = make_config(
        tmp_path, trusted_proxies=("127.0.0.1/32",), public_base_url="http://booth.test"
    )
    daemon = await start_daemon(nursery, config)
    proxy = run_nginx([daemon.port], tmp_path / "nginx")
    server = await trio.to_thread.run_sync(next, proxy)
    try:
        await _check_booth_contract(server)
        await _check_real_clients(server)
    finally:
        await trio.to_thread.run_sync(lambda: next(proxy, None))


async def _check_booth_contract(server: Nginx) -> None:
    photo = make_jpeg(1600, 1200)
    ok = await dslr_upload("127.0.0.1", server.http_port, photo=photo, password=INGEST_PASSWORD)
    assert ok is not None and ok.status == 200, ok and ok.body[:200]
    assert ok.got_continue  # nginx answered the booth's Expect: 100-continue
    assert ok.body == photo and ok.headers["content-type"] == "image/jpeg"
    assert "x-job-id" in ok.headers

    big = make_jpeg(3000, 2000, target_bytes=3 * 1024 * 1024)
    wrong = await dslr_upload(
        "127.0.0.1",
        server.http_port,
        photo=big,
        password="old-password",
        send_rate_bytes_per_s=1_000_000,  # 3 s for the photo: the answer must come long before
    )
    assert wrong is not None and wrong.status == 401
    assert wrong.json()["failure_reason"] == "invalid_password"
    assert wrong.elapsed < 2.0 and wrong.bytes_sent < len(big)

    huge = b"\xff\xd8" + b"\0" * (25 * 1024 * 1024)
    too_large = await dslr_upload(
        "127.0.0.1", server.http_port, photo=huge, password=INGEST_PASSWORD
    )
    assert too_large is not None and too_large.status == 413
    assert too_large.json() == {
        "status": "error",
        "failure_reason": "payload_too_large",
        "details": "upload larger than 20 MiB",
    }
    assert not too_large.got_continue and too_large.bytes_sent == 0  # refused on the head


async def _login(
    server: Nginx, source: str, username: str, forged: str | None = None
) -> httpx.Response:
    transport = httpx.AsyncHTTPTransport(local_address=source, verify=False)
    headers = {"X-Forwarded-For": forged} if forged else {}
    async with httpx.AsyncClient(transport=transport, timeout=30) as http:
        return await http.post(
            f"https://127.0.0.1:{server.https_port}/api/login",
            json={"username": username, "password": "wrong"},
            headers=headers,
        )


async def _check_real_clients(server: Nginx) -> None:
    # Client A (127.0.0.2) fails 10 times — forging X-Forwarded-For does not make it another
    # client: nginx appends the address it saw, and only that is believed.
    for attempt in range(10):
        response = await _login(server, "127.0.0.2", "guess-a", f"198.51.100.{attempt}")
        assert response.status_code == 401
    assert (await _login(server, "127.0.0.2", "other-a", "198.51.100.99")).status_code == 429
    # Client B (127.0.0.3) behind the same proxy is not locked out by A.
    assert (await _login(server, "127.0.0.3", "other-b")).status_code == 401

    # The console's cookie is Secure: the browser used https (X-Forwarded-Proto from nginx),
    # although the daemon's public_base_url is http.
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.4", verify=False)
    async with httpx.AsyncClient(transport=transport, timeout=30) as http:
        signed = await http.post(
            f"https://127.0.0.1:{server.https_port}/admin/login",
            data={"username": "igor", "password": ADMIN_PASSWORD},
        )
    assert signed.status_code == 303
    assert "secure" in signed.headers["set-cookie"].lower()
