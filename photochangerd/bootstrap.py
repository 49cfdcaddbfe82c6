"""First start: seed runtime settings and the initial passwords.

Like Jenkins' initial admin password: when no ingest password or admin password exists yet,
strong random ones are generated, only their hashes are stored, and the plaintext is printed
once to stderr.  ``PHOTOCHANGER_INITIAL_ADMIN_PASSWORD`` (both built-in admins) and
``PHOTOCHANGER_INITIAL_INGEST_PASSWORD`` set them instead, for unattended installs; like
Grafana's ``GF_SECURITY_ADMIN_PASSWORD`` they are read on first start only.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TextIO

import trio

from photochangerd.auth.passwords import generate_password, hash_password
from photochangerd.config import Config
from photochangerd.db import repositories
from photochangerd.db.engine import Database

ADMINS = ("serg", "igor")
INITIAL_ADMIN_ENV = "PHOTOCHANGER_INITIAL_ADMIN_PASSWORD"
INITIAL_INGEST_ENV = "PHOTOCHANGER_INITIAL_INGEST_PASSWORD"


async def bootstrap(
    db: Database, config: Config, now: float, environ: Mapping[str, str], out: TextIO = sys.stderr
) -> None:
    settings = await db.read(repositories.get_settings)
    defaults = {
        "sync_response_seconds": config.default_sync_response_seconds,
        "result_ttl_hours": config.default_result_ttl_hours,
    }
    for key, value in defaults.items():
        if key not in settings:
            await db.write(repositories.insert_setting_if_missing, key, value, now)

    announce: list[str] = []
    if "ingest_password" not in settings:
        password = environ.get(INITIAL_INGEST_ENV) or generate_password()
        digest = await trio.to_thread.run_sync(hash_password, password)
        record = {"hash": digest, "rotated_at": now, "rotated_by": "initial"}
        inserted = await db.write(
            repositories.insert_setting_if_missing, "ingest_password", record, now
        )
        if inserted and not environ.get(INITIAL_INGEST_ENV):
            announce.append(f"  ingest password (DSLR Remote Pro): {password}")

    shared_admin = environ.get(INITIAL_ADMIN_ENV)
    for username in ADMINS:
        if await db.read(repositories.admin_password_hash, username) is not None:
            continue
        password = shared_admin or generate_password()
        digest = await trio.to_thread.run_sync(hash_password, password)
        inserted = await db.write(repositories.insert_admin_if_missing, username, digest, now)
        if inserted and not shared_admin:
            announce.append(f"  admin {username}: {password}")

    if announce:
        lines = [
            "",
            "=" * 72,
            "photochangerd first start: initial passwords (shown once, only hashes are kept)",
            *announce,
            "Change them with `photochangerd set-admin-password` and the admin API.",
            "=" * 72,
            "",
        ]
        out.write("\n".join(lines) + "\n")
        out.flush()
