"""``benchdata backup DEST`` / ``benchdata restore SRC``.

A backup folder holds ``store.sqlite3`` (a consistent snapshot taken with SQLite's online
backup API from a read connection, so the service keeps capturing meanwhile),
``files/blobs/…`` (the content-addressed file store; blobs already in DEST are skipped),
``config.json`` and ``backup.json`` (what was backed up, when). Secrets stay in the OS
keyring and are not copied.

Order matters: the database snapshot is taken first, the blobs copied after. A capture
writes its blob before it commits its row, so every file a backed-up row names is on disk
by the time the blobs are copied.

Restore refuses while a service holds the store (``service.lock``) and refuses to replace a
store that has datapoints unless ``force``. It writes the database through the backup API
too (into the existing file, under SQLite's own locking, so a leftover WAL cannot be
replayed over it), then copies the blobs (never deleting any) and the configuration.
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
from app.core.errors import ConflictError, NotFoundError, StoreError
from app.core.paths import BenchPaths

DB_NAME = "store.sqlite3"
CONFIG_NAME = "config.json"
MANIFEST_NAME = "backup.json"


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


def copy_blobs(source: Path, destination: Path) -> CopyStats:
    """Copy the ``blobs`` tree; a file already there with the same size is skipped (the name
    is its SHA-256). Each file lands under a temporary name and is renamed into place."""
    stats = CopyStats()
    if not source.is_dir():
        return stats
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
            target_dir.mkdir(parents=True, exist_ok=True)
            partial = dst.with_name(dst.name + ".copying")
            try:
                shutil.copyfile(src, partial)
            except FileNotFoundError:
                partial.unlink(missing_ok=True)
                continue
            os.replace(partial, dst)
            stats.copied += 1
            stats.bytes_copied += size
    return stats


def _count(conn: sqlite3.Connection) -> int:
    try:
        return int(conn.execute("SELECT COUNT(*) FROM datapoints").fetchone()[0])
    except sqlite3.Error:
        return 0


def backup(paths: BenchPaths, destination: os.PathLike[str] | str) -> BackupReport:
    """Back the store up into ``destination`` (created if needed); safe while capturing."""
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
    os.replace(partial, dest / DB_NAME)
    report.files = copy_blobs(paths.files / "blobs", dest / "files" / "blobs")
    if paths.config_file.is_file():
        shutil.copyfile(paths.config_file, dest / CONFIG_NAME)
        report.config = True
    report.finished = _now()
    manifest = {"app_version": __version__, "source": str(paths.data_dir), **report.to_dict()}
    (dest / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
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
    """Restore a backup folder into the store at ``paths`` (see the module docstring)."""
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
        source_conn = sqlite3.connect(f"{src_db.as_uri()}?mode=ro", uri=True)
        try:
            result = str(source_conn.execute("PRAGMA integrity_check").fetchone()[0])
            if result != "ok":
                raise StoreError(f"the backup {src_db} is damaged ({result}); use another one")
            paths.data_dir.mkdir(parents=True, exist_ok=True)
            target = sqlite3.connect(paths.database, timeout=30)
            try:
                source_conn.backup(target)
                count = _count(target)
            finally:
                target.close()
        finally:
            source_conn.close()
        files = copy_blobs(src / "files" / "blobs", paths.files / "blobs")
        config = False
        src_config = src / CONFIG_NAME
        if src_config.is_file() and (force or not paths.config_file.exists()):
            paths.config_dir.mkdir(parents=True, exist_ok=True)
            if paths.config_file.exists():
                shutil.copyfile(paths.config_file,
                                paths.config_file.with_name("config.json.before-restore"))
            shutil.copyfile(src_config, paths.config_file)
            config = True
    finally:
        lock.release()
    return RestoreReport(source=str(src), datapoints=count, files=files, config=config)
