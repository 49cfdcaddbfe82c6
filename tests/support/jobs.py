"""A job row as the worker gets it (claimed, ``processing``), for the mock-clock unit tests."""

from __future__ import annotations

from typing import Any

from photochangerd.domain.models import Job


def claimed_job(job_id: str, *, created_at: float, deadline: float, **fields: Any) -> Job:
    values: dict[str, Any] = {name: None for name in Job.__dataclass_fields__}
    values.update(
        id=job_id,
        slot_id="slot-001",
        source="ingest",
        status="processing",
        is_finalized=False,
        provider="gemini",
        operation="edit",
        settings={},
        created_at=created_at,
        deadline=deadline,
        attempts=1,
        client_metadata={},
        input_path=f"/in/{job_id}",
        fallbacks=[],
        attempt_log=[],
    )
    values.update(fields)
    return Job(**values)
