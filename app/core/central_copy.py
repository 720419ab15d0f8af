"""Whether a datapoint's file has a verified central copy: the one predicate.

Sync records each file it uploaded and verified in the bucket (size, ETag, SHA-256 read
back) in ``sync_objects`` (sync/outbox.py). A row of ``datapoints`` is verified central
when such a record names its id *and* its current SHA-256 (an edit that names other bytes
is not verified until those are uploaded). Freeing local copies (sync/localrows.py,
``benchdata purge``), the "what would be lost" report, removing the instrument's originals
(app/ingest/originals.py) and ``doctor`` all ask this question here.
"""

from __future__ import annotations

import sqlite3
from typing import Final

#: SQL true when the ``datapoints`` row aliased ``d`` is verified central.
VERIFIED_CENTRAL_SQL: Final = (
    "EXISTS (SELECT 1 FROM sync_objects AS o WHERE o.datapoint_id = d.id AND "
    "o.sha256 = d.sha256)")


def sync_ever_ran(conn: sqlite3.Connection) -> bool:
    """Whether the store has sync's tables (without them nothing is verified central)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                        "name = 'sync_objects'").fetchone() is not None


def verified_central_sql(conn: sqlite3.Connection) -> str:
    """:data:`VERIFIED_CENTRAL_SQL`, or ``0`` in a store sync never ran on."""
    return VERIFIED_CENTRAL_SQL if sync_ever_ran(conn) else "0"
