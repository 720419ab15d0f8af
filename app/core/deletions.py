"""Recently deleted datapoints: when, by whom, and restoring them.

A delete is a tombstone (``datapoints.deleted = 1``, a new revision that sync carries).
This module keeps one record per deletion beside it (a trigger writes it in the same
transaction as the tombstone, whoever deletes: this bench, or a pull of another bench's
deletion): when, by whom, and the deleted revision. For ``deleted.retention_days``
(config.json, default 30) a deleted datapoint is listed under "Recently deleted" and can be
restored, and its local file is kept that long (sync frees it afterwards, and only once a
copy is verified central, as before).

Restoring is a new revision, never an undo of history: the row becomes live again with
``revision + 1`` and is pushed like an edit. Its central document carries
``sync_undeletes`` = the revision of the deletion it undoes, so the central tombstone of
that deletion (or an older one) no longer wins over it: the pushing bench removes the
tombstone, and other benches that had applied the deletion bring the datapoint back when
they pull the document (docs/sync.md, "Deletes and restores"). A later deletion has a
higher revision than any restore it follows, so it wins again.
"""

from __future__ import annotations

import getpass
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Optional

from app.core.config import load_section
from app.core.errors import NotFoundError, ValidationError
from app.core.paths import BenchPaths
from app.core.sqlin import in_chunks
from app.core.rows import row_to_datapoint
from app.core.store import LocalStore
from app.core.syncstate import SyncState
from app.core.timestamps import format_canonical, now_canonical, utc_now

if TYPE_CHECKING:
    from app.core.models import DataPoint

log = logging.getLogger(__name__)

COMPONENT: Final = "deletions"
SECTION: Final = "deleted"
DEFAULT_RETENTION_DAYS: Final = 30.0


