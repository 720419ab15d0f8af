"""Field paths: where a MADSci document path lives in the ``datapoints`` table."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Optional, Union

from app.core.errors import QueryError
from app.core.ids import OWNERSHIP_FIELDS
from app.core.query.limits import MAX_FIELD_PATH_CHARS, MAX_FIELD_PATH_SEGMENTS


#: Document fields stored in a column of their own, and how their values compare.
#: Kinds: ``id`` (ULID text, upper-cased), ``text``, ``integer``, ``timestamp`` (canonical
#: UTC text) and ``ownership`` (ULID or a name resolved to one).
_COLUMN_KINDS: Final[dict[str, str]] = {
    "id": "id",
    "label": "text",
    "data_type": "text",
    "data_timestamp": "timestamp",
    "path": "text",
    "filename": "text",
    "size_bytes": "integer",
    "content_type": "text",
    "sha256": "text",
    "bucket_name": "text",
    "object_name": "text",
    "storage_endpoint": "text",
    "public_endpoint": "text",
    "url": "text",
    "etag": "text",
    "replaces": "id",
    "sync_state": "text",
    "revision": "integer",
}
_FIELD_ALIASES: Final[dict[str, str]] = {"_id": "id", "datapoint_id": "id"}
#: Columns holding JSON text; paths below them go through SQLite's JSON functions.
_JSON_COLUMNS: Final[tuple[str, ...]] = ("value", "custom_metadata")
#: Fields every stored document has, even when null (``label: null`` is written out), so
#: ``$exists`` is constant for them.
_ALWAYS_PRESENT: Final[frozenset[str]] = frozenset(
    {"id", "label", "data_type", "data_timestamp", "revision", "sync_state"}
)
#: Columns declared NOT NULL (keyset paging can skip its NULL cases for them).
_NOT_NULL: Final[frozenset[str]] = frozenset(
    {"id", "data_type", "data_timestamp", "revision", "sync_state"}
)
_INDEX_SEGMENT: Final[re.Pattern[str]] = re.compile(r"0|[1-9][0-9]{0,8}")


@dataclass(frozen=True)
class Field:
    """A resolved field path: the column it lives in and, for JSON, the path inside it."""

    path: str
    column: str
    kind: str
    json_path: Optional[str] = None
    segments: tuple[Union[str, int], ...] = ()

    @property
    def is_json(self) -> bool:
        return self.kind == "json"


def _split_path(path: str) -> list[str]:
    if not isinstance(path, str) or not path:
        raise QueryError(f"a field path must be non-empty text, got {path!r}")
    if len(path) > MAX_FIELD_PATH_CHARS:
        raise QueryError(
            f"field path {path[:40]!r}… is {len(path)} characters long; at most "
            f"{MAX_FIELD_PATH_CHARS}"
        )
    segments = path.split(".")
    if len(segments) > MAX_FIELD_PATH_SEGMENTS:
        raise QueryError(
            f"field path {path[:40]!r}… has {len(segments)} segments; at most "
            f"{MAX_FIELD_PATH_SEGMENTS}"
        )
    for segment in segments:
        if not segment:
            raise QueryError(
                f"field path {path!r} has an empty segment; write dotted paths like value.a.b"
            )
        if "$" in segment:
            raise QueryError(
                f"field path {path!r}: segment {segment!r} contains '$'; operators go inside "
                f"the condition, as in {{\"value.t\": {{\"$gt\": 1}}}}"
            )
        if '"' in segment or "\\" in segment or "\x00" in segment:
            raise QueryError(
                f"field path {path!r}: segment {segment!r} contains a quote or backslash "
                f"or a NUL character, which SQLite JSON paths cannot address"
            )
    return segments


def _json_path(segments: Sequence[str]) -> tuple[str, tuple[Union[str, int], ...]]:
    """``["a", "0", "b"]`` -> ``$."a"[0]."b"`` (numeric segments index arrays, as in Mongo)."""
    text = "$"
    parsed: list[Union[str, int]] = []
    for segment in segments:
        if _INDEX_SEGMENT.fullmatch(segment):
            text += f"[{segment}]"
            parsed.append(int(segment))
        else:
            text += f'."{segment}"'
            parsed.append(segment)
    return text, tuple(parsed)


@functools.lru_cache(maxsize=512)
def resolve_field(path: str) -> Field:
    """Map a MADSci document path onto the ``datapoints`` table (raises QueryError)."""
    segments = _split_path(path)
    head, rest = segments[0], segments[1:]
    if head == "ownership_info":
        if len(rest) != 1 or rest[0] not in OWNERSHIP_FIELDS:
            raise QueryError(
                f"field {path!r}: query one ownership id at a time, as "
                f"ownership_info.<field> with <field> one of {', '.join(OWNERSHIP_FIELDS)}"
            )
        return Field(path, rest[0], "ownership")
    # ``id`` itself is not a MADSci field (the document key is ``_id``): it is an extra.
    column = _FIELD_ALIASES.get(head, head if head != "id" else "")
    if column in _COLUMN_KINDS:
        if rest:
            raise QueryError(f"field {path!r}: {head} is not an object, it has no sub-fields")
        return Field(path, column, _COLUMN_KINDS[column])
    if head == "custom_metadata" and len(rest) > 1:
        # Custom metadata is flat text (MADSci's dict[str, str]): a dotted path names one
        # dotted key, as extracted header fields are kept ("extracted.format").
        key = ".".join(rest)
        return Field(path, head, "json", f'$."{key}"', (key,))
    if head in _JSON_COLUMNS:
        json_path, parsed = _json_path(rest)
        return Field(path, head, "json", json_path, parsed)
    # MADSci documents allow extra fields; the store keeps them in the ``extra`` column.
    json_path, parsed = _json_path(segments)
    return Field(path, "extra", "json", json_path, parsed)
