"""pcctl against a real daemon (a subprocess on a real socket), driven with click's CliRunner.

One daemon per module keeps the suite fast; every test that changes a slot uses its own slot.
The helpers here (:class:`PcctlDaemon`, :func:`running_daemon`, :class:`Pcctl`) are shared by
the other ``test_pcctl_*`` modules.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from click.testing import CliRunner, Result
from PIL import Image
from pydantic import BaseModel

from pcctl import config as pcctl_config
from pcctl.advice import local_only_host
from pcctl.cli import cli
from pcctl.output import Column, Output, human_size
from shared.api_models import JobList, SettingsOut, SlotDetail, SlotList, Stats, TemplateMedia
from tests.conftest import ADMIN_PASSWORD, INGEST_PASSWORD
from tests.support.images import make_frame_png, make_jpeg

REPO = Path(__file__).resolve().parent.parent
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")  # plain and JSON times
LOCAL_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")  # table times
PROVIDER_KEY_VARIABLES = ("GEMINI_API_KEY", "TURBOTEXT_API_KEY", "OPENAI_API_KEY", "SDWEBUI_AUTH")
SLOT_FIELDS = list(SlotList.model_json_schema()["$defs"]["SlotSummary"]["properties"])
M = TypeVar("M", bound=BaseModel)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PcctlDaemon:
    """``python -m photochangerd`` in a subprocess with a fresh data dir."""

    root: Path
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None
    environ: dict[str, str] = field(default_factory=dict)  # on top of the defaults below

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def start(self) -> None:
        env = {
            **os.environ,
            "PHOTOCHANGER_DATA_DIR": str(self.data_dir),
            "PHOTOCHANGER_BIND": f"127.0.0.1:{self.port}",
            "PHOTOCHANGER_INITIAL_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "PHOTOCHANGER_INITIAL_INGEST_PASSWORD": INGEST_PASSWORD,
            "PHOTOCHANGER_WORKERS": "4",
            "PHOTOCHANGER_LOG_LEVEL": "warning",
            "PYTHONPATH": str(REPO),
        }
        env.pop("PHOTOCHANGER_CONFIG", None)
        for name in PROVIDER_KEY_VARIABLES:  # whether a key is configured is up to each test
            env.pop(name, None)
        env.update(self.environ)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.root / "daemon.log").open("ab")
        with log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "photochangerd"],
                env=env,
                stdout=log,
                stderr=log,
                cwd=self.root,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.root / "daemon.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise AssertionError("daemon not ready:\n" + (self.root / "daemon.log").read_text())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def token(self, user: str = "serg") -> str:
        response = httpx.post(
            f"{self.url}/api/login", json={"username": user, "password": ADMIN_PASSWORD}
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    @contextlib.contextmanager
    def api(self) -> Iterator[httpx.Client]:
        """A logged-in httpx client, to check what pcctl did on the server's side."""
        headers = {"Authorization": f"Bearer {self.token()}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
            yield client

    def expired_token(self) -> str:
        """A correctly signed token whose ``exp`` has passed."""
        from photochangerd.auth.tokens import TokenService

        key = base64.b64decode((self.data_dir / "keys" / "jwt.key").read_bytes().strip())
        return TokenService(key, 600).issue("serg", now=time.time() - 3600)


@contextlib.contextmanager
def running_daemon(root: Path, environ: dict[str, str] | None = None) -> Iterator[PcctlDaemon]:
    daemon = PcctlDaemon(root, environ=environ or {})
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()


@dataclass
class Pcctl:
    """Runs pcctl in-process (CliRunner) with its own ``XDG_CONFIG_HOME``."""

    daemon: PcctlDaemon
    home: Path

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str | None]:
        return {
            "XDG_CONFIG_HOME": str(self.home),
            "PCCTL_SERVER": None,
            "PCCTL_TOKEN": None,
            "NO_COLOR": None,
            **(extra or {}),
        }

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> Result:
        result = CliRunner().invoke(
            cli, list(args), input=input, env=self.env(env), prog_name="pcctl"
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    def ok(self, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        result = self(*args, input=input, env=env)
        assert result.exit_code == 0, (result.stdout, result.stderr)
        return result

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.ok(*args, "--output", "json", **kwargs).stdout)

    def login(self) -> None:
        self.ok(
            "login",
            "--server",
            self.daemon.url,
            "--user",
            "serg",
            "--password-stdin",
            input=ADMIN_PASSWORD + "\n",
        )

    @property
    def config_file(self) -> Path:
        return self.home / "pcctl" / "config.toml"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcctlDaemon]:
    with running_daemon(tmp_path_factory.mktemp("pcctl-daemon")) as running:
        yield running


@pytest.fixture(scope="module")
def pcctl(daemon: PcctlDaemon, tmp_path_factory: pytest.TempPathFactory) -> Pcctl:
    """pcctl logged in as serg (shared by the module's tests)."""
    runner = Pcctl(daemon, tmp_path_factory.mktemp("pcctl-home"))
    runner.login()
    return runner


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(make_jpeg(640, 480))
    return path


def _lines(result: Result) -> list[list[str]]:
    return [line.split("\t") for line in result.stdout.splitlines()]


def _fields(result: Result) -> dict[str, str]:
    """``key<TAB>value`` lines as a dict."""
    return dict(line.split("\t", 1) for line in result.stdout.splitlines())


def _api_model(model: type[M], data: Any) -> M:
    """pcctl's JSON as the API's model, once its ISO-8601 times are epoch seconds again."""
    return model.model_validate(_epoch_times(data))


def _epoch_times(data: Any) -> Any:
    if isinstance(data, list):
        return [_epoch_times(item) for item in data]
    if isinstance(data, dict):
        return {key: _epoch_times(value) for key, value in data.items()}
    if isinstance(data, str) and ISO.match(data):
        return datetime.fromisoformat(data).timestamp()
    return data


