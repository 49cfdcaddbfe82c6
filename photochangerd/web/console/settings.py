"""``/admin/settings``: deadline, result TTL, ingest password, provider keys, purge.

Every change goes through :func:`photochangerd.http.admin.settings.apply_settings` with a
:class:`~shared.api_models.SettingsUpdate` — the code and the validation of ``PUT /api/settings``.
Secrets go one way: a provider key is never shown back, not even masked (only whether it is
configured, since when and by whom); a new ingest password is shown once, on the page the POST
itself answers (never in a URL or a redirect, ``Cache-Control: no-store``).
"""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from quart import Response, request
from sqlalchemy import Connection

from photochangerd.db.tables import provider_secret
from photochangerd.http.admin.media import request_purge
from photochangerd.http.admin.settings import apply_settings, current_settings
from photochangerd.http.context import admin
from photochangerd.http.validation import errors_from_pydantic
from photochangerd.providers.keys import ENV_VARIABLES
from photochangerd.web import formatting
from photochangerd.web.console import back, bp, page, session
from shared.api_models import PROVIDER_NAMES, SettingsOut, SettingsUpdate

SETTINGS_PATH = "/admin/settings"
# Unambiguous characters only: people type this password into DSLR Remote Pro (the same
# format as `pcctl settings rotate-ingest-password --generate`).
PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # noqa: S105 - an alphabet
PASSWORD_GROUPS, PASSWORD_GROUP_LEN = 4, 5  # 20 characters ≈ 99 bits
PROVIDER_LABELS = {
    "gemini": "Gemini",
    "turbotext": "Turbotext",
    "openai": "OpenAI",
    "sdwebui": "Stable Diffusion WebUI (user:pass)",
}
FORM_FIELDS = {
    "sync_response_seconds",
    "result_ttl_hours",
    "ingest_password",
    *(f"provider_key_{name}" for name in PROVIDER_NAMES),
}
MAX_FIELD = 1024  # longer form values are cut before validation (the API allows 256)


def generate_password() -> str:
    """A strong ingest password: ``xxxxx-xxxxx-xxxxx-xxxxx`` from 31 unambiguous characters."""
    return "-".join(
        "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_GROUP_LEN))
        for _ in range(PASSWORD_GROUPS)
    )


def _key_owners(conn: Connection) -> dict[str, str | None]:
    """Who stored each provider key (the API shows when, the console also by whom)."""
    rows = conn.execute(sa.select(provider_secret.c.provider, provider_secret.c.updated_by))
    return {row.provider: row.updated_by for row in rows}


async def _render(
    status: int = 200,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    app = admin()
    current = await current_settings(app)
    owners = await app.db.read(_key_owners)
    return await page(
        "settings.html",
        status=status,
        settings=current,
        providers=[
            (
                name,
                PROVIDER_LABELS.get(name, name),
                current.provider_keys[name],
                owners.get(name),
                # a start-up key: an environment variable or a systemd credential
                app.keys.source(name),
                ENV_VARIABLES.get(name, ""),
            )
            for name in PROVIDER_NAMES
        ],
        errors=errors or {},
        general_errors=[m for f, m in (errors or {}).items() if f not in FORM_FIELDS],
        values=values or {},
        cleanup_minutes=max(1, round(app.config.cleanup_interval_seconds / 60)),
        fmt=formatting,
        now=app.clock.now(),
    )


def _form_errors(exc: ValidationError) -> dict[str, str]:
    """The API's 422 field messages, keyed by the form field they belong to."""
    errors: dict[str, str] = {}
    for field, message in errors_from_pydantic(exc).items():
        if field.startswith("provider_keys."):
            field = "provider_key_" + field.split(".")[1]
        errors.setdefault(field, message)
    return errors


async def _apply(payload: dict[str, Any]) -> SettingsOut | dict[str, str]:
    """Validate ``payload`` as the API does and apply it; the field errors when it fails."""
    try:
        update = SettingsUpdate.model_validate(payload)
    except ValidationError as exc:
        return _form_errors(exc)
    return await apply_settings(admin(), update, session().username)


async def _form() -> dict[str, str]:
    form = await request.form
    return {key: str(value)[:MAX_FIELD] for key, value in form.items()}


@bp.get("/settings")
async def settings_page() -> Response:
    return await _render()


@bp.post("/settings")
async def save_settings() -> Response:
    """Deadline and result TTL (both fields of the first form)."""
    form = await _form()
    payload: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in ("sync_response_seconds", "result_ttl_hours"):
        value = form.get(field, "").strip()
        if not value:
            errors[field] = "required"
        else:
            payload[field] = value
    result = errors or await _apply(payload)
    if isinstance(result, dict):
        values = {k: form.get(k, "") for k in ("sync_response_seconds", "result_ttl_hours")}
        return await _render(422, result, values)
    return back(
        SETTINGS_PATH,
        f"saved: deadline {result.sync_response_seconds:g} s, "
        f"results kept {result.result_ttl_hours:g} h",
    )


@bp.get("/settings/ingest-password")
async def password_page_again() -> Response:
    """The new password was shown once, on the answer to the POST: it is not here any more."""
    return back(SETTINGS_PATH, "the new ingest password is only shown once, when it is set")


@bp.post("/settings/ingest-password")
async def rotate_ingest_password() -> Response:
    """A typed (8+ characters) or generated password; the answer shows it once."""
    form = await _form()
    generated = form.get("mode") == "generate"
    password = generate_password() if generated else form.get("ingest_password", "")
    if not generated and not password:
        return await _render(422, {"ingest_password": "type a new password, or generate one"})
    result = await _apply({"ingest_password": password})
    if isinstance(result, dict):
        return await _render(422, result)  # the typed value is not sent back
    app = admin()
    return await page(
        "settings_password.html",
        password=password,
        generated=generated,
        state=result.ingest_password,
        ingest_url=f"{app.config.effective_public_base_url}/ingest/slot-001",
        fmt=formatting,
        now=app.clock.now(),
    )


@bp.post("/settings/provider-keys/<provider>")
async def set_provider_key(provider: str) -> Response:
    """Store or replace a provider's key (``action=clear``: delete the stored one)."""
    if provider not in PROVIDER_NAMES:
        return await _render(404, {"provider": f"unknown provider: one of {PROVIDER_NAMES}"})
    form = await _form()
    field = f"provider_key_{provider}"
    clear = form.get("action") == "clear"
    key = "" if clear else form.get("key", "").strip()
    if not clear and not key:
        return await _render(422, {field: "paste the key (or use Clear to remove the stored one)"})
    result = await _apply({"provider_keys": {provider: key}})
    if isinstance(result, dict):
        return await _render(422, result)
    label = PROVIDER_LABELS.get(provider, provider)
    if clear:
        state = result.provider_keys[provider]
        now = {
            "environment": "from the environment",
            "credentials": "from a systemd credential",
        }.get(state.source, "not configured")
        return back(SETTINGS_PATH, f"{label} key removed (now: {now})")
    return back(SETTINGS_PATH, f"{label} key stored")


@bp.post("/settings/purge")
async def purge() -> Response:
    """Start a purge of expired media and results now (what POST /api/media/cache/purge does)."""
    request_purge(admin())
    return back(SETTINGS_PATH, "purge of expired media and results started")
