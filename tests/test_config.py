"""Configuration: defaults < TOML < environment, one naming rule, README table in sync,
``--config`` before or after the command, first-start passwords and keys."""

from __future__ import annotations

import io
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_asyncio

from photochangerd.auth.keys import load_or_create_key
from photochangerd.auth.passwords import verify_password
from photochangerd.bootstrap import bootstrap
from photochangerd.config import (
    SETTINGS,
    ConfigError,
    env_name,
    load_config,
    settings_table_markdown,
)
from photochangerd.db import repositories
from photochangerd.db.engine import open_database
from photochangerd.db.migrate import migrate
from tests.support.daemon_process import free_port, photochangerd_env, run_photochangerd

README = Path(__file__).resolve().parent.parent / "README.md"


def test_embedded_defaults() -> None:
    config = load_config(environ={})
    assert config.bind == ("127.0.0.1:8080",)
    assert config.data_dir == Path("photochanger-data")
    assert config.effective_database_url.startswith("sqlite:///")
    assert config.effective_database_url.endswith("photochanger-data/photochanger.sqlite3")
    assert config.media_root == Path("photochanger-data/media")
    assert config.effective_public_base_url == "http://127.0.0.1:8080"
    assert config.max_upload_mb == 20 and config.max_in_flight == 30
    assert config.shutdown_grace_seconds > 60  # above the longest deadline (docs/stack-traps.md)


def test_toml_then_environment_precedence(tmp_path: Path) -> None:
    path = tmp_path / "photochangerd.toml"
    path.write_text('bind = ["0.0.0.0:9000"]\nworkers = 4\nlog_format = "json"\n')
    config = load_config(path, environ={"PHOTOCHANGER_WORKERS": "6"})
    assert config.bind == ("0.0.0.0:9000",)
    assert config.workers == 6  # env beats the file
    assert config.log_format == "json"
    config = load_config(
        environ={"PHOTOCHANGER_CONFIG": str(path), "PHOTOCHANGER_BIND": "127.0.0.1:1,127.0.0.1:2"}
    )
    assert config.bind == ("127.0.0.1:1", "127.0.0.1:2") and config.workers == 4


