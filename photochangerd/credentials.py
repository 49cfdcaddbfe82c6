"""systemd credentials: secrets handed to the service in ``$CREDENTIALS_DIRECTORY``.

``LoadCredential=`` / ``LoadCredentialEncrypted=`` (systemd.exec(5)) make systemd read (and
decrypt) a file as root and hand the service a private, read-only copy: no secret has to sit in
the configuration file, in the environment (``systemctl show`` prints ``Environment=``) or in a
file the service's dynamic user could read.  The files read, each optional:

- ``initial-admin-password``, ``initial-ingest-password``: first start only, like (and instead
  of) ``PHOTOCHANGER_INITIAL_ADMIN_PASSWORD`` / ``PHOTOCHANGER_INITIAL_INGEST_PASSWORD``;
- ``jwt-secret``, ``secret-key``, ``database-url``: instead of the settings ``jwt_secret``,
  ``secret_key``, ``database_url`` (and of the key files generated into ``<data_dir>/keys/``);
- ``gemini-api-key``, ``turbotext-api-key``, ``openai-api-key``, ``sdwebui-auth``: provider
  keys, instead of ``GEMINI_API_KEY`` … ``SDWEBUI_AUTH``; a key stored through the admin API
  still wins over both.

A file that is present must be readable UTF-8 text and not empty: anything else stops the start
(and ``check-config``) with one line naming the file.  Trailing line breaks are dropped
(``echo … | systemd-creds encrypt``); keys and URLs are stripped of surrounding whitespace too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from photochangerd.auth.keys import jwt_secret_problem, secret_key_problem
from photochangerd.config import Config, ConfigError
from photochangerd.errors import StartupError

# The credentials' file names (not secrets).
DIRECTORY_ENV = "CREDENTIALS_DIRECTORY"
INITIAL_ADMIN_PASSWORD = "initial-admin-password"  # noqa: S105
INITIAL_INGEST_PASSWORD = "initial-ingest-password"  # noqa: S105
JWT_SECRET = "jwt-secret"  # noqa: S105
SECRET_KEY = "secret-key"  # noqa: S105
DATABASE_URL = "database-url"
PROVIDER_KEYS = {
    "gemini": "gemini-api-key",
    "turbotext": "turbotext-api-key",
    "openai": "openai-api-key",
    "sdwebui": "sdwebui-auth",
}
# Config settings a credential replaces.
CONFIG_SETTINGS = {"jwt_secret": JWT_SECRET, "secret_key": SECRET_KEY, "database_url": DATABASE_URL}
PASSWORDS = (INITIAL_ADMIN_PASSWORD, INITIAL_INGEST_PASSWORD)
NAMES = (*PASSWORDS, JWT_SECRET, SECRET_KEY, DATABASE_URL, *PROVIDER_KEYS.values())


class CredentialError(StartupError, ValueError):
    """A credential file is unusable; the message names it."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """The credentials found (name → value); empty outside systemd."""

    directory: Path | None = None
    values: Mapping[str, str] = field(default_factory=dict, repr=False)  # secrets: never shown

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def apply(self, config: Config) -> Config:
        """``config`` with the settings a credential replaces (``jwt_secret``, ``secret_key``,
        ``database_url``) taken from it."""
        replaced: dict[str, Any] = {
            setting: self.values[name]
            for setting, name in CONFIG_SETTINGS.items()
            if name in self.values
        }
        return dataclasses.replace(config, **replaced) if replaced else config

    def provider_key(self, provider: str) -> str | None:
        return self.values.get(PROVIDER_KEYS.get(provider, ""))


def read_credentials(environ: Mapping[str, str]) -> Credentials:
    """The credentials in ``$CREDENTIALS_DIRECTORY`` (none when it is not set)."""
    location = environ.get(DIRECTORY_ENV)
    if not location:
        return Credentials()
    directory = Path(location)
    if not directory.is_dir():
        raise CredentialError(f"credentials directory {directory} (${DIRECTORY_ENV}) is missing")
    values: dict[str, str] = {}
    for name in NAMES:
        path = directory / name
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise CredentialError(
                f"credential {name} ({path}) is unreadable: {exc.strerror or exc}"
            ) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CredentialError(f"credential {name} ({path}) is not UTF-8 text") from None
        value = text.rstrip("\r\n") if name in PASSWORDS else text.strip()
        if not value.strip():
            raise CredentialError(f"credential {name} ({path}) is empty")
        values[name] = value
    return Credentials(directory, values)


def with_credentials(config: Config, environ: Mapping[str, str]) -> tuple[Config, Credentials]:
    """Read the credentials, apply them to ``config`` and check the key material.

    Raises :class:`CredentialError` (or :class:`ConfigError` for a configured ``secret_key``)
    with a message naming the file or setting: the start stops before anything else happens.
    """
    credentials = read_credentials(environ)
    config = credentials.apply(config)
    checks = (
        ("jwt_secret", JWT_SECRET, jwt_secret_problem(config.jwt_secret)),
        ("secret_key", SECRET_KEY, secret_key_problem(config.secret_key)),
    )
    for setting, credential, problem in checks:
        if problem is None:
            continue
        if credential in credentials:
            assert credentials.directory is not None
            raise CredentialError(
                f"credential {credential} ({credentials.directory / credential}) {problem}"
            )
        raise ConfigError(f"{setting}: {problem}")
    return config, credentials