# -- login, config, tokens ------------------------------------------------------------------
def test_login_prompts_and_stores_a_private_config(daemon: PcctlDaemon, tmp_path: Path) -> None:
    runner = Pcctl(daemon, tmp_path / "cfg")
    result = runner.ok(
        "login", "--server", f"127.0.0.1:{daemon.port}", input=f"igor\n{ADMIN_PASSWORD}\n"
    )
    assert "logged in to" in result.stderr and "as igor" in result.stderr
    assert ADMIN_PASSWORD not in result.output
    assert stat.S_IMODE(runner.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(runner.config_file.parent.stat().st_mode) == 0o700
    stored = pcctl_config.load(runner.config_file)
    assert stored.server == daemon.url and stored.user == "igor" and stored.token
    assert stored.expires_at is not None and stored.expires_at > time.time()
    # the stored login works for the next command; logout signs it out on the server (a copy
    # of the token is refused from now on) and forgets it
    assert len(_lines(runner.ok("slot", "list"))) == 15
    token = stored.token
    assert "logged out" in runner.ok("logout").stderr
    assert pcctl_config.load(runner.config_file).token is None
    copy = httpx.get(f"{daemon.url}/api/slots", headers={"Authorization": f"Bearer {token}"})
    assert copy.status_code == 401 and "signed out" in copy.json()["details"]
    result = runner("slot", "list")
    assert result.exit_code == 3 and "not logged in" in result.stderr


def test_login_password_stdin_and_wrong_password(daemon: PcctlDaemon, tmp_path: Path) -> None:
    runner = Pcctl(daemon, tmp_path / "cfg")
    bad = runner(
        "login", "--server", daemon.url, "--user", "serg", "--password-stdin", input="nope\n"
    )
    assert bad.exit_code == 3
    assert "wrong username or password" in bad.stderr
    assert not runner.config_file.exists()
    runner.login()
    assert pcctl_config.load(runner.config_file).user == "serg"
    # the user is remembered from the last login; without one, --password-stdin needs --user
    runner.ok("login", "--password-stdin", input=ADMIN_PASSWORD + "\n")
    usage = Pcctl(daemon, tmp_path / "other")(
        "login", "--server", daemon.url, "--password-stdin", input="x\n"
    )
    assert usage.exit_code == 2 and "--user is required" in usage.stderr


def test_expired_and_garbage_tokens_exit_3_with_a_clear_message(
    daemon: PcctlDaemon, tmp_path: Path
) -> None:
    runner = Pcctl(daemon, tmp_path / "cfg")
    for token in (daemon.expired_token(), "garbage.token.value"):
        pcctl_config.save(
            runner.config_file, pcctl_config.StoredLogin(server=daemon.url, token=token)
        )
        result = runner("slot", "list")
        assert result.exit_code == 3, result.output
        assert "your session expired, run `pcctl login`" in result.stderr
        assert result.stdout == ""


def test_env_overrides_and_token_stays_with_its_server(
    daemon: PcctlDaemon, pcctl: Pcctl, tmp_path: Path
) -> None:
    fresh = Pcctl(daemon, tmp_path / "cfg")  # no config file at all
    result = fresh.ok(
        "slot", "list", env={"PCCTL_SERVER": daemon.url, "PCCTL_TOKEN": daemon.token()}
    )
    assert len(result.stdout.splitlines()) == 15
    # the stored token is not sent to another server (the same daemon under another name)
    other_name = f"http://localhost:{daemon.port}"
    other = pcctl("--server", other_name, "slot", "list")
    assert other.exit_code == 3 and f"not logged in to {other_name}" in other.stderr


def test_unreachable_server(pcctl: Pcctl) -> None:
    port = _free_port()
    result = pcctl(
        "slot", "list", env={"PCCTL_SERVER": f"http://127.0.0.1:{port}", "PCCTL_TOKEN": "x"}
    )
    assert result.exit_code == 1
    assert f"cannot reach http://127.0.0.1:{port}" in result.stderr
    assert "is photochangerd running?" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["slot", "list"],
        ["slot", "show", "slot-001"],
        ["slot", "edit", "slot-001", "--name", "x"],
        ["settings", "show"],
        ["jobs"],
        ["stats"],
        ["template", "list"],
        ["cleanup"],
        ["result", "get", "A" * 22],  # a public download: no token needed
    ],
)
def test_unreachable_server_comes_before_not_logged_in(
    pcctl: Pcctl, tmp_path: Path, command: list[str]
) -> None:
    """No token and no server: "cannot reach" (exit 1), not "not logged in" (exit 3)."""
    server = f"http://127.0.0.1:{_free_port()}"
    fresh = Pcctl(pcctl.daemon, tmp_path / "cfg")  # never logged in
    for how in ({"PCCTL_SERVER": server}, {}):
        args = command if how else ["--server", server, *command]
        result = fresh(*args, env=how)
        assert result.exit_code == 1, (args, result.stderr)
        assert f"cannot reach {server}" in result.stderr
        assert "not logged in" not in result.stderr


def test_help_lists_exit_codes_and_completion_works(pcctl: Pcctl) -> None:
    text = pcctl.ok("--help").stdout
    for line in ("0  ok", "1  error", "2  usage", "3  authentication", "4  not found"):
        assert line in text
    assert "an unreachable server is exit 1 even when not logged in" in text
    assert "_PCCTL_COMPLETE=bash_source pcctl" in text
    script = pcctl.ok(env={"_PCCTL_COMPLETE": "bash_source"}).stdout
    assert "_pcctl_completion" in script
    words = pcctl.ok(
        env={"_PCCTL_COMPLETE": "bash_complete", "COMP_WORDS": "pcctl slot sh", "COMP_CWORD": "2"}
    ).stdout
    assert "show" in words
    assert pcctl("slot", "frobnicate").exit_code == 2


# -- slots ----------------------------------------------------------------------------------
def test_slot_list_plain_json_and_table(pcctl: Pcctl, photo: Path) -> None:
    pcctl.ok("slot", "test", "slot-002", str(photo))
    rows = _lines(pcctl.ok("slot", "list"))
    assert [r[0] for r in rows] == [f"slot-{n:03d}" for n in range(1, 16)]
    assert all(len(r) == 7 for r in rows)
    second = rows[1]
    assert second[2] == "local/passthrough" and second[3] == "true" and second[4] == "ok"
    assert ISO.match(second[5]) and second[6].endswith("/ingest/slot-002")
    assert rows[0][4] == "" and rows[0][5] == ""

    data = pcctl.json("slot", "list")
    assert list(data) == ["slots"]
    assert list(data["slots"][0]) == SLOT_FIELDS
    assert ISO.match(data["slots"][1]["last_job"]["created_at"])
    _api_model(SlotList, data)
    assert pcctl.json("--output", "json", "slot", "list") == data

    table = pcctl.ok("slot", "list", "--output", "table").stdout
    assert "Slots" in table and "slot-015" in table and "\t" not in table
    assert "\x1b[" not in table  # not a terminal: no colour codes even in table mode


