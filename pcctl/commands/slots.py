"""``pcctl slot list | show | edit | test``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
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

from pcctl import advice, slotdoc
from pcctl.client import ApiClient
from pcctl.editor import edit_interactively, editor_command
from pcctl.errors import LocalInvalid
from pcctl.output import Column, Output, dim, human_size, iso, when, yes_no
from pcctl.render import job_outcome, outcome_text
from pcctl.saving import STDOUT, file_target, save_option, stdout_sink
from pcctl.state import State, output_option, pass_state
from shared.api_models import (
    RecentResult,
    SlotDetail,
    SlotList,
    SlotSummary,
    SlotUpdate,
    TemplateBindingIn,
    TestRunResult,
)
from shared.catalogue import CATALOGUE, TEMPLATE_ROLES
from shared.slots import SLOT_IDS

slot_id_argument = click.argument(
    "slot_id", metavar="SLOT", shell_complete=lambda *_: list(SLOT_IDS)
)


@click.group()
def slot() -> None:
    """The 15 ingest slots: list, show, edit, test."""


# -- list -----------------------------------------------------------------------------------
def _provider(slot: SlotSummary) -> str:
    return f"{slot.provider}/{slot.operation}"


SLOT_COLUMNS: list[Column[SlotSummary]] = [
    Column("ID", lambda s: s.id, lambda s: Text(s.id, style="bold"), no_wrap=True),
    Column("NAME", lambda s: s.display_name),
    Column("PROVIDER", _provider),
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
NO_KEY_MARK = "no API key"


def tty_slot_columns(keyless: frozenset[str]) -> list[Column[SlotSummary]]:
    """The terminal's columns, cloud providers without an API key marked."""

    def provider_text(slot: SlotSummary) -> Text:
        text = Text(_provider(slot))
        if slot.provider in keyless:
            text.append(f" ({NO_KEY_MARK})", style="bold red")
        return text

    marked = Column("PROVIDER", _provider, provider_text)
    return [marked if c.header == "PROVIDER" else c for c in TTY_SLOT_COLUMNS]


def warn_unusable(out: Output, client: ApiClient, slots: Sequence[SlotSummary]) -> None:
    """After the data: the slots whose self-hosted backend the daemon has no address for."""
    for provider in sorted(advice.providers_without_backend(client, (s.provider for s in slots))):
        advice.warn_missing_backend(out, provider, [s.id for s in slots if s.provider == provider])


def warn_missing_keys(out: Output, keyless: frozenset[str], slots: Sequence[SlotSummary]) -> None:
    for provider in sorted(keyless):
        mine = [s for s in slots if s.provider == provider]
        # A slot with fallbacks (a detail) still answers: with its first fallback's photo.
        backed = {
            s.id: s.fallbacks[0].label for s in mine if isinstance(s, SlotDetail) and s.fallbacks
        }
        advice.warn_missing_key(out, provider, [s.id for s in mine], backed)


@slot.command("list")
@output_option
@pass_state
def list_slots(state: State) -> None:
    """All slots: id, name, provider/operation, active, last result, ingest URL.

    Cloud providers without an API key are marked, and a warning follows the table when the
    ingest URLs are on an address booths on other machines cannot reach (not in JSON).
    """
    client = state.client()
    slots = client.list_slots().slots
    out = state.out
    if out.is_json:
        out.json(SlotList(slots=slots))
        return
    keyless = advice.providers_without_key(client, (s.provider for s in slots))
    if out.stdout_tty or out.mode.value == "table":
        out.table(tty_slot_columns(keyless), slots, title="Slots")
    else:
        out.table(SLOT_COLUMNS, slots)
    warn_missing_keys(out, keyless, slots)
    warn_unusable(out, client, slots)
    advice.warn_local_ingest_urls(out, (s.ingest_url for s in slots))


# -- show -----------------------------------------------------------------------------------
RESULT_COLUMNS: list[Column[RecentResult]] = [
    Column(
        "JOB",
        lambda r: r.job_id,
        lambda r: Text(r.job_id, style=f"link {r.public_url}" if r.public_url else ""),
        no_wrap=True,
    ),
    Column("FINISHED", lambda r: iso(r.finalized_at), lambda r: when(r.finalized_at), no_wrap=True),
    Column(
        "OUTCOME",
        lambda r: r.failure_reason or "ok",
        lambda r: Text(r.failure_reason or "ok", style="red" if r.failure_reason else "green"),
        no_wrap=True,
    ),
    Column(
        "SIZE",
        lambda r: r.size_bytes,
        lambda r: Text(human_size(r.size_bytes)),
        justify="right",
        no_wrap=True,
    ),
]


