"""The job lifecycle stays readable: jobs/ has no module over 400 lines, no function over 60.

The next features (fallback chains, self-hosted backends, several instances) change these
files; docs/jobs.md is their map.
"""

from __future__ import annotations

import ast
from pathlib import Path

JOBS = Path(__file__).resolve().parents[1] / "photochangerd" / "jobs"


def test_jobs_modules_and_functions_stay_small() -> None:
    too_long = []
    for path in sorted(JOBS.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        if len(source.splitlines()) > 400:
            too_long.append(f"{path.name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 60:
                    too_long.append(f"{path.name}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, too_long
