"""Daemon configuration: defaults < TOML file < ``PHOTOCHANGER_*`` environment.

One table (:data:`SETTINGS`) is the single source for every static setting: its name (with the
unit in the name where there is one), type, default and help.  The TOML loader, the environment
mapping (TOML ``foo_bar`` ↔ ``PHOTOCHANGER_FOO_BAR``) and the README table are all derived from
it, and a test checks that the README agrees.

Runtime-editable values (the deadline, the result TTL, the ingest password, provider keys) are
*not* here: they live in the database and change through the admin API without a restart.  The
``default_*`` entries below only seed them on first start.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from photochangerd.errors import StartupError
from photochangerd.http.proxy import parse_networks
from photochangerd.lan import WILDCARD_HOSTS, lan_address

ENV_PREFIX = "PHOTOCHANGER_"
DEFAULT_CONFIG_FILE = Path("/etc/photochanger/photochangerd.toml")


class ConfigError(StartupError, ValueError):
    """A setting has a bad value or the file cannot be read; the message names the setting."""


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, slots=True)
class Config:
    """Static configuration of one daemon instance (immutable once loaded)."""

    data_dir: Path = _setting(
        Path("photochanger-data"),
        "Where the daemon keeps its state (SQLite file, media, keys). "
        "Default: $STATE_DIRECTORY under systemd, else ./photochanger-data.",
    )
    database_url: str = _setting(
        "",
        "SQLAlchemy URL. Empty: SQLite at <data_dir>/photochanger.sqlite3 (sqlite:///path). "
        "PostgreSQL: postgresql+asyncpg://user:pass@host/db.",
    )
    media_dir: Path | None = _setting(
        None, "Media root (results/, temp/, templates/, spool/). Default: <data_dir>/media."
    )
    media_backend: str = _setting(
        "local",
        "Where results, thumbnails, templates and provider-media live: local (the media dir) "
        "or s3 (a bucket; several instances need it). Spools and job inputs stay local.",
    )
    s3_endpoint_url: str = _setting(
        "", "S3 API endpoint (MinIO, SeaweedFS, R2, Yandex...). Empty: AWS S3 for s3_region."
    )
    s3_bucket: str = _setting("", "The bucket (media_backend = s3). It must exist.")
    s3_region: str = _setting("", "The bucket's region. Empty: the AWS default chain's.")
    s3_prefix: str = _setting(
        "", "Key prefix inside the bucket (e.g. photochanger/). Credentials: AWS_* env or files."
    )
    bind: tuple[str, ...] = _setting(("127.0.0.1:8080",), "host:port to listen on (a list is ok).")
    trusted_proxies: tuple[str, ...] = _setting(
        (),
        "Reverse proxies (addresses or CIDRs) whose X-Forwarded-For / X-Forwarded-Proto "
        "headers are believed. Empty: none (the TCP peer is the client).",
    )
    public_base_url: str = _setting(
        "",
        "How booths, guests and vendors reach us (links, QR codes). Default: http://<first "
        "bind>, with this machine's LAN address for a 0.0.0.0 bind.",
    )
    max_upload_mb: int = _setting(20, "Largest accepted photo upload, in MiB.")
    max_image_pixels: int = _setting(50_000_000, "Largest accepted image, in pixels (bombs).")
    workers: int = _setting(30, "Worker tasks processing jobs in this instance.")
    max_in_flight: int = _setting(
        30, "Unfinished jobs (queued + running) this instance accepts before answering 429."
    )
    max_in_flight_per_slot: int = _setting(
        30, "Unfinished jobs per slot before a slot answers 429."
    )
    image_threads: int = _setting(
        2, "Threads decoding/encoding images at once (each 24 MP decode needs ~300 MB)."
    )
    default_sync_response_seconds: float = _setting(
        48.0, "Initial T_sync_response (10-60 s) stored on first start; then edited via the API."
    )
    default_result_ttl_hours: float = _setting(
        72.0, "Initial result TTL stored on first start; then edited via the API."
    )
    cleanup_interval_seconds: float = _setting(900.0, "How often expired results are deleted.")
    sweep_interval_seconds: float = _setting(
        5.0, "How often jobs past their deadline are finalized (the deadline is the lease)."
    )
    sweep_grace_seconds: float = _setting(
        2.0, "How long past its deadline a job may stay unfinalized before the sweeper acts."
    )
    shutdown_grace_seconds: float = _setting(
        65.0, "On SIGTERM: how long in-flight jobs may run on (above the 60 s maximum deadline)."
    )
    keep_alive_timeout_seconds: float = _setting(5.0, "Idle keep-alive connections close after.")
    db_connect_timeout_seconds: float = _setting(3.0, "Database connect timeout.")
    instance_id: str = _setting(
        "", "This instance's name in /readyz, JSON logs and jobs. Empty: <hostname>:<pid>."
    )
    log_format: str = _setting("text", "text (key=value) or json.")
    log_level: str = _setting("info", "debug, info, warning or error.")
    admin_token_ttl_minutes: int = _setting(720, "Lifetime of an admin token (pcctl login).")
    jwt_secret: str = _setting(
        "", "HS256 key for admin tokens. Empty: generated into <data_dir>/keys/ (mode 0600)."
    )
    secret_key: str = _setting(
        "", "AES-GCM key (base64, 32 bytes) for provider keys at rest. Empty: generated file."
    )

    gemini_base_url: str = _setting(
        "https://generativelanguage.googleapis.com",
        "Gemini API base (the driver appends /v1beta/models/...).",
    )
    turbotext_base_url: str = _setting(
        "https://www.turbotext.ru", "Turbotext API base (the driver appends /api_ai/<method>)."
    )
    openai_base_url: str = _setting(
        "https://api.openai.com/v1", "OpenAI API base (the driver appends /images/edits)."
    )
    provider_concurrency: int = _setting(
        0,
        "Calls in flight per cloud provider; more wait (within their deadline). "
        "0: no cap of its own, as many as max_in_flight admits.",
    )
    provider_max_response_mb: int = _setting(
        64, "Largest response read from a provider, in MiB (streamed, cut past it)."
    )
    turbotext_poll_interval_seconds: float = _setting(
        2.5, "Pause between Turbotext get_result polls."
    )
    sdwebui_base_url: str = _setting(
        "",
        "AUTOMATIC1111 / Forge / SD.Next API base, e.g. http://gpu-box:7860 (the driver appends "
        "/sdapi/v1/...). Empty: sdwebui slots fail their jobs with a provider_error.",
    )
    sdwebui_concurrency: int = _setting(
        1,
        "Jobs sent to the sdwebui backend at once (1 = one GPU); more wait here, within "
        "their deadline.",
    )
    comfyui_base_url: str = _setting(
        "",
        "Your ComfyUI server, e.g. http://gpu-box:8188 (no authentication: keep it on a "
        "LAN/VPN or behind a proxy). Empty: comfyui slots fail their jobs (provider_error).",
    )
    comfyui_concurrency: int = _setting(
        1, "Workflows queued on ComfyUI at once (1 = one GPU); more wait within their deadline."
    )

    # -- derived paths -------------------------------------------------------------------
    @property
    def media_root(self) -> Path:
        return self.media_dir if self.media_dir is not None else self.data_dir / "media"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'photochanger.sqlite3').resolve()}"

    @property
    def effective_public_base_url(self) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host, _, port = self.bind[0].rpartition(":")
        if host in WILDCARD_HOSTS:  # all interfaces: a link to 0.0.0.0 works nowhere else
            host = lan_address()
        return f"http://{host}:{port}"

    @property
    def effective_provider_concurrency(self) -> int:
        return self.provider_concurrency or self.max_in_flight

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024


SETTINGS: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(Config)


def env_name(setting: str) -> str:
    """``data_dir`` → ``PHOTOCHANGER_DATA_DIR`` — the one naming rule."""
    return ENV_PREFIX + setting.upper()


def _convert(name: str, raw: Any, kind: Any) -> Any:
    text = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    try:
        if "tuple" in text:
            if isinstance(raw, str):
                return tuple(part.strip() for part in raw.split(",") if part.strip())
            return tuple(str(item) for item in raw)
        if "Path" in text:
            return None if raw in ("", None) else Path(str(raw))
        if text == "int":
            if isinstance(raw, bool):
                raise TypeError("boolean")
            return int(raw)
        if text == "float":
            if isinstance(raw, bool):
                raise TypeError("boolean")
            return float(raw)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot use {raw!r} ({exc})") from None


def _validate(config: Config) -> None:
    if not config.bind:
        raise ConfigError("bind: at least one host:port is needed")
    for address in config.bind:
        _host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"bind: {address!r} is not host:port")
    positive = (
        "max_upload_mb",
        "max_image_pixels",
        "workers",
        "max_in_flight",
        "max_in_flight_per_slot",
        "image_threads",
        "cleanup_interval_seconds",
        "sweep_interval_seconds",
        "db_connect_timeout_seconds",
        "provider_max_response_mb",
        "turbotext_poll_interval_seconds",
        "sdwebui_concurrency",
        "comfyui_concurrency",
        "admin_token_ttl_minutes",
    )
    for name in positive:
        if getattr(config, name) <= 0:
            raise ConfigError(f"{name}: must be positive")
    if not 10 <= config.default_sync_response_seconds <= 60:
        raise ConfigError("default_sync_response_seconds: must be within 10-60")
    try:
        parse_networks(config.trusted_proxies)
    except ValueError as exc:
        raise ConfigError(f"trusted_proxies: {exc}") from None
    if config.provider_concurrency < 0:
        raise ConfigError("provider_concurrency: 0 (no cap) or a positive number")
    if config.comfyui_base_url and not config.comfyui_base_url.startswith(("http://", "https://")):
        raise ConfigError("comfyui_base_url: an http:// or https:// URL (or empty)")
    if config.log_format not in ("text", "json"):
        raise ConfigError("log_format: text or json")
    if config.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError("log_level: debug, info, warning or error")
    if config.media_backend not in ("local", "s3"):
        raise ConfigError("media_backend: local or s3")
    if config.media_backend == "s3" and not config.s3_bucket:
        raise ConfigError("s3_bucket: needed with media_backend = s3")
    if config.shutdown_grace_seconds < 60:
        raise ConfigError("shutdown_grace_seconds: must be at least the 60 s maximum deadline")


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the configuration: defaults < TOML < environment < ``overrides`` (tests, CLI).

    ``path`` None means ``$PHOTOCHANGER_CONFIG``, else ``/etc/photochanger/photochangerd.toml``
    when it exists, else no file.  Unknown keys in the file are an error (typos must not be
    silently ignored).
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if "STATE_DIRECTORY" in env:  # systemd's StateDirectory=
        values["data_dir"] = Path(env["STATE_DIRECTORY"].split(":")[0])
    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = Path(env[ENV_PREFIX + "CONFIG"])
    if path is None and DEFAULT_CONFIG_FILE.exists():
        path = DEFAULT_CONFIG_FILE
    kinds = {f.name: f.type for f in SETTINGS}
    if path is not None:
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        unknown = sorted(set(document) - set(kinds))
        if unknown:
            raise ConfigError(f"config file {path}: unknown settings {', '.join(unknown)}")
        for name, raw in document.items():
            values[name] = _convert(name, raw, kinds[name])
    for name, kind in kinds.items():
        if env_name(name) in env:
            values[name] = _convert(env_name(name), env[env_name(name)], kind)
    for name, raw in (overrides or {}).items():
        if name not in kinds:
            raise ConfigError(f"unknown setting {name}")
        values[name] = raw
    config = Config(**values)
    _validate(config)
    return config


def _default_text(value: Any) -> str:
    if isinstance(value, tuple) and value:
        return ", ".join(value)
    if value in ("", None, ()):
        return "(empty)"
    return str(value)


def settings_table_markdown() -> str:
    """The README's configuration table, generated from :data:`SETTINGS` (a test compares)."""
    rows = [
        "| TOML key | environment variable | default | meaning |",
        "|---|---|---|---|",
    ]
    for setting in SETTINGS:
        default = _default_text(setting.default)
        rows.append(
            f"| `{setting.name}` | `{env_name(setting.name)}` | `{default}` "
            f"| {setting.metadata['help']} |"
        )
    return "\n".join(rows)