def _v1_deletions(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE deletions (
            datapoint_id TEXT PRIMARY KEY,
            deleted_at TEXT NOT NULL,
            deleted_by TEXT,
            revision INTEGER NOT NULL,
            restored_at TEXT,
            undeletes INTEGER
        )
        """
    )
    conn.execute("CREATE INDEX ix_deletions_deleted_at ON deletions (deleted_at)")
    # Whoever turns a row into a tombstone, the record is written in the same transaction.
    conn.execute(
        """
        CREATE TRIGGER deletions_tombstone AFTER UPDATE OF deleted ON datapoints
        WHEN NEW.deleted = 1 AND OLD.deleted = 0
        BEGIN
            INSERT OR REPLACE INTO deletions (datapoint_id, deleted_at, revision)
            VALUES (NEW.id, NEW.updated_at, NEW.revision);
        END
        """
    )
    # Deletions from before this table: when is the last change of the row.
    conn.execute("INSERT OR IGNORE INTO deletions (datapoint_id, deleted_at, revision) "
                 "SELECT id, updated_at, revision FROM datapoints WHERE deleted = 1")


MIGRATIONS: Final = [_v1_deletions]


def install(store: LocalStore) -> None:
    """Create (or upgrade) the deletions table and its trigger; idempotent."""
    store.migrate_component(COMPONENT, MIGRATIONS)


# -- the retention period --------------------------------------------------------------------

def retention_days(paths: BenchPaths) -> float:
    """``deleted.retention_days`` from config.json (default 30; 0 keeps nothing)."""
    try:
        section = load_section(paths, SECTION)
    except ValidationError as exc:
        log.warning("%s; keeping deleted datapoints %g days", exc, DEFAULT_RETENTION_DAYS)
        return DEFAULT_RETENTION_DAYS
    value = section.get("retention_days", DEFAULT_RETENTION_DAYS) if isinstance(
        section, Mapping) else DEFAULT_RETENTION_DAYS
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3650:
        log.warning("deleted.retention_days must be a number of days from 0 to 3650, not %r; "
                    "using %g", value, DEFAULT_RETENTION_DAYS)
        return DEFAULT_RETENTION_DAYS
    return float(value)


def who_deletes(paths: BenchPaths) -> str:
    """Who a deletion made here is by: the bench's operator (and instrument) as set at the
    first start or in Settings, else the login name."""
    try:
        section = load_section(paths, "bench")
    except ValidationError:
        section = None
    identity = section if isinstance(section, Mapping) else {}
    user = str(identity.get("user") or "").strip() or _login_name()
    node = str(identity.get("node") or "").strip()
    return f"{user} on {node}" if node else user


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "this bench"


def restorable_since(paths: BenchPaths) -> str:
    """Deletions at or after this instant (canonical text) can still be restored."""
    return format_canonical(utc_now() - timedelta(days=retention_days(paths)))


# -- reading ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Deleted:
    datapoint: DataPoint
    deleted_at: str  # canonical UTC
    deleted_by: Optional[str]
    revision: int

    def as_json(self) -> dict[str, Any]:
        return {"datapoint_id": self.datapoint.datapoint_id, "label": self.datapoint.label,
                "data_type": self.datapoint.data_type.value, "deleted_at": self.deleted_at,
                "deleted_by": self.deleted_by, "revision": self.revision}


def recently_deleted(store: LocalStore, since: str, *, limit: int = 1000) -> list[Deleted]:
    """Datapoints deleted at or after ``since`` and not restored, newest deletion first."""
    with store.reader() as conn:
        cursor = conn.execute(
            "SELECT d.*, x.deleted_at AS x_deleted_at, x.deleted_by AS x_deleted_by, "
            "x.revision AS x_revision FROM deletions AS x JOIN datapoints AS d "
            "ON d.id = x.datapoint_id WHERE x.deleted_at >= ? AND x.restored_at IS NULL "
            "AND d.deleted = 1 ORDER BY x.deleted_at DESC, x.datapoint_id LIMIT ?",
            (since, limit))
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, values)) for values in cursor.fetchall()]
    return [Deleted(row_to_datapoint(row), str(row["x_deleted_at"]), row["x_deleted_by"],
                    int(row["x_revision"])) for row in rows]


def undeletes_of(store: LocalStore, datapoint_ids: Sequence[str]) -> dict[str, int]:
    """For restored datapoints among these: the revision of the deletion each undoes."""
    return {ident: int(value) for ident, value
            in _deletion_facts(store, datapoint_ids, "undeletes").items()}


def deleted_by_of(store: LocalStore, datapoint_ids: Sequence[str]) -> dict[str, str]:
    """Who deleted each of these datapoints, where known."""
    return {ident: str(value) for ident, value
            in _deletion_facts(store, datapoint_ids, "deleted_by").items()}


def _deletion_facts(store: LocalStore, datapoint_ids: Sequence[str],
                    column: str) -> dict[str, Any]:
    """``column`` of the deletions table for these ids, where it is set."""
    assert column in ("undeletes", "deleted_by")  # a column name, never user input
    found: dict[str, Any] = {}
    with store.reader() as conn:
        for marks, chunk in in_chunks(datapoint_ids):
            for ident, value in conn.execute(
                    f"SELECT datapoint_id, {column} FROM deletions WHERE {column} IS NOT NULL "
                    f"AND datapoint_id IN ({marks})", chunk):
                found[str(ident)] = value
    return found


def expired_blobs(store: LocalStore, after: Optional[str], before: str) -> list[str]:
    """SHA-256s of files whose datapoints were deleted in [``after``, ``before``): no
    longer restorable, so their local copies may go once verified central."""
    with store.reader() as conn:
        return [str(r[0]) for r in conn.execute(
            "SELECT DISTINCT d.sha256 FROM deletions AS x JOIN datapoints AS d "
            "ON d.id = x.datapoint_id WHERE x.deleted_at >= ? AND x.deleted_at < ? "
            "AND d.deleted = 1 AND d.sha256 IS NOT NULL", (after or "", before))]


def restorable(store: LocalStore, sha256: str, since: str) -> bool:
    """True when a datapoint deleted at or after ``since`` uses this blob (keep it)."""
    with store.reader() as conn:
        return conn.execute(
            "SELECT 1 FROM datapoints AS d JOIN deletions AS x ON x.datapoint_id = d.id "
            "WHERE d.sha256 = ? AND d.deleted = 1 AND x.deleted_at >= ? "
            "AND x.restored_at IS NULL LIMIT 1", (sha256, since)).fetchone() is not None


# -- writing ---------------------------------------------------------------------------------

def note_deleted_by(store: LocalStore, by: Mapping[str, str]) -> None:
    """Say who deleted these datapoints (a name a person reads)."""
    if not by:
        return
    with store.transaction() as conn:
        conn.executemany("UPDATE deletions SET deleted_by = ? WHERE datapoint_id = ?",
                         [(who, ident) for ident, who in by.items()])


def restore(store: LocalStore, datapoint_id: str, since: str) -> int:
    """Bring a deleted datapoint back as a new revision (pending: sync pushes it as an
    undelete); return that revision. NotFoundError unless it is recently deleted."""
    ident = str(datapoint_id).upper()
    with store.transaction() as conn:
        found = conn.execute(
            "SELECT d.revision, x.deleted_at FROM datapoints AS d JOIN deletions AS x "
            "ON x.datapoint_id = d.id WHERE d.id = ? AND d.deleted = 1 "
            "AND x.restored_at IS NULL", (ident,)).fetchone()
        if found is None:
            raise NotFoundError(f"no deleted datapoint {datapoint_id} to restore "
                                "(see benchdata deleted)")
        revision, deleted_at = int(found[0]), str(found[1])
        if deleted_at < since:
            raise ValidationError(
                f"datapoint {datapoint_id} was deleted on {deleted_at}, before the retention "
                "period (deleted.retention_days); it can no longer be restored")
        now = now_canonical()
        conn.execute("UPDATE datapoints SET deleted = 0, revision = ?, sync_state = ?, "
                     "updated_at = ? WHERE id = ?",
                     (revision + 1, SyncState.PENDING.value, now, ident))
        conn.execute("UPDATE deletions SET restored_at = ?, undeletes = ? "
                     "WHERE datapoint_id = ?", (now, revision, ident))
    return revision + 1


def revive(conn: sqlite3.Connection, datapoint_id: str, undeletes: int) -> bool:
    """Inside a pull's transaction: undo a local tombstone (confirmed, of revision
    ``undeletes`` or older) because the central document restores the datapoint."""
    changed = conn.execute(
        "UPDATE datapoints SET deleted = 0 WHERE id = ? AND deleted = 1 AND revision <= ? "
        "AND sync_state = 'confirmed'", (datapoint_id, undeletes)).rowcount
    if changed:
        conn.execute("UPDATE deletions SET restored_at = ?, undeletes = ? "
                     "WHERE datapoint_id = ?", (now_canonical(), undeletes, datapoint_id))
    return bool(changed)
