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

The rest of a file's chain of custody lives here too, as facts the sync engine and the scrub
write when they establish them (never re-derived by a reader):

* ``central_custody`` — the central copy: where it is (bucket, object), when this bench
  uploaded it, and whether (how, when) it was *verified*: the object's size and SHA-256
  read back and the record naming it read back (``read-back``), or the object downloaded
  and checked (``download-sha256`` / ``download-etag``), or a scrub checked an object this
  bench had not verified yet (``scrub`` / ``scrub-deep``). A scrub that finds the object
  missing or different takes the verification back (``problem``).
* ``scrub_marks`` — when a scrub last checked the local blob and the central object.
* ``scrub_runs`` — each scrub's summary (``sync status``, ``doctor``, the window).

:func:`central_verified` is the one predicate "the central copy is verified" (safe to
delete from the instrument, freeable); :func:`receipt` is the one receipt every front end
shows.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal, NamedTuple, Optional

from app.core.errors import NotFoundError
from app.core.filestore import FileStore
from app.core.sqlin import in_chunks
from app.core.store import LocalStore
from app.core.timestamps import format_local, now_canonical

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


def _v2_central_and_scrub(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE central_custody (
            datapoint_id TEXT PRIMARY KEY,
            sha256 TEXT NOT NULL,
            bucket TEXT NOT NULL,
            object_name TEXT NOT NULL,
            uploaded_at TEXT,
            verified_how TEXT,
            verified_at TEXT,
            problem TEXT
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE scrub_marks (
            datapoint_id TEXT PRIMARY KEY,
            local_at TEXT,
            local_ok INTEGER,
            central_at TEXT,
            central_how TEXT,
            central_ok INTEGER
        )
        """
    )
    conn.execute(
        """
        CREATE TABLE scrub_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            started_at TEXT NOT NULL,
            finished_at TEXT NOT NULL,
            ok INTEGER NOT NULL,
            summary TEXT NOT NULL
        )
        """
    )
    # Other bytes (a pulled edit), or another object for a row without SHA-256: what was
    # verified is about something else now.
    conn.execute(
        """
        CREATE TRIGGER central_custody_changed
        AFTER UPDATE OF sha256, bucket_name, object_name, etag ON datapoints
        WHEN OLD.sha256 IS NOT NEW.sha256 OR (NEW.sha256 IS NULL AND (
            OLD.bucket_name IS NOT NEW.bucket_name OR OLD.object_name IS NOT NEW.object_name
            OR OLD.etag IS NOT NEW.etag))
        BEGIN
            DELETE FROM central_custody WHERE datapoint_id = NEW.id;
            DELETE FROM scrub_marks WHERE datapoint_id = NEW.id;
        END
        """
    )
    conn.execute(
        """
        CREATE TRIGGER central_custody_row_removed AFTER DELETE ON datapoints
        BEGIN
            DELETE FROM central_custody WHERE datapoint_id = OLD.id;
            DELETE FROM scrub_marks WHERE datapoint_id = OLD.id;
        END
        """
    )
    # Stores synced before this table: the sync engine's verified objects (its own table,
    # present when sync ever ran) of rows confirmed central were verified by read-back.
    has_sync = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                            "name = 'sync_objects'").fetchone()
    if has_sync:
        conn.execute(
            "INSERT OR IGNORE INTO central_custody (datapoint_id, sha256, bucket, object_name, "
            "uploaded_at, verified_how, verified_at) SELECT o.datapoint_id, o.sha256, o.bucket, "
            "o.object_name, o.verified_at, CASE WHEN d.sync_state = 'confirmed' THEN "
            "'read-back' END, CASE WHEN d.sync_state = 'confirmed' THEN o.verified_at END "
            "FROM sync_objects AS o JOIN datapoints AS d ON d.id = o.datapoint_id "
            "AND d.sha256 = o.sha256")


MIGRATIONS: Final = [_v1_custody, _v2_central_and_scrub]

#: How a central copy was verified (``central_custody.verified_how``).
CentralHow = Literal["read-back", "download-sha256", "download-etag", "scrub", "scrub-deep"]


def verified_central_sql(alias: str = "d") -> str:
    """SQL condition: the central copy of datapoint row ``alias`` is verified (the same
    test as :func:`central_verified`, for queries over many rows)."""
    return (f"EXISTS (SELECT 1 FROM central_custody AS cc WHERE cc.datapoint_id = {alias}.id "
            f"AND cc.verified_at IS NOT NULL AND ({alias}.sha256 IS NULL "
            f"OR cc.sha256 = {alias}.sha256))")


#: A table or column name given to the queries below (trusted, never user input).
_IDENTIFIER: Final = re.compile(r"[a-z_][a-z0-9_]*")


def file_blobs_to_check(conn: sqlite3.Connection,
                        limit: Optional[int]) -> list[tuple[str, str, bool]]:
    """(id, SHA-256, central copy verified) of the live file datapoints, a random sample of
    ``limit`` (all when None), on the caller's connection (``doctor`` reads a store it must
    not migrate over a read-only one; a store from before custody has no verified copy)."""
    has_custody = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                               "name = 'central_custody'").fetchone() is not None
    central = verified_central_sql("d") if has_custody else "0"
    sql = (f"SELECT d.id, d.sha256, {central} FROM datapoints AS d WHERE d.deleted = 0 AND "
           "d.data_type = 'file' AND d.sha256 IS NOT NULL")
    if limit is not None:
        sql += f" ORDER BY random() LIMIT {int(limit)}"
    return [(str(i), str(sha), bool(verified)) for i, sha, verified in conn.execute(sql)]


def verified_counts_by(store: LocalStore, table: str, group_column: str,
                       id_column: str = "datapoint_id") -> dict[str, tuple[int, int]]:
    """Per ``group_column`` of ``table`` (whose ``id_column`` names datapoints): (live
    datapoints whose central copy is verified, live datapoints) among those it names."""
    for name in (table, group_column, id_column):
        if not _IDENTIFIER.fullmatch(name):
            raise ValueError(f"not a plain SQL name: {name!r}")
    with store.reader() as conn:
        rows = conn.execute(
            f"SELECT l.{group_column}, SUM({verified_central_sql('d')}), COUNT(*) "
            f"FROM {table} AS l JOIN datapoints AS d ON d.id = l.{id_column} "
            f"WHERE d.deleted = 0 GROUP BY l.{group_column}").fetchall()
    return {str(group): (int(safe or 0), int(total)) for group, safe, total in rows}


def verified_live_sha256(store: LocalStore, datapoint_ids: Sequence[str]) -> dict[str, str]:
    """id -> SHA-256 of the live file datapoints among these whose central copy of those
    bytes is verified."""
    found: dict[str, str] = {}
    with store.reader() as conn:
        for marks, chunk in in_chunks(datapoint_ids):
            found.update((str(i), str(sha)) for i, sha in conn.execute(
                f"SELECT d.id, d.sha256 FROM datapoints AS d WHERE d.id IN ({marks}) AND "
                f"d.deleted = 0 AND d.sha256 IS NOT NULL AND {verified_central_sql('d')}",
                chunk))
    return found


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


# -- the central copy ----------------------------------------------------------------------


def central_verified(store: LocalStore, datapoint_id: str) -> bool:
    """True once a central copy of the datapoint's current bytes has been verified (and no
    scrub found it missing or different since): its local copy and the instrument's
    original are safe to delete."""
    with store.reader() as conn:
        row = conn.execute(f"SELECT 1 FROM datapoints AS d WHERE d.id = ? AND d.deleted = 0 "
                           f"AND {verified_central_sql('d')}", (datapoint_id,)).fetchone()
    return row is not None


def note_uploaded(conn: sqlite3.Connection, datapoint_id: str, sha256: str, bucket: str,
                  object_name: str) -> None:
    """Inside the sync engine's transaction: this bench uploaded these bytes to that object
    (and read its size and SHA-256 back). Verified once the record naming it reads back
    (:func:`note_records_verified`); an upload of other bytes takes an older verification
    back."""
    conn.execute(
        "INSERT INTO central_custody (datapoint_id, sha256, bucket, object_name, uploaded_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (datapoint_id) DO UPDATE SET "
        "sha256 = excluded.sha256, bucket = excluded.bucket, "
        "object_name = excluded.object_name, uploaded_at = excluded.uploaded_at, "
        "verified_how = NULL, verified_at = NULL, problem = NULL",
        (datapoint_id, sha256, bucket, object_name, now_canonical()))


def note_records_verified(conn: sqlite3.Connection, datapoint_ids: Iterable[str]) -> None:
    """Inside the sync engine's confirming transaction: the central records of these
    datapoints read back naming the uploaded object, so an uploaded central copy of the
    row's current bytes is verified now (rows without an upload are left alone)."""
    now = now_canonical()
    conn.executemany(
        "UPDATE central_custody SET verified_how = 'read-back', verified_at = ?, "
        "problem = NULL WHERE datapoint_id = ? AND verified_at IS NULL "
        "AND uploaded_at IS NOT NULL AND sha256 = (SELECT sha256 FROM datapoints "
        "WHERE id = ? AND deleted = 0)",
        [(now, ident, ident) for ident in datapoint_ids])


