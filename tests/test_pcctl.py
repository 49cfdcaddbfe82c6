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
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from pcctl import config as pcctl_config
from pcctl.cli import cli
from pcctl.output import Column, Output
from shared.api_models import JobList, SettingsOut, SlotDetail, SlotList, Stats, TemplateMedia
from tests.conftest import ADMIN_PASSWORD, INGEST_PASSWORD
from tests.support.images import make_frame_png, make_jpeg

REPO = Path(__file__).resolve().parent.parent
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
SLOT_FIELDS = list(SlotList.model_json_schema()["$defs"]["SlotSummary"]["properties"])


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
def running_daemon(root: Path) -> Iterator[PcctlDaemon]:
    daemon = PcctlDaemon(root)
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
    # the stored login works for the next command, and logout forgets the token
    assert len(_lines(runner.ok("slot", "list"))) == 15
    assert "logged out" in runner.ok("logout").stderr
    assert pcctl_config.load(runner.config_file).token is None
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
    # the stored token is not sent to another server
    other = pcctl("--server", "http://127.0.0.1:9", "slot", "list")
    assert other.exit_code == 3 and "not logged in to http://127.0.0.1:9" in other.stderr


def test_unreachable_server(pcctl: Pcctl) -> None:
    port = _free_port()
    result = pcctl(
        "slot", "list", env={"PCCTL_SERVER": f"http://127.0.0.1:{port}", "PCCTL_TOKEN": "x"}
    )
    assert result.exit_code == 1
    assert f"cannot reach http://127.0.0.1:{port}" in result.stderr
    assert "is photochangerd running?" in result.stderr


def test_help_lists_exit_codes_and_completion_works(pcctl: Pcctl) -> None:
    text = pcctl.ok("--help").stdout
    for line in ("0  ok", "1  error", "2  usage", "3  authentication", "4  not found"):
        assert line in text
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
    pcctl.ok("slot", "test", "slot-002", str(photo), "--no-save")
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
    SlotList.model_validate(data)
    assert pcctl.json("--output", "json", "slot", "list") == data

    table = pcctl.ok("slot", "list", "--output", "table").stdout
    assert "Slots" in table and "slot-015" in table and "\t" not in table
    assert "\x1b[" not in table  # not a terminal: no colour codes even in table mode


def test_slot_show_and_not_found(pcctl: Pcctl) -> None:
    lines = _fields(pcctl.ok("slot", "show", "slot-001"))
    assert lines["id"] == "slot-001" and lines["provider"] == "local"
    assert lines["is_active"] == "true" and lines["size_limit_mb"].isdigit()
    detail = SlotDetail.model_validate(pcctl.json("slot", "show", "slot-001"))
    assert detail.id == "slot-001"
    table = pcctl.ok("slot", "show", "slot-001", "--output", "table").stdout
    assert "slot-001" in table and "no results yet" in table
    for bad in ("slot-099", "nope"):
        result = pcctl("slot", "show", bad)
        assert result.exit_code == 4, result.output
        assert bad in result.stderr and "no such slot" in result.stderr


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


def test_slot_edit_flags_are_validated_locally(pcctl: Pcctl) -> None:
    version = pcctl.json("slot", "show", "slot-007")["version"]
    result = pcctl("slot", "edit", "slot-007", "--provider", "openai", "--set", "quality=ultra")
    assert result.exit_code == 1
    assert "settings.prompt" in result.stderr and "settings.quality" in result.stderr
    result = pcctl("slot", "edit", "slot-007", "--provider", "turbotext")
    assert result.exit_code == 1 and "image2image, mix_images, face_swap" in result.stderr
    result = pcctl("slot", "edit", "slot-007", "--set", "no-equals-sign")
    assert result.exit_code == 1 and "expected key=value" in result.stderr
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
    result = pcctl.ok("slot", "test", "slot-010", str(photo), "-o", str(out))
    fields = _fields(result)
    assert fields["saved_to"] == str(out)
    assert float(fields["completed_in_seconds"]) > 0
    assert fields["public_result_url"].endswith(f"/public/results/{fields['job_id']}")
    with Image.open(out) as image:
        assert image.size == (640, 480) and image.mode == "L"
    # not a terminal: no progress bar, no escape codes, no carriage returns
    assert "\r" not in result.output and "\x1b" not in result.output
    assert "uploading" not in result.stderr

    with contextlib.chdir(tmp_path):
        data = pcctl.json("slot", "test", "slot-010", str(photo))
    assert set(data) == {
        "status",
        "job_id",
        "public_result_url",
        "completed_in_seconds",
        "saved_to",
    }
    assert data["saved_to"] == f"{data['job_id']}.jpg"
    assert (tmp_path / data["saved_to"]).stat().st_size > 0

    assert pcctl("slot", "test", "slot-099", str(photo)).exit_code == 4
    assert pcctl("slot", "test", "slot-010", str(tmp_path / "missing.jpg")).exit_code == 2