def _summary_pairs(detail: SlotDetail, keyless: frozenset[str]) -> list[tuple[str, Any, Any]]:
    provider: Text | None = None
    if detail.provider in keyless:
        provider = Text.assemble(detail.provider, (f" ({NO_KEY_MARK})", "bold red"))
    return [
        ("id", detail.id, None),
        ("display_name", detail.display_name, None),
        ("provider", detail.provider, provider),
        ("operation", detail.operation, None),
        ("is_active", detail.is_active, None),
        ("version", detail.version, None),
        ("updated_at", iso(detail.updated_at), when(detail.updated_at)),
        ("updated_by", detail.updated_by, None),
        ("size_limit_mb", detail.size_limit_mb, None),
        ("ingest_url", detail.ingest_url, None),
    ]


def show_plain(out: Output, detail: SlotDetail) -> None:
    """``key<TAB>value`` lines; settings as ``settings.KEY``, templates as
    ``template_media.ROLE``, then one ``recent_result`` line per result (raw bytes)."""
    pairs = _summary_pairs(detail, frozenset())
    pairs += [(f"settings.{k}", v, None) for k, v in detail.settings.items()]
    pairs += [(f"template_media.{b.role}", b.template_id, None) for b in detail.template_media]
    pairs += [
        (f"fallback.{n}", f"{step.label} reserve={step.reserve:g}s", None)
        for n, step in enumerate(detail.fallbacks, start=1)
    ]
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


def _public_link_pattern(detail: SlotDetail) -> Text | None:
    """``public links: http://…/public/results/<JOB>`` (the table leaves the URLs out)."""
    for r in detail.recent_results:
        if r.public_url and r.public_url.endswith(r.job_id):
            prefix = r.public_url[: -len(r.job_id)]
            return Text.assemble(("public links: ", "bold"), prefix, ("<JOB>", "dim"))
    return None


def show_table(out: Output, detail: SlotDetail, keyless: frozenset[str]) -> None:
    console = out.console
    console.print(
        out.rich_fields(_summary_pairs(detail, keyless), f"{detail.id} — {detail.display_name}")
    )
    console.print()
    settings = [(k, v, None) for k, v in detail.settings.items()]
    if settings:
        console.print(out.rich_fields(settings, "Settings"))
    else:
        console.print(Text("Settings", style="italic"), dim("none: the operation's defaults"))
    console.print()
    templates = [
        (
            b.role,
            b.template_id,
            Text.assemble("→ ", b.template_id, (f"  {b.mime_type}, {b.width}x{b.height}", "dim")),
        )
        for b in detail.template_media
    ]
    if templates:
        console.print(out.rich_fields(templates, "Templates (role → template id)"))
    else:
        console.print(Text("Templates", style="italic"), dim("none"))
    console.print()
    steps = [
        (
            str(n),
            step.label,
            Text.assemble(
                step.label,
                (f"  keeps {step.reserve:g} s", "dim"),
                (f"  {dict(step.settings)}" if step.settings else "", "dim"),
            ),
        )
        for n, step in enumerate(detail.fallbacks, start=1)
    ]
    if steps:
        console.print(out.rich_fields(steps, "Fallbacks (tried in order)"))
    else:
        console.print(Text("Fallbacks", style="italic"), dim("none"))
    console.print()
    out.table(RESULT_COLUMNS, detail.recent_results, title="Recent results", empty="no results yet")
    link = _public_link_pattern(detail)
    if link is not None:
        console.print(link)


