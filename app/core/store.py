"""The local datapoint store: SQLAlchemy over SQLite in WAL mode, one writer.

Durability first: every write is one ``BEGIN IMMEDIATE`` … ``COMMIT`` on the single writer
connection with ``synchronous=FULL`` (in WAL mode NORMAL can lose commits that already
returned if power fails). Readers use pooled connections; WAL lets them read while the
writer writes, so a long export never blocks a capture.

Rows are MADSci documents split into columns (see ``app.core.schema``); this module maps
between the two and owns the bookkeeping columns (revision, sync state, tombstones).
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
from typing import Any, Final, Optional

from pydantic_core import to_jsonable_python
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import QueuePool

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
from app.core.jsonvalue import dump_json_value
from app.core.models import DataPoint, DataPointTypeEnum
from app.core.schema import SCHEMA_VERSION, migrate
from app.core.sqlin import in_chunks, placeholders
from app.core.syncstate import SyncState
from app.core.timestamps import INSTANT_FIELD, madsci_text, now_canonical

log = logging.getLogger(__name__)

#: Document fields that have a column of the same name.
_PLAIN_FIELDS: Final[tuple[str, ...]] = (
    "label",
    "path",
    "filename",
    "size_bytes",
    "content_type",
    "sha256",
    "bucket_name",
    "object_name",
    "storage_endpoint",
    "public_endpoint",
    "url",
    "etag",
    "replaces",
)
_DOCUMENT_KEYS: Final[frozenset[str]] = frozenset(
    {"_id", "datapoint_id", "data_type", "data_timestamp", "ownership_info", "value",
     "custom_metadata", INSTANT_FIELD, *_PLAIN_FIELDS}
)
#: Columns that say something about the datapoint itself (compared for idempotency).
_CONTENT_COLUMNS: Final[tuple[str, ...]] = (
    "id", "label", "data_type", "data_timestamp", "data_timestamp_sent", *OWNERSHIP_FIELDS,
    "value", *_PLAIN_FIELDS, "custom_metadata", "extra",
)
_ALL_COLUMNS: Final[tuple[str, ...]] = (
    *_CONTENT_COLUMNS, "revision", "deleted", "sync_state", "origin", "created_at",
    "updated_at",
)
_INSERT_SQL: Final[str] = (
    f"INSERT INTO datapoints ({', '.join(_ALL_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _ALL_COLUMNS)}) ON CONFLICT (id) DO NOTHING"
)
_SELECT_COLUMNS: Final[str] = ", ".join(_ALL_COLUMNS)

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


def _json_object_text(value: Mapping[str, Any]) -> str:
    if not value:
        return "{}"
    return json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False)


def datapoint_to_row(datapoint: DataPoint, *, origin: str = "local",
                     now: Optional[str] = None,
                     metadata_text: Optional[dict[tuple[tuple[str, str], ...], str]] = None,
                     ) -> dict[str, Any]:
    """Split a datapoint into the store's columns (validating the JSON value).

    Reads the model's attributes directly rather than through ``model_dump``: capture
    throughput is bounded by this function, and a JSON-mode dump would also render the
    value a second time.
    """
    data_type = DataPointTypeEnum(datapoint.data_type).value
    # Declared fields and extras as plain dicts: pydantic's __getattr__ for an absent
    # field costs an exception each time.
    extras = datapoint.model_extra or {}
    fields = {**datapoint.__dict__, **extras}
    ownership = datapoint.ownership_info.__dict__ if datapoint.ownership_info else {}
    row: dict[str, Any] = {
        "id": require_ulid(datapoint.datapoint_id, "datapoint_id").upper(),
        "label": datapoint.label,
        "data_type": data_type,
        # The instant orders and filters; the sent form is what MADSci clients get back.
        "data_timestamp": datapoint.instant_text(),
        "data_timestamp_sent": madsci_text(datapoint.data_timestamp),
        # Validate the Python value itself (NaN, bytes, sets ...), not a rendering of it.
        "value": dump_json_value(fields.get("value"))
        if data_type == DataPointTypeEnum.JSON.value else None,
        "custom_metadata": _metadata_text(datapoint.custom_metadata, metadata_text),
    }
    for field in OWNERSHIP_FIELDS:
        row[field] = ownership.get(field)
    for field in _PLAIN_FIELDS:
        value = fields.get(field)
        row[field] = value if value is None or type(value) in (str, int, float) \
            else _column_value(value)
    extra = {key: value for key, value in extras.items() if key not in _DOCUMENT_KEYS}
    row["extra"] = _json_object_text(to_jsonable_python(extra)) if extra else "{}"
    now = now or now_canonical()
    row.update(revision=1, deleted=0, sync_state=SYNC_PENDING, origin=origin,
               created_at=now, updated_at=now)
    return row


def _metadata_text(metadata: dict[str, str],
                   cache: Optional[dict[tuple[tuple[str, str], ...], str]]) -> str:
    """Custom metadata as JSON text; a batch usually repeats the same few dicts."""
    if cache is None:
        return _json_object_text(metadata)
    key = tuple(metadata.items())
    text = cache.get(key)
    if text is None:
        text = cache[key] = _json_object_text(metadata)
    return text


def _column_value(value: Any) -> Any:
    """A value for a plain text/integer column (extra fields may hold anything)."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    return json.dumps(to_jsonable_python(value), ensure_ascii=False, sort_keys=True)


