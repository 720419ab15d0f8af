"""Moving objects older benches named ``<prefix><ULID>/<name>`` to names MADSci can serve.

MADSci 0.8.1's server hands a file to a client without S3 settings through
``NamedTemporaryFile(suffix="_" + object_name)``, which fails on a ``/``; the names this
engine writes now have none (``sync.objects.object_name_for``). Objects this bench
uploaded under the old names move in the sync pass, a bounded number per pass:

1. **copy, verify** (before the push): a server-side copy to the new name, then a ``HEAD``
   must show the size and SHA-256 recorded at capture;
2. **update the record**: one local transaction remembers the move (``sync_renames``),
   points the verified object (``sync_objects``) at the copy and gives the datapoint a new
   revision, pending — so the pass's push writes the central record with its new
   ``object_name``/``url`` and reads it back like any edit, and other benches pull the new
   name (a newer revision);
3. **delete the old object** (after the push), once the central record reads back with
   the new name; then the move is forgotten.

Under kill -9 each step is redone or skipped as its durable state says: a copy that is
already there and verifies is not made again, the local transaction is all or nothing
(and only applies to a confirmed row still at the revision that was copied), a record
already written reads back as ours, and deleting an object that is gone is fine. So every
datapoint ends with exactly one object, under its new name, and a record pointing at it.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Final, Optional

from app.core import custody, syncrows
from app.core.store import LocalStore
from app.core.timestamps import now_canonical

from sync.backends import RecordBackend
from sync.faults import CentralConfigError, RejectedError, SyncError
from sync.objectnames import object_name_for
from sync.objects import ObjectStore, StoredObject
from sync.settings import CentralSettings

log = logging.getLogger(__name__)

#: Objects moved per pass at most (server-side copies: cheap, but not free).
RENAMES_PER_PASS: Final = 200
#: Old-style names hold a ``/``; this partial index keeps the search for them (every
#: pass) to the rows that have one: nothing at all once everything moved.
_LEGACY = "instr(object_name, '/') > 0"


def _v1_tables(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE sync_renames (
            datapoint_id TEXT PRIMARY KEY,
            old_name TEXT NOT NULL,
            new_name TEXT NOT NULL,
            revision INTEGER NOT NULL,
            created_at TEXT NOT NULL
        )
        """
    )
    conn.execute(f"CREATE INDEX ix_sync_objects_legacy_name ON sync_objects (datapoint_id) "
                 f"WHERE {_LEGACY}")


MIGRATIONS: Final = [_v1_tables]


@dataclass(frozen=True)
class _Legacy:
    datapoint_id: str
    revision: int
    old_name: str
    size: int
    sha256: str


@dataclass
class RenameReport:
    copied: int = 0
    removed: int = 0
    errors: list[str] = field(default_factory=list)


class ObjectRenamer:
    """One pass's share of the move to new object names (``start`` before the push,
    ``finish`` after it)."""

    def __init__(self, store: LocalStore, objects: ObjectStore, central: RecordBackend,
                 settings: CentralSettings) -> None:
        store.migrate_component("sync_rename", MIGRATIONS)
        self.store = store
        self.objects = objects
        self.central = central
        self.settings = settings

    # -- 1 and 2: copy, verify, point the record at the copy --------------------------------

    def start(self, report: RenameReport, limit: int = RENAMES_PER_PASS) -> None:
        for legacy in self._legacy_objects(limit):
            new_name = object_name_for(self.settings, legacy.datapoint_id,
                                       legacy.old_name.rsplit("/", 1)[-1])
            try:
                stored = self.objects.copy_verified(legacy.old_name, new_name, legacy.size,
                                                    legacy.sha256)
            except RejectedError as exc:  # the old object is gone: nothing to move
                _note(report, f"{legacy.datapoint_id}: {exc}")
                continue
            except CentralConfigError:
                raise
            except SyncError as exc:  # the network: the rest waits for the next pass
                _note(report, f"moving {legacy.old_name}: {exc}")
                return
            if self._point_at(legacy, stored):
                report.copied += 1

    def _legacy_objects(self, limit: int) -> list[_Legacy]:
        """Live, confirmed datapoints whose verified object has an old-style name."""
        rows = syncrows.legacy_named_objects(self.store, limit)
        return [_Legacy(r[0], int(r[1]), str(r[2]), int(r[3]), str(r[4])) for r in rows]

    def _point_at(self, legacy: _Legacy, stored: StoredObject) -> bool:
        """One transaction: remember the move, point ``sync_objects`` at the copy, and give
        the row a new revision to push. Nothing if the row changed since it was read."""
        now = now_canonical()
        with self.store.transaction() as conn:
            if not syncrows.bump_confirmed_revision(conn, legacy.datapoint_id,
                                                    legacy.revision):
                return False  # edited or deleted meanwhile: looked at again next pass
            conn.execute(
                "INSERT INTO sync_renames (datapoint_id, old_name, new_name, revision, "
                "created_at) VALUES (?, ?, ?, ?, ?)",
                (legacy.datapoint_id, legacy.old_name, stored.object_name,
                 legacy.revision + 1, now))
            conn.execute(
                "UPDATE sync_objects SET object_name = ?, etag = ?, verified_at = ? "
                "WHERE datapoint_id = ? AND object_name = ?",
                (stored.object_name, stored.etag, now, legacy.datapoint_id, legacy.old_name))
            custody.note_object_moved(conn, legacy.datapoint_id, legacy.old_name,
                                      stored.object_name)
        return True

    # -- 3: delete the old object once the record names the new one -------------------------

    def finish(self, report: RenameReport) -> None:
        moves = self._moves()
        if not moves:
            return
        live = [m for m in moves if m["state"] == "confirmed" and not m["deleted"]]
        gone = [m for m in moves if m["state"] is None or m["deleted"]]
        central = self._central_names([m["datapoint_id"] for m in live]) if live else {}
        for move in live:
            ident = move["datapoint_id"]
            name = central.get(ident)
            if name == move["new_name"]:
                try:
                    self.objects.remove(move["old_name"])
                except CentralConfigError:
                    raise
                except SyncError as exc:
                    _note(report, f"deleting {move['old_name']}: {exc}")
                    return
                self._forget(ident)
                report.removed += 1
            elif name is not None and name == move["old_name"]:
                # Another bench wrote the record back with the old name (it had not
                # pulled the move yet): the record needs the old object, which stays.
                log.warning("the record of %s names %s again; keeping that object",
                            ident, name)
                self._forget(ident)
        for move in gone:  # deleted meanwhile: its objects stay as any deleted file's do
            self._forget(move["datapoint_id"])

    def _moves(self) -> list[dict[str, Any]]:
        return syncrows.recorded_moves(self.store, RENAMES_PER_PASS)

    def _central_names(self, ids: list[str]) -> dict[str, Optional[str]]:
        try:
            return {str(d["_id"]): d.get("object_name") for d in self.central.datapoints.find(
                {"_id": {"$in": ids}}, {"object_name": 1}, batch_size=max(1, len(ids)))}
        except Exception as exc:  # noqa: BLE001
            raise self.central.classify(exc, what="reading moved records back") from exc

    def _forget(self, datapoint_id: str) -> None:
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM sync_renames WHERE datapoint_id = ?", (datapoint_id,))


def _note(report: RenameReport, error: str) -> None:
    log.warning("object names: %s", error)
    if len(report.errors) < 20:
        report.errors.append(error)