def test_slot_list_warns_that_loopback_ingest_urls_are_unreachable_for_booths(
    pcctl: Pcctl,
) -> None:
    """The module's daemon binds 127.0.0.1 without public_base_url: its ingest URLs are
    loopback ones, useless to a booth on another PC.  One line under the table, not in JSON."""
    expected = (
        "warning: ingest URLs use 127.0.0.1: booths on other machines cannot reach them; "
        'set bind = "0.0.0.0:8080" and public_base_url in the daemon config'
    )
    for mode in ("plain", "table"):
        result = pcctl.ok("slot", "list", "--output", mode)
        assert [line for line in result.stderr.splitlines() if "ingest URLs" in line] == [
            expected
        ], mode
        assert "warning" not in result.stdout
    as_json = pcctl.ok("slot", "list", "--output", "json")
    assert as_json.stderr == ""
    json.loads(as_json.stdout)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://127.0.0.1:8080/ingest/slot-001", "127.0.0.1"),
        ("http://127.1.2.3:8080/ingest/slot-001", "127.1.2.3"),
        ("http://[::1]:8080/ingest/slot-001", "::1"),
        ("http://localhost:8080/ingest/slot-001", "localhost"),
        ("http://0.0.0.0:8080/ingest/slot-001", "0.0.0.0"),
        ("http://192.168.1.20:8080/ingest/slot-001", None),
        ("https://booth.example.com/ingest/slot-001", None),
        ("http://10.0.0.5/ingest/slot-001", None),
    ],
)
def test_which_ingest_hosts_are_local_only(url: str, host: str | None) -> None:
    assert local_only_host(url) == host


def test_human_sizes() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 1_400_000, 1_449_999, 999_960, 3 * 10**9)] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "1.4 MB",
        "1.4 MB",
        "1.0 MB",
        "3.0 GB",
    ]
    assert human_size(None) == ""


def test_slot_show_and_not_found(pcctl: Pcctl) -> None:
    lines = _fields(pcctl.ok("slot", "show", "slot-001"))
    assert lines["id"] == "slot-001" and lines["provider"] == "local"
    assert lines["is_active"] == "true" and lines["size_limit_mb"].isdigit()
    detail = _api_model(SlotDetail, pcctl.json("slot", "show", "slot-001"))
    assert detail.id == "slot-001"
    table = pcctl.ok("slot", "show", "slot-001", "--output", "table").stdout
    assert "slot-001" in table and "no results yet" in table
    for bad in ("slot-099", "nope"):
        result = pcctl("slot", "show", bad)
        assert result.exit_code == 4, result.output
        assert bad in result.stderr and "no such slot" in result.stderr


def test_slot_show_has_settings_templates_and_a_compact_results_table(
    pcctl: Pcctl, photo: Path, tmp_path: Path
) -> None:
    empty = pcctl.ok("slot", "show", "slot-005", "--output", "table").stdout
    assert re.search(r"^Settings +none", empty, re.M), empty
    assert re.search(r"^Templates +none", empty, re.M), empty

    style = tmp_path / "style.png"
    style.write_bytes(make_frame_png(120, 80))
    edited = pcctl.json(
        "slot", "edit", "slot-004", "--operation", "sepia", "--set", "output_format=png",
        "--set", "max_input_pixels=3000000", "--template", str(style), "--role", "style",
    )  # fmt: skip
    template_id = edited["template_media"][0]["template_id"]
    job_ids = [pcctl.json("slot", "test", "slot-004", str(photo))["job_id"] for _ in range(2)]
    sizes = {j: pcctl.json("job", "show", j)["result"]["size_bytes"] for j in job_ids}

    table = pcctl.ok("slot", "show", "slot-004", "--output", "table", env={"COLUMNS": "120"})
    lines = table.stdout.splitlines()
    assert max(len(line) for line in lines) <= 120
    settings = table.stdout.split("\nSettings", 1)[1].split("\nTemplates", 1)[0]
    assert re.search(r"output_format +png", settings), table.stdout
    assert re.search(r"max_input_pixels +3000000", settings), table.stdout
    assert re.search(rf"style +→ {template_id} +image/png, 120x80", table.stdout), table.stdout
    for job_id in job_ids:
        [row] = [line for line in lines if job_id in line]  # one line each: nothing wraps
        assert LOCAL_TIME.search(row) and " ok " in row, row
        assert row.rstrip().endswith(human_size(sizes[job_id])), row
        assert str(sizes[job_id]) not in table.stdout  # no raw byte counts on a terminal
    assert f"public links: {pcctl.daemon.url}/public/results/<JOB>" in table.stdout

    plain = pcctl.ok("slot", "show", "slot-004")
    fields = _fields(plain)
    assert fields["settings.output_format"] == "png"
    assert fields["settings.max_input_pixels"] == "3000000"
    assert fields["template_media.style"] == template_id
    recent = [line.split("\t") for line in plain.stdout.splitlines() if "recent_result" in line]
    assert {r[1] for r in recent} == set(job_ids)
    for r in recent:
        assert ISO.match(r[2]) and r[3] == "ok" and r[5] == str(sizes[r[1]])

    data = pcctl.json("slot", "show", "slot-004")
    assert ISO.match(data["updated_at"])
    assert all(ISO.match(r["finalized_at"]) for r in data["recent_results"])
    assert {r["size_bytes"] for r in data["recent_results"]} == set(sizes.values())


