"""Where provider API keys come from.

Order: keys stored (encrypted) through the admin API win; else the environment
(``GEMINI_API_KEY``, ``TURBOTEXT_API_KEY``, ``OPENAI_API_KEY``).  A missing key is a clear
provider error for the job ("gemini API key not configured"), never a crash.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

ENV_VARIABLES = {
    "gemini": "GEMINI_API_KEY",
    "turbotext": "TURBOTEXT_API_KEY",
    "openai": "OPENAI_API_KEY",
}

StoredKeyLookup = Callable[[str], Awaitable[str | None]]


class ProviderKeys:
    def __init__(self, environ: Mapping[str, str], stored: StoredKeyLookup | None = None) -> None:
        self._environ = environ
        self._stored = stored

    def environment_has(self, provider: str) -> bool:
        return bool(self._environ.get(ENV_VARIABLES.get(provider, ""), "").strip())

    async def get(self, provider: str) -> str | None:
        if self._stored is not None:
            key = await self._stored(provider)
            if key:
                return key
        value = self._environ.get(ENV_VARIABLES.get(provider, ""), "").strip()
        return value or None
