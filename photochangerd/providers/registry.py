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
from photochangerd.providers.sdwebui import SdWebUIProvider
from photochangerd.providers.sdwebui_interrupt import Interrupter
from photochangerd.providers.turbotext import TurbotextProvider
from photochangerd.providers.vendor_http import close_expired_connections, make_client


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
    """All providers, each cloud one with its own pooled HTTP client (closed on exit; the
    connections a busy spell left idle are closed on a timer, ``close_expired_connections``).

    The providers' background nursery runs work that outlives a job and must not delay its
    answer: stopping a self-hosted backend's work on a photo whose job ended (sdwebui's
    interrupt, ComfyUI's queue delete or interrupt).  Each such task has a short limit of its
    own; on exit, what is still running there gets :data:`BACKGROUND_GRACE_SECONDS`, then is
    cancelled.
    """
    limit = config.provider_max_response_mb * 1024 * 1024
    common = {"max_response_bytes": limit, "concurrency": config.effective_provider_concurrency}
    async with AsyncExitStack() as stack:
        gemini_http = await stack.enter_async_context(make_client())
        turbotext_http = await stack.enter_async_context(make_client())
        openai_http = await stack.enter_async_context(make_client())
        sdwebui_http = await stack.enter_async_context(make_client())
        comfyui_http = await stack.enter_async_context(make_client())
        clients = [gemini_http, turbotext_http, openai_http, sdwebui_http, comfyui_http]
        sweeper = await stack.enter_async_context(trio.open_nursery())
        stack.callback(sweeper.cancel_scope.cancel)  # stops before the clients close
        sweeper.start_soon(close_expired_connections, clients)
        background = await stack.enter_async_context(trio.open_nursery())
        stack.callback(_cancel_after_grace, background)
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
            "sdwebui": SdWebUIProvider(
                sdwebui_http,
                config.sdwebui_base_url,
                keys,
                images,
                Interrupter(sdwebui_http, background),
                max_response_bytes=limit,
                concurrency=config.sdwebui_concurrency,
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


BACKGROUND_GRACE_SECONDS = 3.0


def _cancel_after_grace(nursery: trio.Nursery) -> None:
    nursery.cancel_scope.deadline = min(
        nursery.cancel_scope.deadline, trio.current_time() + BACKGROUND_GRACE_SECONDS
    )
