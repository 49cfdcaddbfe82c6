"""``pcctl template upload | list | delete`` — permanent template media (style, face, frame…)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from pcctl.output import Column, age, human_size, iso
from pcctl.params import IdCommand
from pcctl.state import State, output_option, pass_state
from shared.api_models import TemplateMedia

TEMPLATE_COLUMNS: list[Column[TemplateMedia]] = [
    Column("ID", lambda t: t.id, lambda t: Text(t.id, style="bold"), no_wrap=True),
    Column("MIME", lambda t: t.mime),
    Column("SIZE", lambda t: t.size, lambda t: Text(human_size(t.size)), justify="right"),
    Column("PIXELS", lambda t: f"{t.width}x{t.height}", justify="right"),
    Column("CREATED", lambda t: iso(t.created_at), lambda t: Text(age(t.created_at))),
    Column(
        "USED BY",
        lambda t: ",".join(t.used_by),
        lambda t: Text(", ".join(t.used_by) or "—", style="" if t.used_by else "dim"),
    ),
    Column("SHA256", lambda t: t.checksum, lambda t: Text(t.checksum[:12], style="dim")),
]


@click.group()
def template() -> None:
    """Template media: images a slot's operation uses besides the photo."""


@template.command("list")
@output_option
@pass_state
def list_templates(state: State) -> None:
    """Uploaded templates and the slots using them."""
    data = state.client().list_templates()
    if state.out.is_json:
        state.out.json(data)
    else:
        state.out.table(
            TEMPLATE_COLUMNS, data.template_media, title="Template media", empty="no templates"
        )


@template.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@output_option
@pass_state
def upload(state: State, file: Path) -> None:
    """Upload FILE (JPEG, PNG or WebP); bind it with `pcctl slot edit SLOT` afterwards
    (or in one go: `pcctl slot edit SLOT --template FILE`)."""
    media = state.client().upload_template(file)
    out = state.out
    if out.is_json:
        out.json(media)
    elif out.mode.value == "plain":
        out.line(media.id, media.mime, media.size, f"{media.width}x{media.height}", media.checksum)
    else:
        out.success(f"uploaded {file.name}: {media.width}x{media.height} {media.mime}")
        out.console.print(Text.assemble(("template id: ", "bold"), media.id))


@template.command("delete", cls=IdCommand)
@click.argument("template_id", metavar="ID")
@pass_state
def delete(state: State, template_id: str) -> None:
    """Delete a template (refused while a slot uses it)."""
    state.client().delete_template(template_id)
    state.out.success(f"template {template_id} deleted")
