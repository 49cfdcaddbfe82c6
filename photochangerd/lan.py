"""This machine's address on the LAN, for links when ``bind`` is a wildcard (0.0.0.0 / ::).

A link to ``http://0.0.0.0:8080/...`` works nowhere else, and a booth PC or a guest's phone must
be able to open every link the daemon hands out.  Connecting a UDP socket sends nothing; it only
asks the kernel which source address it would use for that destination.  An event network often
has no default route, so a few private destinations are tried before the host name.
"""

from __future__ import annotations

import functools
import ipaddress
import socket

_PROBES = ("192.0.2.1", "10.255.255.254", "172.31.255.254", "192.168.255.254")
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104 - names them, binds nothing


def _usable(address: str) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (parsed.is_loopback or parsed.is_unspecified or parsed.is_link_local)


@functools.cache
def lan_address() -> str:
    """The IPv4 address booths most likely reach us at; ``127.0.0.1`` when there is none."""
    for probe in _PROBES:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.connect((probe, 9))
            except OSError:
                continue
            address = str(udp.getsockname()[0])
        if _usable(address):
            return address
    try:
        address = socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
    return address if _usable(address) else "127.0.0.1"
