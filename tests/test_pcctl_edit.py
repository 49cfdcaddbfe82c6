"""``pcctl slot edit`` through a scripted editor (tests/support/editor.py), like kubectl edit:
no changes, a valid edit, the reopen loop on local and server (422) errors, giving up, a 409
when someone else saved meanwhile, cancelling, a failing editor, editor precedence."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pcctl.editor import editor_command
from tests.test_pcctl import REPO, Pcctl, PcctlDaemon, running_daemon

EDITOR = shlex.join([sys.executable, str(REPO / "tests" / "support" / "editor.py")])


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcctlDaemon]:
    with running_daemon(tmp_path_factory.mktemp("pcctl-edit-daemon")) as running:
        yield running


@pytest.fixture(scope="module")
def pcctl(daemon: PcctlDaemon, tmp_path_factory: pytest.TempPathFactory) -> Pcctl:
    runner = Pcctl(daemon, tmp_path_factory.mktemp("pcctl-edit-home"))
    runner.login()
    return runner


@dataclass
class ScriptedEditor:
    script: Path

    def env(self, steps: list[dict[str, Any]]) -> dict[str, str]:
        self.script.write_text(json.dumps(steps))
        return {"PCCTL_EDITOR": EDITOR, "PCCTL_TEST_EDITOR_SCRIPT": str(self.script)}

    @property
    def runs(self) -> int:
        counter = self.script.with_name(self.script.name + ".count")
        return int(counter.read_text()) if counter.exists() else 0

    def seen(self, n: int) -> str:
        return self.script.with_name(f"{self.script.name}.seen.{n}").read_text()

    @property
    def files(self) -> list[Path]:
        listing = self.script.with_name(self.script.name + ".files")
        return [Path(line) for line in listing.read_text().splitlines()]


@pytest.fixture
def editor(tmp_path: Path) -> ScriptedEditor:
    return ScriptedEditor(tmp_path / "steps.json")


def _version(pcctl: Pcctl, slot_id: str) -> int:
    return int(pcctl.json("slot", "show", slot_id)["version"])


def test_document_lists_the_schema_and_unchanged_means_no_changes(
    pcctl: Pcctl, editor: ScriptedEditor
) -> None:
    version = _version(pcctl, "slot-001")
    result = pcctl.ok("slot", "edit", "slot-001", env=editor.env([]))
    assert "no changes" in result.stderr and result.stdout == ""
    assert _version(pcctl, "slot-001") == version
    document = editor.seen(0)
    assert f"version = {version}" in document and 'id = "slot-001"' in document
    for text in (
        "turbotext  image2image, mix_images, face_swap",
        "  gemini/edit:",
        "strength: integer (≥ 0, ≤ 80) = 40",
        'model: "gpt-image-1" | "gpt-image-1-mini" | "gpt-image-1.5" = "gpt-image-1"',
        "seed: integer (≥ 1, ≤ 10000000000), optional",
        "max_input_pixels: integer (≥ 250000, ≤ 50000000) = 4000000 — Photos above",
        'local/frame needs role "frame"',
        '# output_format = "jpeg"  (default)',
    ):
        assert text in document, text
    assert editor.runs == 1
    assert not any(path.exists() for path in editor.files)  # the temp file is gone


def test_a_valid_edit_is_applied(pcctl: Pcctl, editor: ScriptedEditor) -> None:
    version = _version(pcctl, "slot-002")
    steps = [
        {
            "replace": [
                ['display_name = "Slot 2"', 'display_name = "Sepia corner"'],
                ['operation = "passthrough"', 'operation = "sepia"'],
                ["\n[settings]\n", '\n[settings]\noutput_format = "png"\n'],
            ]
        }
    ]
    data = pcctl.json("slot", "edit", "slot-002", env=editor.env(steps))
    assert data["version"] == version + 1
    assert data["display_name"] == "Sepia corner" and data["operation"] == "sepia"
    assert data["settings"] == {"output_format": "png"}
    assert not any(path.exists() for path in editor.files)
    # the document now shows the stored setting as a value
    pcctl.ok("slot", "edit", "slot-002", env=editor.env([]))
    assert 'output_format = "png"' in editor.seen(1).split("\n[settings]\n")[1]


def test_local_errors_reopen_the_editor_with_the_errors_on_top(
    pcctl: Pcctl, editor: ScriptedEditor
) -> None:
    version = _version(pcctl, "slot-003")
    steps = [
        {"replace": [["is_active = true", "is_active = yes"]]},  # TOML syntax
        {"replace": [["is_active = yes", "is_active = false"], ["\n[settings]\n", "\n[settings]\nbogus = 1\n"]]},  # noqa: E501
        {"replace": [["bogus = 1\n", ""]]},
    ]  # fmt: skip
    result = pcctl.ok("slot", "edit", "slot-003", env=editor.env(steps))
    assert editor.runs == 3
    second, third = editor.seen(1), editor.seen(2)
    assert second.startswith("# ! pcctl could not apply this edit:")
    assert "# !   document: not valid TOML" in second
    assert third.startswith("# ! pcctl could not apply this edit:")
    assert "settings.bogus: unknown setting for local/passthrough (allowed: " in third
    assert "not valid TOML" not in third  # old errors are replaced, not piled up
    assert "settings.bogus" in result.stderr  # also said on the terminal
    assert _version(pcctl, "slot-003") == version + 1
    assert pcctl.json("slot", "show", "slot-003")["is_active"] is False


def test_server_422_reopens_the_editor(pcctl: Pcctl, editor: ScriptedEditor) -> None:
    binding = '\n[[template_media]]\nrole = "style"\ntemplate_id = "no-such-template"\n'
    steps = [
        {"append": binding},
        {"replace": [[binding, ""], ['display_name = "Slot 4"', 'display_name = "Fixed"']]},
    ]
    data = pcctl.json("slot", "edit", "slot-004", env=editor.env(steps))
    reopened = editor.seen(1)
    assert reopened.startswith("# ! the server rejected this edit (422 validation_error):")
    assert "# !   template_media: unknown template id" in reopened
    assert data["display_name"] == "Fixed" and data["template_media"] == []


def test_saving_an_unfixed_document_gives_up_and_keeps_the_file(
    pcctl: Pcctl, editor: ScriptedEditor
) -> None:
    version = _version(pcctl, "slot-005")
    steps = [{"replace": [["size_limit_mb = 20", "size_limit_mb = 50"]]}]  # then: unchanged
    result = pcctl("slot", "edit", "slot-005", env=editor.env(steps))
    assert result.exit_code == 1
    assert "saved again without changes" in result.stderr
    kept = editor.files[-1]
    assert f"your edit is kept in {kept}" in result.stderr
    assert "size_limit_mb = 50" in kept.read_text()
    assert _version(pcctl, "slot-005") == version
    kept.unlink()


def test_conflict_keeps_the_file_and_overwrites_nothing(
    pcctl: Pcctl, editor: ScriptedEditor
) -> None:
    version = _version(pcctl, "slot-006")
    someone_else = [sys.executable, "-m", "pcctl", "slot", "edit", "slot-006", "--name", "Igor's"]
    steps = [
        {"run": someone_else, "replace": [['display_name = "Slot 6"', 'display_name = "Mine"']]}
    ]
    result = pcctl("slot", "edit", "slot-006", env=editor.env(steps))
    assert result.exit_code == 1
    assert "slot-006 was changed by someone else" in result.stderr
    assert f"you edited version {version}" in result.stderr
    kept = editor.files[-1]
    assert str(kept) in result.stderr and 'display_name = "Mine"' in kept.read_text()
    data = pcctl.json("slot", "show", "slot-006")
    assert data["display_name"] == "Igor's" and data["version"] == version + 1
    kept.unlink()


def test_read_only_fields_and_cancelling(pcctl: Pcctl, editor: ScriptedEditor) -> None:
    version = _version(pcctl, "slot-007")
    steps = [
        {"replace": [[f"version = {version}", f"version = {version + 5}"]]},
        {"write": "# nothing left\n\n"},
    ]
    result = pcctl.ok("slot", "edit", "slot-007", env=editor.env(steps))
    assert "version: read-only" in editor.seen(1)
    assert "edit cancelled" in result.stderr
    assert _version(pcctl, "slot-007") == version
    assert not any(path.exists() for path in editor.files)


def test_a_failing_editor_changes_nothing(pcctl: Pcctl, editor: ScriptedEditor) -> None:
    version = _version(pcctl, "slot-008")
    steps = [{"replace": [['display_name = "Slot 8"', 'display_name = "x"']], "exit": 3}]
    result = pcctl("slot", "edit", "slot-008", env=editor.env(steps))
    assert result.exit_code == 1 and "the editor exited with status 3" in result.stderr
    assert _version(pcctl, "slot-008") == version
    editor.files[-1].unlink()
    missing = pcctl("slot", "edit", "slot-008", env={"PCCTL_EDITOR": "/nonexistent/editor"})
    assert missing.exit_code == 1 and "cannot start the editor" in missing.stderr
    assert "kept in" not in missing.stderr  # nothing was edited: no file left behind
    untouched = pcctl("slot", "edit", "slot-008", env=editor.env([{}, {"exit": 1}]))
    assert untouched.exit_code == 1 and "kept in" not in untouched.stderr
    assert not editor.files[-1].exists()


def test_saving_a_cloud_provider_without_its_key_warns(
    pcctl: Pcctl, editor: ScriptedEditor
) -> None:
    """Saved all the same; the warning says what booths will get and how to fix it."""
    steps = [
        {
            "replace": [
                ['provider = "local"', 'provider = "openai"'],
                ['operation = "passthrough"', 'operation = "edit"'],
                ["\n[settings]\n", '\n[settings]\nprompt = "pop art"\n'],
            ]
        }
    ]
    result = pcctl.ok("slot", "edit", "slot-009", env=editor.env(steps))
    assert "slot-009 updated: openai/edit" in result.stderr
    assert (
        'warning: openai API key not configured: the booth will get 502 "openai API key not '
        'configured" on every photo to slot-009'
    ) in result.stderr
    assert "hint: set it with `pcctl settings provider-key openai`" in result.stderr
    assert pcctl.json("slot", "show", "slot-009")["provider"] == "openai"


def test_editor_precedence() -> None:
    full = {"PCCTL_EDITOR": "code --wait", "VISUAL": "vim", "EDITOR": "nano"}
    assert editor_command(full) == ["code", "--wait"]
    assert editor_command({**full, "PCCTL_EDITOR": ""}) == ["vim"]
    assert editor_command({"EDITOR": "nano -w"}) == ["nano", "-w"]
    assert editor_command({"EDITOR": "'/opt/my editor/bin/ed' -x"}) == [
        "/opt/my editor/bin/ed",
        "-x",
    ]
    assert editor_command({}) == ["vi"]


def test_fallbacks_are_edited_in_the_document(pcctl: Pcctl, editor: ScriptedEditor) -> None:
    step = (
        '\n[[fallbacks]]\nprovider = "local"\noperation = "enhance"\nreserve_seconds = 3\n'
        '[fallbacks.settings]\noutput_format = "png"\n'
    )
    bad = '\n[[fallbacks]]\nprovider = "local"\noperation = "paint"\n'
    steps = [
        {"append": step + bad},  # the second step is refused locally; the editor reopens
        {"replace": [[bad, ""]]},
    ]
    data = pcctl.json("slot", "edit", "slot-005", env=editor.env(steps))
    assert "fallbacks.1.operation: local supports:" in editor.seen(1)
    assert data["fallbacks"] == [
        {
            "provider": "local",
            "operation": "enhance",
            "settings": {"output_format": "png"},
            "templates": [],
            "reserve_seconds": 3.0,
        }
    ]
    shown = pcctl.ok("slot", "show", "slot-005", "--output", "plain").stdout
    assert "fallback.1\tlocal/enhance reserve=3s" in shown
    pcctl.ok("slot", "edit", "slot-005", env=editor.env([]))  # presented as it was stored
    assert step.replace("= 3\n", "= 3.0\n") in editor.seen(2)
