"""A ComfyUI workflow slot through pcctl: ``slot edit --workflow FILE``, the local check that
refuses a bad workflow before anything is sent, and the interactive document, which carries the
workflow as JSON text (TOML cannot hold an API-format graph inline)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pcctl import slotdoc
from shared.api_models import SlotDetail
from tests.support.comfyui import img2img_workflow
from tests.test_pcctl import Pcctl, PcctlDaemon, running_daemon
from tests.test_pcctl_edit import ScriptedEditor

SLOT = "slot-005"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcctlDaemon]:
    with running_daemon(tmp_path_factory.mktemp("pcctl-comfyui-daemon")) as running:
        yield running


@pytest.fixture(scope="module")
def pcctl(daemon: PcctlDaemon, tmp_path_factory: pytest.TempPathFactory) -> Pcctl:
    runner = Pcctl(daemon, tmp_path_factory.mktemp("pcctl-comfyui-home"))
    runner.login()
    return runner


def _workflow_file(tmp_path: Path, workflow: object, name: str = "img2img_api.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(workflow, indent=2))
    return str(path)


def test_edit_with_a_workflow_file_and_a_bad_one_refused_locally(
    pcctl: Pcctl, daemon: PcctlDaemon, tmp_path: Path
) -> None:
    workflow = img2img_workflow()
    data = pcctl.json(
        "slot", "edit", SLOT, "--provider", "comfyui",
        "--workflow", _workflow_file(tmp_path, workflow), "--prompt", "watercolour portrait",
    )  # fmt: skip
    assert data["provider"] == "comfyui" and data["operation"] == "workflow"
    with daemon.api() as api:
        stored = api.get(f"/api/slots/{SLOT}").json()["settings"]
    assert stored == {"workflow": workflow, "prompt": "watercolour portrait"}
    version = data["version"]

    no_loader = {k: v for k, v in workflow.items() if v["class_type"] != "LoadImage"}
    result = pcctl("slot", "edit", SLOT, "--workflow", _workflow_file(tmp_path, no_loader, "b"))
    assert result.exit_code == 1
    assert "settings.workflow" in result.stderr and "exactly one LoadImage" in result.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = pcctl("slot", "edit", SLOT, "--workflow", str(broken))
    assert result.exit_code == 1 and "--workflow" in result.stderr
    assert pcctl.json("slot", "show", SLOT)["version"] == version  # nothing was sent


def test_interactive_edit_shows_the_workflow_as_json_and_reads_it_back(
    pcctl: Pcctl, tmp_path: Path
) -> None:
    workflow = img2img_workflow()
    pcctl.ok(
        "slot", "edit", SLOT, "--provider", "comfyui",
        "--workflow", _workflow_file(tmp_path, workflow), "--prompt", "anime",
    )  # fmt: skip
    editor = ScriptedEditor(tmp_path / "steps.json")
    # Unchanged: no changes (the JSON text reads back as the same object).
    result = pcctl.ok("slot", "edit", SLOT, env=editor.env([]))
    assert "no changes" in result.stderr
    document = editor.seen(0)
    assert "workflow = '''\n{\n" in document and '"class_type": "KSampler"' in document

    editor = ScriptedEditor(tmp_path / "steps2.json")
    steps = [{"replace": [['"steps": 20', '"steps": 28']]}]
    data = pcctl.json("slot", "edit", SLOT, env=editor.env(steps))
    assert data["settings"]["workflow"]["3"]["inputs"]["steps"] == 28
    assert data["settings"]["workflow"]["10"] == workflow["10"]


def test_document_round_trip_of_awkward_workflows() -> None:
    workflow = img2img_workflow()
    workflow["5:1"] = {  # a node id from a subgraph, a quote, a null
        "class_type": "PreviewImage",
        "inputs": {"images": ["8", 0]},
        "_meta": {"title": "Preview 'final' \"look\" '''"},
        "extra": None,
    }
    slot = SlotDetail(
        id=SLOT,
        display_name="ComfyUI",
        provider="comfyui",
        operation="workflow",
        is_active=True,
        version=3,
        updated_at=None,
        updated_by=None,
        ingest_url="http://x/ingest/slot-005",
        last_job=None,
        settings={"workflow": workflow, "prompt": "anime"},
        size_limit_mb=15,
        template_media=[],
        recent_results=[],
    )
    values = slotdoc.parse(slotdoc.render(slot))
    assert values == slotdoc.document_values(slot)
    assert values["settings"]["workflow"] == workflow
