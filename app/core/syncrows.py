"""The sync engine's SQL on the ``datapoints`` table (issue 17: the store owns its SQL).

The engine (``sync/``) keeps its own tables (outbox, objects, renames, cursors); every
statement that reads or writes ``datapoints`` on its behalf lives here. Functions that run
inside the caller's transaction take its ``conn``, so a page of rows and its cursor, or an
outbox change and the mirrored sync state, still commit together.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from app.core import custody
from app.core.sqlin import in_chunks, placeholders
from app.core.store import LocalStore
from app.core.syncstate import ACTIVE_STATES


# -- object renames (sync/rename.py) -------------------------------------------------------

def legacy_named_objects(store: LocalStore, limit: int) -> list[tuple[Any, ...]]:
    """(id, revision, object name, size, SHA-256) of live, confirmed datapoints whose
    verified object has an old-style name and no move recorded yet."""
    with store.reader() as conn:
        return [tuple(r) for r in conn.execute(
            "SELECT o.datapoint_id, d.revision, o.object_name, o.size, o.sha256 "
            "FROM sync_objects AS o INDEXED BY ix_sync_objects_legacy_name "
            "JOIN datapoints AS d ON d.id = o.datapoint_id "
            "WHERE instr(o.object_name, '/') > 0 "
            "AND d.deleted = 0 "
            "AND d.sync_state = 'confirmed' AND d.sha256 = o.sha256 "
            "AND NOT EXISTS (SELECT 1 FROM sync_renames AS r "
            "WHERE r.datapoint_id = o.datapoint_id) LIMIT ?", (limit,)).fetchall()]


def bump_confirmed_revision(conn: sqlite3.Connection, datapoint_id: str, revision: int) -> bool:
    """In the caller's transaction: give a live, confirmed row at ``revision`` the next
    revision, pending push. False if the row changed (edited, deleted) since it was read."""
    return conn.execute(
        "UPDATE datapoints SET revision = revision + 1, sync_state = 'pending' "
        "WHERE id = ? AND revision = ? AND deleted = 0 AND sync_state = 'confirmed'",
        (datapoint_id, revision)).rowcount == 1


def recorded_moves(store: LocalStore, limit: int) -> list[dict[str, Any]]:
    """The oldest ``limit`` recorded object moves, each with its row's sync state and
    deleted flag (``state`` None when the row is gone)."""
    with store.reader() as conn:
        cursor = conn.execute(
            "SELECT r.datapoint_id, r.old_name, r.new_name, d.sync_state AS state, "
            "d.deleted FROM sync_renames AS r LEFT JOIN datapoints AS d "
            "ON d.id = r.datapoint_id ORDER BY r.created_at LIMIT ?", (limit,))
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


# -- rows by id (sync/localrows.py) --------------------------------------------------------

def rows_by_ids(store: LocalStore, datapoint_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Rows by id, deleted ones included."""
    found: dict[str, dict[str, Any]] = {}
    with store.reader() as conn:
        for marks, chunk in in_chunks(datapoint_ids):
            cursor = conn.execute(f"SELECT * FROM datapoints WHERE id IN ({marks})", chunk)
            names = [d[0] for d in cursor.description]
            for values in cursor.fetchall():
                row = dict(zip(names, values))
                found[row["id"]] = row
    return found


def revisions_of(store: LocalStore, datapoint_ids: Sequence[str]) -> dict[str, tuple[int, str, int]]:
    """id -> (revision, sync_state, deleted) for the ids this bench holds."""
    found: dict[str, tuple[int, str, int]] = {}
    with store.reader() as conn:
        for marks, chunk in in_chunks(datapoint_ids):
            for ident, revision, state, deleted in conn.execute(
                    f"SELECT id, revision, sync_state, deleted FROM datapoints WHERE id IN ({marks})",
                    chunk):
                found[ident] = (int(revision), str(state), int(deleted))
    return found


def captured_here(store: LocalStore, datapoint_ids: Sequence[str]) -> set[str]:
    """The ids among ``datapoint_ids`` of datapoints this bench captured."""
    found: set[str] = set()
    with store.reader() as conn:
        for marks, chunk in in_chunks(datapoint_ids):
            found.update(str(r[0]) for r in conn.execute(
                f"SELECT id FROM datapoints WHERE origin = 'local' AND id IN ({marks})", chunk))
    return found


