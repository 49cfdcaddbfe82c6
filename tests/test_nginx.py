"""The shipped nginx example (deploy/nginx/) in front of a real daemon, with Debian's nginx.

The test renders the example with test ports and a self-signed certificate, starts nginx as a
child process (unprivileged ports, its own prefix; stopped at the end) and sends DSLR-style
uploads and logins through it: the booth contract must survive the proxy (Expect: 100-continue,
early 401 and 413 with JSON bodies, the image back), and the daemon must see each client's own
address (login throttle) and the https scheme (Secure cookie) — from nginx only.
"""

from __future__ import annotations

import datetime
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import ADMIN_PASSWORD, INGEST_PASSWORD, free_port, make_config, start_daemon
from tests.support.dslr import dslr_upload
from tests.support.images import make_jpeg

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "deploy" / "nginx" / "photochanger.conf"
INGEST_SNIPPET = REPO / "deploy" / "nginx" / "photochanger-ingest.conf"


def _nginx() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found:
        return found
    message = "nginx not found: nginx tests skipped (tests/support/ensure_nginx.sh)"
    if os.environ.get("PHOTOCHANGER_REQUIRE_NGINX") == "1":
        pytest.fail(message + " — and PHOTOCHANGER_REQUIRE_NGINX=1")
    pytest.skip(message)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "booth.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def render_example(daemon_port: int, http_port: int, https_port: int, directory: Path) -> str:
    """The shipped file with test ports, certificate and snippet path; nothing else changed."""
    cert, key = _self_signed(directory)
    text = EXAMPLE.read_text()
    replacements = {
        "server 127.0.0.1:8080;": f"server 127.0.0.1:{daemon_port};",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "/etc/letsencrypt/live/booth.example.com/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/booth.example.com/privkey.pem": str(key),
        "/etc/nginx/snippets/photochanger-ingest.conf": str(INGEST_SNIPPET),
    }
    for old, new in replacements.items():
        assert old in text, f"the example no longer contains {old!r}"
        text = text.replace(old, new)
    # No IPv6 listeners in the test (the host may have no ::1).
    return "\n".join(line for line in text.splitlines() if "listen [::]" not in line)


@dataclass
class Nginx:
    http_port: int
    https_port: int
    directory: Path


def _run_nginx(daemon_port: int, directory: Path) -> Iterator[Nginx]:
    nginx = _nginx()
    http_port, https_port = free_port(), free_port()
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (directory / name).mkdir(parents=True, exist_ok=True)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf = directory / "nginx.conf"
    conf.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {directory}/nginx.pid;\n"
        f"error_log {directory}/logs/error.log warn;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        "  access_log off;\n"
        f"  client_body_temp_path {directory}/body;\n  proxy_temp_path {directory}/proxy;\n"
        f"  fastcgi_temp_path {directory}/fastcgi;\n  uwsgi_temp_path {directory}/uwsgi;\n"
        f"  scgi_temp_path {directory}/scgi;\n"
        + render_example(daemon_port, http_port, https_port, directory)
        + "\n}\n"
    )
    check = subprocess.run(
        [nginx, "-t", "-p", str(directory), "-c", str(conf)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(
        [nginx, "-p", str(directory), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{http_port}/", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        yield Nginx(http_port, https_port, directory)
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr:
            proc.stderr.close()


@pytest.mark.slow
async def test_booth_uploads_and_logins_through_nginx(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    _nginx()
    config = make_config(
        tmp_path, trusted_proxies=("127.0.0.1/32",), public_base_url="http://booth.test"
    )
    daemon = await start_daemon(nursery, config)
    proxy = _run_nginx(daemon.port, tmp_path / "nginx")
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
