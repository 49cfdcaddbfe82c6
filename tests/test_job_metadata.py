"""What a booth sends beside the photo (time, user_id, id, profile, hash, the query string…) is
kept, bounded, with the job and shown by ``GET /api/jobs/{job_id}`` and ``pcctl job show``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD, INGEST_PASSWORD, RunningDaemon
from tests.support.dslr import CAPTURED_FIELDS, build_dslr_body, dslr_upload
from tests.support.images import make_jpeg
from tests.test_pcctl import Pcctl, PcctlDaemon, _fields, running_daemon

PHOTO = make_jpeg(640, 480)
SHA1 = hashlib.sha1(PHOTO).hexdigest()


def _expected_fields(**changes: str) -> dict[str, str]:
    return {**dict(CAPTURED_FIELDS), "hash": SHA1, **changes}


async def _admin(client: httpx.AsyncClient) -> httpx.AsyncClient:
    login = await client.post("/api/login", json={"username": "serg", "password": ADMIN_PASSWORD})
    client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    return client


async def test_job_detail_shows_the_booth_metadata(
    daemon: RunningDaemon, client: httpx.AsyncClient
) -> None:
    response = await dslr_upload("127.0.0.1", daemon.port, photo=PHOTO, password=INGEST_PASSWORD)
    assert response is not None and response.status == 200
    job_id = response.headers["x-job-id"]
    admin = await _admin(client)
    job = (await admin.get(f"/api/jobs/{job_id}")).json()
    assert job["client_metadata"] == {
        "fields": _expected_fields(),  # never the password
        "hash_check": "verified_sha1",
        "query": "session=42",
        "width": 640,
        "height": 480,
        "size_bytes": len(PHOTO),
        "dropped_fields": 0,
    }
    # Lists stay small: the metadata is in the detail only.
    [listed] = (await admin.get("/api/jobs", params={"slot_id": "slot-001"})).json()["jobs"]
    assert listed["job_id"] == job_id and listed["client_metadata"] is None


async def test_job_metadata_is_shown_bounded_as_stored(
    daemon: RunningDaemon, client: httpx.AsyncClient
) -> None:
    body, content_type = build_dslr_body(
        PHOTO,
        password=INGEST_PASSWORD,
        hash_value="0" * 40,
        extra_fields={"user_id": "u" * 5000, "x" * 300: "long name"},
    )
    response = await dslr_upload(
        "127.0.0.1", daemon.port, body=body, content_type=content_type, query="q=" + "z" * 900
    )
    assert response is not None and response.status == 200
    admin = await _admin(client)
    metadata = (await admin.get(f"/api/jobs/{response.headers['x-job-id']}")).json()[
        "client_metadata"
    ]
    assert metadata["fields"]["user_id"] == "u" * 4096
    assert metadata["fields"]["x" * 100] == "long name"
    assert metadata["hash_check"] == "unverified" and metadata["fields"]["hash"] == "0" * 40
    assert len(metadata["query"]) == 512


# -- pcctl job show ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pcctl_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcctlDaemon]:
    with running_daemon(tmp_path_factory.mktemp("metadata-daemon")) as running:
        yield running


@pytest.fixture(scope="module")
def pcctl(pcctl_daemon: PcctlDaemon, tmp_path_factory: pytest.TempPathFactory) -> Pcctl:
    runner = Pcctl(pcctl_daemon, tmp_path_factory.mktemp("metadata-home"))
    runner.login()
    return runner


def _upload(daemon: PcctlDaemon, **fields: str) -> str:
    body, content_type = build_dslr_body(PHOTO, password=INGEST_PASSWORD, extra_fields=fields)
    response = httpx.post(
        f"{daemon.url}/ingest/slot-002?session=7",
        content=body,
        headers={"Content-Type": content_type},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.headers["x-job-id"]


def test_pcctl_job_show_prints_the_booth_metadata(pcctl: Pcctl, pcctl_daemon: PcctlDaemon) -> None:
    job_id = _upload(pcctl_daemon, user_id="Acer\x1b[31m", profile="a\tb")
    shown = _fields(pcctl.ok("job", "show", job_id))
    assert shown["form.time"] == "1758217512"
    assert shown["form.id"] == "CY04N068111304S2L_00000001."
    assert shown["form.hash"] == SHA1 and shown["hash_check"] == "verified_sha1"
    # Booth text cannot drive the terminal: ESC is shown as the text \x1b (its backslash then
    # doubled by the tab-separated output, which escapes tabs as \t).
    assert shown["form.user_id"] == "Acer\\\\x1b[31m"
    assert shown["form.profile"] == "a\\tb"
    assert shown["query"] == "session=7"
    assert shown["image"] == "640x480" and shown["upload_bytes"] == str(len(PHOTO))
    assert "form.password" not in shown

    data = json.loads(pcctl.ok("job", "show", job_id, "--output", "json").stdout)
    assert data["client_metadata"]["fields"] == _expected_fields(
        user_id="Acer\x1b[31m", profile="a\tb"
    )
    table = pcctl.ok("job", "show", job_id, "--output", "table").stdout
    assert "form.user_id" in table and "verified_sha1" in table and "\x1b[31m" not in table


def test_pcctl_job_show_of_a_test_run(pcctl: Pcctl, tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(PHOTO)
    job_id = pcctl.json("slot", "test", "slot-003", str(photo))["job_id"]
    shown = _fields(pcctl.ok("job", "show", job_id))
    assert shown["hash_check"] == "absent" and shown["image"] == "640x480"
    assert not [key for key in shown if key.startswith("form.")]
