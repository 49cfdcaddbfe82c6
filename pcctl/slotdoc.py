"""A slot as an editable TOML document, and the local checks of an edit.

The document carries the slot's values plus comments that list every provider, operation and
setting (from :mod:`shared.slot_settings`, so they cannot drift from what the server accepts).
Comments are ignored when it is read back; what counts as a change is a change of values.

:func:`check_update` applies the server's own validation
(:func:`shared.slot_settings.validate_slot`) before anything is sent, so most mistakes are
reported without a round trip.
"""

from __future__ import annotations

import json
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from typing import Any

import tomli_w
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from pcctl.errors import BadFlag, LocalInvalid
from shared.api_models import SlotDetail, SlotUpdate
from shared.catalogue import CATALOGUE, TEMPLATE_ROLES
from shared.fallbacks import MAX_FALLBACKS, FallbackStep, validate_fallbacks
from shared.slot_settings import (
    REQUIRED_TEMPLATE_ROLES,
    SETTINGS_MODELS,
    CommonSettings,
    SlotSettingsError,
    validate_slot,
)

EDITABLE = ("display_name", "provider", "operation", "is_active", "size_limit_mb")
READ_ONLY = ("id", "version")
ERROR_PREFIX = "# !"  # lines pcctl adds (and removes again) when it reopens the editor
# Settings that are JSON documents of their own (a ComfyUI workflow: node ids as keys, links as
# lists, nulls): TOML cannot hold them faithfully inline, so the document carries them as JSON
# text in a multi-line string, parsed back when the document is read.
JSON_SETTINGS = ("workflow",)


# -- describing the schema ------------------------------------------------------------------
def type_text(annotation: Any) -> str:
    """``int`` → ``integer``, ``Literal['a','b']`` → ``"a" | "b"`` (``None`` is left out:
    TOML has no null, an optional setting is one you leave out)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(_toml_value(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in args if a is not type(None))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    names = {str: "string", int: "integer", float: "number", bool: "true | false"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _constraints(info: FieldInfo) -> str:
    parts: list[str] = []
    for item in info.metadata:
        for attr, label in (
            ("ge", "≥"),
            ("gt", ">"),
            ("le", "≤"),
            ("lt", "<"),
            ("min_length", "length ≥"),
            ("max_length", "length ≤"),
        ):
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{label} {value}")
    return ", ".join(parts)


def _toml_value(value: Any) -> str:
    """One TOML value, as tomli_w writes it; a table (``qr_stamp``) inline, on one line."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return tomli_w.dumps({"v": value})[4:].rstrip("\n")


def describe_field(name: str, info: FieldInfo) -> str:
    text = f"{name}: {type_text(info.annotation)}"
    constraints = _constraints(info)
    if constraints:
        text += f" ({constraints})"
    if info.is_required():
        text += ", required"
    elif info.default is None:
        text += ", optional"
    else:
        text += f" = {_toml_value(info.default)}"
    if info.description:
        text += f" — {info.description}"
    return text


def _own_fields(model: type[CommonSettings]) -> dict[str, FieldInfo]:
    common = CommonSettings.model_fields
    return {n: f for n, f in model.model_fields.items() if n not in common}


def schema_comment() -> list[str]:
    """The comment block listing providers, operations, settings and template roles."""
    lines = ['Providers and their operations (provider = "…", operation = "…"):']
    width = max(len(p) for p in CATALOGUE)
    for provider, operations in CATALOGUE.items():
        lines.append(f"  {provider.ljust(width)}  {', '.join(operations)}")
    lines += ["", "[settings] — name: type (limits) = default — description", "  every operation:"]
    for name, info in CommonSettings.model_fields.items():
        lines.append(f"    {describe_field(name, info)}")
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            nested = info.annotation.model_fields.items()  # a table's own keys
            lines += [f"      {describe_field(f'{name}.{n}', f)}" for n, f in nested]
    seen: set[type[CommonSettings]] = set()
    for (provider, operation), model in SETTINGS_MODELS.items():
        own = _own_fields(model)
        if model in seen or not own:
            continue
        seen.add(model)
        lines.append(f"  {provider}/{operation}:")
        lines += [f"    {describe_field(n, f)}" for n, f in own.items()]
    lines += [
        "",
        "[[template_media]] — one table per binding: role = "
        + " | ".join(f'"{r}"' for r in TEMPLATE_ROLES)
        + ', template_id = "…"',
        "  (ids: `pcctl template list`; new ones: `pcctl template upload FILE`)",
    ]
    lines += [
        f'  {provider}/{operation} needs role "{role}"'
        for (provider, operation), role in REQUIRED_TEMPLATE_ROLES.items()
    ]
    lines += [
        "",
        f"[[fallbacks]] — up to {MAX_FALLBACKS} steps, tried in order when the step before fails",
        "  or runs out of its time: provider, operation, reserve_seconds (the time the step keeps",
        "  out of the deadline; default 2 for local, 15 for the others), settings = { … },",
        '  templates = [{ role = "…", template_id = "…" }]. The reserves must fit the deadline.',
    ]
    return lines


