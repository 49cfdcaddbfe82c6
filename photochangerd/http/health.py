"""``/healthz`` (the process answers) and ``/readyz`` (database reachable, and taking writes
again after one was refused; media writable; the object store answering when media live in a
bucket)."""

from __future__ import annotations

import os

import trio
from quart import Blueprint, Response, jsonify

from photochangerd.db import repositories
from photochangerd.db.engine import DatabaseUnavailable
from photochangerd.http.context import public
from photochangerd.http.errors import error_response
from shared.errors import FailureReason

bp = Blueprint("health", __name__)
WRITE_PROBE_SECONDS = 5.0  # above SQLite's 3 s busy timeout: its own error, not ours


@bp.route("/healthz", methods=["GET", "HEAD"])
async def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.route("/readyz", methods=["GET", "HEAD"])
async def readyz() -> Response:
    app = public()
    try:
        with trio.fail_after(3):
            await app.db.ping()
    except (DatabaseUnavailable, trio.TooSlowError):
        return error_response(503, FailureReason.SERVICE_UNAVAILABLE, "database unavailable")
    if app.db.write_problem is not None:  # a full disk, a read-only file: reads still work
        try:
            with trio.fail_after(WRITE_PROBE_SECONDS):
                await app.db.write(repositories.write_probe)  # clears it when it passes
        except (DatabaseUnavailable, trio.TooSlowError):
            why = app.db.write_problem or "database refuses writes"
            return error_response(503, FailureReason.SERVICE_UNAVAILABLE, why)
    writable = await trio.to_thread.run_sync(os.access, app.store.results, os.W_OK)
    if not writable:
        return error_response(503, FailureReason.SERVICE_UNAVAILABLE, "media dir not writable")
    problem = app.store.problem  # the bucket's health: failed calls and the store's probe
    if problem is not None:
        return error_response(503, FailureReason.SERVICE_UNAVAILABLE, problem)
    if not app.intake.open:
        return error_response(503, FailureReason.SERVICE_UNAVAILABLE, "shutting down")
    return jsonify(
        {
            "status": "ok",
            "database": app.db.dialect,
            "media": app.store.objects.name,
            "instance": app.instance_id,
        }
    )


@bp.route("/metrics", methods=["GET"])
async def metrics() -> Response:
    """Prometheus text format."""
    response = Response(public().metrics.render(), mimetype="text/plain")
    response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    return response
