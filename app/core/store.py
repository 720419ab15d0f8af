"""The local datapoint store: plain sqlite3 over SQLite in WAL mode, one writer.

Durability first: every write is one ``BEGIN IMMEDIATE`` … ``COMMIT`` on the single writer
connection with ``synchronous=FULL`` (in WAL mode NORMAL can lose commits that already
returned if power fails). Readers use pooled connections (``app.core.readpool``); WAL lets
them read while the writer writes, so a long export never blocks a capture.

Rows are MADSci documents split into columns (``app.core.rows`` maps between the two);
this module owns the bookkeeping columns (revision, sync state, tombstones).
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Optional

from app.core import query as querylang
from app.core import search as textsearch
from app.core.errors import (
    ConflictError,
    DiskFullError,
    NotFoundError,
    StoreError,
    ValidationError,
    is_disk_full,
)
from app.core.ids import OWNERSHIP_FIELDS, require_ulid
from app.core.readpool import ReaderPool, open_connection, read_only_uris
from app.core.rows import (
    ALL_COLUMNS,
    CONTENT_COLUMNS,
    INSERT_SQL,
    SELECT_COLUMNS,
    RowSummary,
    datapoint_to_row,
    refuse_if_different,
    row_summary,
    row_to_datapoint,
)
from app.core.schema import SCHEMA_VERSION, migrate
from app.core.sqlin import in_chunks, placeholders
from app.core.syncstate import SyncState
from app.core.timestamps import now_canonical

if TYPE_CHECKING:  # the models (pydantic) load where a row becomes one: app.core.rows
    from app.core.models import DataPoint

log = logging.getLogger(__name__)

#: Sync states a row moves through (app/core/syncstate.py); the engine owns all after pending.
SYNC_PENDING: Final[str] = SyncState.PENDING
SYNC_CONFIRMED: Final[str] = SyncState.CONFIRMED
#: SQLite's primary result code for I/O errors: on a full disk it reports some of them
#: (growing the shared-memory index, ``SQLITE_IOERR_SHMSIZE``) instead of SQLITE_FULL.
_SQLITE_IOERR: Final[int] = 10
#: Less free space than this on the store's disk, after an I/O error, means "full".
_NEARLY_FULL_BYTES: Final[int] = 1024 * 1024


@dataclass(frozen=True)
class StoredDataPoint:
    """A datapoint as the bench holds it, with the bookkeeping around it."""

    datapoint: DataPoint
    revision: int
    sync_state: str
    deleted: bool
    origin: str
    created_at: str
    updated_at: str

    @property
    def datapoint_id(self) -> str:
        return self.datapoint.datapoint_id


@dataclass(frozen=True)
class Page:
    """One page of a query: the datapoints and the cursor of the next page, if any."""

    items: list[DataPoint]
    next_cursor: Optional[str]


class LocalStore:
    """All datapoint rows of one bench; safe to share between threads."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        #: Maps (ownership field, name) to an id inside queries; the service installs the
        #: name registry's lookup so pinned names work in queries too.
        self.resolve_name: Optional[querylang.ResolveName] = None
        #: How long one query statement may run (``query.time_budget_seconds``).
        self.query_seconds: float = querylang.DEFAULT_TIME_BUDGET_SECONDS
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.RLock()
        #: Why the store is read-only (its disk was full when it was opened), else None.
        #: Every write first tries to open the writer again, so writing resumes by itself
        #: once space is freed.
        self.read_only_reason: Optional[str] = None
        self._writer: Optional[sqlite3.Connection] = None
        self._closed = False
        self._readers = self._reader_pool()
        try:
            self._writer = self._open_writer()
        except DiskFullError as exc:
            self._open_read_only(exc)
        # The full-text index (kept in step by transaction(): app.core.search.flush).
        self.migrate_component(textsearch.COMPONENT, textsearch.MIGRATIONS)

    # -- connections -------------------------------------------------------------------

    def _reader_pool(self, uri: Optional[str] = None) -> ReaderPool:
        """Readers of the store; ``uri``: a read-only SQLite URI (see ``_open_read_only``)."""
        if uri is None:
            return ReaderPool(lambda: open_connection(str(self.db_path)))
        return ReaderPool(lambda: open_connection(uri, uri=True, writable=False))

    def _open_writer(self) -> sqlite3.Connection:
        writer = None
        try:
            writer = open_connection(str(self.db_path))
            # Statement journals in memory: a write that fires a trigger on datapoints (the
            # search index's) needs one, and as a temp file it doubled the cost of a row.
            writer.execute("PRAGMA temp_store = MEMORY")
            found = migrate(writer)
        except sqlite3.DatabaseError as exc:
            if writer is not None:
                writer.close()
            if self._says_disk_full(exc):
                raise self._disk_full_error() from exc
            raise StoreError(
                f"cannot open the local store {self.db_path}: {exc}. If the file is "
                f"damaged, restore it from a backup (benchdata backup/restore)"
            ) from exc
        if found != SCHEMA_VERSION:
            log.info("migrated local store %s from schema %s to %s", self.db_path,
                     found, SCHEMA_VERSION)
        return writer

    # -- a full disk -------------------------------------------------------------------

    def _says_disk_full(self, exc: BaseException) -> bool:
        if is_disk_full(exc):
            return True
        code = getattr(exc, "sqlite_errorcode", 0) or 0
        return code & 0xFF == _SQLITE_IOERR and self._free_bytes() < _NEARLY_FULL_BYTES

    def _free_bytes(self) -> int:
        try:
            return shutil.disk_usage(self.db_path.parent).free
        except OSError:
            return _NEARLY_FULL_BYTES

    def _disk_full_error(self) -> DiskFullError:
        return DiskFullError(
            f"the disk holding the local store ({self.db_path.parent}) is full: nothing was "
            "stored; free space on it and try again")

    @contextmanager
    def _disk_full_translated(self) -> Iterator[None]:
        """SQLite's "database or disk is full" becomes the one DiskFullError."""
        try:
            yield
        except sqlite3.Error as exc:
            if self._says_disk_full(exc):
                raise self._disk_full_error() from exc
            raise

    def _open_read_only(self, cause: DiskFullError) -> None:
        """Serve reads while the disk is too full to open the writer (``read_only_uris``)."""
        if not self.db_path.exists():
            raise cause
        for uri in read_only_uris(self.db_path):
            readers = self._reader_pool(uri)
            try:
                with readers.connection() as conn:
                    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
            except sqlite3.Error:
                readers.close()
                continue
            if found != SCHEMA_VERSION:
                readers.close()
                raise cause  # an upgrade needs room to write
            self._readers.close()
            self._readers = readers
            self.read_only_reason = (
                f"the disk holding the local store ({self.db_path.parent}) is full: it is "
                "open read-only, and writing resumes by itself once space is freed")
            log.info("%s", self.read_only_reason)  # the runner warns; a CLI read need not
            return
        raise cause

    def _writer_or_reopen(self) -> sqlite3.Connection:
        """The writer; while read-only, try to open it again (space may have been freed)."""
        if self._writer is not None:
            return self._writer
        if self._closed:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        self._writer = self._open_writer()
        # Readers move to the normal pool only now: while the attempt ran they kept the
        # read-only one, which works on a full disk.
        old_readers, self._readers = self._readers, self._reader_pool()
        old_readers.close()
        self.read_only_reason = None
        log.info("the disk holding %s has room again; the store is writable",
                 self.db_path.parent)
        return self._writer

    def try_writable(self) -> bool:
        """Whether the store can write now; a read-only store tries to open its writer
        again (space may have been freed)."""
        with self._write_lock:
            try:
                self._writer_or_reopen()
            except DiskFullError:
                return False
            except StoreError as exc:
                log.warning("the local store is still read-only: %s", exc)
                return False
        return True

    def migrate_component(self, component: str,
                          migrations: Sequence[Any]) -> int:
        """Create or upgrade a component's own tables (see ``schema.migrate_component``)."""
        from app.core.schema import migrate_component

        current = self._component_version(component)
        if current == len(migrations):
            return current  # nothing to write: also fine on a read-only store (a full disk)
        with self._write_lock, self._disk_full_translated():
            return migrate_component(self._writer_or_reopen(), component, migrations)

    def _component_version(self, component: str) -> Optional[int]:
        """A component's table version as stored, None when it has none yet."""
        with self.reader() as conn:
            try:
                row = conn.execute("SELECT version FROM component_versions WHERE component = ?",
                                   (component,)).fetchone()
            except sqlite3.OperationalError:  # no component has tables yet
                return None
        return int(row[0]) if row else None

    def close(self) -> None:
        with self._write_lock:
            if self._writer is not None:
                try:
                    self._writer.execute("PRAGMA optimize")
                except sqlite3.Error:
                    pass
                self._writer.close()
                self._writer = None
            self._closed = True
        self._readers.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The one writer, in an immediate transaction committed durably on exit.

        A full disk raises DiskFullError (nothing of the transaction is kept)."""
        with self._write_lock, self._disk_full_translated():
            writer = self._writer_or_reopen()
            writer.execute("BEGIN IMMEDIATE")
            try:
                yield writer
                # The full-text index follows in the same transaction (new rows in batches;
                # searches catch up first: catch_up_search).
                textsearch.flush(writer)
            except BaseException:
                # SQLite rolls some failures (SQLITE_FULL) back by itself.
                if writer.in_transaction:
                    writer.execute("ROLLBACK")
                raise
            try:
                writer.execute("COMMIT")
            except sqlite3.Error:
                if writer.in_transaction:
                    writer.execute("ROLLBACK")
                raise

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A pooled read connection (autocommit: each statement sees a fresh snapshot)."""
        with self._readers.connection() as conn:
            yield conn

    @contextmanager
    def query_reader(self, keep_going: Optional[Callable[[], bool]] = None
                     ) -> Iterator[sqlite3.Connection]:
        """A reader whose statements stop at the query time budget (QueryTimeoutError),
        or as soon as ``keep_going`` turns false (see ``query.time_budget``)."""
        with self.reader() as conn, \
                querylang.time_budget(conn, self.query_seconds, keep_going):
            yield conn

    def _fetch(self, sql: str, params: Sequence[Any] = (), *,
               budgeted: bool = False) -> list[dict[str, Any]]:
        with self.query_reader() if budgeted else self.reader() as conn:
            cursor = conn.execute(sql, tuple(params))
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, values)) for values in cursor.fetchall()]

    # -- writes ------------------------------------------------------------------------

    def insert(self, datapoints: Iterable[DataPoint], *, origin: str = "local") -> list[DataPoint]:
        """Store datapoints in one durable transaction; all or none.

        Re-submitting an identical datapoint (same id and content) is a no-op, so a
        retried request is safe; the same id with different content is a ConflictError.
        Returns the datapoints as given (already validated models).
        """
        stored = list(datapoints)
        now = now_canonical()
        metadata_text: dict[tuple[tuple[str, str], ...], str] = {}
        rows = [datapoint_to_row(dp, origin=origin, now=now, metadata_text=metadata_text)
                for dp in stored]
        if not rows:
            return []
        with self.transaction() as conn:
            # rowcount, not total_changes: the latter also counts what triggers write.
            inserted = conn.executemany(
                INSERT_SQL, [[row[c] for c in ALL_COLUMNS] for row in rows]).rowcount
            if inserted != len(rows):
                # Some ids were there already (a retried submission, or the same id twice
                # in this batch): each must match what is stored, or the batch is refused
                # and rolled back. Rows just inserted match themselves.
                for row in rows:
                    self._check_identical(conn, row)
        return stored

    @staticmethod
    def _check_identical(conn: sqlite3.Connection, row: Mapping[str, Any]) -> None:
        existing = conn.execute(
            f"SELECT {', '.join(CONTENT_COLUMNS)}, deleted FROM datapoints WHERE id = ?",
            (row["id"],),
        ).fetchone()
        stored = dict(zip((*CONTENT_COLUMNS, "deleted"), existing))
        if stored.pop("deleted"):
            raise ConflictError(f"datapoint {row['id']} was deleted; its id cannot be reused")
        refuse_if_different(stored, row)

    def update(self, datapoint_id: str, *, label: Optional[str] = None,
               set_metadata: Optional[Mapping[str, str]] = None,
               remove_metadata: Iterable[str] = (),
               ownership: Optional[Mapping[str, Optional[str]]] = None) -> DataPoint:
        """Edit a label, custom metadata and/or ownership ids; bumps the revision for sync.

        ``ownership`` maps ``<kind>_id`` fields to a new id (``None`` clears the field)."""
        owned = dict(ownership or {})
        unknown = [field for field in owned if field not in OWNERSHIP_FIELDS]
        if unknown:
            raise ValidationError(f"unknown ownership field(s) {', '.join(map(str, unknown))}")
        for field, ident in owned.items():
            if ident is not None:
                owned[field] = require_ulid(ident, field).upper()
        with self.transaction() as conn:
            if not self._edit(conn, datapoint_id, label, set_metadata, remove_metadata, owned):
                raise NotFoundError(f"no datapoint with id {datapoint_id}")
        return self.get(datapoint_id)

    def update_metadata_many(
            self, edits: Mapping[str, tuple[Mapping[str, str], Iterable[str]]]) -> list[str]:
        """Several metadata edits (id -> (set, remove)) in one transaction, each a new
        revision as :meth:`update` makes; ids no longer present are skipped. The ids edited.

        One commit for many edits: a background writer (header extraction) holds the
        writer, which captures wait for, once per batch instead of once per datapoint."""
        with self.transaction() as conn:
            return [datapoint_id for datapoint_id, (set_metadata, remove) in edits.items()
                    if self._edit(conn, datapoint_id, None, set_metadata, remove, {})]

    @staticmethod
    def _edit(conn: sqlite3.Connection, datapoint_id: str, label: Optional[str],
              set_metadata: Optional[Mapping[str, str]], remove_metadata: Iterable[str],
              owned: Mapping[str, Optional[str]]) -> bool:
        """Edit one live row inside a transaction; False when there is none."""
        row = conn.execute(
            "SELECT label, custom_metadata FROM datapoints WHERE id = ? AND deleted = 0",
            (datapoint_id,),
        ).fetchone()
        if row is None:
            return False
        metadata: dict[str, str] = json.loads(row[1] or "{}")
        for key in remove_metadata:
            metadata.pop(key, None)
        if set_metadata:
            for key, value in set_metadata.items():
                if not isinstance(value, str):
                    raise ValidationError(f"metadata {key!r} must be text")
                metadata[str(key)] = value
        # Field names come from OWNERSHIP_FIELDS (checked by the caller), never from input.
        set_owned = "".join(f"{field} = ?, " for field in owned)
        conn.execute(
            f"UPDATE datapoints SET label = ?, custom_metadata = ?, {set_owned}"
            "revision = revision + 1, sync_state = ?, updated_at = ? WHERE id = ?",
            (row[0] if label is None else label,
             json.dumps(metadata, ensure_ascii=False, sort_keys=True),
             *owned.values(), SYNC_PENDING, now_canonical(), datapoint_id),
        )
        return True

    def delete(self, datapoint_id: str) -> None:
        """Mark a datapoint deleted (a tombstone sync propagates); its file stays for now."""
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE datapoints SET deleted = 1, revision = revision + 1, "
                "sync_state = ?, updated_at = ? WHERE id = ? AND deleted = 0",
                (SYNC_PENDING, now_canonical(), datapoint_id),
            )
            if cursor.rowcount == 0:
                raise NotFoundError(f"no datapoint with id {datapoint_id}")

    # -- reads -------------------------------------------------------------------------

    def get_stored(self, datapoint_id: str, *, include_deleted: bool = False) -> StoredDataPoint:
        rows = self._fetch(f"SELECT {SELECT_COLUMNS} FROM datapoints WHERE id = ?",
                           (str(datapoint_id).upper(),))
        if not rows or (rows[0]["deleted"] and not include_deleted):
            raise NotFoundError(f"no datapoint with id {datapoint_id}")
        row = rows[0]
        return StoredDataPoint(
            datapoint=row_to_datapoint(row), revision=row["revision"],
            sync_state=row["sync_state"], deleted=bool(row["deleted"]),
            origin=row["origin"], created_at=row["created_at"], updated_at=row["updated_at"],
        )

    def get(self, datapoint_id: str) -> DataPoint:
        return self.get_stored(datapoint_id).datapoint

    def get_many(self, datapoint_ids: Sequence[str]) -> list[DataPoint]:
        """Datapoints in the order of the ids given; unknown ids are skipped."""
        wanted = [str(i).upper() for i in datapoint_ids]
        found: dict[str, DataPoint] = {}
        for marks, chunk in in_chunks(wanted):
            for row in self._fetch(
                f"SELECT {SELECT_COLUMNS} FROM datapoints WHERE deleted = 0 AND id IN ({marks})",
                chunk,
            ):
                found[row["id"]] = row_to_datapoint(row)
        return [found[i] for i in wanted if i in found]

    def latest(self, number: int = 100) -> list[DataPoint]:
        """Newest first by data_timestamp; ``number <= 0`` means all (as MADSci)."""
        return self.query(None, limit=number if number > 0 else None).items

    def latest_summaries(self, number: int = 100) -> list[RowSummary]:
        """What :meth:`latest` finds, as listing summaries read straight from the rows: no
        model is built (the rows are this store's own, validated when they were written),
        so ``benchdata list`` never loads pydantic."""
        rows, _sort = self._select(None, limit=number if number > 0 else None)
        return [row_summary(row) for row in rows]

    def query(self, selector: Optional[Mapping[str, Any]] = None, *,
              sort: Any = None, limit: Optional[int] = None,
              cursor: Optional[str] = None, text: Optional[str] = None) -> Page:
        """One page of matches; ``text`` (or ``$text`` in the selector) also requires a
        full-text match (``app.core.search``)."""
        rows, sort_keys = self._select(selector, sort=sort, limit=limit, cursor=cursor,
                                       text=text)
        items = [row_to_datapoint(row) for row in rows]
        next_cursor = None
        if limit is not None and len(rows) == limit:
            last = rows[-1]
            next_cursor = querylang.make_cursor(
                [querylang.sort_value(last, key) for key in sort_keys], last["id"], sort_keys
            )
        return Page(items=items, next_cursor=next_cursor)

    def _select(self, selector: Optional[Mapping[str, Any]], *, sort: Any = None,
                limit: Optional[int] = None, cursor: Optional[str] = None,
                text: Optional[str] = None) -> tuple[list[dict[str, Any]], list[querylang.SortKey]]:
        """The rows of one page of matches, and the sort keys the page is ordered by."""
        selector, found = textsearch.split_text(selector)
        text = textsearch.join_texts(found, text)
        plan = querylang.build_select(selector, sort=sort, limit=limit, cursor=cursor,
                                      columns=SELECT_COLUMNS, resolve_name=self.resolve_name)
        return self._fetch_searching(*textsearch.restrict(plan.sql, plan.params, text)), \
            plan.sort

    def iter_query(self, selector: Optional[Mapping[str, Any]] = None, *,
                   sort: Any = None, page_size: int = 1000,
                   text: Optional[str] = None) -> Iterator[DataPoint]:
        """Every match, fetched a page at a time (constant memory for exports)."""
        cursor: Optional[str] = None
        while True:
            page = self.query(selector, sort=sort, limit=page_size, cursor=cursor, text=text)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def count(self, selector: Optional[Mapping[str, Any]] = None, *,
              text: Optional[str] = None) -> int:
        selector, found = textsearch.split_text(selector)
        text = textsearch.join_texts(found, text)
        sql, params = querylang.build_count(selector, resolve_name=self.resolve_name)
        return int(self._fetch_searching(*textsearch.restrict(sql, params, text),
                                         rows=False)[0][0])

    def catch_up_search(self) -> None:
        """Index every row still waiting (the last few captures, or rows written around
        this store) before a search reads the index."""
        with self.reader() as conn:
            pending = textsearch.has_pending(conn)
        if pending:
            with self.transaction() as conn:
                textsearch.flush(conn, force=True)

    def _fetch_searching(self, sql: str, params: Sequence[Any], *,
                         rows: bool = True) -> list[Any]:
        """Run a (possibly full-text) read; FTS5 complaints become QueryErrors, not 500s."""
        if len(params) and "MATCH ?" in sql:
            self.catch_up_search()
        try:
            if rows:
                return self._fetch(sql, params, budgeted=True)
            with self.query_reader() as conn:
                return conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.OperationalError as exc:
            error = textsearch.explain_error(exc)
            if error is None:
                raise
            raise error from None

    def sync_state_counts(self) -> dict[str, int]:
        rows = self._fetch(
            "SELECT sync_state, COUNT(*) AS n FROM datapoints GROUP BY sync_state"
        )
        return {row["sync_state"]: row["n"] for row in rows}

    def sync_backlog(self, settled: Sequence[str]) -> tuple[int, int, Optional[str]]:
        """(rows, bytes, oldest ``updated_at``) of the rows in no ``settled`` state: what
        still waits to be synced."""
        with self.reader() as conn:
            count, size, oldest = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(size_bytes), 0), MIN(updated_at) FROM datapoints "
                f"WHERE sync_state NOT IN ({placeholders(len(settled))})", tuple(settled)).fetchone()
        return int(count), int(size or 0), oldest

    def refused_rows(self, limit: int = 200) -> list[tuple[str, str]]:
        """(id, label) of the rows the central store refused, newest first (``failed`` is
        the older name of ``quarantined``)."""
        with self.reader() as conn:
            return [(str(i), label or "") for i, label in conn.execute(
                "SELECT id, label FROM datapoints WHERE sync_state IN ('quarantined', 'failed') "
                "ORDER BY updated_at DESC LIMIT ?", (int(limit),))]

    def existing_ids(self, datapoint_ids: Sequence[str]) -> set[str]:
        """Which of these ids have a row (live or deleted)."""
        found: set[str] = set()
        with self.reader() as conn:
            for marks, chunk in in_chunks(datapoint_ids):
                found.update(str(row[0]) for row in conn.execute(
                    f"SELECT id FROM datapoints WHERE id IN ({marks})", chunk))
        return found

    def blob_in_use(self, sha256: str) -> bool:
        with self.reader() as conn:
            return conn.execute(
                "SELECT 1 FROM datapoints WHERE sha256 = ? LIMIT 1", (sha256,)
            ).fetchone() is not None

    def integrity_check(self) -> str:
        with self.reader() as conn:
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
