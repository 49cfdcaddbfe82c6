"""Long-lived keys: from the configuration, else generated once into ``<data>/keys/`` (0600)."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path


def load_or_create_key(keys_dir: Path, name: str, configured: str, nbytes: int = 32) -> bytes:
    """The key ``name``: ``configured`` (base64 or text) when set, else the generated file."""
    if configured:
        try:
            return base64.b64decode(configured, validate=True)
        except ValueError:
            return configured.encode()
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(keys_dir, 0o700)
    path = keys_dir / name
    try:
        return base64.b64decode(path.read_bytes().strip())
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(nbytes)
    # O_EXCL: two instances starting together on a shared data dir cannot both write it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return base64.b64decode(path.read_bytes().strip())
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.b64encode(key) + b"\n")
    return key
