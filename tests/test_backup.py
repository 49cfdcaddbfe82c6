"""``photochangerd backup`` / ``restore`` as an operator runs them: real daemons, real SQLite,
real files.

The main scenario: a daemon serves booth uploads in a loop while ``photochangerd backup`` runs
beside it (it must not need the data-dir lock the daemon holds, nor disturb an upload); the
original data dir is then moved away (another machine), the backup restored onto a fresh data
dir, and a daemon started there serves every result the manifest lists with the same bytes,
the same statistics as the snapshot, the old admin and ingest passwords, the stored provider
key (decrypted with the restored ``secrets.key``) and the template a slot uses.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD, INGEST_PASSWORD
from tests.support.daemon_process import DaemonProcess, photochangerd_env, run_photochangerd
from tests.support.images import make_frame_png, make_jpeg
from tests.support.postgres import PostgresCluster

PHOTO = make_jpeg(640, 480)
GEMINI_KEY = "AIza-backup-test-key"
WINDOW = 24 * 60


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _one_error_line(result: Any) -> str:
    """A failed command says one line on stderr, ``photochangerd: …``, and exits 1."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("photochangerd: "), result.stderr
    return str(lines[0])


def _login(base: str) -> dict[str, str]:
    response = httpx.post(
        f"{base}/api/login", json={"username": "serg", "password": ADMIN_PASSWORD}, timeout=10
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _upload(base: str, slot: str = "slot-001", password: str = INGEST_PASSWORD) -> httpx.Response:
    return httpx.post(
        f"{base}/ingest/{slot}",
        data={"password": password},
        files={"fileToUpload": ("IMG_0001.JPG", PHOTO, "image/jpeg")},
        timeout=30,
    )


def _snapshot_counts(database: Path) -> dict[str, Any]:
    """What the backup's database says, read without writing a byte of it."""
    with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True) as conn:
        jobs, successes = conn.execute(
            "SELECT count(*), coalesce(sum(is_finalized = 1 AND failure_reason IS NULL), 0)"
            " FROM job"
        ).fetchone()
        rejected = dict(
            conn.execute(
                "SELECT failure_reason, count(*) FROM processing_log WHERE job_id IS NULL"
                " GROUP BY failure_reason"
            ).fetchall()
        )
    conn.close()
    return {"jobs": jobs, "successes": successes, "rejected": rejected}


