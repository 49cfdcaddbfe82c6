"""``photochangerd backup DEST`` and ``photochangerd restore SRC``.

A backup holds what a daemon needs to serve again what it served: the database (SQLite: an
online snapshot; PostgreSQL: dumped with ``pg_dump``, see below), the generated keys, and the
media the database points at — results still within their TTL with their thumbnails, and the
template media.  Not job inputs (``temp/``), upload spools or provider media: they live for
one job's deadline at most.

**Format: a plain directory**, not a tarball::

    DEST/manifest.json                      written last: a directory without it is no backup
    DEST/database/photochanger.sqlite3      SQLite only
    DEST/keys/jwt.key, DEST/keys/secrets.key
    DEST/media/results/<job>.jpg, media/thumbs/<job>.webp, media/templates/<id>.png

Why a directory: the photos are JPEG/PNG/WebP and do not compress, so a ``.tar.gz`` costs CPU
for nothing; a directory is checked and restored file by file with the manifest (no extraction
to scratch space first, no second copy on disk), copies incrementally with ``rsync`` (a result
never changes once written), and is read with standard tools (``jq``, ``sha256sum``).  Who
wants one file runs ``tar`` over it.  Everything is created 0700/0600: the keys decrypt the
provider API keys stored in the database and sign admin tokens, and the database holds the
password hashes.

**Consistency.**  SQLite: the snapshot comes from SQLite's online backup API
(:meth:`sqlite3.Connection.backup`) in one step, i.e. one read transaction — consistent while the
daemon serves and writes (WAL: it is not blocked).  The data-dir lock is *not* taken: the
running daemon holds it.  The list of files to copy is read from the snapshot, then the files
are copied; a result the cleaner deleted in between (its TTL ended) is listed as skipped in the
manifest, not an error.  Results are written atomically and before their job is final, so a
result the snapshot knows is complete on disk.

**Paths.**  The database stores absolute file paths (``str(media_root / "results" / name)``,
relative only if the data dir was configured relative).  Restore rewrites them to the new media
root, in the restored database.  That is the least invasive correct fix: the daemon's reading,
writing and cleaning code and the existing data stay as they are, and a backup restored onto a
different data dir, media dir or machine serves the same links.

**Media in a bucket** (``media_backend = "s3"``).  The results, thumbnails and templates are
then objects in the bucket, not files of this host: the backup holds the database and the keys
only, says so in a warning and in the manifest (``source.media_backend``, ``source.s3_bucket``),
and the bucket is backed up by the object store's own means (versioning, replication, a
lifecycle-aware sync such as ``rclone sync``).  The rows hold bucket keys, which a restore leaves
as they are: restored with the same bucket settings, every link works again.

**PostgreSQL.**  The database is several daemons' shared state; ``pg_dump -Fc`` makes its
consistent copy and ``pg_restore`` puts it back.  ``backup`` copies the media and keys the same
way and prints the ``pg_dump`` command; ``restore`` (after ``pg_restore``) writes the media and
keys and rewrites the paths in that database.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection

from photochangerd import __version__
from photochangerd.config import Config
from photochangerd.data_dir_lock import LOCK_FILE, DataDirInUse, DataDirUnusable, lock_data_dir
from photochangerd.db.tables import job, media_object, template_media
from photochangerd.db.urls import without_secret_query
from photochangerd.media.store import MediaStore

T = TypeVar("T")

FORMAT = "photochanger-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE_FILE = "database/photochanger.sqlite3"
KEY_FILES = ("jwt.key", "secrets.key")
_CHUNK = 1024 * 1024
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_TOP_DIRS = ("database", "keys", "media")

SECRETS_WARNING = (
    "this backup contains secrets (keys/secrets.key decrypts the provider API keys stored in "
    "the database, keys/jwt.key signs admin tokens, the database holds the password hashes): "
    "it is readable by its owner only (0700/0600); keep it that way"
)


class BackupError(Exception):
    """A backup or restore that cannot go on; the message is one line naming the culprit."""


@dataclass
class BackupReport:
    dest: Path
    dialect: str
    schema_version: int | None
    results: int = 0
    thumbnails: int = 0
    templates: int = 0
    keys: int = 0
    total_bytes: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pg_dump_command: str | None = None


@dataclass
class RestoreReport:
    data_dir: Path
    dialect: str
    schema_version: int | None
    results: int = 0
    thumbnails: int = 0
    templates: int = 0
    keys: int = 0
    paths_rewritten: int = 0
    paths_outside: int = 0
    warnings: list[str] = field(default_factory=list)


# -- shared helpers ---------------------------------------------------------------------------


def dialect_of(config: Config) -> str:
    name = sa.make_url(config.effective_database_url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise BackupError(f"unsupported database {name}")
    return name


def sqlite_path(config: Config) -> Path:
    database = sa.make_url(config.effective_database_url).database
    if not database or database == ":memory:":
        raise BackupError("the SQLite database has no file to back up")
    return Path(database)


def _media_roots(media_root: Path) -> list[str]:
    """The spellings under which the database may hold a path of ``media_root``."""
    roots = [str(media_root), str(media_root.absolute()), str(media_root.resolve())]
    return list(dict.fromkeys(roots))


def relative_media_path(stored: str, roots: Sequence[str]) -> PurePosixPath | None:
    """``stored`` relative to one of ``roots`` (``results/<job>.jpg``), else None."""
    path = PurePosixPath(stored)
    for root in roots:
        try:
            relative = path.relative_to(root)
        except ValueError:
            continue
        if relative.parts and ".." not in relative.parts:
            return relative
    return None


def _sha256_of(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _copy(source: Path, target: Path, mode: int) -> tuple[int, str]:
    """Copy ``source`` to the new file ``target`` (fsynced); (size, sha256) of what was copied.

    ``source`` is opened first: a source that is gone raises ``FileNotFoundError`` before
    ``target`` exists.
    """
    digest = hashlib.sha256()
    size = 0
    with open(source, "rb") as reader:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            with os.fdopen(fd, "wb") as writer:
                while chunk := reader.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    writer.write(chunk)
                writer.flush()
                os.fdatasync(writer.fileno())
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    return size, digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _single_cause(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _on_database(config: Config, fn: Callable[..., T], *args: Any, write: bool = False) -> T:
    """Run one repository-style operation on the configured database (PostgreSQL here)."""
    import trio

    from photochangerd.db.engine import DatabaseUnavailable, open_database

    async def main() -> T:
        async with open_database(
            config.effective_database_url, config.db_connect_timeout_seconds
        ) as db:
            return await (db.write if write else db.read)(fn, *args)

    try:
        return trio.run(main)
    except BaseException as exc:
        cause = _single_cause(exc)
        if isinstance(cause, DatabaseUnavailable):
            where = config.effective_database_url.split("@")[-1]
            raise BackupError(f"{cause} ({where})") from None
        if cause is not exc:
            raise cause from None
        raise


def _migrations(conn: Connection) -> list[tuple[int, str]]:
    rows = conn.execute(sa.text("SELECT version, name FROM schema_migrations ORDER BY version"))
    return [(int(row[0]), str(row[1])) for row in rows]


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL as ``pg_dump``/``pg_restore`` take it, without the password (in the
    user part or the query: give it to the tools through ``PGPASSWORD`` or ``~/.pgpass``)."""
    url = without_secret_query(sa.make_url(database_url))
    plain = sa.URL.create(
        "postgresql",
        username=url.username,
        host=url.host,
        port=url.port,
        database=url.database,
        query=url.query,
    )  # (URL.set(password=None) would keep the password)
    return plain.render_as_string(hide_password=False)


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


