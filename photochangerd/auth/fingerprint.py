"""Same keys everywhere: instances sharing a database must share ``jwt_secret`` and
``secret_key``.

With different keys an admin token or console session from one instance is refused by the
other, and a provider key stored through one cannot be decrypted by the other — failures that
show up as random 401s and "API key not configured" at an event.  So the database records a
fingerprint of each key (an HMAC under the key itself: it reveals nothing about the key) when
the first instance starts, and an instance whose keys differ refuses to start with one line
that says which key and what to do.  A daemon alone on SQLite keeps its key files next to its
database (and in its backups): nothing to compare there.
"""

from __future__ import annotations

import hmac
from typing import Any

from photochangerd.db import repositories
from photochangerd.db.engine import Database
from photochangerd.errors import StartupError

SETTING = "key_fingerprints"
SETTING_NAMES = {"jwt": "jwt_secret", "secrets": "secret_key"}


class KeysDiffer(StartupError):
    """This instance's keys are not the ones the shared database was set up with."""


def fingerprint(key: bytes, purpose: str) -> str:
    return hmac.new(key, f"photochanger key fingerprint: {purpose}".encode(), "sha256").hexdigest()[
        :16
    ]


async def check_shared_keys(db: Database, keys: dict[str, bytes], now: float) -> None:
    """Record the fingerprints (first instance), or refuse keys that differ from them."""
    ours: dict[str, Any] = {name: fingerprint(key, name) for name, key in keys.items()}
    if await db.write(repositories.insert_setting_if_missing, SETTING, ours, now):
        return
    stored = (await db.read(repositories.get_settings)).get(SETTING) or {}
    differ = [name for name in ours if stored.get(name) not in (None, ours[name])]
    if differ:
        names = " and ".join(SETTING_NAMES.get(name, name) for name in differ)
        raise KeysDiffer(
            f"this instance's {names} differs from the one the shared database was set up with "
            f"(fingerprint {stored[differ[0]]}, this instance {ours[differ[0]]}): give every "
            "instance the same jwt_secret and secret_key (config file or systemd credentials)"
        )
