"""Stored provider keys are read once per configuration generation, not once per job."""

from __future__ import annotations

from photochangerd.providers.keys import ProviderKeys


async def test_stored_keys_are_cached_until_the_configuration_changes() -> None:
    stored = {"gemini": "key-1"}
    reads: list[str] = []
    generation: list[int | None] = [1]

    async def lookup(provider: str) -> str | None:
        reads.append(provider)
        return stored.get(provider)

    keys = ProviderKeys({}, lookup, generation=lambda: generation[0])
    assert [await keys.get("gemini") for _ in range(3)] == ["key-1"] * 3
    assert reads == ["gemini"]  # one read for three jobs

    stored["gemini"] = "key-2"
    generation[0] = 2  # a config write (here or, announced, on another instance)
    assert await keys.get("gemini") == "key-2"
    assert len(reads) == 2

    generation[0] = None  # not trusted (PostgreSQL, listener down): read every time
    assert await keys.get("gemini") == "key-2"
    assert await keys.get("gemini") == "key-2"
    assert len(reads) == 4


async def test_without_a_stored_key_the_service_key_is_used() -> None:
    async def lookup(provider: str) -> str | None:
        return None

    keys = ProviderKeys({"OPENAI_API_KEY": "from-env"}, lookup, generation=lambda: 7)
    assert await keys.get("openai") == "from-env"