# -- backup -----------------------------------------------------------------------------------


@dataclass
class _Inventory:
    results: list[tuple[str, str, str | None]]  # job id, stored path, recorded sha256
    templates: list[tuple[str, str, str | None]]  # template id, stored path, recorded sha256
    migrations: list[tuple[int, str]]


def _inventory(conn: Connection, now: float) -> _Inventory:
    """What a snapshot knows: live results (within their TTL), templates, the schema."""
    results = conn.execute(
        sa.select(job.c.id, job.c.result_file_path, job.c.result_checksum)
        .where(job.c.result_file_path.is_not(None), job.c.result_expires_at > now)
        .order_by(job.c.created_at)
    )
    templates = conn.execute(
        sa.select(template_media.c.id, template_media.c.path, template_media.c.checksum).order_by(
            template_media.c.created_at
        )
    )
    return _Inventory(
        results=[(str(r[0]), str(r[1]), r[2]) for r in results],
        templates=[(str(r[0]), str(r[1]), r[2]) for r in templates],
        migrations=_migrations(conn),
    )


def _check_owner(db_path: Path) -> None:
    """A read-only open of a WAL database creates ``-wal``/``-shm`` when they are missing (the
    daemon is stopped), and SQLite cannot remove them again.  Owned by another user they would
    keep the daemon from opening its database.  Root is fine (SQLite gives them the database
    file's owner); anybody else must be that owner, or back up while the daemon runs."""
    owner = db_path.stat().st_uid
    if owner == os.geteuid() or os.geteuid() == 0:
        return
    siblings = [db_path.with_name(db_path.name + suffix) for suffix in ("-wal", "-shm")]
    if all(p.exists() and p.stat().st_uid == owner for p in siblings):
        return
    try:
        import pwd

        name = pwd.getpwuid(owner).pw_name
    except (KeyError, ImportError):
        name = str(owner)
    raise BackupError(
        f"the database {db_path} belongs to {name}: run the backup as that user or as root "
        "(SQLite would leave -wal/-shm files the daemon cannot open)"
    )


