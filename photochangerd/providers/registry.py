"""Which provider object serves which provider name, and their shared HTTP clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager

import trio

from photochangerd.config import Config
from photochangerd.media.imaging import ImageWorkers
from photochangerd.providers.base import Provider, ProviderRejected
from photochangerd.providers.comfyui import ComfyUIProvider
from photochangerd.providers.comfyui_cancel import ServerCancels
from photochangerd.providers.gemini import GeminiProvider
from photochangerd.providers.keys import ProviderKeys
from photochangerd.providers.local import LocalProvider
from photochangerd.providers.openai_images import OpenAIImagesProvider
from photochangerd.providers.turbotext import TurbotextProvider
from photochangerd.providers.vendor_http import make_client


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


@asynccontextmanager
async def open_providers(
    config: Config,
    images: ImageWorkers,
    keys: ProviderKeys,
    extra: Mapping[str, Provider] | None = None,
) -> AsyncIterator[ProviderRegistry]:
    """All providers, each cloud one with its own pooled HTTP client (closed on exit).

    The nursery is the providers' own, for work that outlives a job: cancelling a ComfyUI
    prompt on the server after the job's deadline (each such task has a short limit of its own,
    so leaving this context waits a few seconds at most).
    """
    limit = config.provider_max_response_mb * 1024 * 1024
    common = {"max_response_bytes": limit, "concurrency": config.effective_provider_concurrency}
    async with AsyncExitStack() as stack:
        gemini_http = await stack.enter_async_context(make_client())
        turbotext_http = await stack.enter_async_context(make_client())
        openai_http = await stack.enter_async_context(make_client())
        comfyui_http = await stack.enter_async_context(make_client())
        background = await stack.enter_async_context(trio.open_nursery())
        providers: dict[str, Provider] = {
            "local": LocalProvider(images),
            "gemini": GeminiProvider(gemini_http, config.gemini_base_url, keys, images, **common),
            "turbotext": TurbotextProvider(
                turbotext_http,
                config.turbotext_base_url,
                keys,
                images,
                poll_interval=config.turbotext_poll_interval_seconds,
                **common,
            ),
            "openai": OpenAIImagesProvider(
                openai_http, config.openai_base_url, keys, images, **common
            ),
            "comfyui": ComfyUIProvider(
                comfyui_http,
                config.comfyui_base_url,
                images,
                ServerCancels(background, comfyui_http, config.comfyui_base_url),
                max_response_bytes=limit,
                concurrency=config.comfyui_concurrency,
            ),
        }
        providers.update(extra or {})
        yield ProviderRegistry(providers)