class UploadLoop:
    """Booth uploads one after another in a thread until stopped; every answer is kept."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.answers: list[tuple[float, int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 120  # bounded, whatever happens to the test
        while not self._stop.is_set() and time.monotonic() < deadline:
            response = _upload(self.base)
            self.answers.append(
                (time.monotonic(), response.status_code, response.headers.get("x-job-id"))
            )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def successes(self) -> int:
        return sum(1 for _, status, _ in self.answers if status == 200)


@dataclass
class LiveBackup:
    dest: Path
    manifest: dict[str, Any]
    snapshot: dict[str, Any]
    template_id: str
    old_data_dir: Path
    backup_stdout: str
    backup_stderr: str
    answers: list[tuple[float, int, str | None]]
    backup_window: tuple[float, float]
    live_jobs: int
    extra: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def live_backup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBackup]:
    root = tmp_path_factory.mktemp("live")
    daemon = DaemonProcess(root / "site" / "data")
    daemon.cli("migrate")
    daemon.start(scripted=False)
    base = f"http://127.0.0.1:{daemon.port}"
    loop = UploadLoop(base)
    try:
        admin = _login(base)
        frame = httpx.post(
            f"{base}/api/template-media",
            headers=admin,
            files={"file": ("frame.png", make_frame_png(640, 480), "image/png")},
            timeout=10,
        )
        assert frame.status_code == 201, frame.text
        template_id = frame.json()["id"]
        bound = httpx.put(
            f"{base}/api/slots/slot-002",
            headers=admin,
            json={
                "operation": "frame",
                "template_media": [{"role": "frame", "template_id": template_id}],
            },
            timeout=10,
        )
        assert bound.status_code == 200, bound.text
        keyed = httpx.put(
            f"{base}/api/settings",
            headers=admin,
            json={"provider_keys": {"gemini": GEMINI_KEY}},
            timeout=10,
        )
        assert keyed.status_code == 200, keyed.text
        assert _upload(base, password="wrong-password").status_code == 401  # a rejected try
        framed = _upload(base, "slot-002")
        assert framed.status_code == 200
        # A gallery asked for this one's thumbnail: stored beside the result, backed up too.
        thumb = httpx.get(f"{base}/public/results/{framed.headers['x-job-id']}/thumbnail")
        assert thumb.status_code == 200

        loop.start()
        deadline = time.monotonic() + 60
        while loop.successes() < 15:
            assert time.monotonic() < deadline, loop.answers[-5:]
            time.sleep(0.05)
        dest = root / "backups" / "pc-1"
        started = time.monotonic()
        result = run_photochangerd("backup", str(dest), env=daemon.env, timeout=120)
        ended = time.monotonic()
        time.sleep(0.3)
        loop.stop()
        assert result.returncode == 0, result.stderr
        live_jobs = daemon.sql("SELECT count(*) FROM job")[0][0]
    finally:
        loop.stop()
        daemon.stop()
    manifest = json.loads((dest / "manifest.json").read_text())
    snapshot = _snapshot_counts(dest / "database" / "photochanger.sqlite3")
    # Another machine: the original data dir is gone, no path may lead back to it.
    moved = root / "site-moved-away"
    shutil.move(daemon.data_dir, moved)
    yield LiveBackup(
        dest=dest,
        manifest=manifest,
        snapshot=snapshot,
        template_id=template_id,
        old_data_dir=daemon.data_dir,
        backup_stdout=result.stdout,
        backup_stderr=result.stderr,
        answers=list(loop.answers),
        backup_window=(started, ended),
        live_jobs=int(str(live_jobs)),
    )


def _results(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in manifest["files"] if f["kind"] == "result"]


@pytest.mark.slow
def test_backup_runs_beside_a_serving_daemon(live_backup: LiveBackup) -> None:
    started, ended = live_backup.backup_window
    # Uploads went on before, during and after the backup, and none failed because of it.
    assert all(status == 200 for _, status, _ in live_backup.answers), live_backup.answers
    assert any(at < started for at, _, _ in live_backup.answers)
    assert any(started <= at <= ended for at, _, _ in live_backup.answers)
    assert any(at > ended for at, _, _ in live_backup.answers)
    # The snapshot is a moment in the middle of the stream: later jobs are not in it.
    assert 15 < live_backup.snapshot["jobs"] < live_backup.live_jobs
    assert live_backup.snapshot["rejected"] == {"invalid_password": 1}

    manifest = live_backup.manifest
    assert manifest["format_version"] == 1
    assert manifest["daemon_version"]
    assert manifest["created_at"].endswith("+00:00")
    assert manifest["database"]["dialect"] == "sqlite"
    assert manifest["database"]["schema_version"] >= 2
    assert manifest["database"]["migrations"][0] == "0001_initial"
    kinds = {f["kind"] for f in manifest["files"]}
    assert kinds == {"database", "result", "thumbnail", "template", "key"}
    assert {f["path"] for f in manifest["files"] if f["kind"] == "key"} == {
        "keys/jwt.key",
        "keys/secrets.key",
    }
    # Every successful job of the snapshot is there, under its path below the media root.
    assert len(_results(manifest)) == live_backup.snapshot["successes"]
    for entry in manifest["files"]:
        path = live_backup.dest / entry["path"]
        assert path.stat().st_size == entry["size"]
        assert _sha256(path.read_bytes()) == entry["sha256"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, entry["path"]
    for entry in _results(manifest):
        assert entry["path"].startswith("media/results/" + entry["job_id"] + ".")
    assert not any(
        p.startswith(("media/temp/", "media/spool/"))
        for p in (f["path"] for f in manifest["files"])
    )
    for directory in [live_backup.dest, *[p for p in live_backup.dest.rglob("*") if p.is_dir()]]:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert "backup written to" in live_backup.backup_stdout
    assert "contains secrets" in live_backup.backup_stderr


@pytest.mark.slow
def test_restore_serves_the_same_links_stats_and_passwords(
    live_backup: LiveBackup, tmp_path: Path
) -> None:
    target = DaemonProcess(tmp_path / "data", passwords=False)  # nothing seeded: all restored
    restored = run_photochangerd("restore", str(live_backup.dest), env=target.env, timeout=120)
    assert restored.returncode == 0, restored.stderr
    assert "restored" in restored.stdout
    # Every stored path now points into the new media root, none at the old data dir.
    new_root = str(target.data_dir / "media") + "/"
    paths = target.sql(
        "SELECT result_file_path FROM job WHERE result_file_path IS NOT NULL"
        " UNION ALL SELECT path FROM template_media"
    )
    assert paths and all(str(p).startswith(new_root) for (p,) in paths), paths[:3]
    target.start(scripted=False)
    base = f"http://127.0.0.1:{target.port}"
    try:
        for entry in _results(live_backup.manifest):
            response = httpx.get(f"{base}/public/results/{entry['job_id']}", timeout=10)
            assert response.status_code == 200, (entry, response.text)
            assert _sha256(response.content) == entry["sha256"]
            assert httpx.get(f"{base}/r/{entry['job_id']}", timeout=10).status_code == 200
        for entry in live_backup.manifest["files"]:
            if entry["kind"] == "thumbnail":
                response = httpx.get(f"{base}/public/results/{entry['job_id']}/thumbnail")
                assert response.status_code == 200
                assert _sha256(response.content) == entry["sha256"]

        admin = _login(base)  # the admins' password hash came back with the database
        stats = httpx.get(
            f"{base}/api/stats/global", params={"window_minutes": WINDOW}, headers=admin
        ).json()
        assert stats["jobs"] == live_backup.snapshot["jobs"]
        assert stats["successes"] == live_backup.snapshot["successes"]
        assert stats["rejected"] == live_backup.snapshot["rejected"]
        keys = httpx.get(f"{base}/api/settings", headers=admin).json()["provider_keys"]
        assert keys["gemini"]["configured"] is True  # decrypted with the restored secrets.key
        assert keys["gemini"]["source"] == "settings"

        answer = _upload(base)  # the booths' old ingest password
        assert answer.status_code == 200 and answer.content == PHOTO
        framed = _upload(base, "slot-002")  # the slot's template, read from the new root
        assert framed.status_code == 200 and framed.content != PHOTO
        assert _upload(base, password="wrong-password").status_code == 401
    finally:
        target.stop()
    assert "initial passwords" not in target.log.read_text()  # nothing was generated


@pytest.mark.slow
def test_tampered_backup_is_refused_and_nothing_written(
    live_backup: LiveBackup, tmp_path: Path
) -> None:
    env = photochangerd_env(tmp_path / "data", 1)
    for victim in ("result", "database", "key"):
        copy = tmp_path / f"backup-{victim}"
        shutil.copytree(live_backup.dest, copy)
        entry = next(f for f in live_backup.manifest["files"] if f["kind"] == victim)
        path = copy / entry["path"]
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01  # one bit, same size
        path.write_bytes(bytes(data))
        line = _one_error_line(run_photochangerd("restore", str(copy), env=env, timeout=60))
        assert f"backup file {entry['path']} is corrupt" in line and "nothing was restored" in line
        assert not (tmp_path / "data").exists(), "a refused restore must write nothing"

    copy = tmp_path / "backup-short"
    shutil.copytree(live_backup.dest, copy)
    entry = _results(live_backup.manifest)[-1]
    (copy / entry["path"]).write_bytes(b"")
    line = _one_error_line(run_photochangerd("restore", str(copy), env=env, timeout=60))
    assert f"backup file {entry['path']} has 0 bytes" in line
    (copy / entry["path"]).unlink()
    line = _one_error_line(run_photochangerd("restore", str(copy), env=env, timeout=60))
    assert f"backup file {entry['path']} is missing" in line
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_restore_refuses_a_data_dir_that_is_not_fresh(
    live_backup: LiveBackup, tmp_path: Path
) -> None:
    target = DaemonProcess(tmp_path / "data")
    target.cli("migrate")  # a data dir with a database of its own
    database = target.data_dir / "photochanger.sqlite3"
    before = _sha256(database.read_bytes())
    line = _one_error_line(run_photochangerd("restore", str(live_backup.dest), env=target.env))
    assert "is not fresh" in line and "photochanger.sqlite3" in line and "--force" in line
    assert _sha256(database.read_bytes()) == before
    assert not (target.data_dir / "keys").exists()

    # Keys alone (or media alone) are somebody's state too.
    keys_only = DaemonProcess(tmp_path / "keys-only")
    (keys_only.data_dir / "keys").mkdir(parents=True)
    (keys_only.data_dir / "keys" / "secrets.key").write_text("c2VjcmV0\n")
    line = _one_error_line(run_photochangerd("restore", str(live_backup.dest), env=keys_only.env))
    assert "is not fresh" in line and "secrets.key" in line

    # --force cannot run under a live daemon: restore takes the data-dir lock.
    target.start(scripted=False)
    try:
        line = _one_error_line(
            run_photochangerd("restore", "--force", str(live_backup.dest), env=target.env)
        )
        assert "is in use by pid" in line
    finally:
        assert target.terminate() == 0
    # --force with the daemon stopped replaces its database (and its stale -wal is dropped).
    forced = run_photochangerd("restore", "--force", str(live_backup.dest), env=target.env)
    assert forced.returncode == 0, forced.stderr
    assert target.sql("SELECT count(*) FROM job") == [(live_backup.snapshot["jobs"],)]
    assert target.sql("SELECT count(*) FROM template_media") == [(1,)]


@pytest.mark.slow
def test_backup_and_restore_errors_are_one_line(live_backup: LiveBackup, tmp_path: Path) -> None:
    env = photochangerd_env(tmp_path / "data", 1)
    line = _one_error_line(run_photochangerd("backup", str(tmp_path / "b"), env=env))
    assert "no database at" in line and "nothing to back up" in line
    assert not (tmp_path / "b").exists()

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    line = _one_error_line(run_photochangerd("backup", str(busy), env=env))
    assert f"backup destination {busy} is not empty" in line

    line = _one_error_line(run_photochangerd("restore", str(tmp_path / "nope"), env=env))
    assert "is not a backup directory" in line
    line = _one_error_line(run_photochangerd("restore", str(busy), env=env))
    assert "is not a photochanger backup (no manifest.json" in line

    copy = tmp_path / "newer"
    shutil.copytree(live_backup.dest, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["database"]["schema_version"] = 9999
    (copy / "manifest.json").write_text(json.dumps(manifest))
    line = _one_error_line(run_photochangerd("restore", str(copy), env=env))
    assert "schema (9999) is newer" in line
    manifest["database"]["schema_version"] = 2
    manifest["files"][0]["path"] = "../../etc/passwd"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    line = _one_error_line(run_photochangerd("restore", str(copy), env=env))
    assert "bad file entry" in line
    assert not (tmp_path / "data").exists()

    usage = run_photochangerd("backup", env=env)
    assert usage.returncode == 2 and "Missing argument 'DEST'" in usage.stderr


@pytest.mark.slow
def test_a_result_gone_after_the_snapshot_is_skipped(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path / "data")
    daemon.cli("migrate")
    daemon.start(scripted=False)
    base = f"http://127.0.0.1:{daemon.port}"
    try:
        ids = [_upload(base).headers["x-job-id"] for _ in range(3)]
    finally:
        assert daemon.terminate() == 0
    gone, expired, kept = ids
    # What the cleaner does between the snapshot and the copy: the file disappears.
    (daemon.data_dir / "media" / "results" / f"{gone}.jpg").unlink()
    daemon.sql("UPDATE job SET result_expires_at = ? WHERE id = ?", time.time() - 1, expired)
    dest = tmp_path / "backup"
    dest.mkdir()  # an existing empty directory is fine
    result = run_photochangerd("backup", str(dest), env=daemon.env)
    assert result.returncode == 0, result.stderr
    assert f"skipped result {gone}: file gone after the snapshot" in result.stdout
    manifest = json.loads((dest / "manifest.json").read_text())
    assert [f["job_id"] for f in _results(manifest)] == [kept]  # expired: not needed
    assert [(s["kind"], s["job_id"]) for s in manifest["skipped"]] == [("result", gone)]
    assert manifest["counts"]["results"] == 1

    target = DaemonProcess(tmp_path / "restored")
    assert run_photochangerd("restore", str(dest), env=target.env).returncode == 0
    target.start(scripted=False)
    try:
        assert httpx.get(f"http://127.0.0.1:{target.port}/public/results/{kept}").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{target.port}/public/results/{gone}").status_code == 410
    finally:
        target.stop()


@pytest.mark.slow
@pytest.mark.postgres
def test_postgresql_backup_with_pg_dump_and_restore(
    pg_cluster: PostgresCluster, tmp_path: Path
) -> None:
    """The README's PostgreSQL procedure: pg_dump + backup, pg_restore + restore elsewhere."""
    assert pg_cluster.bin_dir is not None
    url = pg_cluster.create_database(f"bk_src_{os.getpid()}")
    source = DaemonProcess(tmp_path / "src" / "data")
    source.env["PHOTOCHANGER_DATABASE_URL"] = url
    source.env["PHOTOCHANGER_MEDIA_DIR"] = str(tmp_path / "src" / "shared-media")
    source.start(scripted=False)
    base = f"http://127.0.0.1:{source.port}"
    try:
        ids = [_upload(base).headers["x-job-id"] for _ in range(3)]
        dump = tmp_path / "pc.pgdump"
        pg_env = {**os.environ, "PGPASSWORD": pg_cluster.password}
        libpq = pg_cluster.dsn(driver=None, database=url.rsplit("/", 1)[1])
        subprocess_run(
            [str(pg_cluster.bin_dir / "pg_dump"), "-Fc", "-f", str(dump), libpq], env=pg_env
        )
        dest = tmp_path / "backup"
        result = run_photochangerd("backup", str(dest), env=source.env, timeout=60)
    finally:
        source.stop()
    assert result.returncode == 0, result.stderr
    assert "pg_dump -Fc -f" in result.stdout and pg_cluster.password not in result.stdout
    assert pg_cluster.password not in (dest / "manifest.json").read_text()
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["database"]["dialect"] == "postgresql"
    assert manifest["database"]["file"] is None
    assert sorted(f["job_id"] for f in _results(manifest)) == sorted(ids)

    new_url = pg_cluster.create_database(f"bk_dst_{os.getpid()}")
    target = DaemonProcess(tmp_path / "dst" / "data", passwords=False)
    target.env["PHOTOCHANGER_DATABASE_URL"] = new_url
    # Restore before pg_restore: refused, nothing written.
    line = _one_error_line(run_photochangerd("restore", str(dest), env=target.env, timeout=60))
    assert "no photochanger schema" in line and "pg_restore" in line
    subprocess_run(
        [
            str(pg_cluster.bin_dir / "pg_restore"),
            "--no-owner",
            "-d",
            pg_cluster.dsn(driver=None, database=new_url.rsplit("/", 1)[1]),
            str(dump),
        ],
        env=pg_env,
    )
    restored = run_photochangerd("restore", str(dest), env=target.env, timeout=60)
    assert restored.returncode == 0, restored.stderr
    shutil.rmtree(tmp_path / "src")  # the old media dir is gone
    target.start(scripted=False)
    try:
        for entry in _results(manifest):
            response = httpx.get(f"http://127.0.0.1:{target.port}/public/results/{entry['job_id']}")
            assert response.status_code == 200 and _sha256(response.content) == entry["sha256"]
        _login(f"http://127.0.0.1:{target.port}")
    finally:
        target.stop()