def snapshot_sqlite(db_path: Path, target: Path) -> None:
    """A consistent copy of the live database at ``target`` (a new file), via the backup API."""
    if not db_path.is_file():
        raise BackupError(f"no database at {db_path}: nothing to back up")
    _check_owner(db_path)
    _snapshot(db_path, target)


def _snapshot(db_path: Path, target: Path) -> None:
    uri = db_path.resolve().as_uri() + "?mode=ro"
    try:
        source = sqlite3.connect(uri, uri=True, timeout=30)
        try:
            copy = sqlite3.connect(target)
            try:
                # pages=-1 (the default): every page in one step, i.e. one read transaction.
                source.backup(copy)
                # One self-contained file (no -wal beside it); the daemon turns WAL on again.
                copy.execute("PRAGMA journal_mode=DELETE")
                check = copy.execute("PRAGMA quick_check").fetchone()
            finally:
                copy.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot snapshot the database {db_path}: {exc}") from None
    if check is None or check[0] != "ok":
        raise BackupError(f"the database {db_path} fails SQLite's quick_check: {check}")
    os.chmod(target, 0o600)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_sqlite(path: Path, fn: Callable[..., T], *args: Any) -> T:
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return fn(conn, *args)
    finally:
        engine.dispose()


def _check_dest(dest: Path, config: Config) -> None:
    """``dest`` must be new, or an empty directory, outside the data dir and media root."""
    if dest.exists() or dest.is_symlink():
        if not dest.is_dir():
            raise BackupError(f"backup destination {dest} exists and is not a directory")
        if any(dest.iterdir()):
            raise BackupError(f"backup destination {dest} is not empty")
    target = dest.resolve()
    for inside, what in ((config.data_dir, "data dir"), (config.media_root, "media dir")):
        if target.is_relative_to(inside.resolve()):
            raise BackupError(f"backup destination {dest} is inside the {what} {inside}")


def _create_dest(dest: Path) -> bool:
    """Create ``dest`` (0700); True if it did not exist."""
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(dest, 0o700)
    except OSError as exc:
        raise BackupError(f"cannot create backup destination {dest}: {exc.strerror}") from None
    return created


def _undo_dest(dest: Path, created: bool) -> None:
    """A failed backup leaves nothing that looks like one."""
    if created:
        shutil.rmtree(dest, ignore_errors=True)
        return
    for child in list(dest.iterdir()) if dest.is_dir() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


