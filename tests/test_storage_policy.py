"""SQLite/PostgreSQL differences are one policy object, chosen once (photochangerd/db/policy.py)."""

from __future__ import annotations

import re
from pathlib import Path

from photochangerd.db.policy import SHARED, SINGLE_INSTANCE, storage_policy

PACKAGE = Path(__file__).resolve().parents[1] / "photochangerd"


def test_policy_per_dialect() -> None:
    assert storage_policy("sqlite") is SINGLE_INSTANCE
    assert storage_policy("postgresql") is SHARED
    assert SINGLE_INSTANCE.recover_every_unfinished_job and not SHARED.recover_every_unfinished_job
    assert SHARED.inputs_on_disk and not SINGLE_INSTANCE.inputs_on_disk
    assert SHARED.idle_poll_seconds and SINGLE_INSTANCE.idle_poll_seconds is None


def test_no_dialect_branches_outside_the_database_layer() -> None:
    """Jobs, HTTP and web code read the policy; only db/ (SQL differs), the backup and the
    start-up code that chooses the policy may name a dialect."""
    allowed = {"db", "backup.py", "app.py", "cli.py"}
    branch = re.compile(r"dialect\s*[!=]=")
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] not in allowed
        and branch.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