def subprocess_run(args: list[str], env: dict[str, str]) -> None:
    import subprocess

    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown)")
def test_root_keeps_the_service_users_ownership(live_backup: LiveBackup, tmp_path: Path) -> None:
    """Run as root against a service's data dir (systemd: another user owns it), backup and
    restore leave no root-owned file the daemon could not open."""
    uid, gid = 65534, 65534  # nobody: any user but root
    data = tmp_path / "svc" / "data"
    data.mkdir(parents=True)
    os.chown(data, uid, gid)
    env = photochangerd_env(data, 1)
    assert run_photochangerd("restore", str(live_backup.dest), env=env).returncode == 0
    owners = {(p.relative_to(data), p.stat().st_uid) for p in [data, *data.rglob("*")]}
    assert {owner for _, owner in owners} == {uid}, sorted(o for o in owners if o[1] != uid)

    # The daemon stopped cleanly: no -wal/-shm.  Root's read-only snapshot creates them (SQLite
    # gives them the database file's owner).
    database = data / "photochanger.sqlite3"
    with sqlite3.connect(database) as conn:  # as the daemon leaves it: WAL mode
        conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    assert not database.with_name(database.name + "-wal").exists()
    assert database.stat().st_uid == uid
    dest = tmp_path / "again"
    backed_up = run_photochangerd("backup", str(dest), env=env)
    assert backed_up.returncode == 0, backed_up.stderr
    for suffix in ("-wal", "-shm"):
        sibling = database.with_name(database.name + suffix)
        assert sibling.stat().st_uid == uid, suffix
