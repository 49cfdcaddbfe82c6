"""Which provider object serves which provider name."""

from __future__ import annotations

from collections.abc import Mapping

from photochangerd.providers.base import Provider, ProviderRejected


class ProviderRegistry:
    def __init__(self, providers: Mapping[str, Provider]) -> None:
        self._providers = dict(providers)

    def get(self, name: str) -> Provider:
        try:
            return self._providers[name]
        except KeyError:
            raise ProviderRejected(f"provider {name!r} is not available in this build") from None

    def names(self) -> list[str]:
        return sorted(self._providers)
