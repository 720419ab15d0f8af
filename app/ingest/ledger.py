"""The capture ledger: which file (rule, relative path) was captured as which datapoint.

Two tables in the store's database, versioned with ``migrate_component("ingest", ...)``:

* ``ingest_ledger`` — one row per captured unit (a file, or a dataset folder): the size,
  mtime and (for datasets) listing fingerprint it had when captured, the SHA-256 of what
  was stored, and the datapoint id. A unit whose stats equal its row is not looked at
  again; one whose stats differ is hashed, and only different content becomes a new
  datapoint (that ``replaces`` the old one).
* ``ingest_pending`` — the write-ahead *intent* of a capture, written before the datapoint.
* ``ingest_problems`` (version 2) — what a running watcher reports per file (refused links,
  files that keep failing), so that ``benchdata watch list`` in another process shows it.

Version 2 also keeps each file's inode and ctime beside size and mtime (see
:meth:`LedgerEntry.matches`). Relative paths are keyed by ``fsnames.to_key``: a name that
is not UTF-8 cannot be bound as SQLite text, and must not stop a folder's lookups.

Why the intent: ``BenchService.submit_many`` commits the datapoint rows in its own
transaction on the store's single writer, so the ledger row cannot share it. A crash
between the two commits would otherwise leave a datapoint the ledger does not know and the
file would be captured twice. So a capture is three short commits — intent (with the
pre-generated datapoint id), datapoints, ledger row + intent removed — and
:meth:`Ledger.recover` at start-up finishes every intent whose datapoint exists (a primary
key lookup) and drops the others (their files are simply captured again).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Optional

from app.core import custody, fsnames
from app.core.sqlin import in_chunks
from app.core.store import LocalStore
from app.core.timestamps import now_canonical



def _v1_tables(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE ingest_ledger (
            rule_id TEXT NOT NULL,
            rel_path TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            fingerprint TEXT,
            sha256 TEXT NOT NULL,
            datapoint_id TEXT NOT NULL,
            captured_at TEXT NOT NULL,
            PRIMARY KEY (rule_id, rel_path)
        ) WITHOUT ROWID
        """
    )
    conn.execute(
        """
        CREATE TABLE ingest_pending (
            datapoint_id TEXT PRIMARY KEY,
            rule_id TEXT NOT NULL,
            rel_path TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            fingerprint TEXT,
            sha256 TEXT NOT NULL,
            created_at TEXT NOT NULL
        )
        """
    )


def _v2_identity_and_problems(conn: sqlite3.Connection) -> None:
    """Inode and ctime beside size and mtime (copy tools preserve mtimes; see
    :meth:`LedgerEntry.matches`), and the watcher's problems for ``watch list``."""
    for table in ("ingest_ledger", "ingest_pending"):
        conn.execute(f"ALTER TABLE {table} ADD COLUMN ino INTEGER")
        conn.execute(f"ALTER TABLE {table} ADD COLUMN ctime_ns INTEGER")
    conn.execute(
        """
        CREATE TABLE ingest_problems (
            rule_id TEXT NOT NULL,
            rel_path TEXT NOT NULL,
            message TEXT NOT NULL,
            since TEXT NOT NULL,
            PRIMARY KEY (rule_id, rel_path)
        ) WITHOUT ROWID
        """
    )