def note_object_moved(conn: sqlite3.Connection, datapoint_id: str, old_name: str,
                      new_name: str) -> None:
    """Inside the renaming transaction: the verified copy is under a new object name."""
    conn.execute("UPDATE central_custody SET object_name = ? WHERE datapoint_id = ? "
                 "AND object_name = ?", (new_name, datapoint_id, old_name))


def note_central_verified(store: LocalStore, datapoint_id: str, sha256: str, bucket: str,
                          object_name: str, how: CentralHow) -> None:
    """The central copy (these bytes, at that object) was checked by ``how``: verified.
    An earlier verification of the same bytes keeps its time and way."""
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO central_custody (datapoint_id, sha256, bucket, object_name, "
            "verified_how, verified_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (datapoint_id) DO UPDATE SET sha256 = excluded.sha256, "
            "bucket = excluded.bucket, object_name = excluded.object_name, "
            "verified_how = excluded.verified_how, verified_at = excluded.verified_at, "
            "problem = NULL WHERE central_custody.verified_at IS NULL "
            "OR central_custody.sha256 IS NOT excluded.sha256",
            (datapoint_id, sha256, bucket, object_name, how, now_canonical()))


def note_central_problem(store: LocalStore, datapoint_id: str, problem: str) -> None:
    """A scrub found the central copy missing or different: it is not verified any more
    (so nothing is freed, and the instrument's original is not safe to delete)."""
    with store.transaction() as conn:
        conn.execute("UPDATE central_custody SET verified_how = NULL, verified_at = NULL, "
                     "problem = ? WHERE datapoint_id = ?", (problem[:500], datapoint_id))