class _Writer:
    """Files copied into the backup, with the manifest entries they make."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.files: list[dict[str, Any]] = []
        self.total_bytes = 0

    def directory(self, relative: PurePosixPath) -> Path:
        target = self.dest
        for part in relative.parts:
            target = target / part
            if not target.is_dir():
                target.mkdir(mode=0o700)
        return target

    def copy(self, source: Path, relative: PurePosixPath, **extra: str) -> dict[str, Any]:
        """Copy ``source`` to ``relative``; FileNotFoundError if ``source`` is gone."""
        target = self.directory(relative.parent) / relative.name
        size, checksum = _copy(source, target, 0o600)
        return self.add(relative, size, checksum, **extra)

    def add(
        self, relative: PurePosixPath, size: int, checksum: str, **extra: str
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": str(relative), "size": size, "sha256": checksum, **extra}
        self.files.append(entry)
        self.total_bytes += size
        return entry


def backup(config: Config, dest: Path, *, now: float | None = None) -> BackupReport:
    """Write a backup of the configured daemon's state into ``dest`` (see the module doc)."""
    dialect = dialect_of(config)
    now = time.time() if now is None else now
    _check_dest(dest, config)
    if dialect == "sqlite":
        db_path = sqlite_path(config)
        if not db_path.is_file():
            raise BackupError(f"no database at {db_path}: nothing to back up")
    created = _create_dest(dest)
    try:
        report = _backup_into(config, dest, dialect, now)
    except BaseException as exc:
        _undo_dest(dest, created)
        if isinstance(exc, OSError):
            where = f" ({exc.filename})" if exc.filename else ""
            raise BackupError(f"backup failed: {exc.strerror or exc}{where}") from None
        raise
    return report


def _backup_into(config: Config, dest: Path, dialect: str, now: float) -> BackupReport:
    writer = _Writer(dest)
    database: dict[str, Any] = {"dialect": dialect}
    if dialect == "sqlite":
        snapshot = writer.directory(PurePosixPath(DATABASE_FILE).parent) / Path(DATABASE_FILE).name
        snapshot_sqlite(sqlite_path(config), snapshot)
        inventory = _read_sqlite(snapshot, _inventory, now)
        size, checksum = _sha256_of(snapshot)
        writer.add(PurePosixPath(DATABASE_FILE), size, checksum, kind="database")
        database["file"] = DATABASE_FILE
    else:
        inventory = _on_database(config, _inventory, now)
        database["file"] = None
    schema = max((version for version, _ in inventory.migrations), default=None)
    database["schema_version"] = schema
    database["migrations"] = [f"{version:04d}_{name}" for version, name in inventory.migrations]
    report = BackupReport(dest=dest, dialect=dialect, schema_version=schema)
    if dialect == "postgresql":
        report.pg_dump_command = (
            f"pg_dump -Fc -f {_shell_quote(str(dest) + '.pgdump')} "
            f"{_shell_quote(libpq_url(config.effective_database_url))}"
        )
        database["pg_dump"] = report.pg_dump_command

    roots = _media_roots(config.media_root)
    store = MediaStore(config.media_root)
    media = PurePosixPath("media")
    skipped = report.skipped

    def copy_media(
        kind: str, key_name: str, key: str, stored: str, recorded: str | None
    ) -> PurePosixPath | None:
        relative = relative_media_path(stored, roots)
        if relative is None:
            skipped.append(
                {"kind": kind, key_name: key, "path": stored, "reason": "outside the media root"}
            )
            return None
        try:
            entry = writer.copy(config.media_root / relative, media / relative, kind=kind)
        except FileNotFoundError:
            reason = (
                "file gone after the snapshot (expired and removed by the cleaner?)"
                if kind == "result"
                else "file missing"
            )
            skipped.append(
                {"kind": kind, key_name: key, "path": str(media / relative), "reason": reason}
            )
            return None
        entry[key_name] = key
        if recorded and recorded != entry["sha256"]:
            report.warnings.append(
                f"{entry['path']}: its content differs from the SHA-256 the database recorded"
            )
        return relative

    in_bucket = config.media_backend == "s3"
    if in_bucket:
        report.warnings.append(
            f"media_backend = s3: results, thumbnails and templates are objects in the bucket "
            f"{config.s3_bucket!r}, not in this backup (database and keys only); back the "
            "bucket up with the object store's own means"
        )
    for job_id, stored, recorded in [] if in_bucket else inventory.results:
        relative = copy_media("result", "job_id", job_id, stored, recorded)
        if relative is None:
            continue
        report.results += 1
        thumb = store.thumbnail_path(job_id)
        try:
            thumb_relative = PurePosixPath(thumb.relative_to(config.media_root).as_posix())
            entry = writer.copy(thumb, media / thumb_relative, kind="thumbnail")
        except FileNotFoundError:
            continue  # made on a gallery's first request: none yet is normal
        entry["job_id"] = job_id
        report.thumbnails += 1
    for template_id, stored, recorded in [] if in_bucket else inventory.templates:
        if copy_media("template", "template_id", template_id, stored, recorded) is not None:
            report.templates += 1

    for name, configured in zip(KEY_FILES, (config.jwt_secret, config.secret_key), strict=True):
        setting = "jwt_secret" if name == "jwt.key" else "secret_key"
        if configured:
            report.warnings.append(
                f"{setting} is set in the configuration, not generated into keys/{name}: it is "
                "not in this backup; keep it with the backup"
            )
            continue
        try:
            writer.copy(config.keys_dir / name, PurePosixPath("keys") / name, kind="key")
            report.keys += 1
        except FileNotFoundError:
            report.warnings.append(f"no {config.keys_dir / name}: not in this backup")

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "daemon_version": __version__,
        "created_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds"),
        "database": database,
        "source": {
            "data_dir": str(config.data_dir.absolute()),
            "media_root": str(config.media_root.absolute()),
            "media_roots": roots,
            "media_backend": config.media_backend,
            "s3_bucket": config.s3_bucket if in_bucket else None,
        },
        "counts": {
            "results": report.results,
            "thumbnails": report.thumbnails,
            "templates": report.templates,
            "keys": report.keys,
        },
        "files": writer.files,
        "skipped": skipped,
    }
    tmp = dest / f".{MANIFEST}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=1)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, dest / MANIFEST)
    for directory in sorted({p for p in dest.rglob("*") if p.is_dir()} | {dest}, reverse=True):
        _fsync_dir(directory)
    report.total_bytes = writer.total_bytes
    return report


