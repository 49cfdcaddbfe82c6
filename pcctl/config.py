"""Where pcctl keeps the server URL and the admin token.

``$XDG_CONFIG_HOME/pcctl/config.toml`` (default ``~/.config/pcctl/config.toml``), mode 0600 in
a 0700 directory, written atomically.  ``$PCCTL_SERVER`` and ``$PCCTL_TOKEN`` override the file.
The stored token is only sent to the server it was issued by: pointing pcctl at another server
(``--server`` / ``$PCCTL_SERVER``) does not leak it there.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import tomli_w

DEFAULT_SERVER = "http://127.0.0.1:8080"
SERVER_ENV = "PCCTL_SERVER"
TOKEN_ENV = "PCCTL_TOKEN"  # noqa: S105 - the name of a variable


@dataclass(frozen=True)
class StoredLogin:
    """What ``pcctl login`` wrote."""

    server: str | None = None
    token: str | None = None
    user: str | None = None
    expires_at: float | None = None


@dataclass(frozen=True)
class Connection:
    """The server to talk to and the token to send it (None: not logged in)."""

    server: str
    token: str | None
    user: str | None


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pcctl" / "config.toml"


def normalize_server(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url


def load(path: Path) -> StoredLogin:
    """The stored login; an absent or unreadable file is an empty one."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return StoredLogin()

    def text(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) and value else None

    expires = data.get("expires_at")
    return StoredLogin(
        server=text("server"),
        token=text("token"),
        user=text("user"),
        expires_at=float(expires) if isinstance(expires, int | float) else None,
    )


def save(path: Path, login: StoredLogin) -> None:
    """Write ``login`` atomically, file 0600, directory 0700 (both even if they existed)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    values: dict[str, str | float] = {}
    if login.server:
        values["server"] = login.server
    if login.user:
        values["user"] = login.user
    if login.token:
        values["token"] = login.token
    if login.expires_at is not None:
        values["expires_at"] = login.expires_at
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("# written by `pcctl login`; holds an admin token: keep it private\n")
            handle.write(tomli_w.dumps(values))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def forget_token(path: Path) -> bool:
    """Drop the token, keep the server; True if there was a token."""
    stored = load(path)
    if stored.token is None:
        return False
    save(path, StoredLogin(server=stored.server, user=stored.user))
    return True


def resolve(
    path: Path, server_option: str | None, environ: Mapping[str, str] | None = None
) -> Connection:
    """Server: ``--server``, else $PCCTL_SERVER, else the file, else the default.
    Token: $PCCTL_TOKEN, else the file's token if it belongs to that server."""
    env = os.environ if environ is None else environ
    stored = load(path)
    server = normalize_server(
        server_option or env.get(SERVER_ENV) or stored.server or DEFAULT_SERVER
    )
    token = env.get(TOKEN_ENV) or None
    user = None
    if (
        token is None
        and stored.token
        and stored.server
        and normalize_server(stored.server) == server
    ):
        token, user = stored.token, stored.user
    return Connection(server=server, token=token, user=user)