# -- scrubs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScrubMark:
    """One datapoint checked by a scrub: its local blob (``local_ok``) and/or its central
    object (``central_ok``, checked by ``central_how``: ``metadata`` or ``deep``)."""

    datapoint_id: str
    local_ok: Optional[bool] = None
    central_ok: Optional[bool] = None
    central_how: Optional[str] = None


def note_scrubbed(store: LocalStore, marks: Sequence[ScrubMark]) -> None:
    """Remember what a scrub checked, in one transaction (a scrub batches its marks: each
    commit is a durable fsync)."""
    if not marks:
        return
    now = now_canonical()
    with store.transaction() as conn:
        for mark in marks:
            conn.execute("INSERT OR IGNORE INTO scrub_marks (datapoint_id) VALUES (?)",
                         (mark.datapoint_id,))
            if mark.local_ok is not None:
                conn.execute("UPDATE scrub_marks SET local_at = ?, local_ok = ? "
                             "WHERE datapoint_id = ?", (now, int(mark.local_ok),
                                                        mark.datapoint_id))
            if mark.central_ok is not None:
                conn.execute("UPDATE scrub_marks SET central_at = ?, central_ok = ?, "
                             "central_how = ? WHERE datapoint_id = ?",
                             (now, int(mark.central_ok), mark.central_how, mark.datapoint_id))


#: Scrub summaries kept (the newest; older ones are dropped).
SCRUB_RUNS_KEPT: Final = 50


