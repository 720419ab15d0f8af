"""``benchdata backup DEST`` / ``benchdata restore SRC``.

A backup folder holds ``store.sqlite3`` (a consistent snapshot taken with SQLite's online
backup API from a read connection, so the service keeps capturing meanwhile),
``files/blobs/…`` (the content-addressed file store; blobs already in DEST are skipped),
``config.json`` and ``backup.json`` (what was backed up, when). Secrets stay in the OS
keyring and are not copied.

Order matters: the database snapshot is taken first, the blobs copied after. A capture
writes its blob before it commits its row, so every file a backed-up row names is on disk
by the time the blobs are copied. Every file and every directory that gained an entry is
fsynced before ``backup.json`` is written (last, atomically): a backup that says it is
done survives a power cut.

Restore refuses while a service holds the store (``service.lock``) and refuses to replace a
store that has datapoints unless ``force``. It is atomic: an interruption at any point
(kill -9, power cut) leaves the old store or the new one, never rows without their files.

1. The database is staged in a new folder, ``<data_dir>/restore-staging/`` (SQLite's backup
   API, integrity-checked, fsynced).
2. The blobs are copied into the file store, fsynced. Only adding: a blob's name is its
   SHA-256, so the old rows keep theirs and the new rows find theirs.
3. The old database is checkpointed (its WAL emptied into it) and kept as
   ``store.sqlite3.before-restore``; a WAL left beside it would otherwise be replayed over
   the new database.
4. One ``os.replace`` swaps the staged database in; the data directory is fsynced.

The configuration is copied after the swap (the old one is kept as
``config.json.before-restore``).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from app import __version__
from app.core.atomic import atomic_writer, fsync_dir, fsync_file
from app.core.errors import (
    ConflictError,
    DiskFullError,
    NotFoundError,
    StoreError,
    is_disk_full,
)
from app.core.paths import BenchPaths

DB_NAME = "store.sqlite3"
CONFIG_NAME = "config.json"
MANIFEST_NAME = "backup.json"
#: Where restore stages the new database (inside the data directory: same file system,
#: so the final swap is one atomic rename).
STAGING_NAME = "restore-staging"
#: The replaced database, kept beside the restored one.
BEFORE_RESTORE_SUFFIX = ".before-restore"


@dataclass
class CopyStats:
    copied: int = 0
    skipped: int = 0
    bytes_copied: int = 0


@dataclass
class BackupReport:
    destination: str
    datapoints: int
    files: CopyStats = field(default_factory=CopyStats)
    config: bool = False
    started: str = ""
    finished: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _make_dirs(directory: Path, root: Path, touched: set[Path]) -> None:
    """Create ``directory`` below ``root``; each parent that gains an entry is noted in
    ``touched`` to be fsynced."""
    if directory.is_dir():
        return
    if directory != root:
        _make_dirs(directory.parent, root, touched)
    directory.mkdir(exist_ok=True)
    touched.add(directory.parent)


def copy_blobs(source: Path, destination: Path) -> CopyStats:
    """Copy the ``blobs`` tree; a file already there with the same size is skipped (the name
    is its SHA-256). Each file lands under a temporary name, is fsynced and renamed into
    place; every directory that gained an entry is fsynced before this returns."""
    stats = CopyStats()
    if not source.is_dir():
        return stats
    touched: set[Path] = set()
    for directory, _dirs, names in os.walk(source):
        relative = Path(directory).relative_to(source)
        target_dir = destination / relative
        for name in names:
            if name.endswith(".copying"):
                continue
            src = Path(directory) / name
            dst = target_dir / name
            try:
                size = src.stat().st_size
            except FileNotFoundError:  # removed meanwhile (freed after sync)
                continue
            if dst.is_file() and dst.stat().st_size == size:
                stats.skipped += 1
                continue
            _make_dirs(target_dir, destination.parent, touched)
            partial = dst.with_name(dst.name + ".copying")
            try:
                shutil.copyfile(src, partial)
                fsync_file(partial)
            except FileNotFoundError:
                partial.unlink(missing_ok=True)
                continue
            except BaseException:  # a full disk, say: leave no partial copy behind
                partial.unlink(missing_ok=True)
                raise
            os.replace(partial, dst)
            touched.add(target_dir)
            stats.copied += 1
            stats.bytes_copied += size
    for directory in sorted(touched, key=lambda path: len(path.parts), reverse=True):
        fsync_dir(directory)
    return stats


def _copy_durably(source: Path, target: Path) -> None:
    """Copy a small file so that it is complete or absent, and fsynced."""
    with open(source, "rb") as src, atomic_writer(target) as out:
        shutil.copyfileobj(src, out)
    fsync_dir(target.parent)


def _count(conn: sqlite3.Connection) -> int:
    try:
        from app.core.rows import count_datapoints

        return count_datapoints(conn)
    except sqlite3.Error:
        return 0


def backup(paths: BenchPaths, destination: os.PathLike[str] | str) -> BackupReport:
    """Back the store up into ``destination`` (created if needed); safe while capturing."""
    try:
        return _backup(paths, destination)
    except (OSError, sqlite3.Error) as exc:
        if is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(f"the disk holding the backup folder {destination} is full: "
                                "the backup is incomplete (it has no backup.json); free "
                                "space there and run it again") from exc
        raise


def _backup(paths: BenchPaths, destination: os.PathLike[str] | str) -> BackupReport:
    from app.core.store import LocalStore

    dest = Path(destination).expanduser().resolve()
    if dest == paths.data_dir.resolve() or paths.data_dir.resolve() in dest.parents:
        raise ConflictError(f"back up to a folder outside the data directory "
                            f"{paths.data_dir}, not into it")
    if not paths.database.exists():
        raise NotFoundError(f"there is no store at {paths.database} to back up")
    dest.mkdir(parents=True, exist_ok=True)
    report = BackupReport(destination=str(dest), datapoints=0, started=_now())
    partial = dest / (DB_NAME + ".partial")
    partial.unlink(missing_ok=True)
    store = LocalStore(paths.database)
    try:
        with store.reader() as source:
            target = sqlite3.connect(partial)
            try:
                source.backup(target)  # pages=-1: one step, one consistent snapshot
                report.datapoints = _count(target)
                result = str(target.execute("PRAGMA integrity_check").fetchone()[0])
            finally:
                target.close()
    finally:
        store.close()
    if result != "ok":
        partial.unlink(missing_ok=True)
        raise StoreError(f"the backup copy failed its integrity check ({result}); the store "
                         "itself may be damaged: run `benchdata doctor`")
    for suffix in ("-wal", "-shm"):
        (dest / (DB_NAME + suffix)).unlink(missing_ok=True)
    fsync_file(partial)
    os.replace(partial, dest / DB_NAME)
    fsync_dir(dest)
    report.files = copy_blobs(paths.files / "blobs", dest / "files" / "blobs")
    if paths.config_file.is_file():
        _copy_durably(paths.config_file, dest / CONFIG_NAME)
        report.config = True
    report.finished = _now()
    # Written last, and durably: a backup.json means the whole backup is on the disk.
    manifest = {"app_version": __version__, "source": str(paths.data_dir), **report.to_dict()}
    with atomic_writer(dest / MANIFEST_NAME) as out:
        out.write(json.dumps(manifest, indent=2).encode("utf-8"))
    fsync_dir(dest)
    return report


def store_has_data(paths: BenchPaths) -> bool:
    if paths.database.exists():
        conn = sqlite3.connect(paths.database, timeout=30)
        try:
            if _count(conn) > 0:
                return True
        finally:
            conn.close()
    blobs = paths.files / "blobs"
    return blobs.is_dir() and any(p.is_file() for p in blobs.rglob("*"))


@dataclass
class RestoreReport:
    source: str
    datapoints: int
    files: CopyStats
    config: bool


def restore(paths: BenchPaths, source: os.PathLike[str] | str, *,
            force: bool = False) -> RestoreReport:
    """Restore a backup folder into the store at ``paths``, atomically (see the module
    docstring)."""
    from app.admin.lock import ServiceLock, ServiceLockedError

    src = Path(source).expanduser().resolve()
    src_db = src / DB_NAME
    if not src_db.is_file():
        raise NotFoundError(f"{src} is not a backup folder (no {DB_NAME} in it)")
    # Hold the service lock for the whole restore: no service can start meanwhile.
    lock = ServiceLock(paths)
    try:
        lock.acquire()
    except ServiceLockedError as exc:
        raise ConflictError(f"{exc}; restore needs the service stopped first") from exc
    try:
        if not force and store_has_data(paths):
            raise ConflictError(f"the store at {paths.data_dir} already holds data; restore "
                                "into an empty --data-dir, or pass --force to replace it")
        try:
            staged, count = _stage_database(paths, src_db)
            files = copy_blobs(src / "files" / "blobs", paths.files / "blobs")
            _retire_database(paths)
        except (OSError, sqlite3.Error) as exc:
            if not is_disk_full(exc):
                raise
            shutil.rmtree(paths.data_dir / STAGING_NAME, ignore_errors=True)
            raise DiskFullError(f"the disk holding {paths.data_dir} is full: nothing was "
                                "restored (the store is as it was); free space and restore "
                                "again") from exc
        os.replace(staged, paths.database)  # the one step from the old store to the new
        fsync_dir(paths.data_dir)
        shutil.rmtree(staged.parent, ignore_errors=True)
        config = _restore_config(paths, src / CONFIG_NAME, force)
    finally:
        lock.release()
    return RestoreReport(source=str(src), datapoints=count, files=files, config=config)


def _stage_database(paths: BenchPaths, src_db: Path) -> tuple[Path, int]:
    """Copy the backup's database into a fresh staging folder; return it and its rows."""
    staging = paths.data_dir / STAGING_NAME
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted restore
    staging.mkdir(parents=True)
    fsync_dir(paths.data_dir)
    staged = staging / DB_NAME
    source_conn = sqlite3.connect(f"{src_db.as_uri()}?mode=ro", uri=True)
    try:
        result = str(source_conn.execute("PRAGMA integrity_check").fetchone()[0])
        if result != "ok":
            raise StoreError(f"the backup {src_db} is damaged ({result}); use another one")
        target = sqlite3.connect(staged, timeout=30)
        try:
            source_conn.backup(target)
            count = _count(target)
        finally:
            target.close()
    finally:
        source_conn.close()
    if any(staged.with_name(DB_NAME + suffix).exists() for suffix in ("-wal", "-journal")):
        raise StoreError(f"staging the restored database in {staging} did not finish "
                         "cleanly; run the restore again")
    fsync_file(staged)
    fsync_dir(staging)
    return staged, count


