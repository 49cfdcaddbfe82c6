"""trusted_proxies: client and scheme from X-Forwarded-*, only from trusted peers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from photochangerd.config import ConfigError, load_config
from photochangerd.http.proxy import parse_networks, real_client
from tests.conftest import make_config, start_daemon

TRUSTED = parse_networks(["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"])


def _xff(value: str, proto: str | None = None) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-forwarded-for", value.encode())]
    if proto:
        headers.append((b"x-forwarded-proto", proto.encode()))
    return headers


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        # untrusted peer: headers ignored, whatever they say
        ("192.0.2.9", _xff("203.0.113.5", "https"), ("192.0.2.9", None)),
        # trusted proxy: the right-most untrusted hop is the client
        ("127.0.0.1", _xff("203.0.113.5", "https"), ("203.0.113.5", "https")),
        # a forged entry on the left never wins over what the proxy saw
        ("127.0.0.1", _xff("6.6.6.6, 203.0.113.5"), ("203.0.113.5", None)),
        # a chain of trusted proxies is walked through
        ("127.0.0.1", _xff("203.0.113.5, 10.1.2.3"), ("203.0.113.5", None)),
        # every hop trusted: the left-most one is the client
        ("127.0.0.1", _xff("10.9.9.9, 10.1.2.3"), ("10.9.9.9", None)),
        # garbage or "unknown": stop at the last readable hop
        ("127.0.0.1", _xff("203.0.113.5, unknown"), ("127.0.0.1", None)),
        ("127.0.0.1", _xff("<script>"), ("127.0.0.1", None)),
        # ports and IPv6 brackets
        ("127.0.0.1", _xff("203.0.113.5:4711"), ("203.0.113.5", None)),
        ("127.0.0.1", _xff("[2001:db8::1]:4711"), ("2001:db8::1", None)),
        # only http/https are schemes
        ("127.0.0.1", _xff("203.0.113.5", "gopher"), ("203.0.113.5", None)),
        # RFC 7239 Forwarded is never read: nginx and Caddy pass the client's own through
        (
            "127.0.0.1",
            [
                (b"forwarded", b'for="[2001:db8::7]:80";proto=https'),
                (b"x-forwarded-for", b"203.0.113.5"),
            ],
            ("203.0.113.5", None),
        ),
        ("127.0.0.1", [(b"forwarded", b"for=198.51.100.1")], ("127.0.0.1", None)),
        ("fd00::1", _xff("198.51.100.4", "http"), ("198.51.100.4", "http")),
        ("127.0.0.1", [], ("127.0.0.1", None)),
    ],
)
def test_real_client(
    peer: str, headers: list[tuple[bytes, bytes]], expected: tuple[str, str | None]
) -> None:
    assert real_client(peer, headers, TRUSTED) == expected


def test_nothing_is_believed_by_default() -> None:
    config = load_config(environ={})
    assert config.trusted_proxies == ()
    assert real_client("127.0.0.1", _xff("203.0.113.5", "https"), ()) == ("127.0.0.1", None)


def test_a_bad_entry_is_named() -> None:
    with pytest.raises(ConfigError, match="trusted_proxies: 'nginx' is not an address or CIDR"):
        load_config(environ={"PHOTOCHANGER_TRUSTED_PROXIES": "127.0.0.1, nginx"})


async def _login(url: str, source: str, username: str, forwarded: str | None) -> int:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    async with httpx.AsyncClient(transport=transport, base_url=url, timeout=30) as http:
        response = await http.post(
            "/api/login", json={"username": username, "password": "wrong"}, headers=headers
        )
    return response.status_code


async def test_login_throttle_keys_on_the_forwarded_client(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    daemon = await start_daemon(nursery, make_config(tmp_path, trusted_proxies=("127.0.0.1/32",)))
    url = daemon.url
    # An untrusted peer (127.0.0.2) forging a new X-Forwarded-For each time is still one address.
    for attempt in range(10):
        assert await _login(url, "127.0.0.2", "guess-a", f"198.51.100.{attempt}") == 401
    assert await _login(url, "127.0.0.2", "other-a", "198.51.100.200") == 429
    # Through the trusted proxy (127.0.0.1) each forwarded client is counted on its own.
    for _ in range(10):
        assert await _login(url, "127.0.0.1", "guess-b", "203.0.113.5") == 401
    assert await _login(url, "127.0.0.1", "other-b", "203.0.113.5") == 429
    assert await _login(url, "127.0.0.1", "other-c", "203.0.113.6") == 401