MIGRATIONS: Final = (_v1_tables, _v2_identity_and_problems)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One captured unit (file or dataset folder) as the ledger remembers it."""

    rule_id: str
    rel_path: str
    size: int
    mtime_ns: int
    sha256: str
    datapoint_id: str
    fingerprint: Optional[str] = None
    ino: Optional[int] = None  # None: recorded before version 2 (learnt at the next scan)
    ctime_ns: Optional[int] = None

    def same_stats(self, size: int, mtime_ns: int, fingerprint: Optional[str] = None) -> bool:
        return (self.size == size and self.mtime_ns == mtime_ns
                and self.fingerprint == fingerprint)

    def matches(self, size: int, mtime_ns: int, ino: int, ctime_ns: int) -> bool:
        """Is this file, as far as its stats tell, still the one captured?

        Size and mtime are not enough: ``cp -p``, ``rsync -t`` and robocopy keep the mtime
        of new bytes. So the inode (a new file) and the ctime (any write, even one that
        restores the mtime afterwards, changes it; it cannot be set by tools) must match
        too. An inode of 0 is unknown (Windows directory listings), and so is a row from
        before version 2; those compare on what they have (see :meth:`lacks_identity`).
        """
        if not self.same_stats(size, mtime_ns):
            return False
        if self.ino and ino and self.ino != ino:
            return False
        return self.ctime_ns is None or self.ctime_ns == ctime_ns

    @property
    def lacks_identity(self) -> bool:
        return self.ino is None or self.ctime_ns is None

    def with_stats(self, stat: os.stat_result) -> "LedgerEntry":
        return replace(self, size=stat.st_size, mtime_ns=stat.st_mtime_ns,
                       ino=stat.st_ino, ctime_ns=stat.st_ctime_ns)


def _now() -> str:
    return now_canonical()


_COLUMNS: Final = ("rule_id, rel_path, size, mtime_ns, sha256, datapoint_id, fingerprint, ino, "
                   "ctime_ns")


def _entry(row: Sequence[object]) -> LedgerEntry:
    """A row read back: its key spelled as the path the file system gave (fsnames)."""
    return LedgerEntry(row[0], fsnames.from_key(row[1]), *row[2:])  # type: ignore[arg-type]


class Ledger:
    """Read and write the ingest tables (writes on the store's one writer)."""

    def __init__(self, store: LocalStore) -> None:
        self._store = store
        store.migrate_component("ingest", MIGRATIONS)

    # -- reads -------------------------------------------------------------------------

    def lookup_many(self, rule_id: str, rel_paths: Sequence[str]) -> dict[str, LedgerEntry]:
        """Ledger rows for these paths (absent paths are simply missing from the result)."""
        found: dict[str, LedgerEntry] = {}
        if not rel_paths:
            return found
        with self._store.reader() as conn:
            for marks, chunk in in_chunks([fsnames.to_key(rel) for rel in rel_paths]):
                for row in conn.execute(
                    f"SELECT {_COLUMNS} FROM ingest_ledger "
                    f"WHERE rule_id = ? AND rel_path IN ({marks})", (rule_id, *chunk)
                ):
                    entry = _entry(row)
                    found[entry.rel_path] = entry
        return found

    def lookup(self, rule_id: str, rel_path: str) -> Optional[LedgerEntry]:
        return self.lookup_many(rule_id, [rel_path]).get(rel_path)

    def count(self, rule_id: Optional[str] = None) -> int:
        with self._store.reader() as conn:
            if rule_id is None:
                return int(conn.execute("SELECT COUNT(*) FROM ingest_ledger").fetchone()[0])
            return int(conn.execute("SELECT COUNT(*) FROM ingest_ledger WHERE rule_id = ?",
                                    (rule_id,)).fetchone()[0])

    def safe_to_delete(self) -> dict[str, tuple[int, int]]:
        """Per rule: (files whose central copy is verified, files captured) among the live
        datapoints this folder captured: how many originals are safe to delete from the
        instrument (``app.core.custody.central_verified``)."""
        return custody.verified_counts_by(self._store, "ingest_ledger", "rule_id")

    def pending_count(self) -> int:
        with self._store.reader() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM ingest_pending").fetchone()[0])

    # -- the capture protocol ----------------------------------------------------------

    def begin(self, entries: Sequence[LedgerEntry]) -> None:
        """Record the intent to create these datapoints (before submitting them)."""
        now = _now()
        with self._store.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO ingest_pending (datapoint_id, rule_id, rel_path, size, "
                "mtime_ns, fingerprint, sha256, created_at, ino, ctime_ns) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(e.datapoint_id, e.rule_id, fsnames.to_key(e.rel_path), e.size, e.mtime_ns,
                  e.fingerprint, e.sha256, now, e.ino, e.ctime_ns) for e in entries],
            )

    def commit(self, entries: Sequence[LedgerEntry]) -> None:
        """The datapoints are stored: remember the units and drop the intents."""
        now = _now()
        with self._store.transaction() as conn:
            self._upsert(conn, entries, now)
            conn.executemany("DELETE FROM ingest_pending WHERE datapoint_id = ?",
                             [(e.datapoint_id,) for e in entries])

    def abandon(self, datapoint_ids: Sequence[str]) -> None:
        """The datapoints were not stored: drop the intents."""
        with self._store.transaction() as conn:
            conn.executemany("DELETE FROM ingest_pending WHERE datapoint_id = ?",
                             [(i,) for i in datapoint_ids])

    def refresh(self, entry: LedgerEntry) -> None:
        """Same content under new stats (a touched file): update the row, no datapoint."""
        with self._store.transaction() as conn:
            self._upsert(conn, [entry], _now())

    def record(self, entries: Sequence[LedgerEntry]) -> None:
        """Write ledger rows directly (imports, benchmarks, tests)."""
        with self._store.transaction() as conn:
            self._upsert(conn, entries, _now())

    @staticmethod
    def _upsert(conn: sqlite3.Connection, entries: Sequence[LedgerEntry], now: str) -> None:
        conn.executemany(
            "INSERT INTO ingest_ledger (rule_id, rel_path, size, mtime_ns, fingerprint, sha256, "
            "datapoint_id, captured_at, ino, ctime_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (rule_id, rel_path) DO UPDATE SET size = excluded.size, "
            "mtime_ns = excluded.mtime_ns, fingerprint = excluded.fingerprint, "
            "sha256 = excluded.sha256, datapoint_id = excluded.datapoint_id, "
            "captured_at = excluded.captured_at, ino = excluded.ino, "
            "ctime_ns = excluded.ctime_ns",
            [(e.rule_id, fsnames.to_key(e.rel_path), e.size, e.mtime_ns, e.fingerprint,
              e.sha256, e.datapoint_id, now, e.ino, e.ctime_ns) for e in entries],
        )

    def learn_identity(self, entries: Sequence[LedgerEntry]) -> None:
        """Rows from before version 2 whose size and mtime still match: remember the
        file's inode and ctime now, without reading it (an upgrade hashes nothing)."""
        with self._store.transaction() as conn:
            conn.executemany(
                "UPDATE ingest_ledger SET ino = ?, ctime_ns = ? WHERE rule_id = ? AND "
                "rel_path = ?", [(e.ino, e.ctime_ns, e.rule_id, fsnames.to_key(e.rel_path))
                                 for e in entries])

    # -- problems (what ``watch list`` shows of a running watcher) --------------------

    def save_problems(self, rule_id: str, problems: Mapping[str, str]) -> None:
        """Replace a rule's reported problems (relative path, readable -> message)."""
        now = _now()
        with self._store.transaction() as conn:
            conn.execute("DELETE FROM ingest_problems WHERE rule_id = ?", (rule_id,))
            conn.executemany(
                "INSERT INTO ingest_problems (rule_id, rel_path, message, since) "
                "VALUES (?, ?, ?, ?)",
                [(rule_id, fsnames.readable(rel), fsnames.readable(message), now)
                 for rel, message in problems.items()])

    def problems(self, rule_id: str) -> dict[str, str]:
        with self._store.reader() as conn:
            return dict(conn.execute(
                "SELECT rel_path, message FROM ingest_problems WHERE rule_id = ? "
                "ORDER BY rel_path", (rule_id,)).fetchall())

    def recover(self, rule_id: Optional[str] = None) -> tuple[int, int]:
        """Finish intents whose datapoint was committed, drop the others.

        Returns (finished, dropped). Run at start-up before any worker captures (all
        rules), or by a worker for its own rule, between its captures.
        """
        where, params = ("WHERE rule_id = ?", (rule_id,)) if rule_id is not None else ("", ())
        with self._store.reader() as conn:
            pending = [_entry(row) for row in conn.execute(
                f"SELECT {_COLUMNS} FROM ingest_pending {where} ORDER BY created_at", params)]
        stored = self._store.existing_ids([entry.datapoint_id for entry in pending])
        finished = [entry for entry in pending if entry.datapoint_id in stored]
        dropped = [entry.datapoint_id for entry in pending if entry.datapoint_id not in stored]
        if finished:
            self.commit(finished)
        if dropped:
            self.abandon(dropped)
        return len(finished), len(dropped)

    def forget_rule(self, rule_id: str) -> int:
        """Drop a rule's ledger (its files would be captured again if watched again)."""
        with self._store.transaction() as conn:
            conn.execute("DELETE FROM ingest_problems WHERE rule_id = ?", (rule_id,))
            return conn.execute("DELETE FROM ingest_ledger WHERE rule_id = ?",
                                (rule_id,)).rowcount