def origin_of(store: LocalStore, datapoint_id: str) -> Optional[str]:
    with store.reader() as conn:
        row = conn.execute("SELECT origin FROM datapoints WHERE id = ?", (datapoint_id,)).fetchone()
    return None if row is None else str(row[0])


def files_waiting(store: LocalStore) -> bool:
    """Whether a live file of this bench still waits for the central store (so the next
    pass needs object storage)."""
    with store.reader() as conn:
        return conn.execute(
            f"SELECT 1 FROM datapoints WHERE sync_state IN ({placeholders(len(ACTIVE_STATES))}) "
            "AND data_type = 'file' AND deleted = 0 LIMIT 1",
            [str(s) for s in ACTIVE_STATES]).fetchone() is not None


# -- rows pulled from the central store ----------------------------------------------------

def upsert_remote(conn: sqlite3.Connection, rows: Sequence[Mapping[str, Any]]) -> int:
    """In the caller's transaction: insert or update rows pulled from the central store
    (all with the same columns); return how many changed. A row is replaced only when the
    central revision is newer and the local row is live with no change of its own waiting."""
    if not rows:
        return 0
    columns = list(rows[0])
    content = [c for c in columns if c not in ("id", "origin", "created_at", "deleted")]
    sql = (
        f"INSERT INTO datapoints ({', '.join(columns)}) VALUES ({placeholders(len(columns))}) "
        f"ON CONFLICT (id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in content)
        + " WHERE datapoints.revision < excluded.revision AND datapoints.deleted = 0 "
          "AND datapoints.sync_state = 'confirmed'"
    )
    changed = 0
    for row in rows:
        changed += conn.execute(sql, [row[c] for c in columns]).rowcount
    return changed


def tombstone(conn: sqlite3.Connection, datapoint_id: str, revision: int, now: str) -> bool:
    """In the caller's transaction: mark a row deleted because the central store says so
    (confirmed, at least ``revision``); True if it changed."""
    return bool(conn.execute(
        "UPDATE datapoints SET deleted = 1, sync_state = 'confirmed', "
        "revision = MAX(revision, ?), updated_at = ? WHERE id = ? AND "
        "(deleted = 0 OR sync_state != 'confirmed')",
        (revision, now, datapoint_id)).rowcount)


def blob_freeable(store: LocalStore, sha256: str, *, live_ok: bool = False) -> bool:
    """True when a copy is verified central and no live row needs the local one.

    ``live_ok``: live rows may use the blob as long as each is verified central (freeing
    old copies to save disk; they are downloaded again on request).
    """
    with store.reader() as conn:
        # Verified as the custody receipt says (app.core.custody): a central copy a scrub
        # found missing or damaged is not verified any more, and its local copy stays.
        live_unverified = conn.execute(
            "SELECT 1 FROM datapoints AS d WHERE d.sha256 = ? AND d.deleted = 0 AND "
            f"d.data_type = 'file' AND NOT {custody.verified_central_sql('d')} LIMIT 1",
            (sha256,)).fetchone()
        verified = conn.execute("SELECT 1 FROM sync_objects WHERE sha256 = ? LIMIT 1",
                                (sha256,)).fetchone()
        live = conn.execute("SELECT 1 FROM datapoints WHERE sha256 = ? AND deleted = 0 LIMIT 1",
                            (sha256,)).fetchone()
    return verified is not None and live_unverified is None and (live_ok or live is None)


# -- the outbox's view of datapoints (sync/outbox.py) --------------------------------------
# The outbox's own tables stay in sync/; these run in its transactions, so a queue change
# and the row's mirrored sync state commit together.

def collect_pending(conn: sqlite3.Connection, now: str) -> int:
    """In the caller's transaction: enqueue every pending row whose revision the outbox does
    not hold yet; return how many were enqueued or re-queued."""
    cursor = conn.execute(
        """
        INSERT INTO sync_outbox (datapoint_id, revision, state, enqueued_at, updated_at)
        SELECT d.id, d.revision, 'pending', ?, ? FROM datapoints AS d
        WHERE d.sync_state = 'pending' AND NOT EXISTS (
            SELECT 1 FROM sync_outbox AS o
            WHERE o.datapoint_id = d.id AND o.revision = d.revision)
        ON CONFLICT (datapoint_id) DO UPDATE SET
            revision = excluded.revision,
            state = CASE WHEN sync_outbox.state IN ('uploading', 'uploaded')
                         THEN sync_outbox.state ELSE 'pending' END,
            attempts = 0, next_attempt_at = 0, quarantine_reason = NULL,
            last_error = NULL, updated_at = excluded.updated_at
        """,
        (now, now),
    )
    return int(cursor.rowcount)