def _refuse_if_different(stored: Mapping[str, Any], row: Mapping[str, Any]) -> None:
    differing = [c for c in _CONTENT_COLUMNS if stored[c] != row[c]]
    if differing:
        raise ConflictError(
            f"datapoint {row['id']} already exists with different {', '.join(differing)}; "
            f"use a new id for new data"
        )


def row_to_document(row: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild the MADSci document (``_id`` key) from a row; ``data_timestamp`` in the
    form it was sent (the instant is ``row["data_timestamp"]``)."""
    document: dict[str, Any] = {
        "_id": row["id"],
        "label": row["label"],
        "data_type": row["data_type"],
        "data_timestamp": row.get("data_timestamp_sent") or row["data_timestamp"],
        "ownership_info": {f: row[f] for f in OWNERSHIP_FIELDS if row[f] is not None},
        "custom_metadata": json.loads(row["custom_metadata"] or "{}"),
    }
    if row["data_type"] == DataPointTypeEnum.JSON.value:
        document["value"] = json.loads(row["value"]) if row["value"] is not None else None
    for field in _PLAIN_FIELDS:
        if row[field] is not None:
            document[field] = row[field]
    document.update(json.loads(row["extra"] or "{}"))
    return document


def row_to_datapoint(row: Mapping[str, Any]) -> DataPoint:
    return DataPoint.discriminate(row_to_document(row)).pin_instant(row["data_timestamp"])


def read_only_uris(db_path: Path) -> list[str]:
    """SQLite URIs that read ``db_path`` without writing, best first.

    A WAL database needs its shared-memory index (``-shm``), which cannot be created or
    grown on a full disk. When the WAL is empty (the last writer closed cleanly), the
    database file is complete on its own and can be read as immutable instead."""
    base = f"{db_path.as_uri()}?mode=ro"
    wal = db_path.with_name(db_path.name + "-wal")
    try:
        wal_empty = not wal.exists() or wal.stat().st_size == 0
    except OSError:
        wal_empty = False
    return [base, base + "&immutable=1"] if wal_empty else [base]


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
        self._engine = self._make_engine(self.db_path)
        try:
            self._writer = self._open_writer()
        except DiskFullError as exc:
            self._open_read_only(exc)
        # The full-text index (kept in step by transaction(): app.core.search.flush).
        self.migrate_component(textsearch.COMPONENT, textsearch.MIGRATIONS)

    # -- connections -------------------------------------------------------------------

    @staticmethod
    def _make_engine(db_path: Path, uri: Optional[str] = None) -> Engine:
        """The connection pool; ``uri``: a read-only SQLite URI (see ``_open_read_only``)."""
        extra: dict[str, Any] = {}
        if uri is not None:
            extra["creator"] = lambda: sqlite3.connect(uri, uri=True, timeout=30.0,
                                                       check_same_thread=False)
        engine = create_engine(
            f"sqlite:///{db_path}",
            poolclass=QueuePool,
            pool_size=4,
            max_overflow=8,
            connect_args={"check_same_thread": False, "timeout": 30.0},
            **extra,
        )

        @event.listens_for(engine, "connect")
        def _configure(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
            # We issue BEGIN ourselves; pysqlite's implicit transactions get in the way.
            dbapi_connection.isolation_level = None
            dbapi_connection.execute("PRAGMA busy_timeout = 30000")
            if uri is None:  # a read-only connection can neither set nor need these
                dbapi_connection.execute("PRAGMA journal_mode = WAL")
                dbapi_connection.execute("PRAGMA synchronous = FULL")
            dbapi_connection.execute("PRAGMA foreign_keys = ON")
            querylang.register_functions(dbapi_connection)

        return engine

    def _open_writer(self, engine: Optional[Engine] = None) -> sqlite3.Connection:
        raw = None
        try:
            raw = (engine or self._engine).raw_connection()
            writer: sqlite3.Connection = raw.driver_connection  # type: ignore[assignment]
            # Statement journals in memory: a write that fires a trigger on datapoints (the
            # search index's) needs one, and as a temp file it doubled the cost of a row.
            writer.execute("PRAGMA temp_store = MEMORY")
            found = migrate(writer)
        except sqlite3.DatabaseError as exc:
            if raw is not None:
                raw.close()
            if self._says_disk_full(exc):
                raise self._disk_full_error() from exc
            raise StoreError(
                f"cannot open the local store {self.db_path}: {exc}. If the file is "
                f"damaged, restore it from a backup (benchdata backup/restore)"
            ) from exc
        if found != SCHEMA_VERSION:
            log.info("migrated local store %s from schema %s to %s", self.db_path,
                     found, SCHEMA_VERSION)
        self._writer_handle = raw  # keep the pool's wrapper alive for the store's life
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
            engine = self._make_engine(self.db_path, uri=uri)
            try:
                with engine.connect() as conn:
                    found = int(conn.connection.driver_connection.execute(  # type: ignore[union-attr]
                        "PRAGMA user_version").fetchone()[0])
            except sqlite3.Error:
                engine.dispose()
                continue
            if found != SCHEMA_VERSION:
                engine.dispose()
                raise cause  # an upgrade needs room to write
            self._engine.dispose()
            self._engine = engine
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
        engine = self._make_engine(self.db_path)
        try:
            self._writer = self._open_writer(engine)
        except BaseException:
            engine.dispose()
            raise
        # Readers move to the normal pool only now: while the attempt ran they kept the
        # read-only one, which works on a full disk.
        old_engine, self._engine = self._engine, engine
        old_engine.dispose()
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
                self._writer_handle.close()
                self._writer = None
            self._closed = True
        self._engine.dispose()

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
        with self._engine.connect() as conn:
            yield conn.connection.driver_connection  # type: ignore[misc]

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
                _INSERT_SQL, [[row[c] for c in _ALL_COLUMNS] for row in rows]).rowcount
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
            f"SELECT {', '.join(_CONTENT_COLUMNS)}, deleted FROM datapoints WHERE id = ?",
            (row["id"],),
        ).fetchone()
        stored = dict(zip((*_CONTENT_COLUMNS, "deleted"), existing))
        if stored.pop("deleted"):
            raise ConflictError(f"datapoint {row['id']} was deleted; its id cannot be reused")
        _refuse_if_different(stored, row)

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
        rows = self._fetch(f"SELECT {_SELECT_COLUMNS} FROM datapoints WHERE id = ?",
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
                f"SELECT {_SELECT_COLUMNS} FROM datapoints WHERE deleted = 0 AND id IN ({marks})",
                chunk,
            ):
                found[row["id"]] = row_to_datapoint(row)
        return [found[i] for i in wanted if i in found]

    def latest(self, number: int = 100) -> list[DataPoint]:
        """Newest first by data_timestamp; ``number <= 0`` means all (as MADSci)."""
        return self.query(None, limit=number if number > 0 else None).items

    def query(self, selector: Optional[Mapping[str, Any]] = None, *,
              sort: Any = None, limit: Optional[int] = None,
              cursor: Optional[str] = None, text: Optional[str] = None) -> Page:
        """One page of matches; ``text`` (or ``$text`` in the selector) also requires a
        full-text match (``app.core.search``)."""
        selector, found = textsearch.split_text(selector)
        text = textsearch.join_texts(found, text)
        plan = querylang.build_select(selector, sort=sort, limit=limit, cursor=cursor,
                                      columns=_SELECT_COLUMNS, resolve_name=self.resolve_name)
        rows = self._fetch_searching(*textsearch.restrict(plan.sql, plan.params, text))
        items = [row_to_datapoint(row) for row in rows]
        next_cursor = None
        if limit is not None and len(rows) == limit:
            last = rows[-1]
            next_cursor = querylang.make_cursor(
                [querylang.sort_value(last, key) for key in plan.sort], last["id"], plan.sort
            )
        return Page(items=items, next_cursor=next_cursor)

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


# -- reads over a connection the caller opened (a read-only or backup copy, or a reader the
#    caller budgets and cancels) ----------------------------------------------------------


def count_datapoints(conn: sqlite3.Connection) -> int:
    """Every row, live or deleted."""
    return int(conn.execute("SELECT COUNT(*) FROM datapoints").fetchone()[0])


def live_rows_by_rowid(conn: sqlite3.Connection, columns: str,
                       rowids: Sequence[int]) -> Iterator[Sequence[Any]]:
    """``columns`` (trusted SQL) of the live rows among these rowids, in no set order."""
    for marks, chunk in in_chunks(rowids):
        yield from conn.execute(
            f"SELECT {columns} FROM datapoints WHERE deleted = 0 AND rowid IN ({marks})", chunk)