def record_scrub_run(store: LocalStore, started_at: str, ok: bool,
                     summary: dict[str, Any]) -> None:
    with store.transaction() as conn:
        conn.execute("INSERT INTO scrub_runs (started_at, finished_at, ok, summary) "
                     "VALUES (?, ?, ?, ?)", (started_at, now_canonical(), int(ok),
                                             json.dumps(summary, ensure_ascii=False)))
        conn.execute("DELETE FROM scrub_runs WHERE id <= (SELECT MAX(id) FROM scrub_runs) - ?",
                     (SCRUB_RUNS_KEPT,))


def last_scrub_run(store: LocalStore) -> Optional[dict[str, Any]]:
    """The newest scrub's summary (with ``started_at``, ``finished_at``, ``ok``), or None."""
    with store.reader() as conn:
        return last_scrub_from(conn)


def last_scrub_from(conn: sqlite3.Connection) -> Optional[dict[str, Any]]:
    """:func:`last_scrub_run` on an open connection (``doctor`` reads the store read-only)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                    "name = 'scrub_runs'").fetchone() is None:
        return None
    row = conn.execute("SELECT started_at, finished_at, ok, summary FROM scrub_runs "
                       "ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    try:
        summary = json.loads(row[3])
    except ValueError:
        summary = {}
    return {**(summary if isinstance(summary, dict) else {}), "started_at": row[0],
            "finished_at": row[1], "ok": bool(row[2])}


def describe_scrub(run: Optional[dict[str, Any]]) -> str:
    """One line about a scrub's result, as ``sync status``, ``doctor`` and the window say it."""
    if run is None:
        return "never verified"
    scope = "local and central" if run.get("central") else "local"
    checked = f"{run.get('files', 0)} file(s), {scope}"
    when = format_local(run.get("finished_at"))
    if run.get("ok"):
        return f"{when}: all intact ({checked})"
    if not run.get("problems") and run.get("errors"):
        return f"{when}: did not finish ({run['errors'][0]})"
    return (f"{when}: {run.get('problems', 0)} problem(s), "
            f"{run.get('repaired', 0)} repaired ({checked}); see benchdata verify")


# -- the receipt ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """A file datapoint's chain of custody, as every front end shows it."""

    datapoint_id: str
    #: Captured on this bench (``here``) or elsewhere; SHA-256, size, when, source path.
    captured: dict[str, Any]
    #: The blob this bench holds for it: whether present, and how its bytes were verified.
    local_copy: dict[str, Any]
    #: Bucket, object and time of this bench's upload (None: not uploaded from here).
    uploaded: Optional[dict[str, Any]]
    #: How and when a central copy was verified (None: not verified).
    central_verified: Optional[dict[str, Any]]
    #: What a scrub last found, locally and centrally (None: never scrubbed).
    last_scrub: Optional[dict[str, Any]]
    #: Why the central copy is not verified any more, if a scrub found a problem.
    central_problem: Optional[str]
    #: True only once a central copy has been verified.
    safe_to_delete: bool

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("datapoint_id")
        return data


def _scrub_facts(row: Optional[sqlite3.Row | tuple[Any, ...]]) -> Optional[dict[str, Any]]:
    if row is None:
        return None
    local_at, local_ok, central_at, central_how, central_ok = row
    facts: dict[str, Any] = {}
    if local_at is not None:
        facts["local"] = {"at": local_at, "ok": bool(local_ok)}
    if central_at is not None:
        facts["central"] = {"at": central_at, "ok": bool(central_ok), "how": central_how}
    return facts or None