def has_uncollected(store: LocalStore) -> bool:
    """Cheap check for the background loop: is there a pending row not yet enqueued?"""
    with store.reader() as conn:
        row = conn.execute(
            "SELECT 1 FROM datapoints AS d WHERE d.sync_state = 'pending' AND NOT EXISTS "
            "(SELECT 1 FROM sync_outbox AS o WHERE o.datapoint_id = d.id "
            "AND o.revision = d.revision) LIMIT 1").fetchone()
    return row is not None


def mirror_state(conn: sqlite3.Connection, datapoint_id: str, revision: int, state: str) -> None:
    """In the caller's transaction: the row at ``revision`` shows the outbox's ``state``."""
    conn.execute("UPDATE datapoints SET sync_state = ? WHERE id = ? AND revision = ? "
                 "AND sync_state != ?", (state, datapoint_id, revision, state))


def mirror_states(conn: sqlite3.Connection, items: Sequence[tuple[str, int]], state: str) -> None:
    """In the caller's transaction: each (id, revision) row shows ``state``."""
    conn.executemany("UPDATE datapoints SET sync_state = ? WHERE id = ? AND revision = ?",
                     [(state, i, r) for i, r in items])


def mirror_confirmed(conn: sqlite3.Connection, items: Sequence[tuple[str, int]]) -> None:
    """In the caller's transaction: each (id, revision) row is confirmed central."""
    conn.executemany("UPDATE datapoints SET sync_state = 'confirmed' "
                     "WHERE id = ? AND revision = ?", items)


def rebase_revision(conn: sqlite3.Connection, datapoint_id: str, old_revision: int,
                    new_revision: int) -> bool:
    """In the caller's transaction: lift the row from ``old_revision`` to ``new_revision``;
    False if it is not at ``old_revision`` any more."""
    return conn.execute("UPDATE datapoints SET revision = ? WHERE id = ? AND revision = ?",
                        (new_revision, datapoint_id, old_revision)).rowcount != 0


def is_live_file(conn: sqlite3.Connection, datapoint_id: str) -> bool:
    """Whether the row is a live file with content (in the caller's transaction)."""
    return conn.execute("SELECT 1 FROM datapoints WHERE id = ? AND deleted = 0 AND "
                        "data_type = 'file' AND sha256 IS NOT NULL",
                        (datapoint_id,)).fetchone() is not None


def confirmed_to_pending(conn: sqlite3.Connection, datapoint_id: str) -> None:
    """In the caller's transaction: a confirmed row is collected again at its revision."""
    conn.execute("UPDATE datapoints SET sync_state = 'pending' WHERE id = ? "
                 "AND sync_state = 'confirmed'", (datapoint_id,))


def quarantined_with_labels(store: LocalStore) -> list[tuple[Any, ...]]:
    """(id, revision, reason, updated_at, label) of quarantined outbox items, oldest first."""
    with store.reader() as conn:
        return [tuple(r) for r in conn.execute(
            "SELECT o.datapoint_id, o.revision, o.quarantine_reason, o.updated_at, d.label "
            "FROM sync_outbox AS o LEFT JOIN datapoints AS d ON d.id = o.datapoint_id "
            "WHERE o.state = 'quarantined' ORDER BY o.updated_at").fetchall()]


def unsynced_totals(conn: sqlite3.Connection
                    ) -> tuple[int, int, Optional[str], dict[str, int]]:
    """On the caller's reader: (rows, bytes of live files, oldest change) not yet confirmed
    central (quarantined ones aside), and the row count per sync state."""
    count, size, oldest = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN data_type = 'file' AND deleted = 0 "
        "THEN size_bytes ELSE 0 END), 0), MIN(updated_at) FROM datapoints "
        "WHERE sync_state NOT IN ('confirmed', 'quarantined')").fetchone()
    states = dict(conn.execute(
        "SELECT sync_state, COUNT(*) FROM datapoints GROUP BY sync_state").fetchall())
    return int(count), int(size or 0), oldest, {str(k): int(v) for k, v in states.items()}