# -- restore ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    path: PurePosixPath
    size: int
    sha256: str
    kind: str


def read_manifest(src: Path) -> dict[str, Any]:
    if not src.is_dir():
        raise BackupError(f"{src} is not a backup directory")
    try:
        text = (src / MANIFEST).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BackupError(
            f"{src} is not a photochanger backup (no {MANIFEST}: not one, or an unfinished one)"
        ) from None
    except OSError as exc:
        raise BackupError(f"cannot read {src / MANIFEST}: {exc.strerror}") from None
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise BackupError(f"{src / MANIFEST} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{src / MANIFEST} is not a photochanger backup manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BackupError(
            f"backup format version {version} is not one this photochangerd "
            f"({__version__}) reads (up to {FORMAT_VERSION})"
        )
    return manifest


def _entries(manifest: dict[str, Any]) -> list[_Entry]:
    entries = []
    seen: set[PurePosixPath] = set()
    files = manifest.get("files")
    if not isinstance(files, list):
        raise BackupError(f"{MANIFEST}: no file list")
    for item in files:
        raw = item.get("path") if isinstance(item, dict) else None
        path = PurePosixPath(raw) if isinstance(raw, str) else None
        if (
            path is None
            or path.is_absolute()
            or ".." in path.parts
            or len(path.parts) < 2
            or path.parts[0] not in _TOP_DIRS
            or path in seen
            or not isinstance(item.get("size"), int)
            or not isinstance(item.get("sha256"), str)
            or not _SHA256_RE.match(item["sha256"])
        ):
            raise BackupError(f"{MANIFEST}: bad file entry {item!r}")
        seen.add(path)
        entries.append(_Entry(path, item["size"], item["sha256"], str(item.get("kind", ""))))
    return entries


def verify(src: Path, entries: Sequence[_Entry]) -> None:
    """Every file present with its size and SHA-256, else :class:`BackupError` naming it."""
    bad: list[str] = []
    for entry in entries:
        path = src.joinpath(*entry.path.parts)
        try:
            if path.is_symlink() or not path.is_file():
                raise FileNotFoundError
            size, checksum = _sha256_of(path)
        except FileNotFoundError:
            bad.append(f"backup file {entry.path} is missing")
            continue
        except OSError as exc:
            bad.append(f"backup file {entry.path} cannot be read ({exc.strerror})")
            continue
        if size != entry.size:
            bad.append(f"backup file {entry.path} has {size} bytes, the manifest says {entry.size}")
        elif checksum != entry.sha256:
            bad.append(f"backup file {entry.path} is corrupt (SHA-256 mismatch)")
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise BackupError(f"{bad[0]}{more}; nothing was restored")


def _first_file(directory: Path) -> Path | None:
    if not directory.is_dir():
        return None
    for root, _dirs, files in os.walk(directory):
        if files:
            return Path(root) / files[0]
    return None


