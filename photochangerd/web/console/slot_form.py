"""Slot settings forms generated from the settings models' JSON schema (docs/web.md).

A provider/operation's settings model (:data:`shared.slot_settings.SETTINGS_MODELS`) becomes a
list of :class:`FormField`: the JSON schema's type picks the control (string → text, or a
textarea for prompts; ``enum``/``Literal`` → select; boolean → checkbox; integer/number →
number with the schema's bounds; an object of fields → a fieldset of its own; a free-form
object, such as a ComfyUI workflow → a textarea of JSON text), ``description``
becomes the help text.  Field names are the API's: ``prompt``, ``qr_stamp.enabled`` …  So a new
provider, operation or setting needs no new page.

The reverse, :func:`parse_settings`, turns a submitted form back into the settings object the
API takes (empty optional fields omitted, numbers typed); validation stays the API's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from pydantic import BaseModel

from shared.catalogue import CATALOGUE
from shared.slot_settings import SETTINGS_MODELS

TEXTAREA_SUFFIX = "prompt"  # prompt, negative_prompt: several lines of text
_ACRONYMS = {"qr": "QR", "url": "URL", "id": "ID", "api": "API", "mb": "MB"}

# What a rendered field holds: the text of an input or select, a checkbox's state.
FormValue = str | bool


@dataclass(frozen=True, slots=True)
class FormField:
    name: str  # the API's key path, dot-separated: "prompt", "qr_stamp.size_percent"
    label: str
    kind: str  # "text", "textarea", "select", "checkbox", "number" or "group"
    help: str = ""
    required: bool = False
    value_type: str = "string"  # "string", "integer", "number", "boolean", "object", "json"
    options: tuple[str, ...] = ()  # select
    blank_option: bool = False  # select: an empty choice (optional field, or no default)
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    default: Any = None
    children: tuple[FormField, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def step(self) -> str:
        return "1" if self.value_type == "integer" else "any"

    @property
    def dom_id(self) -> str:
        return self.name.replace(".", "-").replace("_", "-")


def humanize(name: str) -> str:
    words = name.split("_")
    text = " ".join(_ACRONYMS.get(word, word) for word in words)
    return text[:1].upper() + text[1:]


def _label(name: str, schema: Mapping[str, Any]) -> str:
    title = schema.get("title")
    # pydantic's automatic title is the name in Title Case: a custom one is kept as written.
    if isinstance(title, str) and title != name.replace("_", " ").title():
        return title
    return humanize(name)


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a ``$ref`` (or pydantic's older ``allOf: [$ref]``) into ``$defs``, keeping the
    referring schema's own keys (``default``, ``description``)."""
    ref = schema.get("$ref")
    if ref is None and len(schema.get("allOf", ())) == 1:
        ref = schema["allOf"][0].get("$ref")
    if not isinstance(ref, str):
        return schema
    target = defs.get(ref.rsplit("/", 1)[-1], {})
    own = {k: v for k, v in schema.items() if k not in ("$ref", "allOf")}
    merged = {**target, **own}
    if "title" not in own:
        merged.pop("title", None)  # the class name is not a label
    return merged


def _unwrap_nullable(schema: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool]:
    """``X | None`` (``anyOf: [X, {type: null}]``) → (X, True)."""
    variants = schema.get("anyOf")
    if not isinstance(variants, list):
        return schema, False
    others = [v for v in variants if v.get("type") != "null"]
    if len(others) != 1 or len(others) == len(variants):
        return schema, False
    own = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**others[0], **own}, True


def _field(
    path: str, name: str, raw: Mapping[str, Any], defs: Mapping[str, Any], required: bool
) -> FormField:
    schema, nullable = _unwrap_nullable(_resolve(raw, defs))
    schema = _resolve(schema, defs)
    label = _label(name, raw if "title" in raw else schema)
    help_text = str(raw.get("description") or schema.get("description") or "")
    default = raw.get("default", schema.get("default"))
    kind_type = schema.get("type")
    if "properties" in schema:  # an object of fields: a fieldset of its own
        inner_required = set(schema.get("required", ()))
        defaults = default if isinstance(default, dict) else {}
        children = []
        for child_name, child_schema in schema["properties"].items():
            child = _field(
                f"{path}.{child_name}",
                child_name,
                child_schema,
                defs,
                child_name in inner_required,
            )
            if child_name in defaults and child.kind != "group":
                child = _with_default(child, defaults[child_name])
            children.append(child)
        return FormField(
            path,
            label,
            "group",
            help_text,
            required,
            "object",
            default=defaults or None,
            children=tuple(children),
        )
    if "enum" in schema or "const" in schema:
        options = tuple(str(v) for v in schema.get("enum", [schema.get("const")]))
        return FormField(
            path,
            label,
            "select",
            help_text,
            required,
            str(kind_type or "string"),
            options=options,
            blank_option=nullable or default is None,
            default=default,
        )
    if kind_type == "boolean":
        return FormField(path, label, "checkbox", help_text, required, "boolean", default=default)
    if kind_type in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        return FormField(
            path,
            label,
            "number",
            help_text,
            required,
            str(kind_type),
            minimum=low,
            maximum=high,
            default=default,
        )
    if kind_type == "object":  # a free-form JSON document (a ComfyUI workflow): JSON text
        return FormField(path, label, "textarea", help_text, required, "json", default=default)
    max_length = schema.get("maxLength")
    kind = "textarea" if name.endswith(TEXTAREA_SUFFIX) else "text"
    return FormField(
        path,
        label,
        kind,
        help_text,
        required,
        "string",
        max_length=max_length if isinstance(max_length, int) else None,
        default=default,
    )


