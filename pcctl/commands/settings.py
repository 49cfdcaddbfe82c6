"""``pcctl settings show | set | rotate-ingest-password | provider-key``."""

from __future__ import annotations

import secrets
import sys
from typing import Any

import click
from rich.text import Text

from pcctl import slotdoc
from pcctl.errors import LocalInvalid
from pcctl.output import Output, age, iso, yes_no
from pcctl.state import State, output_option, pass_state
from shared.api_models import PROVIDER_NAMES, SettingsOut, SettingsUpdate

# CLI name → (API field, unit shown to the user)
SETTABLE = {
    "sync-response": ("sync_response_seconds", "s"),
    "result-ttl": ("result_ttl_hours", "h"),
}
# Unambiguous characters only: people type this password into DSLR Remote Pro.
PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # noqa: S105 - an alphabet
PASSWORD_GROUPS, PASSWORD_GROUP_LEN = 4, 5  # 20 characters ≈ 99 bits
MIN_INGEST_PASSWORD = 8  # what PUT /api/settings accepts (the first-start one may be weaker)


@click.group()
def settings() -> None:
    """Global settings: deadline, result TTL, ingest password, provider keys."""


def show_settings(out: Output, data: SettingsOut) -> None:
    if out.is_json:
        out.json(data)
        return
    pw = data.ingest_password
    pairs: list[tuple[str, Any, Any]] = [
        (
            "sync_response_seconds",
            data.sync_response_seconds,
            Text(f"{data.sync_response_seconds:g} s"),
        ),
        ("result_ttl_hours", data.result_ttl_hours, Text(f"{data.result_ttl_hours:g} h")),
        ("ingest_password.configured", pw.configured, None),
        (
            "ingest_password.rotated_at",
            iso(pw.rotated_at),
            Text(f"{age(pw.rotated_at)} by {pw.rotated_by}" if pw.rotated_at else "never"),
        ),
    ]
    for provider, key in data.provider_keys.items():
        if out.mode.value == "plain":
            pairs.append((f"provider_keys.{provider}.configured", key.configured, None))
            pairs.append((f"provider_keys.{provider}.source", key.source, None))
            pairs.append((f"provider_keys.{provider}.updated_at", iso(key.updated_at), None))
        else:
            text = yes_no(key.configured)
            if key.configured:
                text.append(f" ({key.source}", style="dim")
                text.append(f", {age(key.updated_at)})" if key.updated_at else ")", style="dim")
            pairs.append((f"provider key {provider}", key.configured, text))
    for name, value in data.limits.model_dump().items():
        pairs.append((f"limits.{name}", value, None))
    out.fields(pairs, "Settings")


@settings.command("show")
@output_option
@pass_state
def show(state: State) -> None:
    """Current settings (secrets are never shown, only whether they are set)."""
    show_settings(state.out, state.client().get_settings())


@settings.command("set")
@click.argument("name", type=click.Choice(list(SETTABLE)))
@click.argument("value", type=float)
@output_option
@pass_state
def set_(state: State, name: str, value: float) -> None:
    """Set sync-response (seconds, 10–60) or result-ttl (hours).

    \b
      pcctl settings set sync-response 48
      pcctl settings set result-ttl 72
    """
    field, unit = SETTABLE[name]
    update: SettingsUpdate = slotdoc.model_or_errors(SettingsUpdate, {field: value})
    result = state.client().put_settings(update)
    if state.out.is_json:
        state.out.json(result)
    else:
        state.out.success(f"{name} is now {getattr(result, field):g} {unit}")


def generate_password() -> str:
    return "-".join(
        "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_GROUP_LEN))
        for _ in range(PASSWORD_GROUPS)
    )


def check_chosen_password(password: str) -> None:
    """A typed or piped password: at least :data:`MIN_INGEST_PASSWORD` characters."""
    if len(password) < MIN_INGEST_PASSWORD:
        raise LocalInvalid(
            {
                "ingest_password": f"at least {MIN_INGEST_PASSWORD} characters "
                f"(this one has {len(password)})"
            },
            "the new ingest password is too short",
            hint="`pcctl settings rotate-ingest-password --generate` makes a strong one",
        )


@settings.command("rotate-ingest-password")
@click.option("--generate", is_flag=True, help="Create a strong password and print it once.")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the new password from stdin.")
@output_option
@pass_state
def rotate_ingest_password(state: State, generate: bool, from_stdin: bool) -> None:
    """Replace the ingest password of all booths (effective at once, no restart).

    --generate (recommended) makes a 20-character one and prints it once; a typed or --stdin
    password needs at least 8 characters.
    """
    if generate and from_stdin:
        raise click.UsageError("--generate and --stdin exclude each other")
    if generate:
        password = generate_password()
    else:
        if from_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = click.prompt(
                "New ingest password",
                hide_input=True,
                confirmation_prompt="Repeat it",
            )
        check_chosen_password(password)
    update: SettingsUpdate = slotdoc.model_or_errors(SettingsUpdate, {"ingest_password": password})
    result = state.client().put_settings(update)
    out = state.out
    if out.is_json:
        body = result.model_dump(mode="json")
        if generate:
            body["generated_password"] = password
        out.json(body)
        return
    out.success("ingest password rotated; enter it in DSLR Remote Pro on every booth")
    if generate:
        if out.stdout_tty:
            out.info("the new password (shown only this once):")
        sys.stdout.write(password + "\n")


@settings.command("provider-key")
@click.argument("provider", type=click.Choice(PROVIDER_NAMES))
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the key from stdin.")
@click.option("--remove", is_flag=True, help="Delete the stored key (the environment's applies).")
@output_option
@pass_state
def provider_key(state: State, provider: str, from_stdin: bool, remove: bool) -> None:
    """Store an API key for PROVIDER (encrypted on the server, never shown again)."""
    if remove:
        key = ""
    elif from_stdin:
        key = sys.stdin.read().strip()
        if not key:
            raise click.UsageError("--stdin: stdin was empty")
    else:
        key = click.prompt(f"{provider} API key", hide_input=True).strip()
    update: SettingsUpdate = slotdoc.model_or_errors(
        SettingsUpdate, {"provider_keys": {provider: key}}
    )
    result = state.client().put_settings(update)
    out = state.out
    if out.is_json:
        out.json(result)
        return
    state_now = result.provider_keys.get(provider)
    if remove:
        source = state_now.source if state_now else "none"
        out.success(f"{provider} key removed (now from: {source})")
    else:
        out.success(f"{provider} key stored")