# -- the document ---------------------------------------------------------------------------
def document_values(slot: SlotDetail) -> dict[str, Any]:
    """The editable values of ``slot`` as the document holds them (TOML has no null)."""
    values: dict[str, Any] = {
        "id": slot.id,
        "version": slot.version,
        "display_name": slot.display_name,
        "provider": slot.provider,
        "operation": slot.operation,
        "is_active": slot.is_active,
        "size_limit_mb": slot.size_limit_mb,
        "settings": {k: v for k, v in slot.settings.items() if v is not None},
    }
    if slot.fallbacks:
        values["fallbacks"] = [_step_values(step) for step in slot.fallbacks]
    if slot.template_media:
        values["template_media"] = [
            {"role": b.role, "template_id": b.template_id} for b in slot.template_media
        ]
    return values


def _settings_lines(settings: Mapping[str, Any]) -> list[str]:
    """The lines of a settings table: scalars, then JSON documents (a ComfyUI workflow) and
    tables, inline (a ``[settings.x]`` header would end the settings table)."""
    lines = []
    scalars = {
        k: v for k, v in settings.items() if not isinstance(v, Mapping) and k not in JSON_SETTINGS
    }
    if scalars:
        lines.append(tomli_w.dumps(scalars).rstrip("\n"))
    for key, value in settings.items():
        if key in JSON_SETTINGS:
            lines.append(f"{key} = {_json_text(value)}")
        elif isinstance(value, Mapping):
            lines.append(f"{key} = {_toml_value(value)}")
    return lines


def _step_values(step: FallbackStep) -> dict[str, Any]:
    values: dict[str, Any] = {
        "provider": step.provider,
        "operation": step.operation,
        "reserve_seconds": step.reserve,
    }
    if step.settings:
        values["settings"] = {k: v for k, v in step.settings.items() if v is not None}
    if step.templates:
        values["templates"] = [t.model_dump() for t in step.templates]
    return values


def render(slot: SlotDetail) -> str:
    """The document the editor opens."""
    values = document_values(slot)
    head = [
        f"pcctl slot edit {slot.id} — lines starting with '#' are ignored.",
        "Save and close the editor to apply; leave it unchanged or empty it to cancel.",
        f"`id` and `version` are read-only: the change applies only if the slot is still at "
        f"version {slot.version},",
        "otherwise nothing is overwritten and this file is kept for you.",
        "",
        *schema_comment(),
    ]
    out = [f"# {line}".rstrip() for line in head]
    out.append("")
    out.append(tomli_w.dumps({k: values[k] for k in (*READ_ONLY, *EDITABLE)}).rstrip("\n"))
    out.append("")
    out.append("[settings]")
    settings = values["settings"]
    out += _settings_lines(settings)
    model = SETTINGS_MODELS.get((slot.provider, slot.operation))
    if model is not None:
        for name, info in model.model_fields.items():
            if name not in settings and not info.is_required() and info.default is not None:
                out.append(f"# {name} = {_toml_value(info.default)}  (default)")
    for binding in values.get("template_media", []):
        out.append("")
        out.append("[[template_media]]")
        out.append(tomli_w.dumps(binding).rstrip("\n"))
    for step in values.get("fallbacks", []):
        out.append("")
        out.append("[[fallbacks]]")
        scalars = {k: v for k, v in step.items() if k != "settings"}
        out.append(tomli_w.dumps(scalars).rstrip("\n"))
        if "settings" in step:  # the settings of the [[fallbacks]] step just above
            out.append("[fallbacks.settings]")
            out += _settings_lines(step["settings"])
    if not values.get("fallbacks"):
        out += ["", "# [[fallbacks]]", '# provider = "local"', '# operation = "enhance"']
    return "\n".join(out) + "\n"


def with_errors(text: str, title: str, errors: Mapping[str, str]) -> str:
    """``text`` with the error block at the top replaced by one for ``errors``."""
    block = [f"{ERROR_PREFIX} {title}"]
    block += [f"{ERROR_PREFIX}   {field or 'document'}: {msg}" for field, msg in errors.items()]
    block.append(f"{ERROR_PREFIX} Fix the values and save again, or empty the file to cancel.")
    return "\n".join(block) + "\n" + strip_errors(text)


def strip_errors(text: str) -> str:
    return "".join(
        line for line in text.splitlines(keepends=True) if not line.startswith(ERROR_PREFIX)
    )


def is_blank(text: str) -> bool:
    """Nothing but comments and whitespace: the user cancelled."""
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


def _json_text(value: Any) -> str:
    """``value`` as JSON in a TOML multi-line literal string (a basic string if it cannot be)."""
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    if "'''" in text:
        return tomli_w.dumps({"v": text})[4:].rstrip("\n")
    return "'''\n" + text + "'''"