def _with_default(item: FormField, default: Any) -> FormField:
    return replace(item, default=default)


def fields_for_model(model: type[BaseModel]) -> tuple[FormField, ...]:
    """The form of a settings model, from its JSON schema."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    required = set(schema.get("required", ()))
    return tuple(
        _field(name, name, value, defs, name in required)
        for name, value in schema.get("properties", {}).items()
    )


@cache
def fields_for(provider: str, operation: str) -> tuple[FormField, ...]:
    """The settings form of ``provider``/``operation`` (empty when it has no model)."""
    model = SETTINGS_MODELS.get((provider, operation))
    return fields_for_model(model) if model is not None else ()


def choices() -> list[tuple[str, str]]:
    """Every provider/operation the catalogue knows, in its order."""
    return [(provider, op) for provider, ops in CATALOGUE.items() for op in ops]


# -- values shown in a form -------------------------------------------------------------------


def _display(item: FormField, value: Any) -> FormValue:
    if item.kind == "checkbox":
        return bool(value)
    if value is None:
        return ""
    if item.kind == "select" and str(value) not in item.options:
        return "" if item.default is None else str(item.default)
    if item.value_type == "json":
        return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    if isinstance(value, bool | dict | list):
        return "" if item.default is None else str(item.default)
    return str(value)


def values_from_settings(
    fields: tuple[FormField, ...], settings: Mapping[str, Any]
) -> dict[str, FormValue]:
    """Flat ``name → value`` for a form showing stored ``settings`` (defaults where absent)."""
    values: dict[str, FormValue] = {}
    for item in fields:
        present = item.key in settings
        value = settings.get(item.key) if present else item.default
        if item.kind == "group":
            inner = value if isinstance(value, Mapping) else {}
            values.update(values_from_settings(item.children, inner))
        else:
            values[item.name] = _display(item, value)
    return values


def values_from_form(
    fields: tuple[FormField, ...], form: Mapping[str, str]
) -> dict[str, FormValue]:
    """Flat ``name → value`` of a submitted form, to show it again as it was typed."""
    values: dict[str, FormValue] = {}
    for item in fields:
        if item.kind == "group":
            values.update(values_from_form(item.children, form))
        elif item.kind == "checkbox":
            values[item.name] = item.name in form
        else:
            values[item.name] = str(form.get(item.name, ""))
    return values


# -- a submitted form → the API's settings object ---------------------------------------------


def _number(item: FormField, raw: str) -> Any:
    """An int or float when the text is one; else the text itself (the API's validation then
    names the problem, e.g. "Input should be a valid integer")."""
    try:
        if item.value_type == "integer":
            return int(raw)
        number = float(raw)
    except ValueError:
        return raw
    return number if math.isfinite(number) else raw


def _json(raw: str) -> Any:
    """The document a JSON field holds; the text itself when it is not JSON (the API's
    validation then says so)."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_settings(fields: tuple[FormField, ...], form: Mapping[str, str]) -> dict[str, Any]:
    """The settings object of a submitted form: empty optional fields are omitted (never
    stored as ``""``), numbers typed, checkboxes true/false, nested objects rebuilt."""
    settings: dict[str, Any] = {}
    for item in fields:
        if item.kind == "group":
            inner = parse_settings(item.children, form)
            if inner:
                settings[item.key] = inner
            continue
        if item.kind == "checkbox":
            settings[item.key] = item.name in form
            continue
        raw = str(form.get(item.name, ""))
        if not raw.strip():
            continue
        if item.value_type == "json":
            settings[item.key] = _json(raw)
        elif item.kind == "number":
            settings[item.key] = _number(item, raw.strip())
        elif item.kind == "textarea":
            settings[item.key] = raw.replace("\r\n", "\n")
        else:
            settings[item.key] = raw.strip()
    return settings


def field_errors(errors: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The API's 422 ``errors`` (``settings.prompt`` → message) by form field name (``prompt``,
    ``display_name`` …), and the messages that belong to no single field."""
    placed: dict[str, str] = {}
    general: list[str] = []
    for path, message in errors.items():
        name = path.removeprefix("settings.") if path.startswith("settings.") else path
        if not name or name in ("settings", "body"):
            general.append(message)
        else:
            placed[name] = message
    return placed, general
