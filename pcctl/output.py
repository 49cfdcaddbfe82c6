"""Rendering for humans and for scripts.

Three modes, chosen once per command:

* ``table`` — Rich tables and colours; the default when stdout is a terminal.  Colours follow
  Rich's rules, so ``NO_COLOR`` (any value) turns them off.
* ``plain`` — the default when stdout is not a terminal: one record per line, fields separated
  by tabs, no header, nothing truncated, times in ISO-8601 (UTC), booleans ``true``/``false``.
* ``json`` — the API model as the server sent it (``model_dump``), stable keys, no colours;
  times (the API's epoch seconds) as ISO-8601 UTC strings like in plain output.

Times in plain and JSON output look like ``2026-12-01T14:03:22+00:00``.

Data goes to stdout; messages, progress and errors go to stderr.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

T = TypeVar("T")


class Mode(StrEnum):
    TABLE = "table"
    PLAIN = "plain"
    JSON = "json"


MODES = tuple(mode.value for mode in Mode)


# Fields of the API's bodies holding epoch seconds (including JobOut.result's expires_at).
TIME_FIELDS = frozenset(
    {
        "created_at",
        "started_at",
        "finalized_at",
        "updated_at",
        "rotated_at",
        "expires_at",
        "deadline",
        "last_success_at",
        "last_error_at",
        "start",
    }
)
OPAQUE_FIELDS = frozenset({"settings"})  # a slot's own settings: never reinterpreted


def iso(ts: float | None) -> str:
    """ISO-8601 UTC with seconds (``2026-12-01T14:03:22+00:00``), or an empty string."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def iso_times(data: Any) -> Any:
    """``data`` (dumped JSON) with the epoch seconds of every :data:`TIME_FIELDS` key as
    :func:`iso` strings; null stays null."""
    if isinstance(data, list):
        return [iso_times(item) for item in data]
    if not isinstance(data, dict):
        return data
    return {key: _time_field(key, value) for key, value in data.items()}


def _time_field(key: str, value: Any) -> Any:
    if key in OPAQUE_FIELDS:
        return value
    if key in TIME_FIELDS and isinstance(value, int | float) and not isinstance(value, bool):
        return iso(value)
    return iso_times(value)


def human_size(size: int | None) -> str:
    """``1.4 MB``-style (decimal units), or an empty string."""
    if size is None:
        return ""
    if size < 1000:
        return f"{size} B"
    for unit, scale in (("kB", 1e3), ("MB", 1e6)):
        if size < scale * 999.95:
            return f"{size / scale:.1f} {unit}"
    return f"{size / 1e9:.1f} GB"


