"""What the three cloud drivers share: their HTTP client, key lookup, settings parsing,
input preparation and per-provider concurrency cap."""

from __future__ import annotations

import httpx

from photochangerd.domain.images import ImageInput
from photochangerd.media.encode import prepare_for_provider
from photochangerd.media.imaging import ImageWorkers
from photochangerd.providers.base import ProviderRejected, ProviderRequest
from photochangerd.providers.gate import ProviderGate
from photochangerd.providers.keys import ProviderKeys
from shared.slot_settings import CommonSettings, SlotSettingsError, parse_settings


class CloudProvider:
    """Base of the vendor drivers; subclasses set :attr:`name` and implement ``process``."""

    name: str
    gate_setting = "provider_concurrency"  # the setting that caps this provider's calls

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        keys: ProviderKeys,
        images: ImageWorkers,
        *,
        max_response_bytes: int,
        concurrency: int,
    ) -> None:
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._keys = keys
        self._images = images
        self._max_response_bytes = max_response_bytes
        # Calls in flight to this vendor; jobs over it wait here, within their own deadline.
        self._gate = ProviderGate(self.name, concurrency, self.gate_setting)

    async def _key_and_settings(self, request: ProviderRequest) -> tuple[str, CommonSettings]:
        """The API key (or a clear provider error) and the slot's parsed settings."""
        key = await self._keys.get(self.name)
        if not key:
            raise ProviderRejected(f"{self.name} API key not configured")
        return key, self._settings(request)

    def _settings(self, request: ProviderRequest) -> CommonSettings:
        """The slot's settings parsed with the rules they were saved with (a provider error
        when they no longer parse)."""
        try:
            return parse_settings(self.name, request.operation, dict(request.settings))
        except SlotSettingsError as exc:
            raise ProviderRejected(f"slot settings invalid: {exc}") from None

    async def _prepare(self, image: ImageInput, max_pixels: int) -> ImageInput:
        """``image`` downscaled to what the vendor can use (a no-op below ``max_pixels``).

        A photo whose size is known from its ingest and fits goes as it is without the thread
        hop that reads its header again.
        """
        if image.pixels is not None and image.pixels <= max_pixels:
            return image
        data, mime = await self._images.run(
            prepare_for_provider, image.data, image.mime_type, max_pixels
        )
        return ImageInput(data, mime)
