"""The sync engine's SQL on the ``datapoints`` table (issue 17: the store owns its SQL).

The engine (``sync/``) keeps its own tables (outbox, objects, renames, cursors); every
statement that reads or writes ``datapoints`` on its behalf lives here. Functions that run
inside the caller's transaction take its ``conn``, so a page of rows and its cursor, or an
outbox change and the mirrored sync state, still commit together.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from app.core.store import LocalStore


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
