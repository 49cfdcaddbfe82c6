"""First start: seed runtime settings and the initial passwords.

Like Jenkins' initial admin password: when no ingest password or admin password exists yet,
strong random ones are generated, only their hashes are stored, and the plaintext is printed
once to stderr.  ``PHOTOCHANGER_INITIAL_ADMIN_PASSWORD`` (both built-in admins) and
``PHOTOCHANGER_INITIAL_INGEST_PASSWORD`` set them instead, for unattended installs; like
Grafana's ``GF_SECURITY_ADMIN_PASSWORD`` they are read on first start only.  The systemd
credentials ``initial-admin-password`` / ``initial-ingest-password`` do the same and win over
the environment.

Under systemd (``$INVOCATION_ID``, ``$NOTIFY_SOCKET`` or ``$JOURNAL_STREAM`` set) stderr goes to
the journal, which keeps it and shows it to every member of ``adm``/``systemd-journal``: the
generated passwords are then written to ``<data_dir>/initial-passwords.txt`` (mode 0600, the
service's own user) instead, and stderr says where that file is and how to choose the
passwords instead.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

import trio

from photochangerd.auth.passwords import generate_password, hash_password
from photochangerd.config import Config
from photochangerd.credentials import INITIAL_ADMIN_PASSWORD, INITIAL_INGEST_PASSWORD, Credentials
from photochangerd.db import repositories
from photochangerd.db.engine import Database
from photochangerd.systemd import under_systemd

ADMINS = ("serg", "igor")
INITIAL_ADMIN_ENV = "PHOTOCHANGER_INITIAL_ADMIN_PASSWORD"
INITIAL_INGEST_ENV = "PHOTOCHANGER_INITIAL_INGEST_PASSWORD"
INITIAL_PASSWORDS_FILE = "initial-passwords.txt"
CHANGE_HINT = (
    "Change them with `photochangerd set-admin-password serg|igor` and "
    "`pcctl settings rotate-ingest-password --generate` (or the admin API)."
)


async def bootstrap(
    db: Database,
    config: Config,
    now: float,
    environ: Mapping[str, str],
    out: TextIO = sys.stderr,
    credentials: Credentials | None = None,
) -> None:
    credentials = credentials or Credentials()
    settings = await db.read(repositories.get_settings)
    defaults = {
        "sync_response_seconds": config.default_sync_response_seconds,
        "result_ttl_hours": config.default_result_ttl_hours,
    }
    for key, value in defaults.items():
        if key not in settings:
            await db.write(repositories.insert_setting_if_missing, key, value, now)

    # Every password is generated and hashed first, shown (or written to the file) next, and
    # stored last, all in one transaction: a first start stopped part-way (Ctrl-C, a kill, a
    # power cut) used to have stored the ingest password's hash without ever showing it, and
    # the next start showed only the admins' (a review, 2026-12-02).  Stopped before the
    # commit, the next start generates and shows them again; a password shown that another
    # instance beat us to storing is said to be void.
    given_ingest = credentials.get(INITIAL_INGEST_PASSWORD) or environ.get(INITIAL_INGEST_ENV)
    shared_admin = credentials.get(INITIAL_ADMIN_PASSWORD) or environ.get(INITIAL_ADMIN_ENV)
    wanted: dict[str, str] = {}  # "ingest" or an admin's name -> the password
    if "ingest_password" not in settings:
        wanted[INGEST] = given_ingest or generate_password()
    for username in ADMINS:
        if await db.read(repositories.admin_password_hash, username) is None:
            wanted[username] = shared_admin or generate_password()
    if not wanted:
        return
    digests = {
        name: await trio.to_thread.run_sync(hash_password, password)
        for name, password in wanted.items()
    }
    generated = {
        name: password
        for name, password in wanted.items()
        if not (given_ingest if name == INGEST else shared_admin)
    }
    announce = [_announcement(name, password) for name, password in generated.items()]
    if announce:
        _show(announce, config, now, environ, out)
    ingest = digests.pop(INGEST, None)
    record = (
        None if ingest is None else {"hash": ingest, "rotated_at": now, "rotated_by": "initial"}
    )
    stored = await db.write(repositories.insert_initial_passwords, record, digests, now)
    void = [name for name in generated if name not in stored]
    if void:
        out.write(
            f"photochangerd: another instance stored the initial {', '.join(void)} password"
            " first: the one shown above for it is not in effect\n"
        )
        out.flush()


INGEST = "ingest"


def _announcement(name: str, password: str) -> str:
    if name == INGEST:
        return f"  ingest password (DSLR Remote Pro): {password}"
    return f"  admin {name}: {password}"


def _show(
    announce: list[str], config: Config, now: float, environ: Mapping[str, str], out: TextIO
) -> None:
    if under_systemd(environ):
        lines = _write_passwords_file(config.data_dir, announce, now)
    else:
        lines = [
            "",
            "=" * 72,
            "photochangerd first start: initial passwords (shown once, only hashes are kept)",
            *announce,
            CHANGE_HINT,
            "=" * 72,
            "",
        ]
    out.write("\n".join(lines) + "\n")
    out.flush()


def _write_passwords_file(data_dir: Path, announce: list[str], now: float) -> list[str]:
    """Put the generated passwords into a 0600 file; return what to print instead of them."""
    path = data_dir.absolute() / INITIAL_PASSWORDS_FILE
    which = ", ".join(line.split(":")[0].strip() for line in announce)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    text = "\n".join(
        [
            f"photochangerd first start ({stamp}): initial passwords (only hashes are kept).",
            "Keep them somewhere safe (a password manager), then delete this file.",
            *announce,
            CHANGE_HINT,
            "",
        ]
    )
    try:
        # O_NOFOLLOW: never write through a link planted in the data dir; 0600 even when it
        # existed (a second first start after a restore appends).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return [
            f"photochangerd first start: generated initial passwords ({which}) could not be"
            f" written to {path}: {exc.strerror or exc}. They are not printed here"
            " (this output goes to the journal); set new ones:",
            "  photochangerd set-admin-password serg|igor, then with pcctl logged in:"
            " pcctl settings rotate-ingest-password --generate",
        ]
    return [
        f"photochangerd first start: generated initial passwords: {which}.",
        "They are not printed here: under systemd this output goes to the journal. They are in",
        f"  {path}  (mode 0600; read it once with `sudo cat {path}`, then delete it).",
        "To choose them yourself instead, give the service the credentials"
        " initial-admin-password and initial-ingest-password before its first start"
        " (systemd-creds encrypt + LoadCredentialEncrypted=). " + CHANGE_HINT,
    ]
