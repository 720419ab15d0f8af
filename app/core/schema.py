"""The local store's SQLite schema, versioned, with in-place migrations.

The version lives in ``PRAGMA user_version``. Each migration is a function that takes
the store from version N-1 to N inside one transaction; opening an older cache runs the
missing ones in order. A cache written by a newer version is refused rather than guessed at.

Datapoints are one row each. The fields people filter by (label, type, timestamp, the
ten ownership ids) are real, indexed columns; the JSON value, custom metadata and any
extra MADSci fields are JSON text queried with SQLite's JSON functions.
``data_timestamp`` is always the true instant as canonical UTC text
``YYYY-MM-DDTHH:MM:SS.ffffffZ`` so that text order is time order; ``data_timestamp_sent``
(version 5) is the timestamp in the form the client sent it, as MADSci writes it
(``2025-01-02T03:04:05.123456`` for naive local time), which MADSci-compatible answers and
central documents give back. NULL there means "sent as this UTC instant".
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Final

from app.core.errors import StoreError
from app.core.ids import OWNERSHIP_FIELDS

_OWNERSHIP_COLUMNS = ",\n    ".join(f"{field} TEXT" for field in OWNERSHIP_FIELDS)


def _v1_initial(conn: sqlite3.Connection) -> None:
    """The first released layout: datapoints with sync bookkeeping columns."""
    conn.execute(
        f"""
        CREATE TABLE datapoints (
            id TEXT PRIMARY KEY,
            label TEXT,
            data_type TEXT NOT NULL CHECK (data_type IN ('json', 'file', 'object_storage')),
            data_timestamp TEXT NOT NULL,
            {_OWNERSHIP_COLUMNS},
            value TEXT,
            path TEXT,
            filename TEXT,
            size_bytes INTEGER,
            content_type TEXT,
            sha256 TEXT,
            bucket_name TEXT,
            object_name TEXT,
            storage_endpoint TEXT,
            public_endpoint TEXT,
            url TEXT,
            etag TEXT,
            custom_metadata TEXT NOT NULL DEFAULT '{{}}',
            extra TEXT NOT NULL DEFAULT '{{}}',
            revision INTEGER NOT NULL DEFAULT 1,
            deleted INTEGER NOT NULL DEFAULT 0,
            sync_state TEXT NOT NULL DEFAULT 'pending',
            origin TEXT NOT NULL DEFAULT 'local',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    for column in ("label", "data_type", "data_timestamp", "experiment_id", "user_id"):
        conn.execute(f"CREATE INDEX ix_datapoints_{column} ON datapoints ({column})")


def _v2_names_lineage_and_indexes(conn: sqlite3.Connection) -> None:
    """Names-to-ids table, ``replaces`` lineage, and indexes for every ownership id."""
    conn.execute(
        """
        CREATE TABLE names (
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            canonical TEXT NOT NULL,
            id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (kind, canonical)
        )
        """
    )
    conn.execute("CREATE INDEX ix_names_id ON names (kind, id)")
    conn.execute("ALTER TABLE datapoints ADD COLUMN replaces TEXT")
    conn.execute("CREATE INDEX ix_datapoints_replaces ON datapoints (replaces)")
    conn.execute("CREATE INDEX ix_datapoints_sha256 ON datapoints (sha256)")
    conn.execute("CREATE INDEX ix_datapoints_sync_state ON datapoints (sync_state)")
    for field in OWNERSHIP_FIELDS:
        if field not in ("experiment_id", "user_id"):
            conn.execute(f"CREATE INDEX ix_datapoints_{field} ON datapoints ({field})")


def _v3_time_ordered_indexes(conn: sqlite3.Connection) -> None:
    """Composite (field, data_timestamp) indexes for the filters people use most.

    "Newest first with label X" then reads the index in order and stops after one page,
    instead of sorting every match (thousands of rows for a common label).
    """
    for column in ("label", "experiment_id", "user_id"):
        conn.execute(f"DROP INDEX IF EXISTS ix_datapoints_{column}")
        conn.execute(
            f"CREATE INDEX ix_datapoints_{column}_time ON datapoints ({column}, data_timestamp)"
        )


def _v4_partial_indexes(conn: sqlite3.Connection) -> None:
    """Index only rows that have the value: most ownership fields, ``replaces`` and
    ``sha256`` are NULL on most rows, and every index entry costs time on each capture.
    SQLite still uses a ``col IS NOT NULL`` partial index for ``col = ?`` and ranges."""
    for field in (*OWNERSHIP_FIELDS, "sha256", "replaces"):
        if field in ("experiment_id", "user_id"):
            name, columns = f"ix_datapoints_{field}_time", f"{field}, data_timestamp"
        else:
            name, columns = f"ix_datapoints_{field}", field
        conn.execute(f"DROP INDEX IF EXISTS {name}")
        conn.execute(f"CREATE INDEX {name} ON datapoints ({columns}) WHERE {field} IS NOT NULL")


def _v5_timestamp_as_sent(conn: sqlite3.Connection) -> None:
    """``data_timestamp_sent``: the timestamp in the form the client sent it.

    Rows stored before version 5 keep NULL, meaning "aware, this UTC instant": they were
    stored (and answered, and pushed) as UTC instants, and whether a client had sent them
    naive is not recorded. Reading an old naive time as UTC may have shifted its instant
    by the bench's offset, but no rule could tell which rows to move, so none are moved;
    their answers stay what they were (UTC with ``Z``). No row is rewritten, so the step
    is instant on any size of store.
    """
    conn.execute("ALTER TABLE datapoints ADD COLUMN data_timestamp_sent TEXT")


MIGRATIONS: Final[tuple[Callable[[sqlite3.Connection], None], ...]] = (
    _v1_initial,
    _v2_names_lineage_and_indexes,
    _v3_time_ordered_indexes,
    _v4_partial_indexes,
    _v5_timestamp_as_sent,
)
SCHEMA_VERSION: Final[int] = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the database up to ``target``; return the version found before.

    ``conn`` must be a plain sqlite3 connection in autocommit mode
    (``isolation_level=None``); each step runs in its own IMMEDIATE transaction so a
    crash mid-migration leaves the previous version intact.
    """
    found = schema_version(conn)
    if found > SCHEMA_VERSION:
        raise StoreError(
            f"this data directory was written by a newer Bench Data Manager "
            f"(schema {found}, this version knows {SCHEMA_VERSION}); upgrade the app"
        )
    for version in range(found + 1, target + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version - 1](conn)
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found


def migrate_component(conn: sqlite3.Connection, component: str,
                      migrations: Sequence[Callable[[sqlite3.Connection], None]]) -> int:
    """Versioned tables owned by one component (``ingest``, ``sync`` ...).

    Components above the core (the folder watcher, the sync engine) keep their own tables
    in the same database, each with its own migration list, so they evolve without
    touching the core's numbering. Versions live in ``component_versions``. Same rules as
    :func:`migrate`: each step is one IMMEDIATE transaction; a newer version is refused.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS component_versions "
        "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    row = conn.execute(
        "SELECT version FROM component_versions WHERE component = ?", (component,)
    ).fetchone()
    found = int(row[0]) if row else 0
    if found > len(migrations):
        raise StoreError(
            f"the {component} tables were written by a newer Bench Data Manager "
            f"(version {found}, this one knows {len(migrations)}); upgrade the app"
        )
    for version in range(found + 1, len(migrations) + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            migrations[version - 1](conn)
            conn.execute(
                "INSERT INTO component_versions (component, version) VALUES (?, ?) "
                "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (component, version),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found
