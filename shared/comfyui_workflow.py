"""ComfyUI workflows in the API format: what a ``comfyui/workflow`` slot may hold, and how a job
fills one in (docs/providers.md, "ComfyUI").

The API format is what ComfyUI's "Export (API)" menu entry writes: a JSON object mapping a node
id (``"3"``) to ``{"class_type": "KSampler", "inputs": {...}}``, where an input is a literal
value or a link ``["<node id>", <output index>]``.  The UI format ("Save"/"Export") has
``nodes`` and ``links`` arrays instead and cannot be queued through the API.

A slot's workflow must have exactly one ``LoadImage`` node (the job's photo goes into its
``image`` input) and at least one node that saves or previews images (what the job downloads).
The prompt goes into the ``text`` input of the node the slot names (``prompt_node``), or replaces
every ``{{prompt}}`` placeholder in the workflow's string inputs.

Pure and synchronous: used by the settings models (validation on save, in the daemon and in
pcctl) and by the driver.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

IMAGE_LOADER = "LoadImage"
# Core ComfyUI nodes whose history entry lists ``images`` the API can download with /view.
# SaveImage writes to the output folder (type "output"); PreviewImage to the temp folder.
IMAGE_OUTPUT_NODES = frozenset({"SaveImage", "PreviewImage", "SaveAnimatedWEBP", "SaveAnimatedPNG"})
PROMPT_PLACEHOLDER = "{{prompt}}"
PROMPT_INPUT = "text"
# Generous for a hand-made or exported graph (a large SDXL + ControlNet + upscaler workflow is
# 20-60 KB; one with a few hundred nodes a few hundred KB), small enough for the settings row.
MAX_WORKFLOW_BYTES = 2 * 1024 * 1024
MAX_NODES = 5000

Workflow = dict[str, Any]


class WorkflowError(ValueError):
    """A workflow a slot cannot use; the message says why, in the operator's words."""


def parse_workflow(value: Any) -> Workflow:
    """``value`` (an object, or a JSON text of one) checked as an API-format workflow.

    Raises :class:`WorkflowError`; a valid workflow may still lack the nodes a slot needs
    (:func:`check_slot_workflow`).
    """
    if isinstance(value, str | bytes):
        if len(value) > MAX_WORKFLOW_BYTES:
            raise WorkflowError(f"is over {MAX_WORKFLOW_BYTES // 1024} KB")
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise WorkflowError(f"is not valid JSON ({exc})") from None
    if not isinstance(value, Mapping):
        raise WorkflowError("must be a JSON object (ComfyUI's API format: node id → node)")
    if "nodes" in value and "links" in value:
        raise WorkflowError(
            "is in ComfyUI's UI format (it has 'nodes' and 'links'); export it with "
            "'Export (API)' in ComfyUI instead"
        )
    if not value:
        raise WorkflowError("has no nodes")
    if len(value) > MAX_NODES:
        raise WorkflowError(f"has {len(value)} nodes (at most {MAX_NODES})")
    try:  # orjson: what the driver sends it with (and ~10x faster than json.dumps here)
        size = len(orjson.dumps(value))
    except TypeError as exc:  # orjson.JSONEncodeError: e.g. an integer beyond 64 bits
        raise WorkflowError(f"has a value that cannot be sent as JSON ({exc})") from None
    if size > MAX_WORKFLOW_BYTES:
        raise WorkflowError(f"is {size // 1024} KB (at most {MAX_WORKFLOW_BYTES // 1024} KB)")
    for node_id, node in value.items():
        if (
            not isinstance(node, Mapping)
            or not isinstance(node.get("class_type"), str)
            or not node["class_type"]
            or not isinstance(node.get("inputs"), Mapping)
        ):
            raise WorkflowError(
                f"has a node {node_id!r} that is not in the API format "
                '({"class_type": "…", "inputs": {…}}): export the workflow with '
                "'Export (API)' in ComfyUI"
            )
    return dict(value)


def nodes_of(workflow: Mapping[str, Any], class_types: frozenset[str] | str) -> list[str]:
    """Ids of the nodes whose ``class_type`` is (one of) ``class_types``, in workflow order."""
    wanted = frozenset({class_types}) if isinstance(class_types, str) else class_types
    return [node_id for node_id, node in workflow.items() if node["class_type"] in wanted]


def has_placeholder(workflow: Mapping[str, Any]) -> bool:
    return any(
        isinstance(value, str) and PROMPT_PLACEHOLDER in value
        for node in workflow.values()
        for value in node["inputs"].values()
    )


def check_slot_workflow(workflow: Mapping[str, Any]) -> None:
    """The nodes a slot needs: exactly one ``LoadImage``, at least one image output."""
    loaders = nodes_of(workflow, IMAGE_LOADER)
    if len(loaders) != 1:
        found = "none" if not loaders else f"{len(loaders)}: " + ", ".join(map(repr, loaders))
        raise WorkflowError(
            f"needs exactly one {IMAGE_LOADER} node for the booth's photo (found {found})"
        )
    if not nodes_of(workflow, IMAGE_OUTPUT_NODES):
        names = ", ".join(sorted(IMAGE_OUTPUT_NODES))
        raise WorkflowError(f"needs at least one image output node ({names})")


def check_prompt_target(
    workflow: Mapping[str, Any], prompt: str | None, prompt_node: str | None
) -> None:
    """Where the prompt goes: ``prompt_node``'s text input, else ``{{prompt}}`` placeholders.

    Messages start with the field they are about (``prompt_node``, ``prompt``).
    """
    if prompt_node is not None:
        node = workflow.get(prompt_node)
        if node is None:
            raise WorkflowError(f"prompt_node: the workflow has no node {prompt_node!r}")
        if not isinstance(node["inputs"].get(PROMPT_INPUT), str):
            raise WorkflowError(
                f"prompt_node: node {prompt_node!r} ({node['class_type']}) has no text input "
                f"'{PROMPT_INPUT}' to put the prompt in (a linked input does not count)"
            )
        if prompt is None:
            raise WorkflowError("prompt: needed when prompt_node is set")
        return
    placeholders = has_placeholder(workflow)
    if prompt is not None and not placeholders:
        raise WorkflowError(
            f"prompt: nothing in the workflow receives it: set prompt_node, or put "
            f"{PROMPT_PLACEHOLDER} in a text input"
        )
    if prompt is None and placeholders:
        raise WorkflowError(f"prompt: the workflow has {PROMPT_PLACEHOLDER} placeholders to fill")


def fill_workflow(
    workflow: Mapping[str, Any], image: str, prompt: str | None, prompt_node: str | None
) -> Workflow:
    """A copy of ``workflow`` with the uploaded photo's name in the ``LoadImage`` node and the
    prompt in place.  Only the nodes it changes are copied (the rest are shared)."""
    filled: Workflow = dict(workflow)

    def set_inputs(node_id: str, **values: Any) -> None:
        node = filled[node_id]
        filled[node_id] = {**node, "inputs": {**node["inputs"], **values}}

    [loader] = nodes_of(workflow, IMAGE_LOADER)
    set_inputs(loader, image=image)
    if prompt is None:
        return filled
    if prompt_node is not None:
        set_inputs(prompt_node, **{PROMPT_INPUT: prompt})
        return filled
    for node_id, node in workflow.items():
        changed = {
            name: value.replace(PROMPT_PLACEHOLDER, prompt)
            for name, value in node["inputs"].items()
            if isinstance(value, str) and PROMPT_PLACEHOLDER in value
        }
        if changed:
            set_inputs(node_id, **changed)
    return filled