def local_time(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def age(ts: float | None, now: float | None = None) -> str:
    """``3m ago``-style relative time."""
    if ts is None:
        return ""
    seconds = max(0.0, (now if now is not None else datetime.now(UTC).timestamp()) - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def plain_value(value: Any) -> str:
    """One field of a tab-separated line (tabs and newlines inside are escaped)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


@dataclass(frozen=True)
class Column(Generic[T]):
    """One column: a header, the plain value and (optionally) a richer terminal rendering."""

    header: str
    plain: Callable[[T], Any]
    rich: Callable[[T], RenderableType] | None = None
    justify: str = "left"
    no_wrap: bool = False
    overflow: str = "fold"  # long URLs and ids wrap, never turn into "…"


def when(ts: float | None) -> Text:
    """Local time for a terminal, ``—`` when there is none."""
    return Text(local_time(ts)) if ts is not None else dim("—")


def yes_no(value: bool) -> Text:
    return Text("yes", style="green") if value else Text("no", style="red")


def dim(text: str) -> Text:
    return Text(text, style="dim")


class Output:
    """Where and how a command prints.  ``stdout_tty``/``stderr_tty`` are detected unless
    given (tests pass them)."""

    def __init__(
        self,
        requested: str | None = None,
        *,
        stdout_tty: bool | None = None,
        stderr_tty: bool | None = None,
    ) -> None:
        self.stdout_tty = sys.stdout.isatty() if stdout_tty is None else stdout_tty
        self.stderr_tty = sys.stderr.isatty() if stderr_tty is None else stderr_tty
        if requested:
            self.mode = Mode(requested)
        else:
            self.mode = Mode.TABLE if self.stdout_tty else Mode.PLAIN
        no_color = "NO_COLOR" in os.environ
        self.console = Console(
            file=sys.stdout,
            force_terminal=self.stdout_tty and self.mode is Mode.TABLE,
            no_color=no_color or None,
            highlight=False,
            soft_wrap=not self.stdout_tty,
        )
        self.err = Console(
            file=sys.stderr,
            force_terminal=self.stderr_tty,
            no_color=no_color or None,
            highlight=False,
            soft_wrap=True,
        )

    @property
    def is_json(self) -> bool:
        return self.mode is Mode.JSON

    @property
    def interactive(self) -> bool:
        """Progress bars and spinners: only when a human watches stderr."""
        return self.stderr_tty

    # -- data (stdout) ----------------------------------------------------------------------
    def json(self, data: BaseModel | Any) -> None:
        """One pretty JSON document, times as ISO-8601 (:func:`iso_times`)."""
        sys.stdout.write(json.dumps(_json_ready(data), indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def json_line(self, data: BaseModel | Any) -> None:
        """One compact JSON document on one line (JSON Lines), times as in :meth:`json`."""
        sys.stdout.write(json.dumps(_json_ready(data), ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def line(self, *fields: Any) -> None:
        sys.stdout.write("\t".join(plain_value(f) for f in fields) + "\n")

    def table(
        self,
        columns: Sequence[Column[T]],
        rows: Iterable[T],
        *,
        title: str | None = None,
        empty: str = "nothing to show",
    ) -> None:
        """``rows`` as a Rich table (terminal) or tab-separated lines (plain)."""
        items = list(rows)
        if self.mode is Mode.PLAIN:
            for item in items:
                self.line(*(column.plain(item) for column in columns))
            sys.stdout.flush()
            return
        self.console.print(self.rich_table(columns, items, title=title, empty=empty))

    def rich_table(
        self,
        columns: Sequence[Column[T]],
        items: Sequence[T],
        *,
        title: str | None = None,
        empty: str = "nothing to show",
    ) -> RenderableType:
        if not items:
            return dim(empty)
        table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
        for column in columns:
            table.add_column(
                column.header,
                justify=column.justify,  # type: ignore[arg-type]
                no_wrap=column.no_wrap,
                overflow=column.overflow,  # type: ignore[arg-type]
                min_width=min(len(column.header), 12),
            )
        for item in items:
            table.add_row(*(_cell(column, item) for column in columns))
        return table

    def fields(self, pairs: Sequence[tuple[str, Any, RenderableType | None]], title: str) -> None:
        """A record as ``key<TAB>value`` lines (plain) or a two-column table (terminal)."""
        if self.mode is Mode.PLAIN:
            for key, value, _ in pairs:
                self.line(key, value)
            sys.stdout.flush()
            return
        self.console.print(self.rich_fields(pairs, title))

    def rich_fields(
        self, pairs: Sequence[tuple[str, Any, RenderableType | None]], title: str
    ) -> Table:
        table = Table(title=title, title_justify="left", show_header=False, box=None)
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column(overflow="fold")
        for key, value, rich in pairs:
            table.add_row(key, rich if rich is not None else _text(value))
        return table

    # -- messages (stderr) ------------------------------------------------------------------
    def info(self, message: str) -> None:
        self.err.print(Text(message))

    def success(self, message: str) -> None:
        if self.stderr_tty:
            self.err.print(Text.assemble(("✓ ", "green"), message))
        else:
            self.err.print(Text(message))

    def warn(self, message: str, hint: str | None = None) -> None:
        self.err.print(Text.assemble(("warning: ", "yellow"), message))
        if hint:
            self.err.print(Text.assemble(("hint: ", "cyan"), hint))

    def error(
        self, message: str, hint: str | None = None, errors: dict[str, str] | None = None
    ) -> None:
        self.err.print(Text.assemble(("error: ", "bold red"), message))
        for field_name, text in (errors or {}).items():
            self.err.print(Text.assemble("  ", (field_name or "-", "bold"), f": {text}"))
        if hint:
            self.err.print(Text.assemble(("hint: ", "cyan"), hint))


def _json_ready(data: BaseModel | Any) -> Any:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    return iso_times(data)


def _text(value: Any) -> RenderableType:
    if value is None or value == "":
        return dim("—")
    if isinstance(value, bool):
        return yes_no(value)
    if isinstance(value, float):
        return Text(f"{value:g}")
    return Text(str(value))


def _cell(column: Column[T], item: T) -> RenderableType:
    if column.rich is not None:
        return column.rich(item)
    return _text(column.plain(item))
