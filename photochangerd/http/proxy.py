"""The real client behind a reverse proxy — believed only from ``trusted_proxies``.

Behind nginx or Caddy every connection comes from the proxy, so the login throttle, the
ingest-password pacing, logs and stats would see one address, and the console could not tell
that the browser used https (``Secure`` cookies).  The proxy says who the client was in
``X-Forwarded-For`` / ``X-Forwarded-Proto``; anyone can send those headers, so they count only
when the TCP peer is in ``trusted_proxies`` (addresses or CIDRs, empty by default: nothing is
believed).

RFC 7239's ``Forwarded`` is never read.  nginx and Caddy (the shipped examples) set the
``X-Forwarded-*`` headers and pass a client's ``Forwarded`` through untouched: believing it
from a trusted proxy believed what the client wrote, and a client sending a new
``for=`` with each guess escaped the per-address login lock and the ingest-password pacing
(a review, 2026-12-02).

The client is the right-most address in the chain that is not itself a trusted proxy (each
proxy appends the address it saw; what the client wrote itself is further left and never read
past an untrusted hop).  The scheme is the one the nearest trusted proxy reports.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``trusted_proxies`` as networks; ValueError names a bad entry."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an address or CIDR") from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # [2001:db8::1]:4711
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:  # 192.0.2.1:4711
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None  # "unknown", an obfuscated identifier, garbage


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in headers if key.lower() == name]


def forwarded_chain(headers: Sequence[tuple[bytes, bytes]]) -> tuple[list[str], list[str]]:
    """(for-addresses, protos) left to right, from ``X-Forwarded-For`` / ``-Proto``."""
    hops = [part for value in _header(headers, b"x-forwarded-for") for part in value.split(",")]
    protos = [p for value in _header(headers, b"x-forwarded-proto") for p in value.split(",")]
    return [h.strip() for h in hops if h.strip()], [p.strip() for p in protos if p.strip()]


def real_client(
    peer: str, headers: Sequence[tuple[bytes, bytes]], trusted: Sequence[Network]
) -> tuple[str, str | None]:
    """(client address, scheme or None) for a request from ``peer``."""

    def is_trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in trusted)

    if not trusted or not is_trusted(_address(peer)):
        return peer, None
    hops, protos = forwarded_chain(headers)
    client = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # unknown or obfuscated: stop at the last hop we could read
        client = str(address)
        if not is_trusted(address):
            break
    scheme = protos[-1].lower() if protos else None
    return client, scheme if scheme in ("http", "https") else None


class ProxyHeaders:
    """ASGI middleware: ``scope["client"]`` and ``scope["scheme"]`` as a trusted proxy saw them."""

    def __init__(self, app: Any, trusted: Sequence[Network]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.trusted and scope["type"] == "http" and scope.get("client"):
            peer, port = scope["client"]
            client, scheme = real_client(str(peer), scope.get("headers") or [], self.trusted)
            if client != peer or scheme:
                scope = dict(scope)
                scope["client"] = (client, port if client == peer else 0)
                if scheme:
                    scope["scheme"] = scheme
        await self.app(scope, receive, send)
