"""A slot with an update applied, validated as a whole (the admin API, the console and test runs
with a slot payload share it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from photochangerd.domain.models import Slot
from shared.api_models import SlotUpdate
from shared.slot_settings import validate_slot


def effective_slot(slot: Slot, update: SlotUpdate, roles: Sequence[str] | None) -> Slot:
    """``slot`` with ``update`` applied, validated as a whole.

    Raises :class:`~shared.slot_settings.SlotSettingsError` (per-field messages in ``errors``),
    which the HTTP layer answers with 422.
    """
    provider = update.provider or slot.provider
    operation = update.operation or slot.operation
    if update.provider and update.provider != slot.provider and not update.operation:
        operation = ""  # a new provider needs its operation named
    settings = update.settings if update.settings is not None else slot.settings
    validate_slot(provider, operation, settings, roles)
    return dataclasses.replace(
        slot,
        provider=provider,
        operation=operation,
        settings=dict(settings),  # stored as written; providers fill in the defaults
        display_name=update.display_name or slot.display_name,
        is_active=slot.is_active if update.is_active is None else update.is_active,
        size_limit_mb=update.size_limit_mb or slot.size_limit_mb,
    )
