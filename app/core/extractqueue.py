"""The durable list of captured files whose header metadata is still to be extracted.

A trigger adds every ``file`` datapoint captured here (``origin='local'``, with its SHA-256)
in the same transaction as its row, so every capture path — the window, ``benchdata add
file``, REST uploads, watched folders — queues it without doing anything, a crash cannot
lose a pending extraction, and capture pays one small insert. Rows pulled from the central
store are not queued: their metadata was extracted (or not) where they were captured.

The extraction worker (``app/extract/component.py``) reads the queue, writes the result as an
edit of the datapoint and then removes the entry (``benchdata extract ID`` extracts at
once and removes it too).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

from app.core.store import LocalStore

COMPONENT: Final = "extract_queue"


def _v1_queue(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE extract_queue (
            datapoint_id TEXT PRIMARY KEY,
            queued_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    conn.execute("CREATE INDEX ix_extract_queue_queued_at ON extract_queue (queued_at)")
    conn.execute(
        """
        CREATE TRIGGER extract_queue_captured AFTER INSERT ON datapoints
        WHEN NEW.data_type = 'file' AND NEW.origin = 'local' AND NEW.sha256 IS NOT NULL
        BEGIN
            INSERT OR IGNORE INTO extract_queue (datapoint_id, queued_at)
            VALUES (NEW.id, NEW.created_at);
        END
        """
    )


MIGRATIONS: Final = [_v1_queue]


def install(store: LocalStore) -> None:
    """Create (or upgrade) the queue and its trigger; idempotent."""
    store.migrate_component(COMPONENT, MIGRATIONS)


def pending(store: LocalStore, limit: int, max_attempts: int) -> list[str]:
    """The oldest queued ids that have been tried fewer than ``max_attempts`` times."""
    with store.reader() as conn:
        rows = conn.execute(
            "SELECT datapoint_id FROM extract_queue WHERE attempts < ? "
            "ORDER BY queued_at, datapoint_id LIMIT ?", (max_attempts, limit)).fetchall()
    return [str(row[0]) for row in rows]


def queued_since(store: LocalStore, since: str) -> bool:
    """Whether a file was queued (captured) after ``since`` (canonical UTC text)."""
    with store.reader() as conn:
        return bool(conn.execute("SELECT EXISTS (SELECT 1 FROM extract_queue "
                                 "WHERE queued_at > ?)", (since,)).fetchone()[0])


def count(store: LocalStore) -> int:
    with store.reader() as conn:
        return int(conn.execute("SELECT count(*) FROM extract_queue").fetchone()[0])


def attempted(store: LocalStore, datapoint_ids: Sequence[str]) -> None:
    """Count a try before it starts (one commit for a batch): an extraction that takes the
    whole service down, not only its child process, is not retried for ever."""
    with store.transaction() as conn:
        conn.executemany(
            "UPDATE extract_queue SET attempts = attempts + 1 WHERE datapoint_id = ?",
            [(ident,) for ident in datapoint_ids])


def finish(store: LocalStore, datapoint_ids: Sequence[str],
           untried: Sequence[str] = ()) -> None:
    """Done with these; ``untried`` were counted by :func:`attempted` but not tried (one
    commit for a batch; done again after a crash is harmless: an unchanged result writes
    nothing)."""
    with store.transaction() as conn:
        conn.executemany("DELETE FROM extract_queue WHERE datapoint_id = ?",
                         [(ident,) for ident in datapoint_ids])
        conn.executemany(
            "UPDATE extract_queue SET attempts = max(0, attempts - 1) WHERE datapoint_id = ?",
            [(ident,) for ident in untried])
