"""Which blob holds a datapoint's bytes, and how this bench knows it.

A content-addressed blob proves only that *some* bytes hash to a digest. That a datapoint's
bytes are those bytes is a fact this bench must have established itself, or anyone who knows
a digest could post a datapoint claiming it and read the blob (issue #14, defect 10). So the
store keeps one custody record per datapoint whose bytes this bench holds:

* ``captured`` — written by a trigger in the same transaction as the row of a ``file``
  datapoint captured here (every capture path inserts such a row with ``origin='local'``
  and the SHA-256 it computed while copying; the REST API never takes a file row's
  SHA-256 from the client). Nothing else inserts local file rows.
* ``sha256`` — the fetcher downloaded the central copy and it hashed to the record's
  SHA-256.
* ``etag`` — a central object MADSci wrote (no SHA-256 in its record): the download's size
  and ETag matched the record (and its MD5, when the ETag is a plain MD5).

A record is dropped by a trigger when the row's SHA-256 changes (a pulled edit naming other
bytes), or, for a row without SHA-256, when its object or ETag changes. Only a blob named by
a live custody record is ever served (``BenchService.open_file`` and friends).
"""

from __future__ import annotations

import sqlite3
from typing import Final, Literal, NamedTuple, Optional

from app.core.store import LocalStore
from app.core.timestamps import now_canonical

COMPONENT: Final = "custody"
CustodyHow = Literal["captured", "sha256", "etag"]


class Custody(NamedTuple):
    sha256: str
    how: str
    at: str


def _v1_custody(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE blob_custody (
            datapoint_id TEXT PRIMARY KEY,
            sha256 TEXT NOT NULL,
            how TEXT NOT NULL,
            at TEXT NOT NULL
        )
        """
    )
    conn.execute(
        """
        CREATE TRIGGER blob_custody_captured AFTER INSERT ON datapoints
        WHEN NEW.data_type = 'file' AND NEW.origin = 'local' AND NEW.sha256 IS NOT NULL
        BEGIN
            INSERT OR REPLACE INTO blob_custody (datapoint_id, sha256, how, at)
            VALUES (NEW.id, NEW.sha256, 'captured', NEW.created_at);
        END
        """
    )
    conn.execute(
        """
        CREATE TRIGGER blob_custody_changed
        AFTER UPDATE OF sha256, bucket_name, object_name, etag ON datapoints
        WHEN OLD.sha256 IS NOT NEW.sha256 OR (NEW.sha256 IS NULL AND (
            OLD.bucket_name IS NOT NEW.bucket_name OR OLD.object_name IS NOT NEW.object_name
            OR OLD.etag IS NOT NEW.etag))
        BEGIN
            DELETE FROM blob_custody WHERE datapoint_id = NEW.id;
        END
        """
    )
    conn.execute(
        """
        CREATE TRIGGER blob_custody_row_removed AFTER DELETE ON datapoints
        BEGIN
            DELETE FROM blob_custody WHERE datapoint_id = OLD.id;
        END
        """
    )
    # Stores from before custody records: every local file row was captured here.
    conn.execute(
        "INSERT OR IGNORE INTO blob_custody (datapoint_id, sha256, how, at) "
        "SELECT id, sha256, 'captured', created_at FROM datapoints "
        "WHERE data_type = 'file' AND origin = 'local' AND sha256 IS NOT NULL")


MIGRATIONS: Final = [_v1_custody]


def install(store: LocalStore) -> None:
    """Create (or upgrade) the custody table and its triggers; idempotent."""
    store.migrate_component(COMPONENT, MIGRATIONS)


def custody_of(store: LocalStore, datapoint_id: str) -> Optional[Custody]:
    with store.reader() as conn:
        row = conn.execute("SELECT sha256, how, at FROM blob_custody WHERE datapoint_id = ?",
                           (datapoint_id,)).fetchone()
    return None if row is None else Custody(str(row[0]), str(row[1]), str(row[2]))


def record(store: LocalStore, datapoint_id: str, sha256: str, how: CustodyHow, *,
           expected_row_sha256: Optional[str]) -> bool:
    """Remember that ``sha256`` holds the datapoint's bytes (verified by ``how``).

    Written only if the row still names the bytes that were verified
    (``expected_row_sha256``, None for a row without SHA-256): a pulled edit that changed
    the row meanwhile wins, and the bytes are verified again on the next request. True if
    recorded."""
    with store.transaction() as conn:
        row = conn.execute("SELECT sha256 FROM datapoints WHERE id = ? AND deleted = 0",
                           (datapoint_id,)).fetchone()
        if row is None or row[0] != expected_row_sha256:
            return False
        # Bytes fetched again after a local copy was freed keep their "captured" record.
        conn.execute(
            "INSERT INTO blob_custody (datapoint_id, sha256, how, at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (datapoint_id) DO UPDATE SET sha256 = excluded.sha256, "
            "how = excluded.how, at = excluded.at WHERE sha256 IS NOT excluded.sha256",
            (datapoint_id, sha256, how, now_canonical()))
    return True
