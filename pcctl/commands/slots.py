"""``pcctl slot list | show | edit | test``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from pcctl import slotdoc
from pcctl.editor import edit_interactively, editor_command
from pcctl.errors import LocalInvalid
from pcctl.output import Column, Output, iso, local_time, when, yes_no
from pcctl.render import EXTENSIONS, job_outcome, outcome_text
from pcctl.state import State, output_option, pass_state
from shared.api_models import SlotDetail, SlotSummary, SlotUpdate, TemplateBindingIn
from shared.catalogue import CATALOGUE, TEMPLATE_ROLES
from shared.slots import SLOT_IDS

slot_id_argument = click.argument(
    "slot_id", metavar="SLOT", shell_complete=lambda *_: list(SLOT_IDS)
)


@click.group()
def slot() -> None:
    """The 15 ingest slots: list, show, edit, test."""


# -- list -----------------------------------------------------------------------------------
SLOT_COLUMNS: list[Column[SlotSummary]] = [
    Column("ID", lambda s: s.id, lambda s: Text(s.id, style="bold"), no_wrap=True),
    Column("NAME", lambda s: s.display_name),
    Column("PROVIDER", lambda s: f"{s.provider}/{s.operation}"),
    Column("ACTIVE", lambda s: s.is_active, lambda s: yes_no(s.is_active)),
    Column(
        "LAST RESULT",
        lambda s: job_outcome(s.last_job) if s.last_job else None,
        lambda s: outcome_text(s.last_job),
    ),
    Column(
        "LAST AT",
        lambda s: iso(s.last_job.finalized_at or s.last_job.created_at) if s.last_job else None,
    ),
    Column("INGEST URL", lambda s: s.ingest_url),
]
TTY_SLOT_COLUMNS = [c for c in SLOT_COLUMNS if c.header != "LAST AT"]  # folded into LAST RESULT


@slot.command("list")
@output_option
@pass_state
def list_slots(state: State) -> None:
    """All slots: id, name, provider/operation, active, last result, ingest URL."""
    slots = state.client().list_slots()
    out = state.out
    if out.is_json:
        out.json(slots)
    elif out.stdout_tty or out.mode.value == "table":
        out.table(TTY_SLOT_COLUMNS, slots.slots, title="Slots")
    else:
        out.table(SLOT_COLUMNS, slots.slots)


# -- show -----------------------------------------------------------------------------------
def show_slot(out: Output, detail: SlotDetail) -> None:
    if out.is_json:
        out.json(detail)
        return
    pairs: list[tuple[str, Any, Any]] = [
        ("id", detail.id, None),
        ("display_name", detail.display_name, None),
        ("provider", detail.provider, None),
        ("operation", detail.operation, None),
        ("is_active", detail.is_active, None),
        ("version", detail.version, None),
        ("updated_at", iso(detail.updated_at), when(detail.updated_at)),
        ("updated_by", detail.updated_by, None),
        ("size_limit_mb", detail.size_limit_mb, None),
        ("ingest_url", detail.ingest_url, None),
    ]
    pairs += [(f"settings.{k}", v, None) for k, v in detail.settings.items()]
    pairs += [
        (
            f"template_media.{b.role}",
            b.template_id,
            Text(f"{b.template_id} ({b.mime_type}, {b.width}x{b.height})"),
        )
        for b in detail.template_media
    ]
    if out.mode.value == "plain":
        out.fields(pairs, detail.id)
        for r in detail.recent_results:
            out.line(
                "recent_result",
                r.job_id,
                iso(r.finalized_at),
                r.failure_reason or "ok",
                r.public_url,
                r.size_bytes,
            )
        return
    out.fields(pairs, f"{detail.id} — {detail.display_name}")
    columns: list[Column[Any]] = [
        Column("JOB", lambda r: r.job_id, no_wrap=True),
        Column("FINISHED", lambda r: local_time(r.finalized_at)),
        Column(
            "OUTCOME",
            lambda r: r.failure_reason or "ok",
            lambda r: Text(r.failure_reason or "ok", style="red" if r.failure_reason else "green"),
        ),
        Column("SIZE", lambda r: r.size_bytes, justify="right"),
        Column("URL", lambda r: r.public_url, no_wrap=True),
    ]
    out.console.print()
    out.table(columns, detail.recent_results, title="Recent results", empty="no results yet")


@slot.command("show")
@slot_id_argument
@output_option
@pass_state
def show(state: State, slot_id: str) -> None:
    """One slot: settings, template media, the last 10 results."""
    show_slot(state.out, state.client().get_slot(slot_id))


# -- edit -----------------------------------------------------------------------------------
@slot.command("edit")
@slot_id_argument
@click.option("--name", "display_name", help="Display name.")
@click.option("--provider", type=click.Choice(list(CATALOGUE)), help="AI provider.")
@click.option(
    "--operation",
    help="Operation: " + "; ".join(f"{p}: {', '.join(ops)}" for p, ops in CATALOGUE.items()),
)
@click.option("--prompt", help="Shortcut for --set prompt=….")
@click.option("--active/--inactive", "is_active", default=None, help="Accept ingests or not.")
@click.option(
    "--size-limit", "size_limit_mb", type=click.IntRange(1, 20), help="Upload limit, MiB."
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help='A setting; VALUE is a TOML scalar (40, 7.5, true, "text"; bare words are text).',
)
@click.option("--unset", "removals", multiple=True, metavar="KEY", help="Remove a setting.")
@click.option(
    "--template",
    "template_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Upload this image as template media and bind it to the slot.",
)
@click.option(
    "--role",
    type=click.Choice(TEMPLATE_ROLES),
    help="Role of --template (default: the one the operation needs, else style).",
)
@output_option
@pass_state
def edit(
    state: State,
    slot_id: str,
    display_name: str | None,
    provider: str | None,
    operation: str | None,
    prompt: str | None,
    is_active: bool | None,
    size_limit_mb: int | None,
    assignments: tuple[str, ...],
    removals: tuple[str, ...],
    template_file: Path | None,
    role: str | None,
) -> None:
    """Edit a slot: in your editor (no flags) or with flags.

    \b
    Without flags the slot opens as a TOML document listing every provider, operation and
    setting; save to apply (If-Match: the slot's version), leave it unchanged to cancel.
    Errors reopen the editor with the messages at the top; if someone else saved the slot
    meanwhile, nothing is overwritten and your file is kept.
    \b
    Examples:
      pcctl slot edit slot-003
      pcctl slot edit slot-003 --provider gemini --prompt "watercolor portrait"
      pcctl slot edit slot-003 --set strength=60 --set seed=7 --inactive
      pcctl slot edit slot-003 --provider turbotext --operation face_swap --template face.png
    """
    out = state.out
    client = state.client()
    flags_given = any(
        v is not None
        for v in (
            display_name,
            provider,
            operation,
            prompt,
            is_active,
            size_limit_mb,
            template_file,
            role,
        )
    ) or bool(assignments or removals)
    if not flags_given:
        updated = edit_interactively(client, slot_id, out, editor_command())
        if updated is None:
            if out.is_json:
                out.json(client.get_slot(slot_id))
            return
    else:
        if role is not None and template_file is None:
            raise click.UsageError("--role needs --template")
        current = client.get_slot(slot_id)
        update = flag_update(
            current,
            display_name=display_name,
            provider=provider,
            operation=operation,
            prompt=prompt,
            is_active=is_active,
            size_limit_mb=size_limit_mb,
            assignments=assignments,
            removals=removals,
            template=template_file is not None,
            role=role,
        )
        if template_file is not None and update.template_media:
            # Validated with a placeholder id first, so a bad edit leaves no orphan upload.
            media = client.upload_template(template_file)
            binding = update.template_media[-1]
            out.info(f"uploaded {template_file.name} as template {media.id} ({binding.role})")
            update.template_media[-1] = TemplateBindingIn(role=binding.role, template_id=media.id)
        updated = client.update_slot(slot_id, update, current.version)
    if out.is_json:
        out.json(updated)
    else:
        out.success(
            f"{slot_id} updated: {updated.provider}/{updated.operation}, "
            f"{'active' if updated.is_active else 'inactive'}, version {updated.version}"
        )


def flag_update(
    current: SlotDetail,
    *,
    display_name: str | None = None,
    provider: str | None = None,
    operation: str | None = None,
    prompt: str | None = None,
    is_active: bool | None = None,
    size_limit_mb: int | None = None,
    assignments: tuple[str, ...] = (),
    removals: tuple[str, ...] = (),
    template: bool = False,
    role: str | None = None,
) -> SlotUpdate:
    """The update the flags describe, checked locally.  With ``template`` the new binding
    (``role``, else the one the operation needs) comes last, with a placeholder id: the
    caller uploads the file once the update is known to be valid."""
    new_provider = provider or current.provider
    new_operation = operation
    if new_operation is None:
        if new_provider == current.provider:
            new_operation = current.operation
        elif len(CATALOGUE[new_provider]) == 1:
            new_operation = CATALOGUE[new_provider][0]
        else:
            raise LocalInvalid(
                {"operation": f"{new_provider} supports: {', '.join(CATALOGUE[new_provider])}"},
                "--operation is needed with this --provider",
            )
    if (new_provider, new_operation) == (current.provider, current.operation):
        settings = dict(current.settings)
    else:
        settings = slotdoc.carried_settings(current.settings, new_provider, new_operation)
    if prompt is not None:
        settings["prompt"] = prompt
    for text in assignments:
        key, value = slotdoc.parse_assignment(text)
        settings[key] = value
    for key in removals:
        settings.pop(key, None)
    bindings: list[dict[str, str]] | None = None
    if template:
        role = role or slotdoc.default_role(new_provider, new_operation)
        bindings = [
            {"role": b.role, "template_id": b.template_id}
            for b in current.template_media
            if b.role != role
        ]
        bindings.append({"role": role, "template_id": "to-be-uploaded"})
    body: dict[str, Any] = {
        "display_name": display_name,
        "provider": new_provider,
        "operation": new_operation,
        "is_active": is_active,
        "size_limit_mb": size_limit_mb,
        "settings": settings,
        "template_media": bindings,
    }
    update: SlotUpdate = slotdoc.model_or_errors(SlotUpdate, body)
    slotdoc.check_update(update, current)
    return update


# -- test -----------------------------------------------------------------------------------
@contextlib.contextmanager
def _progress(out: Output) -> Iterator[Progress | None]:
    """A Rich progress display on stderr, only when a human watches it."""
    if not out.interactive:
        yield None
        return
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=out.err,
        transient=True,
    )
    with progress:
        yield progress


@slot.command("test")
@slot_id_argument
@click.argument("photo", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--save",
    "save_to",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to save the result (default: ./<job id>.<ext>).",
)
@click.option("--no-save", is_flag=True, help="Do not download the result.")
@click.option("--prompt", help="Try this prompt without saving it.")
@click.option(
    "--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Try a setting unsaved."
)
@output_option
@pass_state
def test(
    state: State,
    slot_id: str,
    photo: Path,
    save_to: Path | None,
    no_save: bool,
    prompt: str | None,
    assignments: tuple[str, ...],
) -> None:
    """Run PHOTO through a slot (no ingest password; inactive slots too) and save the result.

    --prompt/--set try settings without saving them (sent as the test run's slot_payload).
    """
    out = state.out
    client = state.client()
    payload: SlotUpdate | None = None
    if prompt is not None or assignments:
        current = client.get_slot(slot_id)
        settings = dict(current.settings)
        if prompt is not None:
            settings["prompt"] = prompt
        for text in assignments:
            key, value = slotdoc.parse_assignment(text)
            settings[key] = value
        payload = SlotUpdate(settings=settings)
        slotdoc.check_update(payload, current)
    size = photo.stat().st_size
    saved: Path | None = None
    with _progress(out) as progress:
        task: TaskID | None = None
        if progress is not None:
            task = progress.add_task(f"uploading {photo.name}", total=size)

        uploaded = 0

        def sent(n: int) -> None:
            nonlocal uploaded
            uploaded += n
            if progress is not None and task is not None:
                progress.advance(task, n)
                if uploaded >= size:
                    progress.update(task, description="waiting for the result", total=None)

        result = client.test_run(slot_id, photo, slot_payload=payload, progress=sent)
        if not no_save:
            if progress is not None and task is not None:
                progress.update(task, description="downloading", completed=0, total=None)

            def started(length: int | None) -> None:
                if progress is not None and task is not None:
                    progress.update(task, total=length)

            def received(n: int) -> None:
                if progress is not None and task is not None:
                    progress.advance(task, n)

            def target(mime: str) -> Path:
                return save_to or Path(f"{result.job_id}.{EXTENSIONS.get(mime, 'bin')}")

            saved, _, _ = client.download_result(
                result.job_id, target, progress=received, on_start=started
            )
    if out.is_json:
        out.json({**result.model_dump(mode="json"), "saved_to": str(saved) if saved else None})
        return
    if out.mode.value == "plain":
        out.line("job_id", result.job_id)
        out.line("completed_in_seconds", result.completed_in_seconds)
        out.line("public_result_url", result.public_result_url)
        out.line("saved_to", saved)
        return
    out.success(f"{slot_id}: done in {result.completed_in_seconds:.2f} s (job {result.job_id})")
    out.console.print(Text.assemble(("public URL: ", "bold"), result.public_result_url))
    if saved is not None:
        out.console.print(Text.assemble(("saved to:   ", "bold"), str(saved)))
