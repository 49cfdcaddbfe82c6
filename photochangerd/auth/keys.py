"""Long-lived keys: configured (a systemd credential or the config), else generated once into
``<data>/keys/`` (0600).

A configured key is base64 when it decodes as such, else its text's UTF-8 bytes.  The secrets
key (AES-256-GCM) must come to 32 bytes: ``openssl rand -base64 32``, or the generated
``keys/secrets.key`` itself when moving it into a credential.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

SECRET_KEY_BYTES = 32
JWT_KEY_MIN_BYTES = 32  # HS256: PyJWT refuses shorter keys when it verifies a token


def decode_configured(configured: str) -> bytes:
    """A configured key's bytes: base64 when it decodes as such, else the text itself."""
    try:
        return base64.b64decode(configured.strip(), validate=True)
    except ValueError:
        return configured.encode()


def jwt_secret_problem(configured: str) -> str | None:
    """Why ``configured`` cannot be the admin-token key (None: it can, or it is not set)."""
    if configured and len(decode_configured(configured)) < JWT_KEY_MIN_BYTES:
        return f"must be at least {JWT_KEY_MIN_BYTES} bytes (openssl rand -base64 32)"
    return None


def secret_key_problem(configured: str) -> str | None:
    """Why ``configured`` cannot be the secrets key (None: it can, or it is not set)."""
    if configured and len(decode_configured(configured)) != SECRET_KEY_BYTES:
        return f"must be {SECRET_KEY_BYTES} bytes, base64-encoded (openssl rand -base64 32)"
    return None


def load_or_create_key(keys_dir: Path, name: str, configured: str, nbytes: int = 32) -> bytes:
    """The key ``name``: ``configured`` (base64 or text) when set, else the generated file."""
    if configured:
        return decode_configured(configured)
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
