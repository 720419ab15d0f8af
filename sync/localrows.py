"""The engine's reads and writes of the local ``datapoints`` table.

The core store owns local capture and edits; the sync engine owns everything after
``pending``: rows pulled from other benches (``origin = 'remote'``, ``sync_state =
'confirmed'``, the central revision), deletions that arrived from elsewhere, and freeing
local copies of files once they are verified central. Each write is one transaction on the
store's single writer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

from app.core import deletions, search, syncrows
from app.core.filestore import FileStore
from app.core.models import DataPoint
from app.core.rows import datapoint_to_row
from app.core.store import LocalStore
from app.core.timestamps import now_canonical
from sync.outbox import write_metas

log = logging.getLogger(__name__)


def _now_text() -> str:
    return now_canonical()


def fetch_rows(store: LocalStore, datapoint_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Rows by id, deleted ones included."""
    return syncrows.rows_by_ids(store, datapoint_ids)


def local_revisions(store: LocalStore, datapoint_ids: Sequence[str]) -> dict[str, tuple[int, str, int]]:
    """id -> (revision, sync_state, deleted) for the ids this bench holds."""
    return syncrows.revisions_of(store, datapoint_ids)


def apply_remote(store: LocalStore, items: Iterable[tuple[DataPoint, int]],
                 undeleting: Optional[Mapping[str, int]] = None,
                 meta: Optional[dict[str, Optional[str]]] = None) -> int:
    """Insert or update rows pulled from the central store; return how many changed.
    ``meta`` (the pull cursor) is written in the same transaction as the rows.

    A row is replaced only when the central revision is newer and the local row has no
    change of its own waiting (that change is resolved when it is pushed) and is not
    deleted — unless the central record restores it (``undeleting``: id -> the revision
    of the deletion it undoes; app/core/deletions.py).
    """
    rows = []
    for datapoint, revision in items:
        row = datapoint_to_row(datapoint, origin="remote")
        row.update(revision=revision, sync_state="confirmed")
        rows.append(row)
    if not rows:
        if meta:
            with store.transaction() as conn:
                write_metas(conn, meta)
        return 0
    with store.transaction() as conn:
        if undeleting:
            for ident, undeletes in undeleting.items():
                deletions.revive(conn, ident, undeletes)
            # The revived rows are queued for the search index; index them now, or the
            # upsert's own queueing below collides with theirs (a trigger inside an
            # upsert cannot rely on INSERT OR IGNORE).
            search.flush(conn, force=True)
        changed = syncrows.upsert_remote(conn, rows)
        if meta:
            write_metas(conn, meta)
    return changed


def apply_tombstones(store: LocalStore, tombstones: Sequence[tuple[str, int]],
                     meta: Optional[dict[str, Optional[str]]] = None) -> list[str]:
    """Mark datapoints deleted because the central store says so; return the ids changed.
    ``meta`` (the pull cursor) is written in the same transaction.

    A tombstone a restore undid (its revision at most the restore's ``undeletes``) no
    longer applies: it may still be read once in a pull's overlap window."""
    changed: list[str] = []
    with store.transaction() as conn:
        if meta:
            write_metas(conn, meta)
        for datapoint_id, revision in tombstones:
            if conn.execute("SELECT 1 FROM deletions WHERE datapoint_id = ? AND undeletes >= ?",
                            (datapoint_id, revision)).fetchone() is not None:
                continue  # restored over this deletion; the restore is on its way
            if syncrows.tombstone(conn, datapoint_id, revision, _now_text()):
                changed.append(datapoint_id)
            conn.execute("DELETE FROM sync_outbox WHERE datapoint_id = ?", (datapoint_id,))
    return changed


def blob_freeable(store: LocalStore, sha256: str, *, live_ok: bool = False) -> bool:
    """True when a copy is verified central and no live row needs the local one
    (``live_ok``: live rows verified central may use it)."""
    return syncrows.blob_freeable(store, sha256, live_ok=live_ok)


def blobs_of(store: LocalStore, datapoint_ids: Sequence[str]) -> list[str]:
    rows = fetch_rows(store, datapoint_ids)
    return sorted({str(r["sha256"]) for r in rows.values() if r.get("sha256")})


def has_sync_objects(store: LocalStore) -> bool:
    """Whether sync ever ran on this store (its tables exist)."""
    with store.reader() as conn:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                            "name = 'sync_objects'").fetchone() is not None


def verified_older_than(store: LocalStore, cutoff_text: str) -> list[str]:
    """SHA-256s of files verified central before ``cutoff_text`` and not freed yet."""
    with store.reader() as conn:
        return [str(r[0]) for r in conn.execute(
            "SELECT DISTINCT sha256 FROM sync_objects WHERE verified_at < ? AND freed_at IS NULL",
            (cutoff_text,))]


def mark_freed(store: LocalStore, sha256: str) -> None:
    with store.transaction() as conn:
        conn.execute("UPDATE sync_objects SET freed_at = ? WHERE sha256 = ?", (_now_text(), sha256))


def origin_of(store: LocalStore, datapoint_id: str) -> Optional[str]:
    return syncrows.origin_of(store, datapoint_id)


def free_blob_if_freeable(store: LocalStore, files: FileStore, sha256: str, *,
                          live_ok: bool = False) -> bool:
    """Remove a local copy that is verified central and no longer needed; True if removed.

    Freeable is checked again under the blob's lock (``still_unused``), so a capture in
    another process that starts using the same content in between keeps it."""
    def freeable() -> bool:
        return blob_freeable(store, sha256, live_ok=live_ok)

    if not freeable():
        return False
    removed = files.remove(sha256, still_unused=freeable)
    if removed or not files.exists(sha256):
        mark_freed(store, sha256)
    return removed


def free_deleted_blobs(service: Any, datapoint_ids: Sequence[str]) -> None:
    """Free the local copies of these deleted datapoints' files once verified central,
    unless a deletion that can still be restored needs them (``deleted.retention_days``;
    the engine frees those when the period ends)."""
    since = deletions.restorable_since(service.paths)
    for sha256 in blobs_of(service.store, datapoint_ids):
        if not deletions.restorable(service.store, sha256, since):
            free_blob_if_freeable(service.store, service.files, sha256)


def files_waiting(store: LocalStore) -> bool:
    """Whether a live file of this bench still waits for the central store (so the next
    pass needs object storage)."""
    return syncrows.files_waiting(store)


def captured_here(store: LocalStore, datapoint_ids: Sequence[str]) -> set[str]:
    """The ids among ``datapoint_ids`` of datapoints this bench captured."""
    return syncrows.captured_here(store, datapoint_ids)