@slot.command("show")
@slot_id_argument
@output_option
@pass_state
def show(state: State, slot_id: str) -> None:
    """One slot: settings, template media, the last 10 results.

    Warns when the slot's cloud provider has no API key (not in JSON).
    """
    client = state.client()
    detail = client.get_slot(slot_id)
    out = state.out
    if out.is_json:
        out.json(detail)
        return
    keyless = advice.providers_without_key(client, [detail.provider])
    if out.mode.value == "plain":
        show_plain(out, detail)
    else:
        show_table(out, detail, keyless)
    warn_missing_keys(out, keyless, [detail])
    warn_unusable(out, client, [detail])


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
    "--workflow",
    "workflow_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="comfyui: the workflow, a JSON file in ComfyUI's API format (Export (API)).",
)
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
    workflow_file: Path | None,
    template_file: Path | None,
    role: str | None,
) -> None:
    """Edit a slot: in your editor (no flags) or with flags.

    \b
    Without flags the slot opens as a TOML document listing every provider, operation and
    setting; save to apply (If-Match: the slot's version), leave it unchanged to cancel.
    Errors reopen the editor with the messages at the top; if someone else saved the slot
    meanwhile, nothing is overwritten and your file is kept.  Saving a cloud provider whose
    API key is not configured warns (booths would get 502 on every photo).
    \b
    Examples:
      pcctl slot edit slot-003
      pcctl slot edit slot-003 --provider gemini --prompt "watercolor portrait"
      pcctl slot edit slot-003 --set strength=60 --set seed=7 --inactive
      pcctl slot edit slot-003 --provider turbotext --operation face_swap --template face.png
      pcctl slot edit slot-003 --provider comfyui --workflow img2img_api.json --prompt "anime"
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
            workflow_file,
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
            workflow=_read_workflow(workflow_file) if workflow_file is not None else None,
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
    # Saved, but a cloud provider without a key fails every photo: say so (stderr, any mode).
    warn_missing_keys(out, advice.providers_without_key(client, [updated.provider]), [updated])
    warn_unusable(out, client, [updated])


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
    workflow: Any = None,
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
    if workflow is not None:
        settings["workflow"] = workflow
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


def _read_workflow(path: Path) -> Any:
    """A workflow file's JSON (checked as a workflow with the rest of the edit)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LocalInvalid({"--workflow": f"{path}: not a JSON file ({exc})"}) from None


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
@save_option("Also download the result: to this file, - for stdout (default: save nothing).")
# Saving nothing is the default now; the flag stays accepted so older scripts keep working.
@click.option("--no-save", is_flag=True, hidden=True)
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
    save_to: str | None,
    no_save: bool,
    prompt: str | None,
    assignments: tuple[str, ...],
) -> None:
    """Run PHOTO through a slot (no ingest password; inactive slots too).

    \b
    Prints the job id, the duration and the result's public link; nothing is saved unless
    --save PATH is given (--save - writes the image to stdout, the report to stderr).
    --prompt/--set try settings without saving them (sent as the test run's slot_payload).
    """
    out = state.out
    client = state.client()
    if no_save:
        save_to = None
    sink = stdout_sink(out) if save_to == STDOUT else None  # refused before any upload
    payload: SlotUpdate | None = None
    if prompt is not None or assignments:
        payload = _trial_payload(client.get_slot(slot_id), prompt, assignments)
    size = photo.stat().st_size
    downloaded: tuple[Path | None, str, int] | None = None
    with _progress(out) as progress:
        bar = _Bar(progress, f"uploading {photo.name}", size)

        def sent(n: int) -> None:
            bar.advance(n)
            if bar.done >= size:
                bar.update("waiting for the result", None)

        result = client.test_run(slot_id, photo, slot_payload=payload, progress=sent)
        if save_to is not None:
            bar.update("downloading", None, restart=True)
            dest = sink if sink is not None else file_target(save_to, result.job_id)
            downloaded = client.download_result(
                result.job_id,
                dest,
                progress=bar.advance,
                on_start=lambda total: bar.update("downloading", total),
            )
    if downloaded is not None and sink is not None:
        _, mime, length = downloaded
        _report_to_stderr(out, slot_id, result, f"stdout ({mime}, {human_size(length)})")
    else:
        _report(out, slot_id, result, downloaded[0] if downloaded else None)


def _trial_payload(
    current: SlotDetail, prompt: str | None, assignments: tuple[str, ...]
) -> SlotUpdate:
    settings = dict(current.settings)
    if prompt is not None:
        settings["prompt"] = prompt
    for text in assignments:
        key, value = slotdoc.parse_assignment(text)
        settings[key] = value
    payload = SlotUpdate(settings=settings)
    slotdoc.check_update(payload, current)
    return payload


class _Bar:
    """One task of the progress display, or nothing when nobody watches."""

    def __init__(self, progress: Progress | None, description: str, total: int | None) -> None:
        self.progress = progress
        self.done = 0
        self.task: TaskID | None = None
        if progress is not None:
            self.task = progress.add_task(description, total=total)

    def advance(self, n: int) -> None:
        self.done += n
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task, n)

    def update(self, description: str, total: int | None, *, restart: bool = False) -> None:
        if self.progress is not None and self.task is not None:
            if restart:
                self.progress.update(self.task, completed=0)
            self.progress.update(self.task, description=description, total=total)


def _report(out: Output, slot_id: str, result: TestRunResult, saved: Path | None) -> None:
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
    else:
        out.info(f"not saved; download it with `pcctl result get {result.job_id} --save FILE`")


def _report_to_stderr(out: Output, slot_id: str, result: TestRunResult, where: str) -> None:
    """The report when stdout carries the image."""
    out.success(f"{slot_id}: done in {result.completed_in_seconds:.2f} s (job {result.job_id})")
    out.info(f"public URL: {result.public_result_url}")
    out.info(f"saved to:   {where}")
