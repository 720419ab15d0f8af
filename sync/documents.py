"""Local rows as central MADSci documents, and central documents as local datapoints.

The central document is what MADSci 0.8.x stores: ``_id`` (the ULID), ``label``,
``data_type``, ``data_timestamp`` (the store's canonical ISO text, one fixed-width format so
MADSci's string sort is time order), ``ownership_info`` (set ids only), ``value`` for JSON
datapoints. A synced file becomes an ``object_storage`` datapoint (``bucket_name``,
``object_name``, ``storage_endpoint``, ``public_endpoint``, ``url``, ``content_type``,
``size_bytes``, ``etag``, ``custom_metadata``, ``path`` where it was captured). MADSci
allows extra fields; ours are ``filename``, ``sha256`` and the sync bookkeeping below.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Optional

from app.core.models import DataPoint
from app.core.store import row_to_document
from app.core.timestamps import to_canonical

from sync.settings import CentralSettings

#: Sync bookkeeping carried in central documents (never copied into local rows' extras).
REVISION: Final = "sync_revision"
BENCH: Final = "sync_bench_id"
WRITTEN_AT: Final = "sync_written_at"
DELETED_AT: Final = "sync_deleted_at"
BOOKKEEPING: Final = frozenset({REVISION, BENCH, WRITTEN_AT, DELETED_AT})

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
    document["data_timestamp"] = _canonical_timestamp(row["data_timestamp"])
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


def tombstone_document(datapoint_id: str, revision: int, bench_id: str) -> dict[str, Any]:
    return {"_id": datapoint_id, REVISION: revision, BENCH: bench_id}


def local_datapoint(document: Mapping[str, Any]) -> tuple[DataPoint, int]:
    """A central document as a local datapoint plus its central revision.

    Raises ``ValueError`` (pydantic's or ours) for documents this bench cannot hold:
    non-ULID ids or ownership ids, unknown data types.
    """
    clean = {key: _plain(value) for key, value in document.items() if key not in BOOKKEEPING}
    if "_id" in clean and not isinstance(clean["_id"], str):
        clean["_id"] = str(clean["_id"])
    revision = int(document.get(REVISION) or 1)
    return DataPoint.discriminate(clean), revision


def _plain(value: Any) -> Any:
    """BSON-only types as JSON (datetimes as canonical text)."""
    if isinstance(value, datetime):
        return to_canonical(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return json.loads(json.dumps(value, default=str))
