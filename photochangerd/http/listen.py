"""The daemon's listening sockets, bound at start before anything else happens.

Binding first means a port that is taken fails the start at once, with one line, before the
first-start passwords are generated and printed (they are shown once: spent above a traceback
they would be lost).  The sockets are made as Hypercorn's ``Config.create_sockets`` makes them
for ``host:port`` binds, except that a failed bind closes what was opened and says which address
failed; :func:`photochangerd.http.server.serve` then listens on them.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

from hypercorn.config import Sockets

from photochangerd.errors import StartupError
from photochangerd.lan import WILDCARD_HOSTS


class CannotListen(StartupError):
    """A bind address cannot be bound: ``cannot listen on 127.0.0.1:8080: address in use``."""

    def __init__(self, address: str, error: OSError) -> None:
        reason = error.strerror or str(error)
        super().__init__(f"cannot listen on {address}: {reason[:1].lower()}{reason[1:]}")
        self.address = address


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.replace("[", "").replace("]", ""), int(port)


def _bind(address: str) -> socket.socket:
    host, port = _split(address)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise CannotListen(address, exc) from None
    return sock


@contextmanager
def listening_sockets(bind: Sequence[str]) -> Iterator[Sockets]:
    """Bind every ``host:port`` (or raise :class:`CannotListen`); closed on exit."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(_bind(address)) for address in bind]
        yield Sockets(secure_sockets=[], insecure_sockets=sockets, quic_sockets=[])


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def wildcard_hint(urls: Sequence[str], public_base_url: str, links: str) -> str | None:
    """On all interfaces with no ``public_base_url``: which address the links use."""
    hosts = [_split(url.partition("://")[2] or url)[0] for url in urls]
    if public_base_url or not any(host in WILDCARD_HOSTS for host in hosts):
        return None
    return (
        f"listening on all interfaces ({', '.join(urls)}); booth URLs and links use {links} "
        "(set public_base_url if booths or guests reach this machine by another address)"
    )


def lan_hint(urls: Sequence[str]) -> str | None:
    """When every listening URL is loopback: where we listen and how to open it to the LAN."""
    addresses = [url.partition("://")[2] or url for url in urls]
    if not addresses or not all(_is_loopback(_split(a)[0]) for a in addresses):
        return None
    port = _split(addresses[0])[1]
    return (
        f"listening on {', '.join(urls)}, this machine only (booths cannot reach it); "
        f'to open it to the LAN set bind = "0.0.0.0:{port}" and '
        f'public_base_url = "http://<this machine\'s LAN address>:{port}" in the config file '
        "(--config, $PHOTOCHANGER_CONFIG, else /etc/photochanger/photochangerd.toml), "
        "or PHOTOCHANGER_BIND / PHOTOCHANGER_PUBLIC_BASE_URL"
    )