def _occupied(config: Config, dialect: str) -> str | None:
    """What already lives where a restore would write (None: a fresh data dir)."""
    if dialect == "sqlite":
        db_path = sqlite_path(config)
        if db_path.exists():
            return f"a database ({db_path})"
    if config.keys_dir.is_dir():
        keys = sorted(p.name for p in config.keys_dir.iterdir())
        if keys:
            return f"keys ({config.keys_dir / keys[0]})"
    found = _first_file(config.media_root)
    if found is not None:
        return f"media ({found})"
    return None


def _check_target(config: Config, dialect: str, force: bool) -> None:
    occupied = _occupied(config, dialect)
    if occupied is not None and not force:
        raise BackupError(
            f"data dir {config.data_dir} is not fresh: it already has {occupied}; restore onto "
            "a new data dir, or add --force to replace it"
        )


Owner = tuple[int, int] | None


def _owner_of(data_dir: Path) -> Owner:
    """Root restoring into a data dir another user owns (the service's): files go to that user
    (a root-owned database or lock file would keep the daemon from starting)."""
    if os.geteuid() != 0:
        return None
    try:
        info = data_dir.stat()
    except FileNotFoundError:
        return None
    return None if info.st_uid == 0 else (info.st_uid, info.st_gid)


def _makedirs(directory: Path, mode: int, owner: Owner) -> None:
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for created in reversed(missing):
        created.mkdir(mode=mode)
        os.chmod(created, mode)
        if owner is not None:
            os.chown(created, *owner)


def _place(source: Path, target: Path, entry: _Entry, mode: int, owner: Owner) -> None:
    """Copy a verified backup file into place atomically (temp file, fsync, rename)."""
    _makedirs(target.parent, 0o750, owner)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    size, checksum = _copy(source, tmp, mode)
    if (size, checksum) != (entry.size, entry.sha256):
        tmp.unlink(missing_ok=True)
        raise BackupError(f"backup file {entry.path} changed while it was being restored")
    if owner is not None:
        os.chown(tmp, *owner)
    os.replace(tmp, target)


def rewrite_media_paths(
    conn: Connection, old_roots: Sequence[str], new_root: str
) -> tuple[int, int]:
    """Point every stored file path under one of ``old_roots`` at ``new_root``.

    Returns (rewritten, outside): paths changed, and paths under none of the old roots (left
    as they are: files that were not in the backup anyway).
    """
    rewritten = outside = 0
    columns = (
        (job, job.c.id, job.c.result_file_path),
        (job, job.c.id, job.c.input_path),
        (template_media, template_media.c.id, template_media.c.path),
        (media_object, media_object.c.id, media_object.c.path),
    )
    for table, key, column in columns:
        updates = []
        for row_key, stored in conn.execute(sa.select(key, column).where(column.is_not(None))):
            relative = relative_media_path(stored, old_roots)
            if relative is None:
                outside += 1
                continue
            new = str(Path(new_root, *relative.parts))
            if new != stored:
                updates.append({"row_key": row_key, "new_path": new})
        if updates:
            conn.execute(
                sa.update(table)
                .where(key == sa.bindparam("row_key"))
                .values({column.name: sa.bindparam("new_path")}),
                updates,
            )
            rewritten += len(updates)
    return rewritten, outside


def _postgres_schema(conn: Connection) -> list[tuple[int, str]] | None:
    exists = conn.execute(sa.text("SELECT to_regclass('schema_migrations') IS NOT NULL")).scalar()
    return _migrations(conn) if exists else None


@contextmanager
def _locked(config: Config) -> Iterator[None]:
    try:
        with lock_data_dir(config.data_dir):
            yield
    except (DataDirInUse, DataDirUnusable) as exc:
        raise BackupError(str(exc)) from None