def test_slot_edit_with_flags(pcctl: Pcctl, daemon: PcctlDaemon) -> None:
    before = pcctl.json("slot", "show", "slot-006")
    data = pcctl.json(
        "slot", "edit", "slot-006",
        "--provider", "turbotext", "--operation", "image2image",
        "--prompt", "oil painting", "--set", "strength=60", "--set", "seed=7",
        "--set", "negative_prompt=blurry faces", "--name", "Oil booth", "--inactive",
    )  # fmt: skip
    assert data["version"] == before["version"] + 1
    assert data["display_name"] == "Oil booth" and data["is_active"] is False
    assert data["settings"] == {
        "prompt": "oil painting",
        "strength": 60,
        "seed": 7,
        "negative_prompt": "blurry faces",
    }
    with daemon.api() as api:
        server = SlotDetail.model_validate(api.get("/api/slots/slot-006").json())
    assert server.provider == "turbotext" and server.updated_by == "serg"

    # --unset, --active, human message
    result = pcctl.ok("slot", "edit", "slot-006", "--unset", "seed", "--active")
    assert "slot-006 updated: turbotext/image2image, active" in result.stderr
    assert "seed" not in pcctl.json("slot", "show", "slot-006")["settings"]

    # a provider switch keeps what the new operation understands (the prompt)
    data = pcctl.json("slot", "edit", "slot-006", "--provider", "gemini")
    assert data["operation"] == "edit" and data["settings"] == {"prompt": "oil painting"}


MISSING_GEMINI_KEY = (
    'warning: gemini API key not configured: the booth will get 502 "gemini API key not '
    'configured" on every photo to slot-003'
)


@pytest.mark.slow
def test_cloud_provider_without_api_key_warns_in_edit_show_and_list(tmp_path: Path) -> None:
    """Its own daemon: a Turbotext key in the environment (counts as configured), no Gemini
    key, and a LAN public_base_url (no loopback warning)."""
    environ = {
        "TURBOTEXT_API_KEY": "tt-key-from-the-environment",
        "PHOTOCHANGER_PUBLIC_BASE_URL": "http://192.168.1.20:8080",
    }
    with running_daemon(tmp_path / "daemon", environ) as daemon:
        runner = Pcctl(daemon, tmp_path / "cfg")
        runner.login()
        with daemon.api() as api:
            keys = api.get("/api/settings").json()["provider_keys"]
        assert keys["gemini"]["configured"] is False
        assert keys["turbotext"]["configured"] is True
        assert keys["turbotext"]["source"] == "environment"
        wide = {"COLUMNS": "200"}

        edited = runner.ok(
            "slot", "edit", "slot-003", "--provider", "gemini", "--prompt", "watercolor",
            "--output", "json",
        )  # fmt: skip
        assert json.loads(edited.stdout)["provider"] == "gemini"  # saved; stdout stays JSON
        assert MISSING_GEMINI_KEY in edited.stderr
        assert "hint: set it with `pcctl settings provider-key gemini`" in edited.stderr
        turbotext = runner.ok(
            "slot", "edit", "slot-004", "--provider", "turbotext", "--operation", "image2image",
            "--prompt", "oil",
        )  # fmt: skip
        assert "API key" not in turbotext.stderr  # the environment's key counts

        show = runner.ok("slot", "show", "slot-003")
        assert MISSING_GEMINI_KEY in show.stderr and _fields(show)["provider"] == "gemini"
        table = runner.ok("slot", "show", "slot-003", "--output", "table", env=wide)
        assert re.search(r"provider +gemini \(no API key\)", table.stdout)
        assert MISSING_GEMINI_KEY in table.stderr
        assert runner.ok("slot", "show", "slot-004").stderr == ""
        assert runner.ok("slot", "show", "slot-003", "--output", "json").stderr == ""

        listed = runner.ok("slot", "list")
        assert listed.stderr.splitlines()[0] == MISSING_GEMINI_KEY
        assert "ingest URLs" not in listed.stderr  # a LAN address: booths can reach it
        assert {r[0]: r[2] for r in _lines(listed)}["slot-003"] == "gemini/edit"  # clean data
        table = runner.ok("slot", "list", "--output", "table", env=wide)
        assert "gemini/edit (no API key)" in table.stdout
        assert "image2image (no API key)" not in table.stdout
        assert runner.ok("slot", "list", "--output", "json").stderr == ""

        # With a fallback the booth still gets a photo: the warning says whose.
        with daemon.api() as api:
            chain = [{"provider": "local", "operation": "enhance"}]
            assert api.put("/api/slots/slot-003", json={"fallbacks": chain}).status_code == 200
        backed = runner.ok("slot", "show", "slot-003").stderr
        assert MISSING_GEMINI_KEY not in backed
        assert (
            "warning: gemini API key not configured: every photo to slot-003 is made by its "
            "fallback local/enhance instead" in backed
        )

        runner.ok("settings", "provider-key", "gemini", "--stdin", input="AIza-test-key\n")
        for args in (
            ["slot", "list"],
            ["slot", "show", "slot-003", "--output", "table"],
            ["slot", "edit", "slot-003", "--prompt", "oil"],
        ):
            result = runner.ok(*args, env=wide)
            assert "API key" not in result.output, args


def test_slot_edit_flags_are_validated_locally(pcctl: Pcctl) -> None:
    version = pcctl.json("slot", "show", "slot-007")["version"]
    result = pcctl("slot", "edit", "slot-007", "--provider", "openai", "--set", "quality=ultra")
    assert result.exit_code == 1
    assert "settings.prompt" in result.stderr and "settings.quality" in result.stderr
    result = pcctl("slot", "edit", "slot-007", "--provider", "turbotext")
    assert result.exit_code == 1 and "image2image, mix_images, face_swap" in result.stderr
    result = pcctl("slot", "edit", "slot-007", "--set", "no-equals-sign")
    assert result.exit_code == 2 and "expected key=value" in result.stderr  # a usage error
    # A table with a missing brace, or JSON: was sent as a string, and the server's answer
    # ("Input should be a valid dictionary") never said the TOML was broken.
    for value in ('{enabled=true, position="top-left"', '{"enabled": true}'):
        result = pcctl("slot", "edit", "slot-007", "--set", f"qr_stamp={value}")
        assert result.exit_code == 2, result.stderr
        assert "--set qr_stamp: not a valid TOML value" in result.stderr
        assert "TOML, not JSON" in result.stderr
    assert pcctl("slot", "edit", "slot-007", "--size-limit", "50").exit_code == 2
    assert pcctl.json("slot", "show", "slot-007")["version"] == version  # nothing was sent
    assert pcctl("slot", "edit", "slot-099", "--name", "x").exit_code == 4


