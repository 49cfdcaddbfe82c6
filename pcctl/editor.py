"""``pcctl slot edit`` with an editor, the way ``kubectl edit`` works.

The slot is written as a commented TOML document to a private temp file and opened in
``$PCCTL_EDITOR``, else ``$VISUAL``, else ``$EDITOR``, else ``vi``.  After the editor exits:

* unchanged values (or an empty document) → "no changes", nothing is sent;
* invalid values (checked locally first, then by the server's 422) → the editor opens again
  with the errors as comments at the top; saving it unchanged again gives up and keeps the file;
* 409 (someone saved the slot meanwhile: the PUT carries ``If-Match: <version>``) → nothing is
  overwritten, the file is kept and its path printed;
* success → the temp file is removed.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from pcctl import slotdoc
from pcctl.client import ApiClient
from pcctl.errors import Conflict, Invalid, LocalInvalid, PcctlError
from pcctl.output import Output
from shared.api_models import SlotDetail

EDITOR_VARIABLES = ("PCCTL_EDITOR", "VISUAL", "EDITOR")
FALLBACK_EDITOR = "vi"


def editor_command(environ: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if environ is None else environ
    for name in EDITOR_VARIABLES:
        value = env.get(name, "").strip()
        if value:
            return shlex.split(value)
    return [FALLBACK_EDITOR]


def run_editor(command: list[str], path: Path) -> None:
    """Open ``path`` and wait for the editor to exit."""
    try:
        finished = subprocess.run([*command, str(path)], check=False)  # noqa: S603 - the user's editor
    except OSError as exc:
        raise PcctlError(
            f"cannot start the editor {shlex.join(command)}: {exc.strerror}",
            hint="set $PCCTL_EDITOR, $VISUAL or $EDITOR, or edit with flags "
            "(pcctl slot edit --help)",
        ) from exc
    if finished.returncode != 0:
        raise PcctlError(
            f"the editor exited with status {finished.returncode}; nothing was changed",
            hint=f"your edit is kept in {path}",
        )


def _untouched(path: Path, presented: str) -> bool:
    try:
        return path.read_text(encoding="utf-8") == presented
    except OSError:
        return True


def _temp_document(slot_id: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=f"pcctl-{slot_id}-", suffix=".toml")  # mode 0600
    os.close(fd)
    return Path(name)


def edit_interactively(
    client: ApiClient, slot_id: str, out: Output, command: list[str]
) -> SlotDetail | None:
    """Run the edit loop; the updated slot, or None when nothing changed."""
    slot = client.get_slot(slot_id)
    original = slotdoc.document_values(slot)
    path = _temp_document(slot_id)
    text = first = slotdoc.render(slot)
    presented = text
    attempts = 0
    keep = True
    try:
        while True:
            path.write_text(text, encoding="utf-8")
            run_editor(command, path)
            edited = path.read_text(encoding="utf-8")
            attempts += 1
            if slotdoc.is_blank(edited):
                keep = False
                out.info("edit cancelled: the document is empty, no changes made")
                return None
            if attempts > 1 and slotdoc.strip_errors(edited) == slotdoc.strip_errors(presented):
                raise PcctlError(
                    "edit cancelled: the document was saved again without changes",
                    hint=f"your edit is kept in {path}",
                )
            try:
                values = slotdoc.parse(edited)
                if values == original:
                    keep = False
                    out.info(f"no changes: {slot_id} is as it was")
                    return None
                update = slotdoc.update_from_document(values, slot)
                updated = client.update_slot(slot_id, update, slot.version)
            except LocalInvalid as exc:
                title = "pcctl could not apply this edit:"
                errors = exc.errors
            except Invalid as exc:
                title = f"the server rejected this edit ({exc.status} {exc.reason}):"
                errors = exc.errors
            except Conflict as exc:
                raise PcctlError(
                    f"{slot_id} was changed by someone else since you opened it "
                    f"(you edited version {slot.version}); nothing was overwritten",
                    hint=f"your edit is kept in {path} — run `pcctl slot edit {slot_id}` "
                    "again and re-apply it",
                ) from exc
            else:
                keep = False
                return updated
            out.warn(f"{title} " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
            text = slotdoc.with_errors(edited, title, errors)
            presented = text
    except PcctlError as exc:
        if keep and _untouched(path, first):
            keep = False  # nothing of the user's to keep (e.g. the editor did not start)
            if exc.hint == f"your edit is kept in {path}":
                exc.hint = None
        elif keep and exc.hint is None:
            exc.hint = f"your edit is kept in {path}"
        raise
    finally:
        if not keep:
            with contextlib.suppress(OSError):
                path.unlink()
