"""Queries that go central: the bench's query language asked of the central MongoDB.

A bench holds its pull scope; the rest of the lab is found here, by a selector (the same
MongoDB-style selectors ``benchdata query`` and ``POST /datapoints/query`` take) and/or
search words. The selector is first parsed and checked by the local query language
(``app.core.query.parse_selector``: operators allowed, sizes bounded, names resolved to
ids, timestamps made canonical), then each node is translated to a MongoDB filter by one
function per node type, against the central document's field names (MADSci's schema plus
our extras, ``sync.documents``). What only this bench knows (``sync_state``) is refused
with a sentence. Matches are read as the pull reads documents (``local_datapoint``) and
are not stored: fetching one (``BenchService.get``) keeps it as a pulled row.

Search words are matched case-insensitively as substrings of the label, file name and the
ownership names (the central store has no full-text index to rely on); the local search
(FTS5, word prefixes, metadata and values) stays the richer one.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from datetime import tzinfo
from typing import Any, Final, Optional

from app.core.errors import QueryError, ValidationError
from app.core.ids import OWNERSHIP_KINDS
from app.core.models import DataPoint
from app.core.query import (
    And,
    Compare,
    Eq,
    Exists,
    MAX_CENTRAL_RESULTS,
    Field,
    In,
    MatchAll,
    MatchNone,
    Ne,
    Nin,
    Node,
    Nor,
    Not,
    Or,
    Regex,
    parse_selector,
)
from app.core.search import split_text
from app.core.timestamps import INSTANT_FIELD

from sync.backends import RecordCollection
from sync.documents import REVISION, local_datapoint

log = logging.getLogger(__name__)

_COMPARE: Final = {">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}
#: Local columns whose central field has another name.
_CENTRAL_NAMES: Final = {"id": "_id", "revision": REVISION}
#: Fields only this bench knows.
_LOCAL_ONLY: Final = frozenset({"sync_state"})
#: Local ``file`` datapoints are ``object_storage`` documents centrally (MADSci's word).
_DATA_TYPE_ALIASES: Final = {"file": ("file", "object_storage")}
#: Where search words are looked for centrally.
TEXT_FIELDS: Final = ("label", "filename", "object_name",
                      *(f"custom_metadata.{kind}_name" for kind in OWNERSHIP_KINDS))


def central_filter(selector: Optional[Mapping[str, Any]], text: Optional[str] = None, *,
                   resolve_name: Optional[Callable[[str, str], Optional[str]]] = None
                   ) -> dict[str, Any]:
    """The MongoDB filter for a selector and optional search words (raises QueryError)."""
    remaining, words = _split(selector, text)
    parts = [to_mongo(parse_selector(remaining, resolve_name=resolve_name))]
    parts += [_word(word) for word in words]
    parts = [p for p in parts if p]
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _split(selector: Optional[Mapping[str, Any]], text: Optional[str]
           ) -> tuple[Optional[dict[str, Any]], list[str]]:
    """The selector without its ``$text`` and every search word (``text`` and ``$text``)."""
    remaining, inside = split_text(dict(selector) if selector is not None else None)
    words = [w for chunk in (text, inside) if chunk for w in str(chunk).split() if w]
    return remaining, words


def _word(word: str) -> dict[str, Any]:
    pattern = {"$regex": re.escape(word), "$options": "i"}
    return {"$or": [{field: pattern} for field in TEXT_FIELDS]}


def to_mongo(node: Node) -> dict[str, Any]:
    """One parsed node as a MongoDB filter."""
    translate = _TRANSLATIONS.get(type(node))
    if translate is None:  # a node type added to the language but not here
        raise QueryError(f"this selector cannot be asked of the central store "
                         f"({type(node).__name__})")
    return translate(node)


def _path(field: Field) -> str:
    if field.column in _LOCAL_ONLY:
        raise QueryError(f"{field.path} is this bench's own bookkeeping; a central query "
                         "cannot use it (leave it out, or query this bench)")
    if field.kind == "ownership":
        return f"ownership_info.{field.column}"
    return _CENTRAL_NAMES.get(field.column, field.path if field.kind == "json"
                              else field.column)


def _on(field: Field, condition: Any) -> dict[str, Any]:
    """``{path: condition}``; a timestamp compares the exact instant benches record, or
    the text MADSci wrote where a document has no instant."""
    if field.kind == "timestamp":
        return {"$or": [{INSTANT_FIELD: condition},
                        {INSTANT_FIELD: {"$exists": False}, field.column: condition}]}
    return {_path(field): condition}


def _values(field: Field, values: tuple[Any, ...]) -> list[Any]:
    if field.column == "data_type":
        return [alias for value in values for alias in _DATA_TYPE_ALIASES.get(value, (value,))]
    return list(values)


def _eq(node: Eq) -> dict[str, Any]:
    values = _values(node.field, (node.value,))
    return _on(node.field, values[0] if len(values) == 1 else {"$in": values})


def _ne(node: Ne) -> dict[str, Any]:
    values = _values(node.field, (node.value,))
    return _on(node.field, {"$ne": values[0]} if len(values) == 1 else {"$nin": values})


def _in(node: In) -> dict[str, Any]:
    return _on(node.field, {"$in": _values(node.field, node.values)})


def _nin(node: Nin) -> dict[str, Any]:
    return _on(node.field, {"$nin": _values(node.field, node.values)})


def _compare(node: Compare) -> dict[str, Any]:
    return _on(node.field, {_COMPARE[node.op]: node.value})


def _exists(node: Exists) -> dict[str, Any]:
    if node.field.kind == "timestamp":  # every document has one
        return {} if node.present else {"_id": {"$in": []}}
    return {_path(node.field): {"$exists": node.present}}


def _regex(node: Regex) -> dict[str, Any]:
    condition: dict[str, Any] = {"$regex": node.pattern}
    if node.flags:
        condition["$options"] = node.flags
    return _on(node.field, condition)


def _children(operator: str) -> Callable[[Any], dict[str, Any]]:
    def translate(node: Any) -> dict[str, Any]:
        return {operator: [to_mongo(child) for child in node.children]}
    return translate


_TRANSLATIONS: Final[dict[type, Callable[[Any], dict[str, Any]]]] = {
    MatchAll: lambda _node: {},
    MatchNone: lambda _node: {"_id": {"$in": []}},
    And: _children("$and"),
    Or: _children("$or"),
    Nor: _children("$nor"),
    Not: lambda node: {"$nor": [to_mongo(node.child)]},
    Eq: _eq,
    Ne: _ne,
    In: _in,
    Nin: _nin,
    Compare: _compare,
    Exists: _exists,
    Regex: _regex,
}


def find_central(datapoints: RecordCollection, mongo_filter: dict[str, Any], limit: int,
                 lab_zone: Optional[tzinfo]) -> list[DataPoint]:
    """Up to ``limit`` central datapoints matching ``mongo_filter``, newest first (ULID
    order); documents this bench could not hold are left out (logged)."""
    if not 1 <= limit <= MAX_CENTRAL_RESULTS:
        raise QueryError(f"a central query returns 1 to {MAX_CENTRAL_RESULTS} datapoints "
                         f"at a time, got limit {limit}")
    try:
        documents = list(datapoints.find(mongo_filter, sort=[("_id", -1)], limit=limit))
    except Exception as exc:  # noqa: BLE001
        raise datapoints.classify(exc, what="querying the central store") from exc
    found: list[DataPoint] = []
    for document in documents:
        try:
            found.append(local_datapoint(document, lab_zone=lab_zone)[0])
        except (ValueError, ValidationError) as exc:
            log.warning("central document %r left out of a central query: %s",
                        document.get("_id"), exc)
    return found
