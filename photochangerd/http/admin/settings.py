"""``GET/PUT /api/settings``: deadline, result TTL, ingest password rotation, provider keys.

Secrets go in and never come out: the ingest password is stored as an argon2id hash, provider
keys AES-GCM encrypted; responses say only ``configured`` and when.
"""

from __future__ import annotations

import logging

import trio
from quart_schema import validate_request, validate_response

from photochangerd.auth.passwords import hash_password
from photochangerd.db import repositories
from photochangerd.http.admin import admin_name, bp
from photochangerd.http.context import AdminHandles, admin
from photochangerd.http.validation import ValidationFailed
from photochangerd.logs import event
from shared.api_models import (
    PROVIDER_NAMES,
    BackendState,
    IngestPasswordState,
    Limits,
    ProviderKeyState,
    SettingsOut,
    SettingsUpdate,
)
from shared.fallbacks import parse_fallbacks, reserve_problem

log = logging.getLogger("photochangerd.admin")


async def current_settings(app: AdminHandles) -> SettingsOut:
    settings = await app.db.read(repositories.get_settings)
    stored_keys = await app.db.read(repositories.provider_secrets)
    password = settings.get("ingest_password") or {}
    keys = {}
    for provider in PROVIDER_NAMES:
        if provider in stored_keys:
            keys[provider] = ProviderKeyState(
                configured=True, source="settings", updated_at=stored_keys[provider][1]
            )
        elif (origin := app.keys.source(provider)) is not None:
            keys[provider] = ProviderKeyState(configured=True, source=origin, updated_at=None)
        else:
            keys[provider] = ProviderKeyState(configured=False, source="none", updated_at=None)
    config = app.config
    return SettingsOut(
        sync_response_seconds=float(settings.get("sync_response_seconds", 48)),
        result_ttl_hours=float(settings.get("result_ttl_hours", 72)),
        ingest_password=IngestPasswordState(
            configured=bool(password.get("hash")),
            rotated_at=password.get("rotated_at"),
            rotated_by=password.get("rotated_by"),
        ),
        provider_keys=keys,
        backends={
            "sdwebui": BackendState(configured=bool(config.sdwebui_base_url)),
            "comfyui": BackendState(configured=bool(config.comfyui_base_url)),
        },
        limits=Limits(
            max_upload_mb=config.max_upload_mb,
            max_image_pixels=config.max_image_pixels,
            max_in_flight=config.max_in_flight,
            max_in_flight_per_slot=config.max_in_flight_per_slot,
        ),
    )


@bp.get("/settings")
@validate_response(SettingsOut, 200)
async def get_settings() -> tuple[SettingsOut, int]:
    return await current_settings(admin()), 200


@bp.put("/settings")
@validate_request(SettingsUpdate)
@validate_response(SettingsOut, 200)
async def put_settings(data: SettingsUpdate) -> tuple[SettingsOut, int]:
    return await apply_settings(admin(), data, admin_name()), 200


async def apply_settings(app: AdminHandles, data: SettingsUpdate, who: str) -> SettingsOut:
    """Apply a validated update (``None`` fields stay as they are) and return the new state.

    The one place settings change: ``PUT /api/settings`` and the console's settings page."""
    now = app.clock.now()
    if data.sync_response_seconds is not None:
        await _check_fallbacks_fit(app, data.sync_response_seconds)
        await app.db.write(
            repositories.put_setting, "sync_response_seconds", data.sync_response_seconds, now, who
        )
        app.jobs.runtime.sync_response_seconds = data.sync_response_seconds
    if data.result_ttl_hours is not None:
        await app.db.write(
            repositories.put_setting, "result_ttl_hours", data.result_ttl_hours, now, who
        )
        app.jobs.runtime.result_ttl_seconds = data.result_ttl_hours * 3600
    if data.ingest_password is not None:
        digest = await trio.to_thread.run_sync(hash_password, data.ingest_password)
        await app.db.write(
            repositories.put_setting,
            "ingest_password",
            {"hash": digest, "rotated_at": now, "rotated_by": who},
            now,
            who,
        )
        event(log, logging.INFO, "settings.ingest_password_rotated", by=who)
    for provider, key in (data.provider_keys or {}).items():
        key = key.strip()
        ciphertext = app.secrets.encrypt(key, provider) if key else None
        await app.db.write(repositories.put_provider_secret, provider, ciphertext, now, who)
        event(
            log,
            logging.INFO,
            "settings.provider_key_changed",
            provider=provider,
            configured=bool(key),
            by=who,
        )
    return await current_settings(app)


async def _check_fallbacks_fit(app: AdminHandles, deadline: float) -> None:
    """A shorter deadline must still leave every slot's fallbacks their reserves (422)."""
    problems = []
    for slot in await app.db.read(repositories.list_slots):
        problem = reserve_problem(parse_fallbacks(slot.fallbacks), deadline)
        if problem:
            problems.append(f"{slot.id}: {problem}")
    if problems:
        raise ValidationFailed({"sync_response_seconds": "; ".join(problems)})
