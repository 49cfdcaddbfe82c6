"""A scripted ``$EDITOR`` for testing ``pcctl slot edit`` without a human.

Run as ``python tests/support/editor.py FILE``.  ``$PCCTL_TEST_EDITOR_SCRIPT`` names a JSON
file holding a list of steps; invocation *n* (counted in ``<script>.count``) performs step *n*:

* ``"run": [argv…]`` — run a command first (e.g. another pcctl that changes the slot);
* ``"replace": [[old, new], …]`` — textual replacements (each ``old`` must occur);
* ``"append": "text"`` / ``"write": "text"`` — add to / replace the whole document;
* ``"exit": N`` — exit with status N (after the edits).

The document as the editor received it is copied to ``<script>.seen.<n>`` so tests can look
at what pcctl presented (e.g. the error comments on a reopen), and its path is appended to
``<script>.files``.  Running out of steps leaves
the file unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT_ENV = "PCCTL_TEST_EDITOR_SCRIPT"


def main() -> int:
    target = Path(sys.argv[-1])
    script = Path(os.environ[SCRIPT_ENV])
    steps = json.loads(script.read_text())
    counter = script.with_name(script.name + ".count")
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    text = target.read_text(encoding="utf-8")
    script.with_name(f"{script.name}.seen.{n}").write_text(text, encoding="utf-8")
    with script.with_name(script.name + ".files").open("a") as files:
        files.write(f"{target}\n")
    if n >= len(steps):
        return 0
    step = steps[n]
    if "run" in step:
        subprocess.run(step["run"], check=True)
    for old, new in step.get("replace", []):
        if old not in text:
            print(f"editor.py: {old!r} not in the document", file=sys.stderr)
            return 97
        text = text.replace(old, new)
    if "write" in step:
        text = step["write"]
    text += step.get("append", "")
    target.write_text(text, encoding="utf-8")
    return int(step.get("exit", 0))


if __name__ == "__main__":
    sys.exit(main())
