"""The argon2id hashes: the sign-in's dummy hash costs what a real one costs."""

from __future__ import annotations

import httpx
from argon2 import extract_parameters

from photochangerd.auth.passwords import hash_password, verify_password
from photochangerd.http.admin.auth import DUMMY_HASH
from tests.conftest import RunningDaemon


def test_dummy_hash_has_the_hasher_parameters() -> None:
    # An unknown username is verified against DUMMY_HASH; if its cost differed from a real
    # hash's, the sign-in's timing would tell which accounts exist.
    assert extract_parameters(DUMMY_HASH) == extract_parameters(hash_password("x"))


def test_dummy_hash_matches_no_ordinary_password() -> None:
    for guess in ("", "admin", "password", "not-a-real-password "):
        assert not verify_password(DUMMY_HASH, guess)


def test_importing_the_daemon_computes_no_hash() -> None:
    import subprocess
    import sys

    # A hash at import time costs 64 MiB of peak memory and ~0.1 s at every start.
    code = (
        "import argon2, argon2.low_level, argon2._password_hasher\n"
        "def refuse(*a, **k): raise SystemExit('argon2 hash computed at import')\n"
        "for module in (argon2, argon2.low_level, argon2._password_hasher):\n"
        "    for name in ('hash_secret', 'hash_secret_raw'):\n"
        "        if hasattr(module, name): setattr(module, name, refuse)\n"
        "argon2.PasswordHasher.hash = refuse\n"
        "import photochangerd.app\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


async def test_a_sign_in_renews_a_hash_made_with_older_parameters(
    client: httpx.AsyncClient, daemon: RunningDaemon
) -> None:
    from argon2 import PasswordHasher

    from photochangerd.db import repositories

    old = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4).hash("old-params-pw")
    await daemon.context.db.write(repositories.set_admin_password, "serg", old, 0.0)
    response = await client.post(
        "/api/login", json={"username": "serg", "password": "old-params-pw"}
    )
    assert response.status_code == 200
    renewed = await daemon.context.db.read(repositories.admin_password_hash, "serg")
    assert renewed != old and extract_parameters(renewed) == extract_parameters(DUMMY_HASH)
    again = await client.post("/api/login", json={"username": "serg", "password": "old-params-pw"})
    assert again.status_code == 200