def receipt(store: LocalStore, files: FileStore, datapoint_id: str) -> Optional[Receipt]:
    """The custody receipt of a file datapoint (None for a JSON value); NotFoundError for
    an unknown id. Reads only facts recorded when they were established."""
    with store.reader() as conn:
        row = conn.execute(
            "SELECT data_type, origin, sha256, size_bytes, path, created_at, "
            f"{verified_central_sql('d')} FROM datapoints AS d WHERE id = ? AND deleted = 0",
            (datapoint_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no datapoint with id {datapoint_id}")
        data_type, origin, sha256, size, path, created_at, verified = row
        if data_type == "json":
            return None
        local = conn.execute("SELECT sha256, how, at FROM blob_custody WHERE datapoint_id = ?",
                             (datapoint_id,)).fetchone()
        central = conn.execute(
            "SELECT sha256, bucket, object_name, uploaded_at, verified_how, verified_at, "
            "problem FROM central_custody WHERE datapoint_id = ?", (datapoint_id,)).fetchone()
        scrub = conn.execute("SELECT local_at, local_ok, central_at, central_how, central_ok "
                             "FROM scrub_marks WHERE datapoint_id = ?",
                             (datapoint_id,)).fetchone()
    here = origin == "local"
    captured = {"here": here, "sha256": sha256, "size_bytes": size,
                "at": created_at if here else None, "source_path": path}
    held = local is not None and (sha256 is None or local[0] == sha256) \
        and files.exists(str(local[0]))
    local_copy = {"held": held, "sha256": local[0] if local else None,
                  "how": local[1] if local else None, "since": local[2] if local else None}
    uploaded = None
    central_facts = None
    problem = None
    if central is not None:
        if central[3] is not None:
            uploaded = {"bucket": central[1], "object_name": central[2], "at": central[3]}
        if verified:
            central_facts = {"how": central[4], "at": central[5], "bucket": central[1],
                             "object_name": central[2]}
        problem = central[6]
    return Receipt(datapoint_id=datapoint_id, captured=captured, local_copy=local_copy,
                   uploaded=uploaded, central_verified=central_facts,
                   last_scrub=_scrub_facts(scrub), central_problem=problem,
                   safe_to_delete=bool(verified))


# -- the scrub's and retention's reads (sync/verify.py, sync/retention.py) ------------------

def live_blob_totals(store: LocalStore) -> tuple[int, int]:
    """(blobs, bytes) held locally by live datapoints, each blob counted once."""
    with store.reader() as conn:
        count, size = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM (SELECT c.sha256, "
            "MAX(d.size_bytes) AS size FROM blob_custody AS c JOIN datapoints AS d "
            "ON d.id = c.datapoint_id WHERE d.deleted = 0 GROUP BY c.sha256)").fetchone()
    return int(count), int(size or 0)


def live_blobs_after(store: LocalStore, after: str, limit: int) -> list[tuple[str, list[str]]]:
    """(SHA-256, ids of the live datapoints it holds) for the next ``limit`` blobs after
    ``after``, in SHA-256 order."""
    with store.reader() as conn:
        rows = conn.execute(
            "SELECT c.sha256, group_concat(c.datapoint_id, ' ') FROM blob_custody AS c "
            "JOIN datapoints AS d ON d.id = c.datapoint_id WHERE d.deleted = 0 "
            "AND c.sha256 > ? GROUP BY c.sha256 ORDER BY c.sha256 LIMIT ?",
            (after, limit)).fetchall()
    return [(str(sha), sorted(str(ids).split())) for sha, ids in rows]


def centrally_held_ids_after(store: LocalStore, after: str, limit: int) -> list[str]:
    """Live file datapoints with a central copy: uploaded from here (verified object),
    or a record naming an object (another bench's or MADSci's); the next ``limit`` ids
    after ``after``, in id order."""
    with store.reader() as conn:
        return [str(r[0]) for r in conn.execute(
            "SELECT d.id FROM datapoints AS d WHERE d.deleted = 0 AND d.data_type != 'json' "
            "AND d.id > ? AND (d.object_name IS NOT NULL OR EXISTS (SELECT 1 FROM "
            "sync_objects AS o WHERE o.datapoint_id = d.id AND o.sha256 = d.sha256)) "
            "ORDER BY d.id LIMIT ?", (after, limit))]


def unverified_local(store: LocalStore, confirmed: str) -> list[tuple[Any, ...]]:
    """(id, label, data_type, size_bytes, created_at, sync_state) of live datapoints
    captured here and not yet verified central, oldest first: files without a verified
    central copy, values whose record is not in the ``confirmed`` sync state."""
    with store.reader() as conn:
        return [tuple(row) for row in conn.execute(
            "SELECT d.id, d.label, d.data_type, d.size_bytes, d.created_at, d.sync_state "
            "FROM datapoints AS d WHERE d.deleted = 0 AND d.origin = 'local' AND "
            f"((d.data_type = 'file' AND NOT {verified_central_sql('d')}) OR "
            "(d.data_type != 'file' AND d.sync_state != ?)) ORDER BY d.created_at",
            (confirmed,)).fetchall()]
