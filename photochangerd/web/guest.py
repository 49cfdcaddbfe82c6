"""The guest page ``/r/<job_id>`` (docs/web.md §1)."""

from __future__ import annotations

from quart import Blueprint

bp = Blueprint("guest", __name__)
