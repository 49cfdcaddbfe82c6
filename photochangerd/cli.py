"""``photochangerd`` command line: ``serve`` (the default), ``migrate``, ``check-config``,
``set-admin-password``, ``backup``, ``restore``."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import IO, Any, TypeVar

import click
import trio

from photochangerd import __version__
from photochangerd.config import SETTINGS, Config, ConfigError, env_name, load_config
from photochangerd.credentials import Credentials
from photochangerd.data_dir_lock import DataDirInUse, DataDirUnusable, lock_data_dir
from photochangerd.errors import StartupError
from photochangerd.logs import configure_logging

T = TypeVar("T")

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML config file (default: $PHOTOCHANGER_CONFIG, "
    "else /etc/photochanger/photochangerd.toml).",
)


class StartupFailed(click.ClickException):
    """One line on stderr, ``photochangerd: <why>``, and exit status 1: no traceback."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"photochangerd: {self.format_message()}", file=file, err=file is None)


def _single_cause(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _config_path(local: Path | None) -> Path | None:
    """``--config`` means the same before and after the command; given in both, they agree."""
    outer: Path | None = click.get_current_context().find_root().params.get("config_path")
    if outer is None or local is None:
        return local or outer
    if outer.resolve() != local.resolve():
        raise click.UsageError(f"--config given twice, as {outer} and as {local}")
    return local


def _load(config_path: Path | None) -> Config:
    try:
        config = load_config(_config_path(config_path))
    except ConfigError as exc:
        raise StartupFailed(str(exc)) from None
    configure_logging(config.log_format, config.log_level)
    return config


def _load_with_credentials(config_path: Path | None) -> Config:
    """The configuration as the service sees it: the systemd credentials in
    ``$CREDENTIALS_DIRECTORY`` applied, as :func:`photochangerd.app.run` applies them.

    For the maintenance commands (migrate, set-admin-password, backup, restore): a service whose
    ``database_url`` is a credential has it nowhere else.  ``systemd-run --pipe --wait -p
    LoadCredentialEncrypted=…`` hands them the same files (README, "Credentials").  The key
    material is not checked here: a backup of an installation whose key is broken must work.
    """
    from photochangerd.credentials import CredentialError, read_credentials

    config = _load(config_path)
    try:
        return read_credentials(os.environ).apply(config)
    except CredentialError as exc:
        raise StartupFailed(str(exc)) from None


def _where(config: Config) -> str:
    """The database a command acted on, without its user, password or query: ``host:port/name``
    or a SQLite file's path."""
    return config.effective_database_url.split("?")[0].split("@")[-1].split(":///")[-1]


def _existing_sqlite(config: Config) -> None:
    """Refuse a SQLite database file that is not there yet: a command run without the service's
    ``database-url`` credential would otherwise create one in the data dir and act on it."""
    import sqlalchemy as sa

    try:
        url = sa.make_url(config.effective_database_url)
    except sa.exc.ArgumentError:  # its text would repeat the URL, password included
        raise StartupFailed("database_url is not a database URL") from None
    if url.get_backend_name() != "sqlite" or url.query.get("uri") == "true":
        return
    from photochangerd.backup import BackupError, sqlite_path

    try:
        path = sqlite_path(config)
    except BackupError:  # in memory: nothing to find, nothing left behind
        return
    if not path.is_file():
        raise StartupFailed(
            f"no database at {path}: the daemon creates it at its first start; if the service "
            "gets its database_url as a systemd credential, run this with that credential "
            "(README, 'Credentials')"
        )


def _with_database(
    config: Config, fn: Callable[[Any], Awaitable[T]], *, lock_data_dir_first: bool = False
) -> T:
    from photochangerd.db.engine import open_database
    from photochangerd.db.migrate import migrate

    async def main() -> T:
        async with open_database(
            config.effective_database_url, config.db_connect_timeout_seconds
        ) as db:
            await migrate(db)
            return await fn(db)

    try:
        try:
            config.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataDirUnusable(config.data_dir.absolute(), exc) from None
        with lock_data_dir(config.data_dir) if lock_data_dir_first else nullcontext():
            return trio.run(main)
    except (DataDirInUse, DataDirUnusable) as exc:
        raise StartupFailed(str(exc)) from None


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="photochangerd")
@config_option
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """PhotoChanger daemon. With no command: serve."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve, config_path=config_path)


@main.command()
@config_option
def serve(config_path: Path | None) -> None:
    """Run the daemon until SIGTERM/SIGINT (graceful: in-flight jobs finish)."""
    from photochangerd.app import run

    config = _load(config_path)
    from photochangerd.credentials import with_credentials
    from photochangerd.db.engine import DatabaseUnavailable

    try:
        trio.run(run, config)
    except BaseException as exc:
        # Trio's nurseries wrap what failed in exception groups: one known cause, one line.
        cause = _single_cause(exc)
        if isinstance(cause, DatabaseUnavailable):
            used, _ = with_credentials(config, os.environ)  # maybe a database-url credential
            raise StartupFailed(f"{cause} ({_where(used)})") from None
        if isinstance(cause, ConfigError):  # the secrets key, checked with the credentials
            raise StartupFailed(str(cause)) from None
        if isinstance(cause, StartupError):  # credentials, data dir lock, listening sockets
            raise StartupFailed(str(cause)) from None
        raise


@main.command()
@config_option
def migrate(config_path: Path | None) -> None:
    """Apply pending database migrations and exit."""
    config = _load_with_credentials(config_path)

    async def noop(_db: Any) -> None:
        return None

    # SQLite: the database is in the data dir and the daemon on it migrates at its own start;
    # changing the schema under a running one is a mistake, so lock.  PostgreSQL: a deploy step
    # that may run while instances serve (each with its own data dir), serialized by an
    # advisory lock.  set-admin-password never locks: it is meant for a running daemon.
    sqlite = config.effective_database_url.startswith("sqlite")
    _with_database(config, noop, lock_data_dir_first=sqlite)
    click.echo(f"database schema is up to date ({_where(config)})")


@main.command("check-config")
@config_option
def check_config(config_path: Path | None) -> None:
    """Validate the TOML file, the environment and systemd credentials; print the effective
    configuration (secrets masked) and exit (status 1 naming the culprit when one is wrong)."""
    from photochangerd.credentials import CONFIG_SETTINGS, CredentialError, with_credentials

    config = _load(config_path)
    try:
        config, credentials = with_credentials(config, os.environ)
    except (CredentialError, ConfigError) as exc:
        raise StartupFailed(str(exc)) from None
    from_credentials = {setting for setting, name in CONFIG_SETTINGS.items() if name in credentials}
    for setting in SETTINGS:
        comment = env_name(setting.name)
        if setting.name in from_credentials:
            shown = "(from credentials)"
        else:
            value, derived = _effective(config, setting.name)
            shown = _toml(value)
            if derived:
                comment += f" ({derived})"
        click.echo(f"{setting.name} = {shown}    # {comment}")
    for line in _secret_sources(os.environ, credentials):
        click.echo(line)


def _effective(config: Config, name: str) -> tuple[object, str]:
    """A setting's value as the daemon will use it (paths absolute, derived values filled in,
    secrets masked), and how it was derived when the configuration leaves it open."""
    from photochangerd.db.urls import redacted

    value = getattr(config, name)
    if name in ("jwt_secret", "secret_key") and value:
        return "***", ""
    if name == "database_url":
        return redacted(config.effective_database_url), "" if value else "SQLite in data_dir"
    if name == "data_dir":
        return str(Path(value).resolve()), ""
    if name == "media_dir":
        return str(config.media_root.resolve()), "" if value is not None else "data_dir/media"
    if name == "public_base_url" and not value:
        return config.effective_public_base_url, "derived from bind"
    if name == "provider_concurrency" and not value:
        return config.effective_provider_concurrency, "0: max_in_flight"
    return value, ""


def _toml(value: object) -> str:
    """``value`` as a TOML value (what a config file would say)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if value is None:
        return '""'
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


