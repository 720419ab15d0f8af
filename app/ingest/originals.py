"""The instrument's originals: removed or moved once their custody is verified (opt-in).

A watched-folder rule with ``originals_after_days`` set lets the watcher clean up the
instrument PC's own files after each full scan. A file is touched only when all of these
hold, checked in this order:

* its datapoint is live, still names the captured SHA-256, and is verified central (its
  custody receipt: :func:`app.core.custody.verified_central_sql`), and it was captured
  more than N days ago;
* every component of its path below the watched folder is a real directory (no link) and
  the file itself is a regular file, not a link (``lstat``; links are never followed);
* its size, mtime, inode and ctime are those recorded at capture
  (:meth:`app.ingest.ledger.LedgerEntry.matches`; a row without inode/ctime is skipped);
* its bytes, read through a descriptor opened without following links (the same inode),
  hash to the captured SHA-256, and its stats did not change while they were read.

Then it is unlinked, or moved below ``originals_move_to`` at the same relative path (a
rename; across disks a verified, fsynced copy, then the unlink). Each action is logged and
recorded in ``ingest_originals`` (which the next sweep skips), and counted in the folder's
status. A file that fails a check is left alone; a changed file is reported once.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import sqlite3
import stat
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final, Optional

from app.core import custody, fsnames
from app.core.atomic import fsync_dir
from app.core.store import LocalStore
from app.core.timestamps import format_canonical, now_canonical, utc_now
from app.ingest.ledger import LedgerEntry
from app.ingest.rules import WatchRule

log = logging.getLogger(__name__)

COMPONENT: Final = "ingest-originals"
_READ_CHUNK: Final = 1024 * 1024
_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)


def _v1_originals(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE ingest_originals (
            rule_id TEXT NOT NULL,
            rel_path TEXT NOT NULL,
            datapoint_id TEXT NOT NULL,
            action TEXT NOT NULL,
            destination TEXT,
            at TEXT NOT NULL,
            PRIMARY KEY (rule_id, rel_path)
        ) WITHOUT ROWID
        """
    )


MIGRATIONS: Final = [_v1_originals]


@dataclass(frozen=True)
class OriginalDone:
    rel_path: str
    datapoint_id: str
    action: str  # removed | moved
    destination: Optional[str]


class OriginalChanged(Exception):
    """The file is not (or no longer provably) the one captured: leave it alone."""


def install(store: LocalStore) -> None:
    store.migrate_component(COMPONENT, MIGRATIONS)


def due(store: LocalStore, rule: WatchRule) -> list[LedgerEntry]:
    """Ledger entries of ``rule`` whose originals the rule lets go now."""
    if rule.originals_after_days is None or rule.datasets:
        return []
    cutoff = format_canonical(utc_now() - timedelta(days=rule.originals_after_days))
    # Candidates from the ledger; the store says which are live with these very bytes
    # verified central.
    with store.reader() as conn:
        rows = conn.execute(
            "SELECT l.rule_id, l.rel_path, l.size, l.mtime_ns, l.sha256, l.datapoint_id, "
            "l.fingerprint, l.ino, l.ctime_ns FROM ingest_ledger AS l "
            "WHERE l.rule_id = ? AND l.captured_at < ? AND l.sha256 IS NOT NULL AND "
            "NOT EXISTS (SELECT 1 FROM ingest_originals AS g WHERE g.rule_id = l.rule_id "
            "AND g.rel_path = l.rel_path)",
            (rule.id, cutoff)).fetchall()
    verified = custody.verified_live_sha256(store, [str(r[5]) for r in rows])
    return [LedgerEntry(str(r[0]), fsnames.from_key(str(r[1])), int(r[2]), int(r[3]),
                        str(r[4]), str(r[5]), r[6], r[7], r[8])
            for r in rows if verified.get(str(r[5])) == r[4]]


def _lstat_inside(root: Path, rel_path: str) -> os.stat_result:
    """The file's own stats, after checking each folder on the way is a real directory
    (a link anywhere below the root could lead outside the watched folder)."""
    parts = rel_path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise OriginalChanged("its path is not a plain path below the watched folder")
    current = root
    for part in parts[:-1]:
        current = current / part
        if not stat.S_ISDIR(os.lstat(current).st_mode):
            raise OriginalChanged(f"{current} is a link or not a folder")
    found = os.lstat(current / parts[-1])
    if not stat.S_ISREG(found.st_mode):
        raise OriginalChanged("it is a link or not a regular file")
    return found


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == \
        (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns, b.st_ctime_ns)