def restore(config: Config, src: Path, *, force: bool = False) -> RestoreReport:
    """Restore the backup ``src`` into the configured (fresh) data dir and media root."""
    from photochangerd.db.migrate import migration_files

    manifest = read_manifest(src)
    dialect = dialect_of(config)
    database = manifest.get("database") or {}
    if database.get("dialect") != dialect:
        raise BackupError(
            f"the backup is of a {database.get('dialect')} database, this configuration "
            f"uses {dialect}"
        )
    schema = database.get("schema_version")
    known = max(version for version, _, _ in migration_files(dialect))
    if isinstance(schema, int) and schema > known:
        raise BackupError(
            f"the backup's database schema ({schema}) is newer than this photochangerd "
            f"({__version__}) knows ({known}): install the version that made it"
        )
    entries = _entries(manifest)
    database_entry = next((e for e in entries if e.kind == "database"), None)
    if dialect == "sqlite" and (
        database_entry is None or str(database_entry.path) != database.get("file")
    ):
        raise BackupError(f"{MANIFEST}: the SQLite backup lists no database file")
    old_roots = [str(root) for root in (manifest.get("source") or {}).get("media_roots", [])]
    _check_target(config, dialect, force)
    verify(src, entries)

    report = RestoreReport(data_dir=config.data_dir, dialect=dialect, schema_version=schema)
    owner = _owner_of(config.data_dir)
    with _locked(config):
        _check_target(config, dialect, force)  # again, now that nobody else can start here
        try:
            _restore_locked(config, src, entries, database_entry, old_roots, owner, report)
            lock = config.data_dir / LOCK_FILE
            if owner is not None and lock.stat().st_uid != owner[0]:
                os.chown(lock, *owner)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise BackupError(
                f"restore failed: {exc.strerror or exc}{where}; the data dir is partly "
                "written: fix the cause and restore again with --force"
            ) from None
    return report


def _restore_locked(
    config: Config,
    src: Path,
    entries: Sequence[_Entry],
    database_entry: _Entry | None,
    old_roots: Sequence[str],
    owner: Owner,
    report: RestoreReport,
) -> None:
    new_root = str(config.media_root)
    if report.dialect == "postgresql":
        # The dump goes in first (pg_restore); without it there is nothing to point at files.
        schema = _on_database(config, _postgres_schema)
        if schema is None:
            raise BackupError(
                "the PostgreSQL database has no photochanger schema: restore the dump first "
                "(pg_restore -d DATABASE BACKUP.pgdump), then run restore again"
            )
        restored = max((version for version, _ in schema), default=None)
        if restored != report.schema_version:
            report.warnings.append(
                f"the database has schema {restored}, the backup was taken at "
                f"{report.schema_version}: is it the dump made with this backup?"
            )
    # Media and keys first, the database last: a data dir with a database is a restored one.
    for entry in entries:
        source = src.joinpath(*entry.path.parts)
        if entry.path.parts[0] == "media":
            target = config.media_root.joinpath(*entry.path.parts[1:])
            _place(source, target, entry, 0o640, owner)
            if entry.kind == "result":
                report.results += 1
            elif entry.kind == "thumbnail":
                report.thumbnails += 1
            elif entry.kind == "template":
                report.templates += 1
    for entry in entries:
        if entry.path.parts[0] == "keys":
            _makedirs(config.keys_dir, 0o700, owner)
            target = config.keys_dir / entry.path.name
            _place(src.joinpath(*entry.path.parts), target, entry, 0o600, owner)
            report.keys += 1
    for name, configured in zip(KEY_FILES, (config.jwt_secret, config.secret_key), strict=True):
        if configured:
            report.warnings.append(
                f"{'jwt_secret' if name == 'jwt.key' else 'secret_key'} is set in this "
                f"configuration: it is used, not the restored keys/{name}"
            )
    if report.dialect == "sqlite":
        assert database_entry is not None
        db_path = sqlite_path(config)
        tmp = db_path.with_name(f".{db_path.name}.{secrets.token_hex(4)}.restore.tmp")
        _place(src.joinpath(*database_entry.path.parts), tmp, database_entry, 0o640, owner)
        try:
            engine = sa.create_engine(f"sqlite:///{tmp}")
            try:
                with engine.begin() as conn:
                    rewritten, outside = rewrite_media_paths(conn, old_roots, new_root)
            finally:
                engine.dispose()
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            # --force over an old database: its -wal must not be replayed onto this one.
            for suffix in ("-wal", "-shm", "-journal"):
                db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)
            os.replace(tmp, db_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(db_path.parent)
    else:
        rewritten, outside = _on_database(
            config, rewrite_media_paths, old_roots, new_root, write=True
        )
    report.paths_rewritten, report.paths_outside = rewritten, outside
    if outside:
        report.warnings.append(
            f"{outside} stored file paths were outside the backed-up media root and were left "
            "as they are"
        )