def test_slot_edit_template_binds_with_the_needed_role(
    pcctl: Pcctl, tmp_path: Path, daemon: PcctlDaemon
) -> None:
    frame = tmp_path / "frame.png"
    frame.write_bytes(make_frame_png(320, 240))
    data = pcctl.json("slot", "edit", "slot-008", "--operation", "frame", "--template", str(frame))
    [binding] = data["template_media"]
    assert binding["role"] == "frame" and (binding["width"], binding["height"]) == (320, 240)
    listed = pcctl.json("template", "list")["template_media"]
    assert next(t for t in listed if t["id"] == binding["template_id"])["used_by"] == ["slot-008"]
    # frame without a template is refused locally
    result = pcctl("slot", "edit", "slot-009", "--operation", "frame")
    assert result.exit_code == 1 and "template_media" in result.stderr
    assert pcctl("slot", "edit", "slot-009", "--role", "face").exit_code == 2


def test_slot_test_saves_the_result(pcctl: Pcctl, photo: Path, tmp_path: Path) -> None:
    pcctl.ok("slot", "edit", "slot-010", "--operation", "grayscale", "--inactive")
    out = tmp_path / "result.jpg"
    result = pcctl.ok("slot", "test", "slot-010", str(photo), "--save", str(out))
    fields = _fields(result)
    assert fields["saved_to"] == str(out)
    assert float(fields["completed_in_seconds"]) > 0
    assert fields["public_result_url"].endswith(f"/public/results/{fields['job_id']}")
    with Image.open(out) as image:
        assert image.size == (640, 480) and image.mode == "L"
    # not a terminal: no progress bar, no escape codes, no carriage returns
    assert "\r" not in result.output and "\x1b" not in result.output
    assert "uploading" not in result.stderr

    data = pcctl.json("slot", "test", "slot-010", str(photo), "--save", str(tmp_path / "r2"))
    assert set(data) == {
        "status",
        "job_id",
        "public_result_url",
        "guest_url",
        "completed_in_seconds",
        "saved_to",
    }
    assert data["saved_to"] == str(tmp_path / "r2") and (tmp_path / "r2").stat().st_size > 0
    assert data["guest_url"] == f"{pcctl.daemon.url}/r/{data['job_id']}"

    assert pcctl("slot", "test", "slot-099", str(photo)).exit_code == 4
    assert pcctl("slot", "test", "slot-010", str(tmp_path / "missing.jpg")).exit_code == 2