def _retire_database(paths: BenchPaths) -> None:
    """Empty the old database's WAL into it and keep a copy of it, so the staged database
    can be renamed over it (a WAL left beside it would be replayed over the new one)."""
    database = paths.database
    if not database.exists():
        return
    conn = sqlite3.connect(database, timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    wal = database.with_name(DB_NAME + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise ConflictError(f"another program still has the store {database} open; close it "
                            "(benchdata commands, the window) and restore again")
    for suffix in ("-wal", "-shm"):  # empty leftovers; the new database makes its own
        database.with_name(DB_NAME + suffix).unlink(missing_ok=True)
    kept = database.with_name(DB_NAME + BEFORE_RESTORE_SUFFIX)
    kept.unlink(missing_ok=True)
    try:
        os.link(database, kept)
    except OSError:  # no hard links on this file system
        shutil.copyfile(database, kept)
        fsync_file(kept)
    fsync_dir(paths.data_dir)


def _restore_config(paths: BenchPaths, src_config: Path, force: bool) -> bool:
    if not src_config.is_file() or (paths.config_file.exists() and not force):
        return False
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    if paths.config_file.exists():
        _copy_durably(paths.config_file,
                      paths.config_file.with_name(CONFIG_NAME + BEFORE_RESTORE_SUFFIX))
    _copy_durably(src_config, paths.config_file)
    return True
