"""Local rows as central MADSci documents, and central documents as local datapoints.

The central document is what MADSci 0.8.x stores: ``_id`` (the ULID), ``label``,
``data_type``, ``data_timestamp``, ``ownership_info`` (set ids only), ``value`` for JSON
datapoints.

Time: ``data_timestamp`` is the ISO text MADSci's server would have stored for the same
submission (its ``to_mongo`` JSON-mode dump: naive local wall time stays naive, an offset
is kept), so MADSci's listing and client code see what they see in records MADSci wrote.
``data_timestamp_utc`` (extra) is the exact instant as fixed-width UTC text, for ordering
across benches and zones. Pulling reads that instant back; a document without it (written
by MADSci itself) has a naive time read in the lab's zone (``app.core.timestamps.lab_zone``).
Records stored before the sent form was recorded carry the canonical UTC text in both.

A synced file becomes an ``object_storage`` datapoint (``bucket_name``, ``object_name``,
``storage_endpoint``, ``public_endpoint``, ``url``, ``content_type``, ``size_bytes``,
``etag``, ``custom_metadata``, ``path`` where it was captured). MADSci allows extra fields;
ours are ``filename``, ``sha256``, ``data_timestamp_utc`` and the sync bookkeeping below.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone, tzinfo
from typing import Any, Final, Optional

from app.core.errors import ValidationError
from app.core.models import DataPoint
from app.core.rows import row_to_document
from app.core.timestamps import (
    INSTANT_FIELD,
    as_utc,
    format_canonical,
    is_naive,
    parse_as_sent,
    to_canonical,
)

from sync.settings import CentralSettings

#: Sync bookkeeping carried in central documents (never copied into local rows' extras).
REVISION: Final = "sync_revision"
BENCH: Final = "sync_bench_id"
WRITTEN_AT: Final = "sync_written_at"
DELETED_AT: Final = "sync_deleted_at"
#: On a tombstone: who deleted the datapoint (a name a person reads).
DELETED_BY: Final = "sync_deleted_by"
#: On a restored datapoint's record: the revision of the deletion it undoes; a tombstone of
#: that revision or older no longer wins over the record (app/core/deletions.py).
UNDELETES: Final = "sync_undeletes"
BOOKKEEPING: Final = frozenset({REVISION, BENCH, WRITTEN_AT, DELETED_AT, DELETED_BY, UNDELETES})

#: MongoDB refuses documents over 16 MiB; leave room for the envelope.
MAX_DOCUMENT_BYTES: Final = 15 * 1024 * 1024
#: The store's canonical timestamp text (``format_canonical``): fixed width, UTC, ``Z``.
_CANONICAL_TEXT: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


class DocumentTooLarge(ValueError):
    """The datapoint would not fit in one MongoDB document."""


def central_document(row: Mapping[str, Any], *, bench_id: str,
                     stored_object: Optional[Mapping[str, Any]],
                     settings: CentralSettings) -> dict[str, Any]:
    """The MADSci document for a local row (without ``sync_written_at``, set by the server)."""
    value_text = row.get("value")
    if isinstance(value_text, str) and len(value_text) > MAX_DOCUMENT_BYTES:
        raise DocumentTooLarge(
            f"its JSON value is {len(value_text)} bytes; a central document holds at most "
            f"{MAX_DOCUMENT_BYTES} — capture large values as a file instead")
    document = row_to_document(row)
    for key in BOOKKEEPING:
        document.pop(key, None)
    if row["data_type"] == "file":
        if stored_object is None:
            raise ValueError(f"datapoint {row['id']} has no verified object yet")
        document["data_type"] = "object_storage"
        document.update(_object_fields(stored_object, settings))
        document.setdefault("path", row.get("path") or stored_object["object_name"])
    document[REVISION] = int(row["revision"])
    document[BENCH] = bench_id
    if row.get("undeletes") is not None:
        document[UNDELETES] = int(row["undeletes"])
    instant = _canonical_timestamp(row["data_timestamp"])
    document["data_timestamp"] = row.get("data_timestamp_sent") or instant
    document[INSTANT_FIELD] = instant
    return document


def _canonical_timestamp(value: Any) -> str:
    """The canonical text of a stored timestamp.

    The store writes canonical text already; parsing and re-formatting it for every
    document cost a tenth of a bulk push's CPU, so only other forms are converted.
    """
    if isinstance(value, str) and _CANONICAL_TEXT.fullmatch(value):
        return value
    return to_canonical(value)


def _object_fields(stored: Mapping[str, Any], settings: CentralSettings) -> dict[str, Any]:
    return {
        "bucket_name": stored["bucket"],
        "object_name": stored["object_name"],
        "storage_endpoint": stored["endpoint"],
        "public_endpoint": settings.public_endpoint or stored["endpoint"],
        "url": settings.object_url(str(stored["object_name"])),
        "content_type": stored["content_type"],
        "size_bytes": int(stored["size"]),
        "etag": stored["etag"],
        "sha256": stored["sha256"],
    }


def tombstone_document(datapoint_id: str, revision: int, bench_id: str,
                       deleted_by: Optional[str] = None) -> dict[str, Any]:
    document = {"_id": datapoint_id, REVISION: revision, BENCH: bench_id}
    if deleted_by:
        document[DELETED_BY] = deleted_by
    return document


def undoes(document: Mapping[str, Any], tombstone_revision: int) -> bool:
    """True when a central record restores its datapoint over a tombstone of this revision."""
    undeletes = document.get(UNDELETES)
    return isinstance(undeletes, int) and undeletes >= tombstone_revision


def local_datapoint(document: Mapping[str, Any], *,
                    lab_zone: Optional[tzinfo] = None) -> tuple[DataPoint, int]:
    """A central document as a local datapoint plus its central revision.

    The datapoint keeps ``data_timestamp`` as the document has it; its instant is the
    document's ``data_timestamp_utc`` or, for documents MADSci wrote, a naive time read in
    ``lab_zone`` (default: this bench's zone).

    Raises ``ValueError`` (pydantic's or ours) for documents this bench cannot hold:
    non-ULID ids or ownership ids, unknown data types.
    """
    clean = {key: _plain(value) for key, value in document.items() if key not in BOOKKEEPING}
    if "_id" in clean and not isinstance(clean["_id"], str):
        clean["_id"] = str(clean["_id"])
    recorded = clean.pop(INSTANT_FIELD, None)
    revision = int(document.get(REVISION) or 1)
    datapoint = DataPoint.discriminate(clean)
    return datapoint.pin_instant(_instant(recorded, datapoint, lab_zone)), revision


def _instant(recorded: Any, datapoint: DataPoint, lab_zone: Optional[tzinfo]) -> str:
    """The canonical instant: the one a bench recorded, else the timestamp's own."""
    if isinstance(recorded, str):
        if _CANONICAL_TEXT.fullmatch(recorded):
            return recorded
        try:
            moment: Optional[datetime] = parse_as_sent(recorded)
        except ValidationError:
            moment = None
        if moment is not None and not is_naive(moment):
            return format_canonical(moment)
    return format_canonical(as_utc(datapoint.data_timestamp, lab_zone))


def _plain(value: Any) -> Any:
    """BSON-only types as JSON (datetimes as canonical text; BSON dates are UTC)."""
    if isinstance(value, datetime):
        return format_canonical(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return json.loads(json.dumps(value, default=str))