def test_systemd_state_directory(tmp_path: Path) -> None:
    config = load_config(environ={"STATE_DIRECTORY": "/var/lib/photochanger"})
    assert config.data_dir == Path("/var/lib/photochanger")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("workres = 4\n", "unknown settings workres"),
        ("workers = 'many'\n", "workers"),
        ("bind = ['nowhere']\n", "bind"),
        ("default_sync_response_seconds = 90\n", "10-60"),
        ("workers = 0\n", "workers: must be positive"),
        ("log_format = 'xml'\n", "log_format"),
        ("not toml at all [", "config file"),
    ],
)
def test_bad_configuration_names_the_setting(tmp_path: Path, document: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(document)
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


def test_one_naming_rule() -> None:
    for setting in SETTINGS:
        assert env_name(setting.name) == "PHOTOCHANGER_" + setting.name.upper()


def test_readme_configuration_table_is_current() -> None:
    assert settings_table_markdown() in README.read_text(encoding="utf-8"), (
        "README's configuration table drifted from photochangerd/config.py; "
        "paste photochangerd.config.settings_table_markdown() into it"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("--config", "{file}", "check-config"),
        ("check-config", "--config", "{file}"),
        ("--config", "{file}", "serve"),
        ("serve", "--config", "{file}"),
        ("--config", "{file}"),
        ("--config", "{file}", "migrate"),
    ],
)
def test_config_option_reads_the_file_before_or_after_the_command(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    typo = tmp_path / "typo.toml"
    typo.write_text("workres = 4\n")
    done = run_photochangerd(
        *(arg.format(file=typo) for arg in args),
        env=photochangerd_env(tmp_path / "data", free_port()),
        timeout=20,  # a serve that ignored the file would run on
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"photochangerd: config file {typo}: unknown settings workres"
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("before", [True, False])
def test_check_config_shows_the_values_of_the_file(tmp_path: Path, before: bool) -> None:
    path = tmp_path / "booth.toml"
    path.write_text('public_base_url = "http://booth-server.lan:8080"\nworkers = 7\n')
    option = ("--config", str(path))
    args = (*option, "check-config") if before else ("check-config", *option)
    done = run_photochangerd(*args, env=photochangerd_env(tmp_path / "data", free_port()))
    assert done.returncode == 0, done.stderr
    assert 'public_base_url = "http://booth-server.lan:8080"    # PHOTOCHANGER_PUBLIC_BASE_URL' in (
        done.stdout
    )
    # What the daemon will use, in TOML: absolute paths, the values the config leaves open.
    data = str((tmp_path / "data").resolve())
    assert f'data_dir = "{data}"    # PHOTOCHANGER_DATA_DIR' in done.stdout
    assert f'media_dir = "{data}/media"    # PHOTOCHANGER_MEDIA_DIR (data_dir/media)' in done.stdout
    assert (
        "provider_concurrency = 30    # PHOTOCHANGER_PROVIDER_CONCURRENCY (0: max_in_flight)"
        in (done.stdout)
    )
    assert tomllib.loads("\n".join(line.split("    #")[0] for line in done.stdout.splitlines()))
    assert "workers = 7    # PHOTOCHANGER_WORKERS" in done.stdout


def test_config_given_before_and_after_the_command_must_agree(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("workers = 3\n")
    (tmp_path / "b.toml").write_text("workers = 4\n")
    env = photochangerd_env(tmp_path / "data", free_port())
    a, b = str(tmp_path / "a.toml"), str(tmp_path / "b.toml")
    differ = run_photochangerd("--config", a, "check-config", "--config", b, env=env)
    assert differ.returncode == 2
    assert f"--config given twice, as {a} and as {b}" in differ.stderr
    (tmp_path / "sub").mkdir()
    also_a = str(tmp_path / "sub" / ".." / "a.toml")  # another spelling of the same file
    same = run_photochangerd("--config", a, "check-config", "--config", also_a, env=env)
    assert same.returncode == 0 and "workers = 3 " in same.stdout


def test_generated_keys_are_private_and_stable(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first = load_or_create_key(keys, "jwt.key", "")
    assert len(first) == 32
    assert stat.S_IMODE((keys / "jwt.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert load_or_create_key(keys, "jwt.key", "") == first
    assert load_or_create_key(keys, "jwt.key", "configured-secret") == b"configured-secret"


async def test_first_start_prints_passwords_once(tmp_path: Path) -> None:
    config = load_config(environ={}, overrides={"data_dir": tmp_path})
    out = io.StringIO()
    async with trio_asyncio.open_loop(), open_database(config.effective_database_url) as db:
        await migrate(db)
        await bootstrap(db, config, 1.0, environ={}, out=out)
        printed = out.getvalue()
        assert "ingest password" in printed and "admin serg" in printed
        assert "admin igor" in printed
        ingest = printed.split("ingest password (DSLR Remote Pro): ")[1].split()[0]
        serg = printed.split("admin serg: ")[1].split()[0]
        settings = await db.read(repositories.get_settings)
        stored = settings["ingest_password"]["hash"]
        assert ingest not in str(settings) and stored.startswith("$argon2id$")
        assert await trio.to_thread.run_sync(verify_password, stored, ingest)
        serg_hash = await db.read(repositories.admin_password_hash, "serg")
        assert serg_hash is not None
        assert await trio.to_thread.run_sync(verify_password, serg_hash, serg)
        assert settings["sync_response_seconds"] == 48.0

        again = io.StringIO()
        await bootstrap(db, config, 2.0, environ={}, out=again)
        assert again.getvalue() == ""


async def test_initial_passwords_from_environment(tmp_path: Path) -> None:
    config = load_config(environ={}, overrides={"data_dir": tmp_path})
    out = io.StringIO()
    env = {
        "PHOTOCHANGER_INITIAL_INGEST_PASSWORD": "booth-pass-1",
        "PHOTOCHANGER_INITIAL_ADMIN_PASSWORD": "admin-pass-1",
    }
    async with trio_asyncio.open_loop(), open_database(config.effective_database_url) as db:
        await migrate(db)
        await bootstrap(db, config, 1.0, environ=env, out=out)
        assert out.getvalue() == ""  # nothing generated, nothing to show
        settings = await db.read(repositories.get_settings)
        assert verify_password(settings["ingest_password"]["hash"], "booth-pass-1")
        for admin in ("serg", "igor"):
            digest = await db.read(repositories.admin_password_hash, admin)
            assert digest is not None and verify_password(digest, "admin-pass-1")


def test_hypercorn_settings_follow_the_config() -> None:
    """A restart must not cut in-flight ingests; HTTP/1.1 only over TLS (docs/stack-traps.md,
    "graceful_timeout" and "HTTP/2 and h2c")."""
    from photochangerd.app import _hypercorn_config

    config = load_config(environ={}, overrides={"keep_alive_timeout_seconds": 3.0})
    hypercorn = _hypercorn_config(config)
    assert hypercorn.graceful_timeout >= 60 + 5
    assert hypercorn.keep_alive_timeout == 3.0
    assert hypercorn.alpn_protocols == ["http/1.1"]
    assert hypercorn.include_server_header is False


def test_check_config_and_the_pg_dump_line_never_show_a_database_password(
    tmp_path: Path,
) -> None:
    """asyncpg and libpq take a password in the query as well as in the user part; only the
    user part's was hidden."""
    from photochangerd.backup import libpq_url
    from photochangerd.db.urls import redacted

    url = "postgresql://booth:in-user@db.lan:5433/photos?password=in-query&sslmode=require"
    assert redacted(url) == (
        "postgresql://booth:***@db.lan:5433/photos?password=***&sslmode=require"
    )
    assert libpq_url(url) == "postgresql://booth@db.lan:5433/photos?sslmode=require"
    assert redacted("postgres ql://x:secret@") == "(not a database URL)"
    env = photochangerd_env(tmp_path / "data", free_port())
    env["PHOTOCHANGER_DATABASE_URL"] = url
    done = run_photochangerd("check-config", env=env)
    assert done.returncode == 0, done.stderr
    assert "in-user" not in done.stdout and "in-query" not in done.stdout
    assert 'database_url = "postgresql://booth:***@db.lan:5433/photos?password=***' in done.stdout


async def test_a_first_start_stopped_before_storing_shows_new_passwords_next_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first start stopped between storing the ingest password's hash and printing lost that
    password for good: the next start showed only the admins'.  Now they are shown before any
    is stored, and stored together."""
    config = load_config(environ={}, overrides={"data_dir": tmp_path})
    async with trio_asyncio.open_loop(), open_database(config.effective_database_url) as db:
        await migrate(db)
        real_write = db.write

        async def killed(fn: Any, *args: Any) -> Any:
            if fn is repositories.insert_initial_passwords:
                raise KeyboardInterrupt  # Ctrl-C, just as they would be stored
            return await real_write(fn, *args)

        monkeypatch.setattr(db, "write", killed)
        first = io.StringIO()
        with pytest.raises(KeyboardInterrupt):
            await bootstrap(db, config, 1.0, environ={}, out=first)
        assert "ingest password (DSLR Remote Pro): " in first.getvalue()  # shown, not stored
        assert "ingest_password" not in await db.read(repositories.get_settings)
        monkeypatch.undo()

        again = io.StringIO()
        await bootstrap(db, config, 2.0, environ={}, out=again)
        printed = again.getvalue()
        ingest = printed.split("ingest password (DSLR Remote Pro): ")[1].split()[0]
        stored = (await db.read(repositories.get_settings))["ingest_password"]["hash"]
        assert await trio.to_thread.run_sync(verify_password, stored, ingest)
        for admin in ("serg", "igor"):
            password = printed.split(f"admin {admin}: ")[1].split()[0]
            digest = await db.read(repositories.admin_password_hash, admin)
            assert digest is not None
            assert await trio.to_thread.run_sync(verify_password, digest, password)
