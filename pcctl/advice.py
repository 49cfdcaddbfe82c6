"""What pcctl warns about: slots that look fine but cannot work for a booth.

* a cloud provider whose API key the server reports as not configured (neither stored with
  ``pcctl settings provider-key`` nor in the daemon's environment): every photo gets a 502;
* a self-hosted provider (sdwebui, comfyui) whose address the daemon's config does not name:
  every photo gets a 502 as well;
* ingest URLs on a loopback (or unspecified) address: a booth on another machine cannot reach
  them.

Warnings go to stderr, never into the data (plain or JSON) on stdout.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from pcctl.client import ApiClient
from pcctl.output import Output
from shared.api_models import KEY_OPTIONAL, PROVIDER_NAMES, SELF_HOSTED


def providers_without_key(client: ApiClient, providers: Iterable[str]) -> frozenset[str]:
    """The cloud providers among ``providers`` the server says have no API key (it is only
    asked when there is one)."""
    cloud = {p for p in providers if p in PROVIDER_NAMES and p not in KEY_OPTIONAL}
    if not cloud:
        return frozenset()
    keys = client.get_settings().provider_keys
    return frozenset(p for p in cloud if p in keys and not keys[p].configured)


def warn_missing_key(
    out: Output, provider: str, slots: Iterable[str], fallbacks: Mapping[str, str] | None = None
) -> None:
    """``fallbacks``: slot id → its first fallback (provider/operation), for slots that have one."""
    backed = dict(fallbacks or {})
    failing = [slot for slot in slots if slot not in backed]
    hint = (
        f"set it with `pcctl settings provider-key {provider}` "
        f"(or {provider.upper()}_API_KEY in the daemon's environment)"
    )
    if failing:
        out.warn(
            f"{provider} API key not configured: the booth will get 502 "
            f'"{provider} API key not configured" on every photo to {", ".join(failing)}',
            hint=hint,
        )
    for slot, step in backed.items():
        out.warn(
            f"{provider} API key not configured: every photo to {slot} is made by its "
            f"fallback {step} instead",
            hint=hint,
        )


def providers_without_backend(client: ApiClient, providers: Iterable[str]) -> frozenset[str]:
    """The self-hosted providers among ``providers`` whose address the daemon's config does
    not name (the server is only asked when there is one)."""
    hosted = {p for p in providers if p in SELF_HOSTED}
    if not hosted:
        return frozenset()
    backends = client.get_settings().backends
    return frozenset(p for p in hosted if p in backends and not backends[p].configured)


def warn_missing_backend(out: Output, provider: str, slots: Iterable[str]) -> None:
    out.warn(
        f"{provider} backend not configured: every photo to {', '.join(slots)} gets 502 "
        f"until the daemon knows its address",
        hint=f"set {provider}_base_url in the daemon's config file and restart the daemon "
        f'(README, "AI providers")',
    )


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def local_only_host(url: str) -> str | None:
    """The host of ``url`` if only this machine can reach it (loopback, or 0.0.0.0 / ::)."""
    host = urlsplit(url).hostname
    if host is None:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return host
    address = _address(host)
    if address is not None and (address.is_loopback or address.is_unspecified):
        return host
    return None


def warn_local_ingest_urls(out: Output, urls: Iterable[str]) -> None:
    """One line when the ingest URLs name an address other machines cannot use."""
    hosts = sorted({host for url in urls if (host := local_only_host(url)) is not None})
    if not hosts:
        return
    listening_everywhere = all(
        (address := _address(host)) is not None and address.is_unspecified for host in hosts
    )
    fix = "" if listening_everywhere else 'bind = "0.0.0.0:8080" and '
    out.warn(
        f"ingest URLs use {', '.join(hosts)}: booths on other machines cannot reach them; "
        f"set {fix}public_base_url in the daemon config"
    )