def _verify(path: Path, entry: LedgerEntry, before: os.stat_result) -> int:
    """Open ``path`` without following links, check it is the inode ``before`` describes
    and hashes to the captured SHA-256; return the open descriptor (caller closes)."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW | getattr(os, "O_BINARY", 0))
    try:
        if not _same_file(os.fstat(fd), before):
            raise OriginalChanged("it was replaced while it was checked")
        digest = hashlib.sha256()
        while chunk := os.read(fd, _READ_CHUNK):
            digest.update(chunk)
        if digest.hexdigest() != entry.sha256:
            raise OriginalChanged("its bytes differ from the captured ones")
        if not _same_file(os.fstat(fd), before):
            raise OriginalChanged("it changed while it was checked")
        return fd
    except BaseException:
        os.close(fd)
        raise


def _copy_verified(fd: int, entry: LedgerEntry, destination: Path) -> None:
    """Across disks: copy the open, verified file to ``destination`` durably, checking the
    copy's SHA-256 on the way."""
    temp = destination.with_name(destination.name + ".part")
    os.lseek(fd, 0, os.SEEK_SET)
    digest = hashlib.sha256()
    out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                  0o644)
    try:
        while chunk := os.read(fd, _READ_CHUNK):
            digest.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view):]
        os.fsync(out)
    finally:
        os.close(out)
    if digest.hexdigest() != entry.sha256:
        temp.unlink()
        raise OriginalChanged("its bytes changed while it was copied")
    os.replace(temp, destination)
    fsync_dir(destination.parent)


def _let_go(rule: WatchRule, entry: LedgerEntry) -> OriginalDone:
    path = rule.root / entry.rel_path
    before = _lstat_inside(rule.root, entry.rel_path)
    if entry.lacks_identity:  # captured by an older version; the next scan learns it
        raise OriginalChanged("its inode and ctime at capture are not known yet")
    if not entry.matches(before.st_size, before.st_mtime_ns, before.st_ino,
                         before.st_ctime_ns):
        raise OriginalChanged("it changed since it was captured")
    fd = _verify(path, entry, before)
    try:
        if not _same_file(_lstat_inside(rule.root, entry.rel_path), before):
            raise OriginalChanged("it was replaced while it was checked")
        if rule.originals_action == "remove":
            os.unlink(path)
            fsync_dir(path.parent)
            return OriginalDone(entry.rel_path, entry.datapoint_id, "removed", None)
        assert rule.originals_move_to is not None
        destination = Path(rule.originals_move_to) / entry.rel_path
        destination.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(destination):
            raise OriginalChanged(f"{destination} already exists")
        try:
            os.rename(path, destination)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _copy_verified(fd, entry, destination)
            os.unlink(path)
        fsync_dir(path.parent)
        fsync_dir(destination.parent)
        return OriginalDone(entry.rel_path, entry.datapoint_id, "moved", str(destination))
    finally:
        os.close(fd)


def _record(store: LocalStore, rule: WatchRule, done: OriginalDone) -> None:
    with store.transaction() as conn:
        conn.execute("INSERT OR REPLACE INTO ingest_originals (rule_id, rel_path, datapoint_id, "
                     "action, destination, at) VALUES (?, ?, ?, ?, ?, ?)",
                     (rule.id, fsnames.to_key(done.rel_path), done.datapoint_id, done.action,
                      done.destination, now_canonical()))


def sweep(store: LocalStore, rule: WatchRule) -> tuple[list[OriginalDone], dict[str, str]]:
    """Remove or move the originals ``rule`` lets go now; return what was done, and the
    files left alone with why (readable relative path -> message)."""
    done: list[OriginalDone] = []
    left: dict[str, str] = {}
    for entry in due(store, rule):
        try:
            result = _let_go(rule, entry)
        except FileNotFoundError:
            continue  # already gone (deleted by the instrument or a person)
        except (OriginalChanged, OSError) as exc:
            left[fsnames.readable(entry.rel_path)] = f"original kept: {exc}"
            continue
        _record(store, rule, result)
        log.info("watcher %s: %s the original %s (datapoint %s, verified central)%s", rule.id,
                 result.action, fsnames.readable(entry.rel_path), entry.datapoint_id,
                 f" to {result.destination}" if result.destination else "")
        done.append(result)
    return done, left


def let_go_summary(store: LocalStore, rule_id: str) -> Optional[str]:
    """"N original(s) removed/moved, the last <when>: <what>", from the durable record
    (None when the rule never let one go)."""
    with store.reader() as conn:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                        "name = 'ingest_originals'").fetchone() is None:
            return None
        count = conn.execute("SELECT COUNT(*) FROM ingest_originals WHERE rule_id = ?",
                             (rule_id,)).fetchone()[0]
        last = conn.execute("SELECT rel_path, action, destination, at FROM ingest_originals "
                            "WHERE rule_id = ? ORDER BY at DESC LIMIT 1", (rule_id,)).fetchone()
    if not count:
        return None
    rel, action, destination, at = last
    where = f" to {destination}" if destination else ""
    return (f"{count} original(s) let go, the last at {at}: {action} "
            f"{fsnames.readable(fsnames.from_key(str(rel)))}{where}")