def _secret_sources(environ: Mapping[str, str], credentials: Credentials) -> list[str]:
    """Where the first-start passwords and provider keys come from (never their values)."""
    from photochangerd.bootstrap import INITIAL_ADMIN_ENV, INITIAL_INGEST_ENV
    from photochangerd.credentials import (
        DIRECTORY_ENV,
        INITIAL_ADMIN_PASSWORD,
        INITIAL_INGEST_PASSWORD,
        PROVIDER_KEYS,
    )
    from photochangerd.providers.keys import ENV_VARIABLES

    lines = [
        f"# credentials: {credentials.directory} (${DIRECTORY_ENV})"
        if credentials.directory is not None
        else f"# credentials: none (${DIRECTORY_ENV} not set)"
    ]
    initial = (
        (INITIAL_ADMIN_PASSWORD, INITIAL_ADMIN_ENV),
        (INITIAL_INGEST_PASSWORD, INITIAL_INGEST_ENV),
    )
    for name, variable in initial:
        if name in credentials:
            source = "(from credentials)"
        elif environ.get(variable):
            source = f"(from environment {variable})"
        else:
            source = "(generated at first start)"
        lines.append(f"# {name} = {source}    first start only")
    for provider, name in PROVIDER_KEYS.items():
        variable = ENV_VARIABLES[provider]
        if name in credentials:
            source = "(from credentials)"
        elif environ.get(variable, "").strip():
            source = f"(from environment {variable})"
        else:
            source = "(not set)"
        lines.append(f"# {name} = {source}    a key stored through the admin API wins")
    return lines


