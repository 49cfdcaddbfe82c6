"""Debian's nginx with the shipped example (deploy/nginx/), for the tests that put it in front of
one daemon (tests/test_nginx.py) or two (tests/test_scale_out.py).

The example is rendered with test ports, a self-signed certificate and one ``server`` line per
daemon; nginx runs as a child process (unprivileged ports, its own prefix) until the generator
``run_nginx`` is closed.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "nginx" / "photochanger.conf"
INGEST_SNIPPET = REPO / "deploy" / "nginx" / "photochanger-ingest.conf"


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found:
        return found
    message = "nginx not found: nginx tests skipped (tests/support/ensure_nginx.sh)"
    if os.environ.get("PHOTOCHANGER_REQUIRE_NGINX") == "1":
        pytest.fail(message + " — and PHOTOCHANGER_REQUIRE_NGINX=1")
    pytest.skip(message)


def self_signed(directory: Path, host: str = "booth.test") -> tuple[Path, Path]:
    """A certificate for ``host`` (a name, or an IP address) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        alternative: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alternative = x509.DNSName(host)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([alternative]), critical=False)
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


def render_example(
    daemon_ports: Sequence[int], http_port: int, https_port: int, directory: Path
) -> str:
    """The shipped file with test ports, certificate and snippet path; nothing else changed
    (several daemon ports: one ``server`` line each, as the file says for several instances)."""
    cert, key = self_signed(directory)
    text = EXAMPLE.read_text()
    replacements = {
        "server 127.0.0.1:8080;": "\n    ".join(
            f"server 127.0.0.1:{port};" for port in daemon_ports
        ),
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


def run_nginx(daemon_ports: Sequence[int], directory: Path) -> Iterator[Nginx]:
    """nginx with the rendered example, as a child process, until the generator is closed."""
    nginx = nginx_binary()
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
        + render_example(daemon_ports, http_port, https_port, directory)
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
