"""systemd credentials (``$CREDENTIALS_DIRECTORY``): initial passwords, key material and provider
keys from files systemd hands the service; a first start under systemd that keeps generated
passwords out of the journal; ``check-config`` naming a bad credential.  The daemon runs as a
real process and its whole output is searched for every secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import secrets
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio
import trio_asyncio

from photochangerd.auth.passwords import verify_password
from photochangerd.auth.secrets_box import SecretBox
from photochangerd.bootstrap import INITIAL_PASSWORDS_FILE, bootstrap
from photochangerd.config import ConfigError, load_config
from photochangerd.credentials import (
    CredentialError,
    Credentials,
    read_credentials,
    with_credentials,
)
from photochangerd.db import repositories
from photochangerd.db.engine import open_database
from photochangerd.db.migrate import migrate
from photochangerd.providers.keys import ProviderKeys
from tests.fakes import FakeGemini
from tests.support.daemon_process import DaemonProcess, free_port, run_photochangerd
from tests.support.dslr import dslr_upload
from tests.support.images import make_jpeg

PHOTO = make_jpeg(640, 480)


def _secret() -> str:
    return "s3cr3t-" + secrets.token_urlsafe(24)  # >= 32 bytes: usable as any key


def _write(directory: Path, **files: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name.replace("_", "-")).write_text(text)
    return directory


# -- reading ------------------------------------------------------------------------------------


def test_no_directory_no_credentials(tmp_path: Path) -> None:
    assert read_credentials({}) == Credentials()
    config = load_config(environ={}, overrides={"data_dir": tmp_path})
    assert with_credentials(config, {}) == (config, Credentials())


def test_credentials_are_read_and_trimmed(tmp_path: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    directory = _write(
        tmp_path / "creds",
        initial_admin_password=" two words \n",  # a password keeps its spaces, not the newline
        jwt_secret="jwt-text-of-at-least-32-characters\n",
        secret_key=f"  {key}\n",
        gemini_api_key="AIza-test\r\n",
        unrelated="other services' credentials are none of our business",
    )
    found = read_credentials({"CREDENTIALS_DIRECTORY": str(directory)})
    assert found.directory == directory
    assert dict(found.values) == {
        "initial-admin-password": " two words ",
        "jwt-secret": "jwt-text-of-at-least-32-characters",
        "secret-key": key,
        "gemini-api-key": "AIza-test",
    }
    assert "two words" not in repr(found) and "AIza" not in repr(found)
    config = load_config(
        environ={}, overrides={"data_dir": tmp_path, "jwt_secret": "from-file-" + "x" * 32}
    )
    applied, _ = with_credentials(config, {"CREDENTIALS_DIRECTORY": str(directory)})
    assert (applied.jwt_secret, applied.secret_key, applied.database_url) == (
        "jwt-text-of-at-least-32-characters",
        key,
        "",
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "is empty"),
        (b"\n", "is empty"),
        (b"\xff\xfe", "is not UTF-8 text"),
        (None, "is unreadable: Is a directory"),  # root reads any mode: a directory is unreadable
    ],
)
def test_an_unusable_credential_is_an_error_naming_the_file(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    directory = tmp_path / "creds"
    directory.mkdir()
    path = directory / "openai-api-key"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(CredentialError) as failed:
        read_credentials({"CREDENTIALS_DIRECTORY": str(directory)})
    assert str(failed.value) == f"credential openai-api-key ({path}) {problem}"


def test_the_secrets_key_must_be_32_bytes(tmp_path: Path) -> None:
    directory = _write(tmp_path / "creds", secret_key=base64.b64encode(b"short").decode())
    config = load_config(environ={}, overrides={"data_dir": tmp_path})
    with pytest.raises(CredentialError, match=r"^credential secret-key \(.*/creds/secret-key\) "):
        with_credentials(config, {"CREDENTIALS_DIRECTORY": str(directory)})
    short = load_config(environ={}, overrides={"data_dir": tmp_path, "secret_key": "abcd"})
    with pytest.raises(ConfigError, match=r"^secret_key: must be 32 bytes"):
        with_credentials(short, {})
    missing = {"CREDENTIALS_DIRECTORY": str(tmp_path / "nowhere")}
    with pytest.raises(CredentialError, match=r"nowhere .* is missing"):
        read_credentials(missing)


def test_the_jwt_key_must_have_32_bytes(tmp_path: Path) -> None:
    """A short key used to pass check-config and then stop the first start with a traceback,
    after the first-start passwords were printed (PyJWT refuses it when verifying)."""
    directory = _write(tmp_path / "creds", jwt_secret="short")
    config = load_config(environ={}, overrides={"data_dir": tmp_path})
    with pytest.raises(CredentialError, match=r"^credential jwt-secret \(.*\) must be at least"):
        with_credentials(config, {"CREDENTIALS_DIRECTORY": str(directory)})
    short = load_config(environ={}, overrides={"data_dir": tmp_path, "jwt_secret": "abcd"})
    with pytest.raises(ConfigError, match=r"^jwt_secret: must be at least 32 bytes"):
        with_credentials(short, {})


async def test_provider_keys_stored_then_credentials_then_environment(tmp_path: Path) -> None:
    directory = _write(tmp_path / "creds", gemini_api_key="from-credential")
    credentials = read_credentials({"CREDENTIALS_DIRECTORY": str(directory)})
    environ = {"GEMINI_API_KEY": "from-env", "OPENAI_API_KEY": "openai-env"}
    stored: dict[str, str] = {}

    async def lookup(provider: str) -> str | None:
        return stored.get(provider)

    keys = ProviderKeys(environ, lookup, credentials)
    assert await keys.get("gemini") == "from-credential"
    assert await keys.get("openai") == "openai-env"
    assert await keys.get("turbotext") is None
    assert keys.source("gemini") == "credentials" and keys.source("openai") == "environment"
    assert keys.source("turbotext") is None
    stored["gemini"] = "from-api"
    assert await keys.get("gemini") == "from-api"


# -- first start --------------------------------------------------------------------------------


async def test_first_start_under_systemd_keeps_passwords_out_of_the_journal(
    tmp_path: Path,
) -> None:
    config = load_config(environ={}, overrides={"data_dir": tmp_path})
    out = io.StringIO()
    environ = {"INVOCATION_ID": "0123456789abcdef"}
    async with trio_asyncio.open_loop(), open_database(config.effective_database_url) as db:
        await migrate(db)
        await bootstrap(db, config, 1.0, environ=environ, out=out)
        path = tmp_path.absolute() / INITIAL_PASSWORDS_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        written = path.read_text()
        ingest = written.split("ingest password (DSLR Remote Pro): ")[1].split()[0]
        serg = written.split("admin serg: ")[1].split()[0]
        igor = written.split("admin igor: ")[1].split()[0]
        printed = out.getvalue()
        for password in (ingest, serg, igor):
            assert password not in printed
        assert f"sudo cat {path}" in printed
        assert "photochangerd set-admin-password" in printed
        assert "pcctl settings rotate-ingest-password" in printed
        assert "initial-admin-password" in printed  # how to choose them instead
        settings = await db.read(repositories.get_settings)
        assert verify_password(settings["ingest_password"]["hash"], ingest)
        digest = await db.read(repositories.admin_password_hash, "igor")
        assert digest is not None and verify_password(digest, igor)


async def test_initial_password_credentials_beat_the_environment(tmp_path: Path) -> None:
    config = load_config(environ={}, overrides={"data_dir": tmp_path})
    directory = _write(tmp_path / "creds", initial_admin_password="admin-from-credential")
    credentials = read_credentials({"CREDENTIALS_DIRECTORY": str(directory)})
    environ = {
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "PHOTOCHANGER_INITIAL_ADMIN_PASSWORD": "admin-from-env",
        "PHOTOCHANGER_INITIAL_INGEST_PASSWORD": "ingest-from-env",
    }
    out = io.StringIO()
    async with trio_asyncio.open_loop(), open_database(config.effective_database_url) as db:
        await migrate(db)
        await bootstrap(db, config, 1.0, environ=environ, out=out, credentials=credentials)
        digest = await db.read(repositories.admin_password_hash, "serg")
        assert digest is not None and verify_password(digest, "admin-from-credential")
        settings = await db.read(repositories.get_settings)
        assert verify_password(settings["ingest_password"]["hash"], "ingest-from-env")
    assert out.getvalue() == ""  # nothing generated
    assert not (tmp_path / INITIAL_PASSWORDS_FILE).exists()


# -- the daemon as a process ----------------------------------------------------------------------


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(tmp_path / "data", passwords=False)
    # What systemd sets for every service: output goes to the journal.
    process.env["INVOCATION_ID"] = secrets.token_hex(16)
    yield process
    process.stop()


def _jwt_signed_with(token: str, key: bytes) -> bool:
    header, payload, signature = token.split(".")
    mac = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return hmac.compare_digest(base64.urlsafe_b64encode(mac).rstrip(b"=").decode(), signature)


async def test_the_daemon_takes_its_secrets_from_credentials(
    daemon: DaemonProcess, tmp_path: Path, nursery: trio.Nursery
) -> None:
    jwt_key, secrets_key = os.urandom(32), os.urandom(32)
    values = {
        "initial-admin-password": _secret(),
        "initial-ingest-password": _secret(),
        "jwt-secret": base64.b64encode(jwt_key).decode(),
        "secret-key": base64.b64encode(secrets_key).decode(),
        "gemini-api-key": "AIza" + secrets.token_urlsafe(20),
    }
    directory = tmp_path / "credentials"
    directory.mkdir()
    for name, value in values.items():
        (directory / name).write_text(value + "\n")
    fake = FakeGemini(api_key=values["gemini-api-key"])
    daemon.env.update(
        CREDENTIALS_DIRECTORY=str(directory),
        GEMINI_API_KEY="env-key-loses-to-the-credential",
        PHOTOCHANGER_GEMINI_BASE_URL=await nursery.start(fake.serve),
    )
    await trio.to_thread.run_sync(lambda: daemon.start(scripted=False))  # photochangerd serve
    stored_key = "sk-" + secrets.token_urlsafe(20)
    base = f"http://127.0.0.1:{daemon.port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        login = await client.post(
            "/api/login",
            json={"username": "igor", "password": values["initial-admin-password"]},
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        assert _jwt_signed_with(token, jwt_key)
        auth = {"Authorization": f"Bearer {token}"}
        settings = (await client.get("/api/settings", headers=auth)).json()
        assert settings["provider_keys"]["gemini"]["configured"] is True
        assert settings["provider_keys"]["gemini"]["source"] == "credentials"  # not stored
        assert settings["provider_keys"]["openai"]["configured"] is False
        slot = await client.put(
            "/api/slots/slot-003",
            headers=auth,
            json={"provider": "gemini", "operation": "edit", "settings": {"prompt": "ink"}},
        )
        assert slot.status_code == 200, slot.text
        stored = await client.put(
            "/api/settings", headers=auth, json={"provider_keys": {"openai": stored_key}}
        )
        assert stored.status_code == 200, stored.text
    answer = await dslr_upload(
        "127.0.0.1",
        daemon.port,
        "slot-003",
        photo=PHOTO,
        password=values["initial-ingest-password"],
    )
    assert answer is not None and answer.status == 200, answer
    [request] = fake.requests
    assert request.headers["x-goog-api-key"] == values["gemini-api-key"]
    assert daemon.terminate() == 0

    # The secrets key encrypted the stored key; no key file was generated.
    with sqlite3.connect(daemon.data_dir / "photochanger.sqlite3") as conn:
        [(blob,)] = conn.execute(
            "SELECT ciphertext FROM provider_secret WHERE provider='openai'"
        ).fetchall()
    assert SecretBox(secrets_key).decrypt(bytes(blob), "openai") == stored_key
    keys_dir = daemon.data_dir / "keys"
    assert not (keys_dir / "jwt.key").exists() and not (keys_dir / "secrets.key").exists()
    assert not (daemon.data_dir / INITIAL_PASSWORDS_FILE).exists()  # nothing was generated
    output = daemon.log.read_text()
    assert "daemon.ready" in output
    for secret in [*values.values(), stored_key, token]:
        assert secret not in output


async def test_a_first_start_under_systemd_writes_the_passwords_to_a_file(
    daemon: DaemonProcess,
) -> None:
    await trio.to_thread.run_sync(lambda: daemon.start(scripted=False))  # photochangerd serve
    path = daemon.data_dir.absolute() / INITIAL_PASSWORDS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = path.read_text()
    serg = written.split("admin serg: ")[1].split()[0]
    ingest = written.split("ingest password (DSLR Remote Pro): ")[1].split()[0]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.port}") as client:
        login = await client.post("/api/login", json={"username": "serg", "password": serg})
    assert login.status_code == 200, login.text
    answer = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password=ingest)
    assert answer is not None and answer.status == 200
    assert daemon.terminate() == 0
    output = daemon.log.read_text()
    assert serg not in output and ingest not in output
    assert f"sudo cat {path}" in output
    assert "initial passwords (shown once" not in output


def test_a_bad_credential_stops_the_start_with_one_line(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    directory = _write(tmp_path / "credentials", jwt_secret="\n")
    daemon.env["CREDENTIALS_DIRECTORY"] = str(directory)
    failed = run_photochangerd(env=daemon.env, timeout=30)
    assert failed.returncode == 1
    assert failed.stderr.splitlines() == [
        f"photochangerd: credential jwt-secret ({directory / 'jwt-secret'}) is empty"
    ]
    assert not (daemon.data_dir / "photochanger.sqlite3").exists()  # before anything else


def test_the_database_url_credential_is_the_database(daemon: DaemonProcess, tmp_path: Path) -> None:
    password = _secret()
    nobody = free_port()  # nothing listens there: the start fails naming where it tried
    url = f"postgresql+asyncpg://photochanger:{password}@127.0.0.1:{nobody}/photochanger"
    directory = _write(tmp_path / "credentials", database_url=url + "\n")
    daemon.env["CREDENTIALS_DIRECTORY"] = str(directory)
    failed = run_photochangerd(env=daemon.env, timeout=30)
    assert failed.returncode == 1
    [line] = failed.stderr.splitlines()
    assert line.startswith("photochangerd: database unavailable")
    assert line.endswith(f"(127.0.0.1:{nobody}/photochanger)") and password not in line


# -- maintenance commands -------------------------------------------------------------------------


def _admin_hash(database: Path, username: str) -> str:
    with sqlite3.connect(database) as conn:
        (digest,) = conn.execute(
            "SELECT password_hash FROM admin_user WHERE username = ?", (username,)
        ).fetchone()
    return str(digest)


def test_maintenance_commands_use_the_database_url_credential(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    """migrate, set-admin-password and backup act on the database the service uses when its URL
    is a credential (``systemd-run --pipe -p LoadCredentialEncrypted=…`` hands them the files);
    without the credential, set-admin-password refuses instead of creating a database of its own.
    """
    elsewhere = tmp_path / "elsewhere" / "photochanger.sqlite3"
    elsewhere.parent.mkdir()
    default = daemon.data_dir / "photochanger.sqlite3"
    plain_env = dict(daemon.env)
    directory = _write(tmp_path / "credentials", database_url=f"sqlite:///{elsewhere}\n")
    daemon.env["CREDENTIALS_DIRECTORY"] = str(directory)

    assert run_photochangerd("migrate", env=daemon.env).returncode == 0
    password = _secret()
    changed = run_photochangerd(
        "set-admin-password", "serg", "--password-stdin", env=daemon.env, stdin=password + "\n"
    )
    assert changed.returncode == 0, changed.stderr
    assert verify_password(_admin_hash(elsewhere, "serg"), password)
    backup = run_photochangerd("backup", str(tmp_path / "backup"), env=daemon.env)
    assert backup.returncode == 0, backup.stderr
    copied = tmp_path / "backup" / "database" / "photochanger.sqlite3"
    assert verify_password(_admin_hash(copied, "serg"), password)
    assert not default.exists()

    refused = run_photochangerd(
        "set-admin-password", "serg", "--password-stdin", env=plain_env, stdin=password + "\n"
    )
    assert refused.returncode == 1
    [line] = refused.stderr.splitlines()
    assert line.startswith(f"photochangerd: no database at {default}: the daemon creates it")
    assert not default.exists()


# -- check-config ---------------------------------------------------------------------------------


def test_check_config_shows_where_secrets_come_from_never_them(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    values = {
        "jwt_secret": _secret(),
        "secret_key": base64.b64encode(os.urandom(32)).decode(),
        "database_url": f"sqlite:///{tmp_path / 'elsewhere.sqlite3'}",
        "initial_admin_password": _secret(),
        "gemini_api_key": _secret(),
    }
    directory = _write(tmp_path / "credentials", **values)
    daemon.env.update(CREDENTIALS_DIRECTORY=str(directory), OPENAI_API_KEY=_secret())
    done = run_photochangerd("check-config", env=daemon.env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for setting in ("jwt_secret", "secret_key", "database_url"):
        env = "PHOTOCHANGER_" + setting.upper()
        assert f"{setting} = (from credentials)    # {env}" in lines
    assert f"# credentials: {directory} ($CREDENTIALS_DIRECTORY)" in lines
    sources = {line.split(" = ")[0]: line.split(" = ")[1] for line in lines if " = (" in line}
    assert sources["# initial-admin-password"].startswith("(from credentials)")
    assert sources["# initial-ingest-password"].startswith("(generated at first start)")
    assert sources["# gemini-api-key"].startswith("(from credentials)")
    assert sources["# openai-api-key"].startswith("(from environment OPENAI_API_KEY)")
    assert sources["# turbotext-api-key"].startswith("(not set)")
    for secret in [*values.values(), daemon.env["OPENAI_API_KEY"]]:
        assert secret not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"gemini-api-key": ""}, "credential gemini-api-key ({dir}/gemini-api-key) is empty"),
        (
            {"secret-key": "not-32-bytes"},
            "credential secret-key ({dir}/secret-key) must be 32 bytes, base64-encoded"
            " (openssl rand -base64 32)",
        ),
    ],
)
def test_check_config_names_the_bad_credential(
    daemon: DaemonProcess, tmp_path: Path, files: dict[str, str], message: str
) -> None:
    directory = tmp_path / "credentials"
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    daemon.env["CREDENTIALS_DIRECTORY"] = str(directory)
    done = run_photochangerd("check-config", env=daemon.env)
    assert done.returncode == 1
    assert done.stderr.strip() == "photochangerd: " + message.format(dir=directory)
    assert done.stdout == ""