def test_slot_test_with_unsaved_settings(pcctl: Pcctl, photo: Path) -> None:
    pcctl.ok("slot", "edit", "slot-011", "--operation", "sepia")  # passthrough ignores formats
    result = pcctl(
        "slot", "test", "slot-011", str(photo), "--set", "output_format=gif", "--no-save"
    )
    assert result.exit_code == 1 and "settings.output_format" in result.stderr
    data = pcctl.json(
        "slot", "test", "slot-011", str(photo), "--set", "output_format=png", "--no-save"
    )
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
    SettingsOut.model_validate(pcctl.json("settings", "show"))

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
    result = pcctl.ok("settings", "rotate-ingest-password", "--generate")
    [password] = result.stdout.split()
    assert re.fullmatch(r"([a-z2-9]{5}-){3}[a-z2-9]{5}", password)
    assert _ingest(daemon, password) == 200
    assert _ingest(daemon, INGEST_PASSWORD) == 401

    typed = pcctl("settings", "rotate-ingest-password", input="first-pw\nsecond-pw\n")
    assert typed.exit_code != 0  # the two entries differ: click asks again, input runs out
    pcctl.ok("settings", "rotate-ingest-password", input=f"{INGEST_PASSWORD}\n{INGEST_PASSWORD}\n")
    assert _ingest(daemon, INGEST_PASSWORD) == 200
    shown = pcctl.json("settings", "show")["ingest_password"]
    assert shown["rotated_by"] == "serg" and shown["configured"] is True
    assert "password" not in json.dumps(pcctl.json("settings", "show")).replace(
        "ingest_password", ""
    )


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


# -- jobs, results, templates, cleanup, stats -----------------------------------------------
def test_jobs_job_show_and_result_get(pcctl: Pcctl, photo: Path, tmp_path: Path) -> None:
    job_id = pcctl.json("slot", "test", "slot-012", str(photo), "--no-save")["job_id"]
    rows = _lines(pcctl.ok("jobs", "--slot", "slot-012"))
    assert rows[0][0] == job_id and rows[0][1] == "slot-012" and rows[0][2] == "test_run"
    assert rows[0][4] == "ok" and ISO.match(rows[0][5])
    data = JobList.model_validate(pcctl.json("jobs", "--slot", "slot-012", "--limit", "1"))
    assert [j.job_id for j in data.jobs] == [job_id]
    assert pcctl.json("job", "list", "--slot", "slot-012", "--status", "timeout")["jobs"] == []
    assert pcctl("jobs", "--slot", "slot-099").exit_code == 4
    assert pcctl("jobs", "--status", "bogus").exit_code == 2

    show = _fields(pcctl.ok("job", "show", job_id))
    assert show["slot_id"] == "slot-012" and show["outcome"] == "ok"
    assert ISO.match(show["created_at"]) and ISO.match(show["result.expires_at"])
    assert pcctl.json("job", "show", job_id)["job_id"] == job_id
    assert "Job " in pcctl.ok("job", "show", job_id, "--output", "table").stdout
    missing = pcctl("job", "show", "A" * 22)
    assert missing.exit_code == 4 and "no such job" in missing.stderr
    # ids are URL-safe base64: one in 32 starts with "-" and must not be taken for an option
    dashed = "-sop" + "A" * 18
    assert pcctl("job", "show", dashed).exit_code == 4
    assert pcctl("job", "show", "--output", "json", "--", dashed).exit_code == 4
    assert pcctl("result", "get", dashed, "-o", str(tmp_path / "y.jpg")).exit_code == 4
    assert pcctl("template", "delete", "-h" + "x" * 14).exit_code == 4

    target = tmp_path / "r.jpg"
    saved = _lines(pcctl.ok("result", "get", job_id, "-o", str(target)))
    assert saved == [[str(target), "image/jpeg", str(target.stat().st_size)]]
    assert target.read_bytes()[:2] == b"\xff\xd8"
    assert pcctl("result", "get", "B" * 22, "-o", str(tmp_path / "x.jpg")).exit_code == 4
    assert not (tmp_path / "x.jpg").exists()


def test_templates(pcctl: Pcctl, tmp_path: Path) -> None:
    image = tmp_path / "style.png"
    image.write_bytes(make_frame_png(200, 100))
    [line] = _lines(pcctl.ok("template", "upload", str(image)))
    template_id = line[0]
    assert line[1:4] == ["image/png", str(image.stat().st_size), "200x100"]
    media = TemplateMedia.model_validate(pcctl.json("template", "upload", str(image)))
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
    pcctl.ok("slot", "test", "slot-014", str(photo), "--no-save")
    stats = Stats.model_validate(pcctl.json("stats", "--slot", "slot-014", "--window", "30"))
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