def parse(text: str) -> dict[str, Any]:
    """The document's values; :class:`LocalInvalid` for TOML syntax errors."""
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LocalInvalid({"document": f"not valid TOML: {exc}"}) from None
    _json_back(values.get("settings"), "settings")
    steps = values.get("fallbacks")
    for index, step in enumerate(steps if isinstance(steps, list) else []):
        if isinstance(step, dict):
            _json_back(step.get("settings"), f"fallbacks.{index}.settings")
    return values


def _json_back(settings: Any, where: str) -> None:
    """The JSON documents of a settings table (carried as JSON text) parsed back, in place."""
    for key in JSON_SETTINGS:
        if isinstance(settings, dict) and isinstance(settings.get(key), str):
            try:
                settings[key] = json.loads(settings[key])
            except ValueError as exc:
                raise LocalInvalid({f"{where}.{key}": f"not valid JSON: {exc}"}) from None


def update_from_document(values: Mapping[str, Any], slot: SlotDetail) -> SlotUpdate:
    """The full update a document describes, checked locally (:class:`LocalInvalid`)."""
    errors: dict[str, str] = {}
    known = {*READ_ONLY, *EDITABLE, "settings", "template_media", "fallbacks"}
    for key in values:
        if key not in known:
            errors[key] = "unknown key (allowed: " + ", ".join(sorted(known)) + ")"
    if values.get("id", slot.id) != slot.id:
        errors["id"] = f"read-only: this document edits {slot.id}"
    if values.get("version", slot.version) != slot.version:
        errors["version"] = f"read-only (you opened version {slot.version})"
    if errors:
        raise LocalInvalid(errors)
    body: dict[str, Any] = {k: values[k] for k in EDITABLE if k in values}
    body["settings"] = values.get("settings", {})
    body["template_media"] = values.get("template_media", [])
    body["fallbacks"] = values.get("fallbacks", [])
    update: SlotUpdate = model_or_errors(SlotUpdate, body)
    check_update(update, slot)
    return update


def model_or_errors(model: type[BaseModel], body: Mapping[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise LocalInvalid(
            {
                ".".join(str(p) for p in error["loc"]) or "document": error["msg"]
                for error in exc.errors()
            }
        ) from None


def check_update(update: SlotUpdate, slot: SlotDetail) -> None:
    """Validate ``update`` applied to ``slot`` like the server will (:class:`LocalInvalid`)."""
    provider = update.provider or slot.provider
    operation = update.operation or slot.operation
    settings = update.settings if update.settings is not None else slot.settings
    roles = [
        b.role
        for b in (
            update.template_media if update.template_media is not None else slot.template_media
        )
    ]
    errors: dict[str, str] = {}
    try:
        validate_slot(provider, operation, settings, roles)
    except SlotSettingsError as exc:
        errors.update(exc.errors)
    if update.fallbacks is not None:
        try:  # whether the reserves fit the deadline is the server's to say
            validate_fallbacks(update.fallbacks, math.inf)
        except SlotSettingsError as exc:
            errors.update(exc.errors)
    if errors:
        raise LocalInvalid(errors)


# -- flag edits -----------------------------------------------------------------------------
def parse_assignment(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as TOML (what does not parse is a string, as a bare
    ``prompt=make it pop``); raises :class:`BadFlag` (exit 2) for a missing ``=``, or for a
    setting that holds a table or a list whose value does not parse: sent as a string it came
    back from the server as a puzzling type error."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise BadFlag(f"--set: expected key=value, got {text!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError as exc:
        if key in STRUCTURED_SETTINGS:
            raise BadFlag(
                f"--set {key}: not a valid TOML value ({exc})",
                hint="TOML, not JSON: --set 'qr_stamp={enabled=true, position=\"top-left\"}'",
            ) from None
        value = raw  # `--set prompt='80s look` — text, whatever it starts with
    return key, value


def _structured(annotation: Any) -> bool:
    """Whether a setting holds a table or a list (not text, a number or a choice)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_structured(a) for a in typing.get_args(annotation) if a is not type(None))
    if origin in (list, dict, tuple) or annotation in (list, dict, tuple):
        return True
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


# Settings whose --set value must parse as TOML (qr_stamp's table …); the others take any text.
STRUCTURED_SETTINGS = frozenset(
    name
    for model in SETTINGS_MODELS.values()
    for name, info in model.model_fields.items()
    if _structured(info.annotation) and name not in JSON_SETTINGS
)


def carried_settings(current: Mapping[str, Any], provider: str, operation: str) -> dict[str, Any]:
    """Settings kept when a slot moves to another provider/operation: those the new model
    also has (``prompt``, ``output_format`` …); the rest would be rejected as unknown."""
    model = SETTINGS_MODELS.get((provider, operation))
    if model is None:
        return dict(current)
    return {k: v for k, v in current.items() if k in model.model_fields}


def default_role(provider: str, operation: str) -> str:
    """The template role an operation needs, else ``style``."""
    return REQUIRED_TEMPLATE_ROLES.get((provider, operation), "style")