@main.command("set-admin-password")
@click.argument("username", type=click.Choice(["serg", "igor"]))
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@config_option
def set_admin_password(username: str, password_stdin: bool, config_path: Path | None) -> None:
    """Set a built-in admin's password (prompted, or read from stdin — never an argument)."""
    from photochangerd.auth.passwords import hash_password
    from photochangerd.db import repositories

    config = _load_with_credentials(config_path)
    _existing_sqlite(config)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise StartupFailed("the password needs at least 8 characters")
    digest = hash_password(password)

    async def store(db: Any) -> None:
        await db.write(repositories.set_admin_password, username, digest, time.time())

    _with_database(config, store)
    click.echo(f"password of {username} updated ({_where(config)})")


@main.command("backup")
@click.argument("dest", type=click.Path(path_type=Path))
@config_option
def backup_command(dest: Path, config_path: Path | None) -> None:
    """Back up the database, keys and live media into DEST (a new directory).

    Safe while the daemon serves: SQLite is copied with its online backup API.  On PostgreSQL
    the media and keys are copied and the pg_dump command for the database is printed.
    """
    from photochangerd import backup as backups

    config = _load_with_credentials(config_path)
    try:
        report = backups.backup(config, dest)
    except backups.BackupError as exc:
        raise StartupFailed(str(exc)) from None
    database = (
        f"database snapshot (schema {report.schema_version})"
        if report.dialect == "sqlite"
        else "no database (PostgreSQL: pg_dump below)"
    )
    click.echo(
        f"backup written to {dest}: {database}, {report.results} results, "
        f"{report.thumbnails} thumbnails, {report.templates} templates, {report.keys} keys "
        f"({report.total_bytes / 1e6:.1f} MB)"
    )
    for item in report.skipped:
        name = item.get("job_id") or item.get("template_id")
        click.echo(f"skipped {item['kind']} {name}: {item['reason']}")
    for warning in report.warnings:
        click.echo(f"photochangerd: warning: {warning}", err=True)
    click.echo(f"photochangerd: warning: {backups.SECRETS_WARNING}", err=True)
    if report.pg_dump_command is not None:
        click.echo("the PostgreSQL database is not in this backup: dump it with pg_dump, e.g.")
        click.echo(f"  {report.pg_dump_command}")


@main.command("restore")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace the data dir's database, keys and media.")
@config_option
def restore_command(src: Path, force: bool, config_path: Path | None) -> None:
    """Restore the backup SRC into the configured data dir (fresh, and no daemon on it).

    Every checksum is verified before anything is written.  PostgreSQL: pg_restore the dump
    first; this then writes the media and keys and points the database at them.
    """
    from photochangerd import backup as backups

    config = _load_with_credentials(config_path)
    try:
        report = backups.restore(config, src, force=force)
    except backups.BackupError as exc:
        raise StartupFailed(str(exc)) from None
    for warning in report.warnings:
        click.echo(f"photochangerd: warning: {warning}", err=True)
    click.echo(
        f"restored {src} into {config.data_dir}: {report.results} results, "
        f"{report.thumbnails} thumbnails, {report.templates} templates, {report.keys} keys, "
        f"{report.paths_rewritten} file paths pointed at {config.media_root}"
    )


@main.command()
def openapi() -> None:
    """Print the OpenAPI document of the HTTP API (as served at /api/openapi.json)."""
    import json

    from photochangerd.http.app import openapi_document

    click.echo(json.dumps(openapi_document(), indent=2, sort_keys=True))
