"""Narrow handles (photochangerd/http/context.py): routes get what their role uses, never the
daemon's whole AppContext, and nothing secret is reachable from the public handle."""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest

import photochangerd
from photochangerd.auth.passwords import IngestPasswordChecker
from photochangerd.auth.secrets_box import SecretBox
from photochangerd.auth.tokens import TokenService
from photochangerd.config import Config
from photochangerd.http.context import (
    AdminHandles,
    AppContext,
    BoothHandles,
    Handles,
    PublicHandles,
)
from photochangerd.providers.keys import ProviderKeys

PACKAGE = Path(photochangerd.__file__).parent
# The composition root's type may only be seen where it is defined and where the Quart app is
# wired from it.
WIRING = {PACKAGE / "http" / "context.py", PACKAGE / "http" / "app.py"}
SECRET_TYPES = (SecretBox, TokenService, ProviderKeys, IngestPasswordChecker)


def _route_modules() -> list[Path]:
    found = sorted((PACKAGE / "http").rglob("*.py")) + sorted((PACKAGE / "web").rglob("*.py"))
    return [path for path in found if path not in WIRING]


def _is_app_context(node: ast.AST) -> bool:
    if isinstance(node, ast.ImportFrom):
        return any(alias.name == "AppContext" for alias in node.names)
    return (isinstance(node, ast.Name) and node.id == "AppContext") or (
        isinstance(node, ast.Attribute) and node.attr == "AppContext"
    )


def _quoted_annotation(node: ast.AST) -> str | None:
    """A string annotation's text (``a: "AppContext | None"``)."""
    annotation = None
    if isinstance(node, ast.arg | ast.AnnAssign):
        annotation = node.annotation
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        annotation = node.returns
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return annotation.value
    return None


def _mentions_app_context(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        quoted = _quoted_annotation(node)
        if _is_app_context(node) or (
            quoted is not None and _mentions_app_context(ast.parse(quoted, mode="eval"))
        ):
            lines.append(getattr(node, "lineno", 0))
    return lines


def test_routes_never_import_the_app_context() -> None:
    modules = _route_modules()
    assert len(modules) > 10  # the walk found the route modules
    offenders = {
        str(path.relative_to(PACKAGE.parent)): lines
        for path in modules
        if (lines := _mentions_app_context(ast.parse(path.read_text(), str(path))))
    }
    assert offenders == {}, f"routes must take a narrow handle, not AppContext: {offenders}"


def test_the_check_sees_an_import() -> None:
    tree = ast.parse("from photochangerd.http.context import AppContext, admin\n")
    assert _mentions_app_context(tree) == [1]
    tree = ast.parse("from photochangerd.http import context\ndef f(a: context.AppContext): ...")
    assert _mentions_app_context(tree) == [2]
    tree = ast.parse("def f(a: 'AppContext | None') -> None: ...")
    assert _mentions_app_context(tree) == [1]


def _types_in(annotation: Any) -> list[Any]:
    """``annotation`` and every type inside it (``X | None``, ``Channel[str]``, ...)."""
    found = [annotation]
    for argument in typing.get_args(annotation):
        found.extend(_types_in(argument))
    origin = typing.get_origin(annotation)
    if origin is not None:
        found.append(origin)
    return found


def _reachable_types(handle: type, seen: set[type] | None = None) -> dict[str, Any]:
    """Each field's types by dotted path, nested handle dataclasses included."""
    seen = seen if seen is not None else set()
    seen.add(handle)
    hints = typing.get_type_hints(handle)
    reachable: dict[str, Any] = {}
    for item in dataclasses.fields(handle):
        for kind in _types_in(hints[item.name]):
            reachable.setdefault(item.name, []).append(kind)
            if dataclasses.is_dataclass(kind) and isinstance(kind, type) and kind not in seen:
                for path, kinds in _reachable_types(kind, seen).items():
                    reachable[f"{item.name}.{path}"] = kinds
    return reachable


def _offending(handle: type, forbidden: tuple[type, ...]) -> dict[str, str]:
    return {
        path: kind.__name__
        for path, kinds in _reachable_types(handle).items()
        for kind in kinds
        if isinstance(kind, type) and issubclass(kind, forbidden)
    }


def test_no_secret_is_reachable_from_the_public_handle() -> None:
    assert dataclasses.fields(PublicHandles)  # introspection works on the slotted class
    # Config carries jwt_secret and secret_key: the public side gets only the base URL.
    forbidden = (*SECRET_TYPES, Config, AppContext, AdminHandles, BoothHandles)
    assert _offending(PublicHandles, forbidden) == {}


def test_the_booth_handle_holds_no_admin_secret() -> None:
    assert _offending(BoothHandles, (SecretBox, TokenService, ProviderKeys, AdminHandles)) == {}


def test_the_introspection_finds_a_secret() -> None:
    assert _offending(AdminHandles, SECRET_TYPES) == {
        "tokens": "TokenService",
        "secrets": "SecretBox",
        "keys": "ProviderKeys",
        "booth.ingest_passwords": "IngestPasswordChecker",
    }


@pytest.mark.parametrize("handle", [BoothHandles, PublicHandles, AdminHandles, Handles])
def test_handles_are_frozen_and_slotted(handle: type) -> None:
    assert handle.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert "__slots__" in vars(handle)


def test_the_handles_share_the_context_objects() -> None:
    config = Config(public_base_url="https://booth.example/")
    values: dict[str, Any] = {
        item.name: object() for item in dataclasses.fields(AppContext) if item.name != "config"
    }
    context = AppContext(config=config, **values)
    handles = context.handles()
    assert handles.admin.booth is handles.booth  # the test run: explicitly, the same handle
    for handle in (handles.booth, handles.public, handles.admin):
        for item in dataclasses.fields(handle):
            if item.name in ("booth", "public_base_url"):
                continue
            assert getattr(handle, item.name) is getattr(context, item.name), item.name
    assert handles.public.public_base_url() == "https://booth.example"
