"""Datapoints as the store's rows: the column lists and the mapping both ways.

Rows are MADSci documents split into columns (see ``app.core.schema``): the fields people
filter by are real columns, the JSON value, custom metadata and any extra MADSci fields
JSON text. Also the bookkeeping a new row starts with (revision 1, pending sync), and the
reads of rows over a connection the caller opened (a backup copy, a budgeted reader).

pydantic is imported where a model is built, not with this module: ``benchdata list``
reads rows without it (``RowSummary``), and its import is most of that command's time.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Optional

from app.core.datatype import DataPointTypeEnum
from app.core.errors import ConflictError
from app.core.ids import OWNERSHIP_FIELDS, require_ulid
from app.core.jsonvalue import dump_json_value
from app.core.sqlin import in_chunks
from app.core.syncstate import SyncState
from app.core.timestamps import INSTANT_FIELD, madsci_text, now_canonical

if TYPE_CHECKING:
    from app.core.models import DataPoint

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
CONTENT_COLUMNS: Final[tuple[str, ...]] = (
    "id", "label", "data_type", "data_timestamp", "data_timestamp_sent", *OWNERSHIP_FIELDS,
    "value", *_PLAIN_FIELDS, "custom_metadata", "extra",
)
ALL_COLUMNS: Final[tuple[str, ...]] = (
    *CONTENT_COLUMNS, "revision", "deleted", "sync_state", "origin", "created_at",
    "updated_at",
)
INSERT_SQL: Final[str] = (
    f"INSERT INTO datapoints ({', '.join(ALL_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ALL_COLUMNS)}) ON CONFLICT (id) DO NOTHING"
)
SELECT_COLUMNS: Final[str] = ", ".join(ALL_COLUMNS)


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
    row["extra"] = _json_object_text(_jsonable(extra)) if extra else "{}"
    now = now or now_canonical()
    row.update(revision=1, deleted=0, sync_state=SyncState.PENDING, origin=origin,
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
    return json.dumps(_jsonable(value), ensure_ascii=False, sort_keys=True)


def _jsonable(value: Any) -> Any:
    """JSON-ready data from any value of a model's extra fields (as pydantic dumps it)."""
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value)


def refuse_if_different(stored: Mapping[str, Any], row: Mapping[str, Any]) -> None:
    differing = [c for c in CONTENT_COLUMNS if stored[c] != row[c]]
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
    from app.core.models import DataPoint

    return DataPoint.discriminate(row_to_document(row)).pin_instant(row["data_timestamp"])


@dataclass(frozen=True)
class RowSummary:
    """What a one-line listing shows of a datapoint (``benchdata list``)."""

    datapoint_id: str
    label: Optional[str]
    data_type: str
    #: The true instant of ``data_timestamp``, canonical UTC text.
    instant: str
    #: The JSON value of a json datapoint (None for the others).
    value: Any
    #: A file's name, else where it was captured (file and object-storage datapoints).
    filename: Optional[str]
    size_bytes: Optional[int]

    @property
    def holds_value(self) -> bool:
        """A json datapoint (``value``), not a file (``filename``, ``size_bytes``)."""
        return self.data_type == DataPointTypeEnum.JSON.value


def row_summary(row: Mapping[str, Any]) -> RowSummary:
    """A row's summary, read straight from its columns (no model built)."""
    is_json = row["data_type"] == DataPointTypeEnum.JSON.value
    return RowSummary(
        datapoint_id=row["id"], label=row["label"], data_type=row["data_type"],
        instant=row["data_timestamp"],
        value=json.loads(row["value"]) if is_json and row["value"] is not None else None,
        filename=None if is_json else row["filename"] or row["path"],
        size_bytes=None if is_json else row["size_bytes"])


def datapoint_summary(datapoint: DataPoint) -> RowSummary:
    """The same summary of a model (a query's matches): equal to its row's."""
    is_json = datapoint.data_type == DataPointTypeEnum.JSON
    fields = {**datapoint.__dict__, **(datapoint.model_extra or {})}
    return RowSummary(
        datapoint_id=datapoint.datapoint_id, label=datapoint.label,
        data_type=DataPointTypeEnum(datapoint.data_type).value,
        instant=datapoint.instant_text(), value=fields.get("value") if is_json else None,
        filename=None if is_json else fields.get("filename") or fields.get("path"),
        size_bytes=None if is_json else fields.get("size_bytes"))


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
