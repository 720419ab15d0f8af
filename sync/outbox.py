"""The outbox: every local change waiting to reach the central store, with its state.

A local write, edit or delete sets the row's ``sync_state`` to ``pending`` (the core store
does that). :meth:`Outbox.collect` turns such rows into outbox items, one per datapoint —
the latest revision wins, so ten quick edits are pushed once. An item moves

    pending -> uploading -> uploaded (file verified in the bucket) -> recorded -> confirmed

(values and deletions skip the file steps) or to ``quarantined`` with a reason. Every
step is one transaction that also mirrors the state into the datapoint row's
``sync_state`` *only if the row still has the revision the item pushes*: an edit made
meanwhile keeps the row ``pending`` and is collected again. Confirmed items leave the
outbox. Multipart uploads in progress (upload id, finished parts) and the objects
verified central live in tables of their own, so a killed process resumes, exactly once.

Scheduling times (``next_attempt_at``) are this machine's clock; they only decide *when*
to retry, never the order of data.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Optional

from app.core import custody, syncrows
from app.core.backoff import backoff_delay
from app.core.ids import new_ulid
from app.core.sqlin import in_chunks
from app.core.store import LocalStore
from app.core.syncstate import ACTIVE_STATES, SyncState
from app.core.timestamps import now_canonical

from sync.objects import SavedPart, SavedUpload, StoredObject, UploadListener

PENDING: Final = SyncState.PENDING
UPLOADING: Final = SyncState.UPLOADING
UPLOADED: Final = SyncState.UPLOADED
RECORDED: Final = SyncState.RECORDED
CONFIRMED: Final = SyncState.CONFIRMED
QUARANTINED: Final = SyncState.QUARANTINED

BACKOFF_BASE_S: Final = 1.0
BACKOFF_CAP_S: Final = 300.0


def _now_text() -> str:
    return now_canonical()


def _v1_tables(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE sync_outbox (
            datapoint_id TEXT PRIMARY KEY,
            revision INTEGER NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL DEFAULT 0,
            last_error TEXT,
            quarantine_reason TEXT,
            bytes_total INTEGER,
            bytes_done INTEGER NOT NULL DEFAULT 0,
            enqueued_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    conn.execute("CREATE INDEX ix_sync_outbox_due ON sync_outbox (state, next_attempt_at)")
    conn.execute("CREATE INDEX ix_sync_outbox_order ON sync_outbox (enqueued_at, datapoint_id)")
    conn.execute(
        """
        CREATE TABLE sync_uploads (
            datapoint_id TEXT PRIMARY KEY,
            object_name TEXT NOT NULL,
            upload_id TEXT NOT NULL,
            part_size INTEGER NOT NULL,
            created_at TEXT NOT NULL
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE sync_parts (
            datapoint_id TEXT NOT NULL,
            upload_id TEXT NOT NULL,
            part_number INTEGER NOT NULL,
            etag TEXT NOT NULL,
            size INTEGER NOT NULL,
            PRIMARY KEY (datapoint_id, upload_id, part_number)
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE sync_objects (
            datapoint_id TEXT PRIMARY KEY,
            bucket TEXT NOT NULL,
            object_name TEXT NOT NULL,
            size INTEGER NOT NULL,
            etag TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            content_type TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            verified_at TEXT NOT NULL,
            freed_at TEXT
        )
        """
    )
    conn.execute("CREATE INDEX ix_sync_objects_sha256 ON sync_objects (sha256)")
    conn.execute("CREATE TABLE sync_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


MIGRATIONS: Final = [_v1_tables]


@dataclass(frozen=True)
class OutboxItem:
    datapoint_id: str
    revision: int
    state: str
    attempts: int
    last_error: Optional[str]
    enqueued_at: str


@dataclass(frozen=True)
class QuarantinedItem:
    datapoint_id: str
    revision: int
    reason: str
    since: str
    label: Optional[str]


def write_metas(conn: sqlite3.Connection, values: dict[str, Optional[str]]) -> None:
    """Set (None: delete) ``sync_meta`` keys inside the caller's transaction, so a value
    such as the pull cursor commits together with the rows it describes."""
    for key, value in values.items():
        if value is None:
            conn.execute("DELETE FROM sync_meta WHERE key = ?", (key,))
        else:
            conn.execute("INSERT INTO sync_meta (key, value) VALUES (?, ?) ON CONFLICT "
                         "(key) DO UPDATE SET value = excluded.value", (key, value))


class Outbox:
    """The outbox tables of one local store (use one instance per process)."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        store.migrate_component("sync", MIGRATIONS)

    # -- meta ------------------------------------------------------------------------------

    def meta(self, key: str) -> Optional[str]:
        with self.store.reader() as conn:
            row = conn.execute("SELECT value FROM sync_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: Optional[str]) -> None:
        self.set_metas({key: value})

    def set_metas(self, values: dict[str, Optional[str]]) -> None:
        """Several meta keys in one transaction (one durable commit); None deletes."""
        with self.store.transaction() as conn:
            write_metas(conn, values)

    def bench_id(self) -> str:
        """This bench's identity in central documents (made once, kept for good)."""
        existing = self.meta("bench_id")
        if existing:
            return existing
        with self.store.transaction() as conn:
            conn.execute("INSERT INTO sync_meta (key, value) VALUES ('bench_id', ?) "
                         "ON CONFLICT (key) DO NOTHING", (new_ulid(),))
        return str(self.meta("bench_id"))

    # -- collecting --------------------------------------------------------------------------

    def collect(self) -> int:
        """Enqueue every pending row whose revision the outbox does not hold yet."""
        now = _now_text()
        with self.store.transaction() as conn:
            return syncrows.collect_pending(conn, now)

    def has_uncollected(self) -> bool:
        """Cheap check for the background loop: is there a pending row not yet enqueued?"""
        return syncrows.has_uncollected(self.store)

    def due(self, *, limit: int, force: bool = False,
            after: Optional[tuple[str, str]] = None) -> list[OutboxItem]:
        """Items ready for an attempt (all active ones with ``force``), oldest first,
        continuing after ``after`` = (enqueued_at, datapoint_id) of the previous batch."""
        sql = ("SELECT datapoint_id, revision, state, attempts, last_error, enqueued_at "
               f"FROM sync_outbox WHERE state IN ({', '.join('?' for _ in ACTIVE_STATES)})")
        params: list[Any] = list(ACTIVE_STATES)
        if not force:
            sql += " AND next_attempt_at <= ?"
            params.append(time.time())
        if after is not None:
            sql += " AND (enqueued_at > ? OR (enqueued_at = ? AND datapoint_id > ?))"
            params.extend([after[0], after[0], after[1]])
        sql += " ORDER BY enqueued_at, datapoint_id LIMIT ?"
        params.append(limit)
        with self.store.reader() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [OutboxItem(*row) for row in rows]

    def items(self, datapoint_ids: Sequence[str]) -> list[OutboxItem]:
        if not datapoint_ids:
            return []
        with self.store.reader() as conn:
            rows = conn.execute(
                "SELECT datapoint_id, revision, state, attempts, last_error, enqueued_at FROM "
                f"sync_outbox WHERE datapoint_id IN ({', '.join('?' for _ in datapoint_ids)})",
                list(datapoint_ids)).fetchall()
        return [OutboxItem(*row) for row in rows]

    def next_due_in(self) -> Optional[float]:
        """Seconds until the next item is due (0 if one is due now), None if none waits."""
        with self.store.reader() as conn:
            row = conn.execute(
                f"SELECT MIN(next_attempt_at) FROM sync_outbox WHERE state IN "
                f"({', '.join('?' for _ in ACTIVE_STATES)})", ACTIVE_STATES).fetchone()
        if row is None or row[0] is None:
            return None
        return max(0.0, float(row[0]) - time.time())

    # -- transitions -------------------------------------------------------------------------

    @staticmethod
    def _mirror(conn: sqlite3.Connection, datapoint_id: str, revision: int, state: str) -> None:
        syncrows.mirror_state(conn, datapoint_id, revision, state)

    def mark(self, datapoint_id: str, revision: int, state: str, **fields: Any) -> None:
        with self.store.transaction() as conn:
            self._mark(conn, datapoint_id, revision, state, **fields)

    def _mark(self, conn: sqlite3.Connection, datapoint_id: str, revision: int, state: str,
              **fields: Any) -> None:
        sets = ", ".join(f"{key} = ?" for key in fields)
        conn.execute(
            f"UPDATE sync_outbox SET state = ?, updated_at = ?{', ' + sets if sets else ''} "
            "WHERE datapoint_id = ? AND revision = ?",
            (state, _now_text(), *fields.values(), datapoint_id, revision))
        self._mirror(conn, datapoint_id, revision, state)

    def mark_many(self, items: Sequence[tuple[str, int]], state: str) -> None:
        now = _now_text()
        with self.store.transaction() as conn:
            conn.executemany("UPDATE sync_outbox SET state = ?, updated_at = ? "
                             "WHERE datapoint_id = ? AND revision = ?",
                             [(state, now, i, r) for i, r in items])
            syncrows.mirror_states(conn, items, state)

    def confirm_many(self, items: Sequence[tuple[str, int]]) -> None:
        """The central record read back: done. The items leave the outbox.

        One transaction for the whole batch, the ``last_confirmed_at`` stamp included:
        each commit is a durable fsync, and a batch of values is confirmed at once.
        """
        if not items:
            return
        pairs = list(items)
        with self.store.transaction() as conn:
            conn.executemany("DELETE FROM sync_outbox WHERE datapoint_id = ? AND revision = ?",
                             pairs)
            syncrows.mirror_confirmed(conn, pairs)
            # A file's record read back naming its verified object: the central copy is
            # verified (the custody receipt's fact, and what makes it safe to delete).
            custody.note_records_verified(conn, [ident for ident, _revision in pairs])
            conn.execute("INSERT INTO sync_meta (key, value) VALUES ('last_confirmed_at', ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (_now_text(),))

    def retry_later(self, items: Sequence[tuple[str, int]], error: str,
                    rng: Optional[random.Random] = None) -> None:
        """A transient failure: back off (with jitter) per item; others are unaffected."""
        now = time.time()
        with self.store.transaction() as conn:
            for datapoint_id, revision in items:
                row = conn.execute("SELECT attempts FROM sync_outbox WHERE datapoint_id = ? "
                                   "AND revision = ?", (datapoint_id, revision)).fetchone()
                if row is None:
                    continue
                attempts = int(row[0]) + 1
                conn.execute(
                    "UPDATE sync_outbox SET attempts = ?, next_attempt_at = ?, last_error = ?, "
                    "updated_at = ? WHERE datapoint_id = ? AND revision = ?",
                    (attempts, now + backoff_delay(attempts, base=BACKOFF_BASE_S, cap=BACKOFF_CAP_S, rng=rng), error[:2000], _now_text(),
                     datapoint_id, revision))

    def note_error(self, items: Sequence[tuple[str, int]], error: str) -> None:
        """Why these items wait, without a backoff: they were not tried (their server is
        unusable this pass) and go as soon as it is usable again."""
        with self.store.transaction() as conn:
            conn.executemany("UPDATE sync_outbox SET last_error = ?, updated_at = ? "
                             "WHERE datapoint_id = ? AND revision = ?",
                             [(error[:2000], _now_text(), i, r) for i, r in items])

    def restate_errors(self, error: str) -> None:
        """A pass failed as a whole (nothing was tried item by item): the waiting items'
        errors become this one, so none shows a stale reason from an older attempt."""
        with self.store.transaction() as conn:
            conn.execute("UPDATE sync_outbox SET last_error = ? WHERE state != 'quarantined' "
                         "AND last_error IS NOT NULL AND last_error != ?",
                         (error[:2000], error[:2000]))

    def quarantine(self, datapoint_id: str, revision: int, reason: str) -> None:
        with self.store.transaction() as conn:
            self._mark(conn, datapoint_id, revision, QUARANTINED,
                       quarantine_reason=reason[:2000], last_error=reason[:2000])

    def retry_quarantined(self, datapoint_ids: Optional[Sequence[str]] = None) -> int:
        """Put quarantined items (all, or these) back in the queue, due now."""
        with self.store.transaction() as conn:
            where = "state = 'quarantined'"
            params: list[Any] = []
            if datapoint_ids:
                where += f" AND datapoint_id IN ({', '.join('?' for _ in datapoint_ids)})"
                params = [i.upper() for i in datapoint_ids]
            rows = conn.execute(f"SELECT datapoint_id, revision FROM sync_outbox WHERE {where}",
                                params).fetchall()
            for datapoint_id, revision in rows:
                conn.execute("UPDATE sync_outbox SET state = 'pending', attempts = 0, "
                             "next_attempt_at = 0, quarantine_reason = NULL, updated_at = ? "
                             "WHERE datapoint_id = ?", (_now_text(), datapoint_id))
                self._mirror(conn, datapoint_id, revision, PENDING)
        return len(rows)

    def drop(self, datapoint_id: str) -> None:
        """Forget an item (its change was superseded, e.g. by a central deletion)."""
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM sync_outbox WHERE datapoint_id = ?", (datapoint_id,))

    def rebase(self, datapoint_id: str, old_revision: int, new_revision: int) -> bool:
        """Lift a pending local change above the central revision (last writer wins)."""
        with self.store.transaction() as conn:
            if not syncrows.rebase_revision(conn, datapoint_id, old_revision, new_revision):
                return False
            conn.execute("UPDATE sync_outbox SET revision = ?, updated_at = ? "
                         "WHERE datapoint_id = ? AND revision = ?",
                         (new_revision, _now_text(), datapoint_id, old_revision))
        return True

    # -- uploads -----------------------------------------------------------------------------

    def saved_upload(self, datapoint_id: str, object_name: str) -> Optional[SavedUpload]:
        with self.store.reader() as conn:
            row = conn.execute("SELECT upload_id, part_size, object_name FROM sync_uploads "
                               "WHERE datapoint_id = ?", (datapoint_id,)).fetchone()
            if row is None or row[2] != object_name:
                return None
            parts = conn.execute("SELECT part_number, etag, size FROM sync_parts WHERE "
                                 "datapoint_id = ? AND upload_id = ?",
                                 (datapoint_id, row[0])).fetchall()
        return SavedUpload(upload_id=row[0], part_size=int(row[1]),
                           parts={int(n): SavedPart(int(n), e, int(s)) for n, e, s in parts})

    def save_upload(self, datapoint_id: str, object_name: str, upload_id: str,
                    part_size: int) -> None:
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM sync_parts WHERE datapoint_id = ?", (datapoint_id,))
            conn.execute(
                "INSERT INTO sync_uploads (datapoint_id, object_name, upload_id, part_size, "
                "created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (datapoint_id) DO UPDATE SET "
                "object_name = excluded.object_name, upload_id = excluded.upload_id, "
                "part_size = excluded.part_size, created_at = excluded.created_at",
                (datapoint_id, object_name, upload_id, part_size, _now_text()))

    def save_part(self, datapoint_id: str, upload_id: str, part: SavedPart,
                  bytes_done: Optional[int] = None) -> None:
        with self.store.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO sync_parts (datapoint_id, upload_id, part_number, "
                         "etag, size) VALUES (?, ?, ?, ?, ?)",
                         (datapoint_id, upload_id, part.number, part.etag, part.size))
            if bytes_done is not None:
                conn.execute("UPDATE sync_outbox SET bytes_done = ? WHERE datapoint_id = ?",
                             (bytes_done, datapoint_id))

    def clear_upload(self, datapoint_id: str) -> None:
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM sync_parts WHERE datapoint_id = ?", (datapoint_id,))
            conn.execute("DELETE FROM sync_uploads WHERE datapoint_id = ?", (datapoint_id,))

    def open_upload_ids(self) -> list[str]:
        with self.store.reader() as conn:
            return [str(r[0]) for r in conn.execute("SELECT upload_id FROM sync_uploads")]

    def record_object(self, datapoint_id: str, revision: int, stored: StoredObject,
                      endpoint: str) -> None:
        """The file is verified in the bucket: remember where, and move the item on."""
        with self.store.transaction() as conn:
            conn.execute(
                "INSERT INTO sync_objects (datapoint_id, bucket, object_name, size, etag, "
                "sha256, content_type, endpoint, verified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (datapoint_id) DO UPDATE SET bucket = excluded.bucket, "
                "object_name = excluded.object_name, size = excluded.size, etag = excluded.etag, "
                "sha256 = excluded.sha256, content_type = excluded.content_type, "
                "endpoint = excluded.endpoint, verified_at = excluded.verified_at",
                (datapoint_id, stored.bucket, stored.object_name, stored.size, stored.etag,
                 stored.sha256, stored.content_type, endpoint, _now_text()))
            conn.execute("DELETE FROM sync_parts WHERE datapoint_id = ?", (datapoint_id,))
            conn.execute("DELETE FROM sync_uploads WHERE datapoint_id = ?", (datapoint_id,))
            custody.note_uploaded(conn, datapoint_id, stored.sha256, stored.bucket,
                                  stored.object_name)
            self._mark(conn, datapoint_id, revision, UPLOADED)

    def upload_again(self, datapoint_id: str) -> bool:
        """The central copy of a local file is missing or damaged: forget the verified
        object, so the next push uploads the local file again (and verifies it and reads
        its record back as for any upload). False if this bench holds no such file row."""
        with self.store.transaction() as conn:
            if not syncrows.is_live_file(conn, datapoint_id):
                return False
            conn.execute("DELETE FROM sync_objects WHERE datapoint_id = ?", (datapoint_id,))
            # Collected again at the same revision: the record's write then "conflicts"
            # with itself and reads back as ours, pointing at the object uploaded anew.
            syncrows.confirmed_to_pending(conn, datapoint_id)
        return True

    def objects_for(self, datapoint_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        with self.store.reader() as conn:
            for marks, chunk in in_chunks(datapoint_ids):
                cursor = conn.execute(
                    "SELECT datapoint_id, bucket, object_name, size, etag, sha256, content_type, "
                    f"endpoint, verified_at FROM sync_objects WHERE datapoint_id IN ({marks})",
                    chunk)
                names = [d[0] for d in cursor.description]
                for row in cursor.fetchall():
                    found[row[0]] = dict(zip(names, row))
        return found

    # -- status ------------------------------------------------------------------------------

    def quarantined(self) -> list[QuarantinedItem]:
        rows = syncrows.quarantined_with_labels(self.store)
        return [QuarantinedItem(r[0], int(r[1]), str(r[2] or ""), str(r[3]), r[4]) for r in rows]

    def backlog(self) -> dict[str, Any]:
        """What is not yet confirmed central: count, bytes, oldest change, per state."""
        with self.store.reader() as conn:
            count, size, oldest, states = syncrows.unsynced_totals(conn)
            waiting = conn.execute(
                "SELECT COUNT(*), MAX(attempts), MAX(last_error) FROM sync_outbox WHERE "
                "state != 'quarantined' AND attempts > 0").fetchone()
        return {"count": count, "bytes": size, "oldest_change": oldest, "states": states,
                "retrying": int(waiting[0] or 0)}

    def errors_summary(self, limit: int = 5) -> list[dict[str, Any]]:
        with self.store.reader() as conn:
            rows = conn.execute(
                "SELECT datapoint_id, attempts, last_error FROM sync_outbox WHERE "
                "state != 'quarantined' AND last_error IS NOT NULL ORDER BY updated_at DESC "
                "LIMIT ?", (limit,)).fetchall()
        return [{"datapoint_id": r[0], "attempts": r[1], "error": r[2]} for r in rows]


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


class SavingListener(UploadListener):
    """Persist multipart progress so a killed process resumes the upload."""

    def __init__(self, outbox: Outbox, datapoint_id: str, revision: int, object_name: str,
                 total: int, progress: dict[str, tuple[int, int]]) -> None:
        self.outbox = outbox
        self.datapoint_id = datapoint_id
        self.revision = revision
        self.object_name = object_name
        self.total = total
        self.upload_id: Optional[str] = None
        self._progress = progress
        self._done = 0

    def started(self, upload_id: str, part_size: int) -> None:
        self.upload_id = upload_id
        self.outbox.save_upload(self.datapoint_id, self.object_name, upload_id, part_size)

    def part_done(self, part: SavedPart) -> None:
        assert self.upload_id is not None
        self._done += part.size
        self.outbox.save_part(self.datapoint_id, self.upload_id, part)

    def progress(self, done: int, total: int) -> None:
        self._progress[self.datapoint_id] = (done, total)

    def finished(self) -> None:
        self._progress.pop(self.datapoint_id, None)
