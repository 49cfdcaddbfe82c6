"""Where provider API keys come from.

Order: keys stored (encrypted) through the admin API win; else a systemd credential
(``gemini-api-key``, ``turbotext-api-key``, ``openai-api-key`` in ``$CREDENTIALS_DIRECTORY``);
else the environment (``GEMINI_API_KEY``, ``TURBOTEXT_API_KEY``, ``OPENAI_API_KEY``).  A
missing key is a clear provider error for the job ("gemini API key not configured"), never a
crash.

Stored keys are kept in memory between configuration changes (the same generation as the
ingest path's copy of slots and settings: photochangerd/db/ingest_context.py): reading and
decrypting the stored keys on every job cost a database round trip per photo.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from photochangerd.credentials import Credentials
from photochangerd.providers.vendor_http import remember_key

ENV_VARIABLES = {
    "gemini": "GEMINI_API_KEY",
    "turbotext": "TURBOTEXT_API_KEY",
    "openai": "OPENAI_API_KEY",
    "sdwebui": "SDWEBUI_AUTH",  # HTTP Basic "user:pass" of the WebUI's --api-auth
}

StoredKeyLookup = Callable[[str], Awaitable[str | None]]
# The configuration generation a cached stored key is valid for; None: do not cache.
Generation = Callable[[], int | None]


class ProviderKeys:
    def __init__(
        self,
        environ: Mapping[str, str],
        stored: StoredKeyLookup | None = None,
        credentials: Credentials | None = None,
        generation: Generation | None = None,
    ) -> None:
        self._environ = environ
        self._stored = stored
        self._credentials = credentials or Credentials()
        self._generation = generation
        self._cache: dict[str, tuple[int, str | None]] = {}

    def _from_service(self, provider: str) -> str | None:
        """The key the service was started with: its credential, else its environment."""
        value = self._credentials.provider_key(provider)
        if value:
            return value
        return self._environ.get(ENV_VARIABLES.get(provider, ""), "").strip() or None

    def source(self, provider: str) -> Literal["credentials", "environment"] | None:
        """``"credentials"``, ``"environment"`` or None: where the start-up key comes from
        (the API reports it as such: not stored, not editable through it)."""
        if self._credentials.provider_key(provider):
            return "credentials"
        return "environment" if self._from_service(provider) else None

    async def get(self, provider: str) -> str | None:
        key = await self._stored_key(provider) if self._stored is not None else None
        key = key or self._from_service(provider)
        if key:  # kept out of every vendor text from now on (a vendor may echo it)
            remember_key(key)
        return key

    async def _stored_key(self, provider: str) -> str | None:
        assert self._stored is not None
        generation = self._generation() if self._generation is not None else None
        cached = self._cache.get(provider)
        if generation is not None and cached is not None and cached[0] == generation:
            return cached[1]
        key = await self._stored(provider)
        if generation is not None:  # stored under the generation seen before the read
            self._cache[provider] = (generation, key)
        return key