def test_slot_test_saves_nothing_without_save(pcctl: Pcctl, photo: Path, tmp_path: Path) -> None:
    """Without --save: the job id and the public link, no file dropped in the current dir."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    with contextlib.chdir(workdir):
        data = pcctl.json("slot", "test", "slot-015", str(photo))
        fields = _fields(pcctl.ok("slot", "test", "slot-015", str(photo)))
        table = pcctl.ok("slot", "test", "slot-015", str(photo), "--output", "table")
        pcctl.ok("slot", "test", "slot-015", str(photo), "--no-save")  # still accepted
    assert list(workdir.iterdir()) == []
    assert data["saved_to"] is None
    assert data["public_result_url"].endswith(f"/public/results/{data['job_id']}")
    assert fields["saved_to"] == "" and fields["public_result_url"].endswith(fields["job_id"])
    assert "public URL: " in table.stdout and "saved to" not in table.stdout
    assert re.search(
        r"not saved; download it with `pcctl result get \S+ --save FILE`", table.stderr
    )


def test_slot_test_save_dash_writes_the_image_to_stdout(
    pcctl: Pcctl, photo: Path, tmp_path: Path
) -> None:
    with contextlib.chdir(tmp_path):
        result = pcctl.ok("slot", "test", "slot-015", str(photo), "--save", "-")
        refused = pcctl("slot", "test", "slot-015", str(photo), "--save", "-", "--output", "json")
    assert result.stdout_bytes == photo.read_bytes()  # passthrough: the image and nothing else
    assert not (tmp_path / "-").exists()
    assert re.search(r"slot-015: done in [\d.]+ s \(job \S+\)", result.stderr)
    assert "public URL: http" in result.stderr
    assert f"saved to:   stdout (image/jpeg, {human_size(photo.stat().st_size)})" in result.stderr
    assert refused.exit_code == 2 and "cannot carry JSON too" in refused.stderr
    # -o was --save here while it is the format everywhere else: it is gone
    assert pcctl("slot", "test", "slot-015", str(photo), "-o", "x.jpg").exit_code == 2


def test_slot_test_with_unsaved_settings(pcctl: Pcctl, photo: Path) -> None:
    pcctl.ok("slot", "edit", "slot-011", "--operation", "sepia")  # passthrough ignores formats
    result = pcctl("slot", "test", "slot-011", str(photo), "--set", "output_format=gif")
    assert result.exit_code == 1 and "settings.output_format" in result.stderr
    data = pcctl.json("slot", "test", "slot-011", str(photo), "--set", "output_format=png")
    job = pcctl.json("job", "show", data["job_id"])
    assert job["result"]["mime_type"] == "image/png"
    assert pcctl.json("slot", "show", "slot-011")["settings"] == {}  # nothing was saved


def test_bad_upload_reports_the_server_error(pcctl: Pcctl, tmp_path: Path) -> None:
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image at all" * 10)
    result = pcctl("slot", "test", "slot-001", str(junk))
    assert result.exit_code == 1
    assert "415 unsupported_media_type" in result.stderr


# -- settings -------------------------------------------------------------------------------
def test_settings_show_and_set(pcctl: Pcctl) -> None:
    lines = _fields(pcctl.ok("settings", "show"))
    assert lines["ingest_password.configured"] == "true"
    assert set(lines) >= {"sync_response_seconds", "result_ttl_hours", "limits.max_upload_mb"}
    assert lines["provider_keys.gemini.configured"] in ("true", "false")
    _api_model(SettingsOut, pcctl.json("settings", "show"))

    result = pcctl.ok("settings", "set", "sync-response", "30")
    assert "sync-response is now 30 s" in result.stderr
    assert pcctl.json("settings", "set", "result-ttl", "48")["result_ttl_hours"] == 48
    assert pcctl.json("settings", "show")["sync_response_seconds"] == 30
    bad = pcctl("settings", "set", "sync-response", "5")
    assert bad.exit_code == 1 and "sync_response_seconds" in bad.stderr
    assert pcctl("settings", "set", "colour", "5").exit_code == 2
    pcctl.ok("settings", "set", "sync-response", "48")


def _ingest(daemon: PcctlDaemon, password: str) -> int:
    response = httpx.post(
        f"{daemon.url}/ingest/slot-001",
        data={"password": password},
        files={"fileToUpload": ("p.jpg", make_jpeg(320, 240), "image/jpeg")},
        timeout=30,
    )
    return response.status_code


def test_rotate_ingest_password(pcctl: Pcctl, daemon: PcctlDaemon) -> None:
    # The weak first-start password (PHOTOCHANGER_INITIAL_INGEST_PASSWORD) is accepted; it
    # cannot be rotated back to afterwards, so this module's daemon keeps a rotated one.
    assert _ingest(daemon, INGEST_PASSWORD) == 200
    result = pcctl.ok("settings", "rotate-ingest-password", "--generate")
    [password] = result.stdout.split()
    assert re.fullmatch(r"([a-z2-9]{5}-){3}[a-z2-9]{5}", password)
    assert _ingest(daemon, password) == 200
    assert _ingest(daemon, INGEST_PASSWORD) == 401

    typed = pcctl("settings", "rotate-ingest-password", input="first-pw\nsecond-pw\n")
    assert typed.exit_code != 0  # the two entries differ: click asks again, input runs out
    pcctl.ok("settings", "rotate-ingest-password", input="booth-pw-2\nbooth-pw-2\n")
    assert _ingest(daemon, "booth-pw-2") == 200
    shown = pcctl.json("settings", "show")["ingest_password"]
    assert shown["rotated_by"] == "serg" and shown["configured"] is True
    assert "password" not in json.dumps(pcctl.json("settings", "show")).replace(
        "ingest_password", ""
    )


def test_a_chosen_ingest_password_needs_8_characters(pcctl: Pcctl, daemon: PcctlDaemon) -> None:
    pcctl.ok("settings", "rotate-ingest-password", "--stdin", input="booth-pw-3\n")
    for how, given in ((["--stdin"], "short\n"), ([], "short\nshort\n")):
        short = pcctl("settings", "rotate-ingest-password", *how, input=given)
        assert short.exit_code == 1, short.output
        assert "error: the new ingest password is too short" in short.stderr
        assert "ingest_password: at least 8 characters (this one has 5)" in short.stderr
        assert "`pcctl settings rotate-ingest-password --generate`" in short.stderr
    seven = pcctl("settings", "rotate-ingest-password", "--stdin", input="1234567\n")
    assert seven.exit_code == 1 and "this one has 7" in seven.stderr
    assert _ingest(daemon, "booth-pw-3") == 200  # nothing was changed
    pcctl.ok("settings", "rotate-ingest-password", "--stdin", input="12345678\n")
    assert _ingest(daemon, "12345678") == 200

    # the server draws the same line for any client
    with daemon.api() as api:
        rejected = api.put("/api/settings", json={"ingest_password": "1234567"})
        assert rejected.status_code == 422
        assert rejected.json()["failure_reason"] == "validation_error"
        assert "ingest_password" in rejected.json()["errors"]
        assert api.put("/api/settings", json={"ingest_password": "abcdefgh"}).status_code == 200
    assert _ingest(daemon, "12345678") == 401 and _ingest(daemon, "abcdefgh") == 200


def test_provider_key(pcctl: Pcctl) -> None:
    secret = "AIza-test-key-0123456789"
    result = pcctl.ok("settings", "provider-key", "gemini", "--stdin", input=secret + "\n")
    assert "gemini key stored" in result.stderr and secret not in result.output
    state = pcctl.json("settings", "show")["provider_keys"]["gemini"]
    assert state["configured"] is True and state["source"] == "settings"
    assert secret not in pcctl.ok("settings", "show").stdout
    pcctl.ok("settings", "provider-key", "openai", input="sk-typed\n")
    assert pcctl.json("settings", "show")["provider_keys"]["openai"]["source"] == "settings"
    pcctl.ok("settings", "provider-key", "openai", "--remove")
    assert pcctl.json("settings", "show")["provider_keys"]["openai"]["configured"] is False
    assert pcctl("settings", "provider-key", "midjourney", "--stdin").exit_code == 2


def test_sdwebui_key_and_img2img_slot(pcctl: Pcctl) -> None:
    """The README's worked example: the WebUI's user:pass as a provider key, an img2img slot."""
    result = pcctl.ok("settings", "provider-key", "sdwebui", "--stdin", input="booth:s3cret\n")
    assert "sdwebui key stored" in result.stderr and "s3cret" not in result.output
    state = pcctl.json("settings", "show")["provider_keys"]["sdwebui"]
    assert state["configured"] is True and state["source"] == "settings"
    pcctl.ok("settings", "provider-key", "sdwebui", "--remove")
    edited = pcctl.ok(
        "slot", "edit", "slot-008", "--provider", "sdwebui", "--prompt", "oil painting",
        "--set", "negative_prompt=blurry, deformed", "--set", "denoising_strength=0.45",
        "--set", "sampler_name=DPM++ 2M", "--set", "result_size=photo",
    )  # fmt: skip
    assert "API key" not in edited.stderr  # the key is optional: no warning without it
    shown = pcctl.json("slot", "show", "slot-008")
    assert shown["provider"] == "sdwebui" and shown["operation"] == "img2img"
    assert shown["settings"]["sampler_name"] == "DPM++ 2M"
    assert shown["settings"]["denoising_strength"] == 0.45
    refused = pcctl("slot", "edit", "slot-008", "--set", "steps=0")
    assert refused.exit_code == 1 and "settings.steps" in refused.stderr


# -- jobs, results, templates, cleanup, stats -----------------------------------------------
def test_jobs_job_show_and_result_get(pcctl: Pcctl, photo: Path, tmp_path: Path) -> None:
    job_id = pcctl.json("slot", "test", "slot-012", str(photo))["job_id"]
    rows = _lines(pcctl.ok("jobs", "--slot", "slot-012"))
    assert rows[0][0] == job_id and rows[0][1] == "slot-012" and rows[0][2] == "test_run"
    assert rows[0][4] == "ok" and ISO.match(rows[0][5])
    data = _api_model(JobList, pcctl.json("jobs", "--slot", "slot-012", "--limit", "1"))
    assert [j.job_id for j in data.jobs] == [job_id]
    assert pcctl.json("job", "list", "--slot", "slot-012", "--status", "timeout")["jobs"] == []
    assert pcctl("jobs", "--slot", "slot-099").exit_code == 4
    assert pcctl("jobs", "--status", "bogus").exit_code == 2

    show = _fields(pcctl.ok("job", "show", job_id))
    assert show["slot_id"] == "slot-012" and show["outcome"] == "ok"
    assert ISO.match(show["created_at"]) and ISO.match(show["result.expires_at"])
    assert show["guest_url"] == f"{pcctl.daemon.url}/r/{job_id}"  # as in the JSON
    assert pcctl.json("job", "show", job_id)["job_id"] == job_id
    assert "Job " in pcctl.ok("job", "show", job_id, "--output", "table").stdout
    missing = pcctl("job", "show", "A" * 22)
    assert missing.exit_code == 4 and "no such job" in missing.stderr
    # ids are URL-safe base64: one in 32 starts with "-" and must not be taken for an option
    dashed = "-sop" + "A" * 18
    assert pcctl("job", "show", dashed).exit_code == 4
    assert pcctl("job", "show", "--output", "json", "--", dashed).exit_code == 4
    assert pcctl("result", "get", dashed, "--save", str(tmp_path / "y.jpg")).exit_code == 4
    assert pcctl("template", "delete", "-h" + "x" * 14).exit_code == 4

    target = tmp_path / "r.jpg"
    saved = _lines(pcctl.ok("result", "get", job_id, "--save", str(target)))
    assert saved == [[str(target), "image/jpeg", str(target.stat().st_size)]]
    assert target.read_bytes()[:2] == b"\xff\xd8"
    assert pcctl("result", "get", "B" * 22, "--save", str(tmp_path / "x.jpg")).exit_code == 4
    assert not (tmp_path / "x.jpg").exists()


def test_result_get_save_option(pcctl: Pcctl, photo: Path, tmp_path: Path) -> None:
    """`--save PATH` (- = stdout) works with the global --output; -o is no longer an option."""
    job_id = pcctl.json("slot", "test", "slot-012", str(photo))["job_id"]
    target = tmp_path / "f.jpg"
    data = pcctl.json("result", "get", job_id, "--save", str(target))
    assert data == {
        "job_id": job_id,
        "saved_to": str(target),
        "mime_type": "image/jpeg",
        "size_bytes": photo.stat().st_size,
    }
    assert target.read_bytes() == photo.read_bytes()
    size = human_size(photo.stat().st_size)
    told = pcctl.ok("result", "get", job_id, "--save", str(tmp_path / "g.jpg"), "--output", "table")
    assert f"saved {tmp_path / 'g.jpg'} (image/jpeg, {size})" in told.stderr

    with contextlib.chdir(tmp_path):
        streamed = pcctl.ok("result", "get", job_id, "--save", "-")
        refused = pcctl("--output", "json", "result", "get", job_id, "--save", "-")
        dash_o = pcctl("result", "get", job_id, "-o", "h.jpg")
        format_option = pcctl("result", "get", job_id, "--output", "h.jpg")
        default = pcctl.ok("result", "get", job_id)
    assert streamed.stdout_bytes == photo.read_bytes()
    assert streamed.stderr == f"wrote result {job_id} to stdout (image/jpeg, {size})\n"
    assert not (tmp_path / "-").exists()
    assert refused.exit_code == 2 and "cannot carry JSON too" in refused.stderr
    assert dash_o.exit_code == 2 and not (tmp_path / "h.jpg").exists()
    assert format_option.exit_code == 2 and "the image file goes with --save PATH" in (
        format_option.stderr
    )
    assert _lines(default)[0][0] == f"{job_id}.jpg" and (tmp_path / f"{job_id}.jpg").exists()


def test_templates(pcctl: Pcctl, tmp_path: Path) -> None:
    image = tmp_path / "style.png"
    image.write_bytes(make_frame_png(200, 100))
    [line] = _lines(pcctl.ok("template", "upload", str(image)))
    template_id = line[0]
    assert line[1:4] == ["image/png", str(image.stat().st_size), "200x100"]
    media = _api_model(TemplateMedia, pcctl.json("template", "upload", str(image)))
    ids = [row[0] for row in _lines(pcctl.ok("template", "list"))]
    assert template_id in ids and media.id in ids
    pcctl.ok("slot", "edit", "slot-013", "--template", str(image), "--role", "style")
    bound = pcctl.json("slot", "show", "slot-013")["template_media"][0]["template_id"]
    in_use = pcctl("template", "delete", bound)
    assert in_use.exit_code == 1 and "slot-013" in in_use.stderr
    assert "deleted" in pcctl.ok("template", "delete", template_id).stderr
    assert pcctl("template", "delete", template_id).exit_code == 4
    assert template_id not in [row[0] for row in _lines(pcctl.ok("template", "list"))]


def test_cleanup(pcctl: Pcctl) -> None:
    assert pcctl.json("cleanup", "--slot", "slot-001") == {"status": "ok", "deleted_results": 0}
    assert "0 expired result(s) deleted" in pcctl.ok("cleanup", "--slot", "slot-001").stderr
    assert pcctl.json("cleanup") == {"status": "accepted"}
    assert pcctl("cleanup", "--slot", "slot-099").exit_code == 4


def test_stats(pcctl: Pcctl, photo: Path) -> None:
    pcctl.ok("slot", "test", "slot-014", str(photo))
    stats = _api_model(Stats, pcctl.json("stats", "--slot", "slot-014", "--window", "30"))
    assert stats.slot_id == "slot-014" and stats.window_minutes == 30 and stats.successes >= 1
    assert sum(b.successes for b in stats.buckets) == stats.successes

    both = pcctl.json("stats")
    assert list(both) == ["global", "slots"] and len(both["slots"]) == 15
    assert both["global"]["jobs"] >= stats.jobs

    plain = pcctl.ok("stats").stdout.splitlines()
    assert "successes\t" + str(both["global"]["successes"]) in plain
    buckets = [line.split("\t") for line in plain if line.startswith("bucket\t")]
    assert len(buckets) == len(both["global"]["buckets"]) and ISO.match(buckets[0][1])
    assert sum(1 for line in plain if line.startswith("slot\t")) == 15

    table = pcctl.ok("stats", "--output", "table").stdout
    assert "Activity" in table and "█" in table and "Per slot" in table and "slot-014" in table

    watched = pcctl.ok(
        "stats", "--slot", "slot-014", "--watch", "--interval", "0.05", "--iterations", "3",
        "--output", "json",
    ).stdout.splitlines()  # fmt: skip
    assert len(watched) == 3 and all(json.loads(w)["slot_id"] == "slot-014" for w in watched)
    assert pcctl("stats", "--slot", "slot-099").exit_code == 4
    assert pcctl("stats", "--window", "0").exit_code == 2


def test_json_times_are_iso_8601(pcctl: Pcctl, photo: Path, tmp_path: Path) -> None:
    """Every time pcctl prints in JSON is ISO-8601 UTC as in plain output (the API sends epoch
    seconds); durations stay numbers."""
    image = tmp_path / "t.png"
    image.write_bytes(make_frame_png(40, 40))
    uploaded = pcctl.json("template", "upload", str(image))
    pcctl.ok("slot", "edit", "slot-014", "--name", "Times")
    job_id = pcctl.json("slot", "test", "slot-014", str(photo))["job_id"]

    job = pcctl.json("job", "show", job_id)
    for key in ("created_at", "started_at", "finalized_at", "deadline"):
        assert ISO.match(job[key]), (key, job[key])
    assert ISO.match(job["result"]["expires_at"]) and isinstance(job["duration_seconds"], float)
    [listed_job] = pcctl.json("jobs", "--slot", "slot-014", "--limit", "1")["jobs"]
    for key in ("job_id", "created_at", "started_at", "finalized_at", "deadline", "result"):
        assert listed_job[key] == job[key], key
    assert _fields(pcctl.ok("job", "show", job_id))["created_at"] == job["created_at"]

    slot = pcctl.json("slot", "show", "slot-014")
    assert ISO.match(slot["updated_at"]) and ISO.match(slot["recent_results"][0]["finalized_at"])
    listed = next(s for s in pcctl.json("slot", "list")["slots"] if s["id"] == "slot-014")
    assert ISO.match(listed["updated_at"]) and ISO.match(listed["last_job"]["created_at"])

    stats = pcctl.json("stats", "--slot", "slot-014")
    assert ISO.match(stats["last_success_at"])
    assert stats["buckets"] and all(ISO.match(b["start"]) for b in stats["buckets"])
    watched = pcctl.ok(
        "stats", "--slot", "slot-014", "--watch", "--iterations", "1", "--output", "json"
    )
    assert ISO.match(json.loads(watched.stdout)["last_success_at"])
    both = pcctl.json("stats")
    assert ISO.match(both["global"]["buckets"][0]["start"])

    assert ISO.match(pcctl.json("settings", "show")["ingest_password"]["rotated_at"])
    assert ISO.match(uploaded["created_at"])
    assert all(ISO.match(t["created_at"]) for t in pcctl.json("template", "list")["template_media"])


# -- rendering ------------------------------------------------------------------------------
def test_colours_on_a_terminal_unless_no_color(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    columns: list[Column[bool]] = [Column("ACTIVE", lambda v: v)]
    monkeypatch.delenv("NO_COLOR", raising=False)
    Output(stdout_tty=True, stderr_tty=True).table(columns, [True, False])
    coloured = capsys.readouterr().out
    assert "\x1b[32m" in coloured and "yes" in coloured
    monkeypatch.setenv("NO_COLOR", "1")
    Output(stdout_tty=True, stderr_tty=True).table(columns, [True, False])
    plain = capsys.readouterr().out
    assert "yes" in plain and "\x1b[32m" not in plain and "\x1b[31m" not in plain
    Output(stdout_tty=False).table(columns, [True, False])
    assert capsys.readouterr().out == "true\nfalse\n"


def test_a_self_hosted_provider_without_its_address_is_warned_about(pcctl: Pcctl) -> None:
    """README's sdwebui example on a daemon whose config names no backend: saved, and every
    photo would get 502 "sdwebui backend not configured": pcctl says so, as for a missing key."""
    result = pcctl.ok(
        "slot", "edit", "slot-010", "--provider", "sdwebui", "--operation", "img2img",
        "--prompt", "oil painting",
    )  # fmt: skip
    warning = (
        "warning: sdwebui backend not configured: every photo to slot-010 gets 502 until the "
        "daemon knows its address"
    )
    assert warning in " ".join(result.stderr.split())
    assert "set sdwebui_base_url in the daemon's config file" in result.stderr
    for args in (("slot", "show", "slot-010"), ("slot", "list")):
        assert "sdwebui backend not configured" in pcctl.ok(*args).stderr, args
    settings = pcctl.json("settings", "show")
    assert settings["backends"] == {
        "sdwebui": {"configured": False},
        "comfyui": {"configured": False},
    }


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("prompt='80s look", ("prompt", "'80s look")),
        ("prompt=[cyberpunk] city", ("prompt", "[cyberpunk] city")),
        ('prompt="Barbie" style portrait', ("prompt", '"Barbie" style portrait')),
        ('prompt="quoted"', ("prompt", "quoted")),
        ("prompt=make it pop", ("prompt", "make it pop")),
        ("strength=60", ("strength", 60)),
        ("qr_stamp={enabled=true}", ("qr_stamp", {"enabled": True})),
    ],
)  # fmt: skip
def test_set_values_are_toml_and_text_stays_text(flag: str, expected: tuple[str, object]) -> None:
    """Only a setting that holds a table or a list must parse: a prompt is text whatever it
    starts with."""
    from pcctl.slotdoc import parse_assignment

    assert parse_assignment(flag) == expected
