"""The query language: MongoDB-style selectors, parsed into typed nodes, translated to SQLite.

MADSci users send raw MongoDB selectors to ``POST /datapoints/query``
(``{"ownership_info.experiment_id": "...", "value.t": {"$gt": 20}}``). The bench answers
the same selectors from its local SQLite store. The pipeline has two steps, kept apart so
each can be tested on its own (the shape follows tiled's ``queries.py``):

1. :func:`parse_selector` validates a selector and turns it into small immutable nodes
   (:class:`Eq`, :class:`Compare`, :class:`Regex`, :class:`And` …). Field paths are resolved
   against the schema (:class:`Field`) and comparands are normalised here: ownership names
   become ULIDs, timestamps become the canonical UTC text, ULIDs are upper-cased.
2. :func:`to_sql` translates a node into a ``WHERE`` fragment with one translation function
   per node type. Every value — and every JSON path — is a bound ``?`` parameter; the only
   identifiers spliced into SQL text come from this module's fixed column table.

Semantics follow MongoDB where SQLite allows (type bracketing, null matches missing,
``$ne`` matches missing, array element matching); ``docs/query-language.md`` lists where
they differ. Every leaf yields 1 for a match and 0 or NULL otherwise; NULL always means
"no match", so negations (:class:`Not`, :class:`Nor`, ``$ne``, ``$nin``) wrap their operand in
``coalesce(…, 0)`` to stay two-valued, as MongoDB's negations are.

:func:`build_select` adds keyset paging: rows are ordered by the sort keys and then ``id``;
a cursor holds the last row's sort values and id, and the next page starts strictly after
them, so a page costs O(limit) and rows inserted meanwhile neither shift nor repeat pages.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, Optional, Union

from app.core.errors import QueryError, ValidationError
from app.core.ids import OWNERSHIP_FIELDS, is_ulid, name_to_id
from app.core.timestamps import to_canonical

#: The most rows one page may ask for.
MAX_LIMIT: Final[int] = 100_000
#: How deeply ``$and``/``$or``/``$nor``/``$not`` may nest (guards against recursion bombs).
MAX_DEPTH: Final[int] = 32
#: SQLite 3.40 allows 32,766 bound parameters per statement; keep clear of it.
MAX_PARAMETERS: Final[int] = 30_000
#: How many sort keys a query may name (the id tie-breaker comes on top).
MAX_SORT_KEYS: Final[int] = 8

LOGICAL_OPERATORS: Final[tuple[str, ...]] = ("$and", "$or", "$nor")
FIELD_OPERATORS: Final[tuple[str, ...]] = (
    "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$regex",
    "$options", "$not",
)
_SUPPORTED: Final[str] = (
    "supported operators: $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists, "
    "$regex (with $options i/m/s/x), $not, $and, $or, $nor"
)
_REGEX_OPTIONS: Final[dict[str, int]] = {"i": re.IGNORECASE, "m": re.MULTILINE,
                                         "s": re.DOTALL, "x": re.VERBOSE}
_INT64_MIN: Final[int] = -(2**63)
_INT64_MAX: Final[int] = 2**63 - 1

ResolveName = Callable[[str, str], str]


# -- fields ----------------------------------------------------------------------------

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
    segments = path.split(".")
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
    if head in _JSON_COLUMNS:
        json_path, parsed = _json_path(rest)
        return Field(path, head, "json", json_path, parsed)
    # MADSci documents allow extra fields; the store keeps them in the ``extra`` column.
    json_path, parsed = _json_path(segments)
    return Field(path, "extra", "json", json_path, parsed)


# -- nodes -----------------------------------------------------------------------------


class Node:
    """Base class of the parsed selector tree (immutable, comparable, hashable)."""


@dataclass(frozen=True)
class MatchAll(Node):
    """The empty selector ``{}``."""


@dataclass(frozen=True)
class MatchNone(Node):
    """A condition nothing satisfies (e.g. ``{"$gt": null}``)."""


@dataclass(frozen=True)
class And(Node):
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or(Node):
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Nor(Node):
    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not(Node):
    child: Node


@dataclass(frozen=True)
class Eq(Node):
    """Mongo equality: a literal field value or ``$eq``."""

    field: Field
    value: Any


@dataclass(frozen=True)
class Ne(Node):
    field: Field
    value: Any


@dataclass(frozen=True)
class In(Node):
    field: Field
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Nin(Node):
    field: Field
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Compare(Node):
    """``$gt``/``$gte``/``$lt``/``$lte`` (``op`` is the SQL operator)."""

    field: Field
    op: str
    value: Any


@dataclass(frozen=True)
class Exists(Node):
    field: Field
    present: bool


@dataclass(frozen=True)
class Regex(Node):
    """``$regex``; ``flags`` is a sorted subset of ``imsx``."""

    field: Field
    pattern: str
    flags: str


_COMPARE_OPS: Final[dict[str, str]] = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


# -- parsing ---------------------------------------------------------------------------


def default_resolve_name(field: str, name: str) -> str:
    """The deterministic (kind, name) -> ULID mapping every bench shares."""
    return name_to_id(field, name)


def _check_comparand(value: Any, where: str) -> Any:
    """Reject what neither JSON nor a timestamp can be; make ints fit SQLite."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        # SQLite integers are 64-bit; MongoDB would store a larger number as a double.
        if _INT64_MIN <= value <= _INT64_MAX:
            return value
        try:
            return float(value)
        except OverflowError:
            raise QueryError(f"{where}: an integer of {len(str(abs(value)))} digits is "
                             f"beyond any number a datapoint can hold") from None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QueryError(f"{where}: {value!r} is not a JSON number")
        return value
    if isinstance(value, (datetime, date)):
        return value
    if isinstance(value, (list, tuple, dict)):
        try:
            return _FrozenJSON(value)
        except (TypeError, ValueError) as exc:
            raise QueryError(f"{where}: the comparand is not JSON ({exc})") from None
    raise QueryError(f"{where}: cannot compare with a {type(value).__name__}")


class _FrozenJSON(tuple):  # type: ignore[type-arg]
    """A dict or list comparand, kept hashable inside frozen nodes (tuple of its JSON)."""

    def __new__(cls, value: Any) -> "_FrozenJSON":
        return super().__new__(cls, (_dump(value),))

    @property
    def text(self) -> str:
        return str(self[0])

    def __repr__(self) -> str:
        return f"JSON({self.text})"


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                      default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return to_canonical(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


class _Parser:
    """Turns one selector into nodes; holds the name resolver and the nesting depth."""

    def __init__(self, resolve_name: Optional[ResolveName]) -> None:
        self.resolve_name = resolve_name or default_resolve_name

    # - documents -

    def document(self, selector: Any, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise QueryError(f"the selector nests deeper than {MAX_DEPTH} levels")
        if not isinstance(selector, Mapping):
            raise QueryError(
                f"a selector must be a JSON object such as {{\"label\": \"temp\"}}, "
                f"got {type(selector).__name__}"
            )
        nodes: list[Node] = []
        for key, condition in selector.items():
            if not isinstance(key, str):
                raise QueryError(f"selector keys must be text, got {key!r}")
            if key.startswith("$"):
                nodes.append(self.logical(key, condition, depth))
            else:
                nodes.append(self.field_condition(resolve_field(key), condition, depth))
        return _conjoin(nodes)

    def logical(self, op: str, operand: Any, depth: int) -> Node:
        if op not in LOGICAL_OPERATORS:
            if op in FIELD_OPERATORS:
                raise QueryError(
                    f"{op} applies to a field, e.g. {{\"label\": {{\"{op}\": ...}}}}; "
                    f"at the top level only $and, $or and $nor are allowed"
                )
            raise _unsupported(op)
        if not isinstance(operand, (list, tuple)) or not operand:
            raise QueryError(f"{op} needs a non-empty list of selectors, got {operand!r}")
        children = tuple(self.document(item, depth + 1) for item in operand)
        if op == "$and":
            return _conjoin(list(children))
        if op == "$or":
            return children[0] if len(children) == 1 else Or(children)
        return Nor(children)

    # - fields -

    def field_condition(self, field: Field, condition: Any, depth: int) -> Node:
        if isinstance(condition, re.Pattern):
            return self.regex(field, condition, None)
        if isinstance(condition, Mapping) and condition:
            keys = [str(k) for k in condition]
            operators = [k for k in keys if k.startswith("$")]
            if operators and len(operators) != len(keys):
                raise QueryError(
                    f"field {field.path!r}: cannot mix operators ({', '.join(operators)}) "
                    f"with plain keys in one condition"
                )
            if operators:
                return self.operators(field, condition, depth)
        return Eq(field, self.comparand(field, condition, "$eq"))

    def operators(self, field: Field, condition: Mapping[str, Any], depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise QueryError(f"the selector nests deeper than {MAX_DEPTH} levels")
        nodes: list[Node] = []
        for op, operand in condition.items():
            if op == "$options":
                if "$regex" not in condition:
                    raise QueryError(f"field {field.path!r}: $options needs a $regex")
                continue
            if op == "$regex":
                nodes.append(self.regex(field, operand, condition.get("$options")))
            elif op == "$eq":
                nodes.append(Eq(field, self.comparand(field, operand, op)))
            elif op == "$ne":
                nodes.append(Ne(field, self.comparand(field, operand, op)))
            elif op in _COMPARE_OPS:
                nodes.append(self.compare(field, op, operand))
            elif op in ("$in", "$nin"):
                nodes.append(self.membership(field, op, operand))
            elif op == "$exists":
                nodes.append(Exists(field, _boolish(field, operand)))
            elif op == "$not":
                nodes.append(Not(self.negated(field, operand, depth)))
            else:
                raise _unsupported(op, field.path)
        return _conjoin(nodes)

    def negated(self, field: Field, operand: Any, depth: int) -> Node:
        if isinstance(operand, re.Pattern):
            return self.regex(field, operand, None)
        if (not isinstance(operand, Mapping) or not operand
                or not all(str(k).startswith("$") for k in operand)):
            raise QueryError(
                f"field {field.path!r}: $not needs an operator object such as "
                f"{{\"$gt\": 5}} or {{\"$regex\": \"^tmp\"}}, got {operand!r}"
            )
        return self.operators(field, operand, depth + 1)

    def compare(self, field: Field, op: str, operand: Any) -> Node:
        value = self.comparand(field, operand, op)
        if isinstance(value, _FrozenJSON):
            raise QueryError(
                f"field {field.path!r}: {op} compares numbers, text, booleans or timestamps, "
                f"not objects or arrays"
            )
        if value is None:
            # MongoDB: $gte/$lte null behave as equality with null; $gt/$lt null match nothing.
            return Eq(field, None) if op in ("$gte", "$lte") else MatchNone()
        return Compare(field, _COMPARE_OPS[op], value)

    def membership(self, field: Field, op: str, operand: Any) -> Node:
        if not isinstance(operand, (list, tuple)):
            raise QueryError(
                f"field {field.path!r}: {op} needs a list of values, got {operand!r}"
            )
        patterns = [self.regex(field, item, None) for item in operand
                    if isinstance(item, re.Pattern)]
        values = tuple(self.comparand(field, item, op) for item in operand
                       if not isinstance(item, re.Pattern))
        if not patterns:
            return In(field, values) if op == "$in" else Nin(field, values)
        # MongoDB allows regular expressions among $in values (Python API only: JSON
        # cannot carry them); each becomes its own $regex.
        either: Node = Or((In(field, values), *patterns))
        return either if op == "$in" else Not(either)

    def regex(self, field: Field, pattern: Any, options: Any) -> Regex:
        flags = set()
        if isinstance(pattern, re.Pattern):
            flags.update(letter for letter, bit in _REGEX_OPTIONS.items() if pattern.flags & bit)
            pattern = pattern.pattern
        if not isinstance(pattern, str):
            raise QueryError(
                f"field {field.path!r}: $regex needs a pattern string, got {pattern!r}"
            )
        if options is not None:
            if not isinstance(options, str):
                raise QueryError(f"field {field.path!r}: $options must be text such as \"i\"")
            unknown = sorted(set(options) - set(_REGEX_OPTIONS))
            if unknown:
                raise QueryError(
                    f"field {field.path!r}: unsupported $options {''.join(unknown)!r}; "
                    f"supported: i, m, s, x"
                )
            flags.update(options)
        flag_text = "".join(sorted(flags))
        try:
            _compile(pattern, flag_text)
        except re.error as exc:
            raise QueryError(f"field {field.path!r}: invalid $regex {pattern!r}: {exc}") from None
        return Regex(field, pattern, flag_text)

    def comparand(self, field: Field, value: Any, op: str) -> Any:
        """Validate a comparand and put it in the form the column stores."""
        where = f"field {field.path!r} {op}"
        if isinstance(value, re.Pattern):
            raise QueryError(f"{where}: a regular expression here is not supported; use $regex")
        value = _check_comparand(value, where)
        if field.kind == "timestamp":
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, (str, datetime, date)):
                raise QueryError(
                    f"{where}: compare data_timestamp with ISO-8601 text or a datetime, "
                    f"got {value!r}"
                )
            try:
                return to_canonical(value)
            except ValidationError as exc:
                raise QueryError(f"{where}: {exc}") from None
        if isinstance(value, (datetime, date)):
            # JSON has no dates: compare with the canonical text timestamps are stored as.
            return to_canonical(value)
        if field.kind == "id" and isinstance(value, str) and is_ulid(value):
            return value.upper()
        if field.kind == "ownership" and isinstance(value, str):
            return self.ownership_id(field, value)
        return value

    def ownership_id(self, field: Field, value: str) -> str:
        if is_ulid(value):
            return value.upper()
        try:
            resolved = self.resolve_name(field.column, value)
        except ValidationError as exc:
            raise QueryError(f"field {field.path!r}: {exc}") from None
        if not is_ulid(resolved):
            raise QueryError(
                f"field {field.path!r}: name {value!r} resolved to {resolved!r}, not a ULID"
            )
        return resolved.upper()


def _boolish(field: Field, operand: Any) -> bool:
    if isinstance(operand, bool):
        return operand
    if isinstance(operand, int) or (isinstance(operand, float) and math.isfinite(operand)):
        return bool(operand)  # MongoDB reads $exists: 1 / 0 as true / false
    raise QueryError(f"field {field.path!r}: $exists needs true or false, got {operand!r}")


def _unsupported(op: str, path: Optional[str] = None) -> QueryError:
    where = f" (field {path!r})" if path else ""
    reason = {
        "$where": "server-side JavaScript is never run",
        "$expr": "aggregation expressions are not supported",
        "$function": "server-side JavaScript is never run",
        "$elemMatch": "array element matching beyond equality is not supported",
    }.get(op, "unknown operator")
    return QueryError(f"unsupported query operator {op}{where}: {reason}; {_SUPPORTED}")


def _conjoin(nodes: list[Node]) -> Node:
    flat: list[Node] = []
    for node in nodes:
        if isinstance(node, And):
            flat.extend(node.children)
        elif not isinstance(node, MatchAll):
            flat.append(node)
    if not flat:
        return MatchAll()
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def parse_selector(selector: Optional[Mapping[str, Any]], *,
                   resolve_name: Optional[ResolveName] = None) -> Node:
    """Validate a MongoDB-style selector and return its node tree (raises QueryError).

    ``resolve_name(field, name)`` maps a human name in an ownership field (``EXP42`` in
    ``ownership_info.experiment_id``) to its ULID; the default derives it with
    :func:`app.core.ids.name_to_id`, as every capture path does.
    """
    if selector is None:
        return MatchAll()
    return _Parser(resolve_name).document(selector, 0)


# -- SQL fragments ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Sql:
    """SQL text with its parameters in textual order. ``compound``: has a top-level AND."""

    text: str
    params: tuple[Any, ...] = ()
    compound: bool = False


_TRUE: Final[_Sql] = _Sql("1")
_FALSE: Final[_Sql] = _Sql("0")


def _cat(*pieces: Union[str, _Sql], compound: bool = False) -> _Sql:
    text: list[str] = []
    params: list[Any] = []
    for piece in pieces:
        if isinstance(piece, _Sql):
            text.append(piece.text)
            params.extend(piece.params)
        else:
            text.append(piece)
    return _Sql("".join(text), tuple(params), compound)


def _param(value: Any) -> _Sql:
    return _Sql("?", (value,))


def _placeholders(values: Sequence[Any], wrap: str = "?") -> _Sql:
    if len(values) == 1:
        return _Sql(f"= {wrap}", tuple(values))
    return _Sql(f"IN ({', '.join(wrap for _ in values)})", tuple(values))


def _and(parts: Sequence[_Sql]) -> _Sql:
    if _FALSE in parts:
        return _FALSE
    parts = [p for p in parts if p != _TRUE]
    if not parts:
        return _TRUE
    if len(parts) == 1:
        return parts[0]
    return _cat(*_interleave(parts, " AND "), compound=True)


def _or(parts: Sequence[_Sql]) -> _Sql:
    if _TRUE in parts:
        return _TRUE
    parts = [p for p in parts if p != _FALSE]
    if not parts:
        return _FALSE
    if len(parts) == 1:
        return parts[0]
    wrapped = [_cat("(", p, ")") if p.compound else p for p in parts]
    return _cat("(", *_interleave(wrapped, " OR "), ")")


def _not(part: _Sql) -> _Sql:
    if part == _TRUE:
        return _FALSE
    if part == _FALSE:
        return _TRUE
    return _cat("NOT coalesce(", part, ", 0)")


def _interleave(parts: Sequence[_Sql], separator: str) -> list[Union[str, _Sql]]:
    out: list[Union[str, _Sql]] = []
    for index, part in enumerate(parts):
        if index:
            out.append(separator)
        out.append(part)
    return out


# - JSON helpers -
#
# A JSON predicate dispatches once on json_type(): ``CASE json_type(value, ?) WHEN 'integer'
# THEN json_extract(value, ?) > ? … ELSE 0 END``. That gives MongoDB's type bracketing
# (json_extract turns true into 1; json_type keeps them apart) and costs two JSON calls per
# row, like the hand-written ``json_type(…) IN (…) AND json_extract(…) > ?``. The 'array'
# branch adds MongoDB's element matching: any element of an array satisfies the predicate.

#: A predicate's branches: (json_type value, condition on the value expression).
_Branches = list[tuple[str, _Sql]]


def _json_type(field: Field) -> _Sql:
    return _Sql(f"json_type({field.column}, ?)", (field.json_path,))


def _json_extract(field: Field) -> _Sql:
    return _Sql(f"json_extract({field.column}, ?)", (field.json_path,))


_ELEMENT_TYPE: Final[_Sql] = _Sql("je.type")
_ELEMENT_VALUE: Final[_Sql] = _Sql("je.value")


def _case(subject: _Sql, branches: _Branches) -> _Sql:
    """``CASE subject WHEN 'type' THEN condition … ELSE 0 END`` (0 when nothing can match)."""
    branches = [(kind, cond) for kind, cond in branches if cond != _FALSE]
    if not branches:
        return _FALSE
    pieces: list[Union[str, _Sql]] = ["CASE ", subject]
    for kind, condition in branches:
        pieces += [f" WHEN '{kind}' THEN ", condition]
    pieces.append(" ELSE 0 END")
    return _cat(*pieces)


def _json_predicate(field: Field, branches: Callable[[_Sql], _Branches], *,
                    missing: bool = False) -> _Sql:
    """A predicate on a JSON field, or — as in MongoDB — on any element of an array there.

    ``branches(value_expression)`` says, per JSON type, what the value must satisfy; it is
    used for the field itself and for the elements of an array. ``missing``: whether a
    missing field (or a NULL column, as file datapoints have for ``value``) matches.
    """
    top = branches(_json_extract(field))
    element = _case(_ELEMENT_TYPE, branches(_ELEMENT_VALUE))
    if element != _FALSE:
        any_element = _cat(
            f"EXISTS (SELECT 1 FROM json_each(datapoints.{field.column}, ",
            _param(field.json_path), ") AS je WHERE ", element, ")",
        )
        on_array = [cond for kind, cond in top if kind == "array"]
        top = [(kind, cond) for kind, cond in top if kind != "array"]
        top.append(("array", _or([*on_array, any_element])))
    subject = _json_type(field)
    if missing:
        subject = _cat("coalesce(", subject, ", 'missing')")
        top.append(("missing", _TRUE))
    return _case(subject, top)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equals_any(values: Sequence[Any]) -> Callable[[_Sql], _Branches]:
    """Branches for "equals one of ``values``" — type-bracketed: true is not 1, "1" not 1."""
    numbers = [v for v in values if _is_number(v)]
    texts = [v for v in values if isinstance(v, str)]
    objects = [v.text for v in values if isinstance(v, _FrozenJSON) and v.text[0] == "{"]
    arrays = [v.text for v in values if isinstance(v, _FrozenJSON) and v.text[0] == "["]

    def branches(value: _Sql) -> _Branches:
        out: _Branches = []
        if numbers:
            condition = _cat(value, " ", _placeholders(numbers))
            out += [("integer", condition), ("real", condition)]
        if texts:
            out.append(("text", _cat(value, " ", _placeholders(texts))))
        for flag in (True, False):
            if any(v is flag for v in values):
                out.append((str(flag).lower(), _TRUE))
        if any(v is None for v in values):
            out.append(("null", _TRUE))
        # json_extract renders objects/arrays as minified JSON text; json(?) minifies the
        # comparand the same way, so equal documents compare equal as text.
        if objects:
            out.append(("object", _cat(value, " ", _placeholders(objects, "json(?)"))))
        if arrays:
            out.append(("array", _cat(value, " ", _placeholders(arrays, "json(?)"))))
        return out

    return branches


def _compares(op: str, comparand: Any) -> Callable[[_Sql], _Branches]:
    """Branches for ``value <op> comparand`` within the comparand's own type."""

    def branches(value: _Sql) -> _Branches:
        if isinstance(comparand, bool):
            # Booleans order false < true; decide per branch without touching the value.
            outcome = {kind: _TRUE if _COMPARE_PY[op](int(kind == "true"), int(comparand))
                       else _FALSE for kind in ("true", "false")}
            return list(outcome.items())
        condition = _cat(value, f" {op} ", _param(comparand))
        if _is_number(comparand):
            return [("integer", condition), ("real", condition)]
        return [("text", condition)]

    return branches


_COMPARE_PY: Final[dict[str, Callable[[int, int], bool]]] = {
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}


def _matches_regex(pattern: str, flags: str) -> Callable[[_Sql], _Branches]:
    def branches(value: _Sql) -> _Branches:
        return [("text", _cat(_Sql("regexp(?, ?, ", (pattern, flags)), value, ")"))]

    return branches


# - column helpers -


def _column_accepts(field: Field, value: Any) -> bool:
    """Type bracketing for columns: text columns hold text, integer columns numbers."""
    if field.kind == "integer":
        return _is_number(value)
    return isinstance(value, str)


def _column_equals_any(field: Field, values: Sequence[Any]) -> _Sql:
    usable = [v for v in values if v is not None and _column_accepts(field, v)]
    parts: list[_Sql] = []
    if usable:
        parts.append(_cat(field.column, " ", _placeholders(usable)))
    if any(v is None for v in values):
        parts.append(_Sql(f"{field.column} IS NULL"))
    return _or(parts)


# -- translation: one function per node -----------------------------------------------


@functools.singledispatch
def _translate(node: Node) -> _Sql:
    raise QueryError(f"cannot translate {type(node).__name__} to SQL")


@_translate.register
def _match_all(node: MatchAll) -> _Sql:
    return _TRUE


@_translate.register
def _match_none(node: MatchNone) -> _Sql:
    return _FALSE


@_translate.register
def _and_node(node: And) -> _Sql:
    return _and([_translate(child) for child in node.children])


@_translate.register
def _or_node(node: Or) -> _Sql:
    return _or([_translate(child) for child in node.children])


@_translate.register
def _nor_node(node: Nor) -> _Sql:
    return _not(_or([_translate(child) for child in node.children]))


@_translate.register
def _not_node(node: Not) -> _Sql:
    return _not(_translate(node.child))


@_translate.register
def _eq(node: Eq) -> _Sql:
    if node.field.is_json:
        # MongoDB: {field: null} matches an explicit null and a missing field.
        return _json_predicate(node.field, _equals_any([node.value]),
                               missing=node.value is None)
    return _column_equals_any(node.field, [node.value])


@_translate.register
def _in(node: In) -> _Sql:
    if node.field.is_json:
        return _json_predicate(node.field, _equals_any(node.values),
                               missing=any(v is None for v in node.values))
    return _column_equals_any(node.field, node.values)


@_translate.register
def _ne(node: Ne) -> _Sql:
    field = node.field
    if field.is_json:
        return _not(_translate(Eq(field, node.value)))
    if node.value is None:
        return _Sql(f"{field.column} IS NOT NULL")
    if not _column_accepts(field, node.value):
        return _TRUE
    return _cat(field.column, " IS NOT ", _param(node.value))


@_translate.register
def _nin(node: Nin) -> _Sql:
    field = node.field
    if field.is_json:
        return _not(_translate(In(field, node.values)))
    usable = [v for v in node.values if v is not None and _column_accepts(field, v)]
    has_null = any(v is None for v in node.values)
    if not usable:
        return _Sql(f"{field.column} IS NOT NULL") if has_null else _TRUE
    values = _placeholders(usable)
    values = _Sql("<> ?" if len(usable) == 1 else "NOT " + values.text, values.params)
    if has_null:
        return _cat(field.column, " IS NOT NULL AND ", field.column, " ", values,
                    compound=True)
    return _cat("(", field.column, " IS NULL OR ", field.column, " ", values, ")")


@_translate.register
def _compare(node: Compare) -> _Sql:
    field, value = node.field, node.value
    if field.is_json:
        return _json_predicate(field, _compares(node.op, value))
    if not _column_accepts(field, value):
        return _FALSE
    return _cat(field.column, f" {node.op} ", _param(value))


@_translate.register
def _exists(node: Exists) -> _Sql:
    field = node.field
    if field.is_json:
        return _cat(_json_type(field), " IS NOT NULL" if node.present else " IS NULL")
    if field.column in _ALWAYS_PRESENT:
        return _TRUE if node.present else _FALSE
    return _Sql(f"{field.column} IS {'NOT ' if node.present else ''}NULL")


@_translate.register
def _regex(node: Regex) -> _Sql:
    field = node.field
    if field.is_json:
        return _json_predicate(field, _matches_regex(node.pattern, node.flags))
    if field.kind == "integer":
        return _FALSE
    return _cat(_Sql("regexp(?, ?, ", (node.pattern, node.flags)), field.column, ")")


def to_sql(node: Node) -> tuple[str, list[Any]]:
    """A ``WHERE`` fragment for ``node`` with ``?`` placeholders, and its parameters."""
    fragment = _translate(node)
    if len(fragment.params) > MAX_PARAMETERS:
        raise QueryError(
            f"the selector is too large ({len(fragment.params)} SQL parameters; at most "
            f"{MAX_PARAMETERS}); split it into several queries"
        )
    return fragment.text, list(fragment.params)


# -- regular expressions inside SQLite -------------------------------------------------


@functools.lru_cache(maxsize=256)
def _compile(pattern: str, flags: str) -> re.Pattern[str]:
    bits = 0
    for letter in flags:
        bits |= _REGEX_OPTIONS[letter]
    return re.compile(pattern, bits)


def _regexp(pattern: Optional[str], flags: Optional[str], text: Any) -> Optional[int]:
    if pattern is None:
        return None
    if not isinstance(text, str):
        return 0  # MongoDB's $regex only ever matches strings
    return 1 if _compile(pattern, flags or "").search(text) else 0


def _regexp_operator(pattern: Optional[str], text: Any) -> Optional[int]:
    """``text REGEXP pattern`` (SQLite calls regexp(pattern, text))."""
    return _regexp(pattern, "", text)


def register_functions(dbapi_connection: sqlite3.Connection) -> None:
    """Install ``regexp(pattern, flags, text)`` (and the 2-argument REGEXP operator).

    Call it for every connection that runs translated queries; the store does so from
    its connection hook.
    """
    dbapi_connection.create_function("regexp", 3, _regexp, deterministic=True)
    dbapi_connection.create_function("regexp", 2, _regexp_operator, deterministic=True)


# -- sorting, paging, statements -------------------------------------------------------


@dataclass(frozen=True)
class SortKey:
    path: str
    descending: bool


DEFAULT_SORT: Final[tuple[SortKey, ...]] = (SortKey("data_timestamp", True),)
_DIRECTIONS: Final[dict[Any, bool]] = {
    1: False, -1: True, "asc": False, "ascending": False, "desc": True, "descending": True,
}


def _direction(path: str, direction: Any) -> bool:
    key = direction.lower() if isinstance(direction, str) else direction
    if isinstance(key, bool) or key not in _DIRECTIONS:
        raise QueryError(
            f"sort direction for {path!r} must be 1 (ascending) or -1 (descending), "
            f"got {direction!r}"
        )
    return _DIRECTIONS[key]


def _key_from_text(item: str) -> SortKey:
    text = item.strip()
    descending = text.startswith("-")
    path = text[1:].strip() if text[:1] in "+-" else text
    if not path:
        raise QueryError(f"empty sort key in {item!r}")
    return SortKey(path, descending)


def parse_sort(sort: Union[str, Sequence[Any], Mapping[str, Any], None]) -> list[SortKey]:
    """``"-data_timestamp,label"``, ``[("label", 1)]`` or ``{"label": -1}`` -> sort keys.

    ``None`` (or an empty sort) means newest first: ``data_timestamp`` descending. The id
    tie-breaker is not part of the result; :func:`build_select` appends it.
    """
    if sort is None or (isinstance(sort, (str, Sequence, Mapping)) and not sort):
        return list(DEFAULT_SORT)
    keys: list[SortKey] = []
    if isinstance(sort, str):
        keys = [_key_from_text(item) for item in sort.split(",")]
    elif isinstance(sort, Mapping):
        keys = [SortKey(str(path), _direction(str(path), d)) for path, d in sort.items()]
    elif isinstance(sort, Sequence):
        for item in sort:
            if isinstance(item, SortKey):
                keys.append(item)
            elif isinstance(item, str):
                keys.append(_key_from_text(item))
            elif isinstance(item, Sequence) and len(item) == 2 and isinstance(item[0], str):
                keys.append(SortKey(item[0], _direction(item[0], item[1])))
            else:
                raise QueryError(
                    f"a sort key is a field path or a (path, 1 | -1) pair, got {item!r}"
                )
    else:
        raise QueryError(f"sort must be text or a list of (path, direction), got {sort!r}")
    if len(keys) > MAX_SORT_KEYS:
        raise QueryError(f"at most {MAX_SORT_KEYS} sort keys, got {len(keys)}")
    seen: set[tuple[str, Optional[str]]] = set()
    for key in keys:
        field = resolve_field(key.path)
        ident = (field.column, field.json_path)
        if ident in seen:
            raise QueryError(f"sort key {key.path!r} is given twice")
        seen.add(ident)
    return keys


def _sort_expression(field: Field) -> _Sql:
    if field.is_json:
        return _Sql(f"json_extract({field.column}, ?)", (field.json_path,))
    return _Sql(field.column)


@dataclass(frozen=True)
class _OrderTerm:
    expression: _Sql
    descending: bool
    nullable: bool


def _order_terms(keys: Sequence[SortKey]) -> list[_OrderTerm]:
    """The sort keys as SQL, plus ``id`` as the tie-breaker unless a key already is id."""
    terms: list[_OrderTerm] = []
    for key in keys:
        field = resolve_field(key.path)
        terms.append(_OrderTerm(_sort_expression(field), key.descending,
                                field.is_json or field.column not in _NOT_NULL))
    if not any(resolve_field(k.path).column == "id" for k in keys):
        terms.append(_OrderTerm(_Sql("id"), keys[-1].descending, False))
    return terms


def _after(term: _OrderTerm, value: Any) -> Optional[_Sql]:
    """Rows strictly after ``value`` in this term's order (SQLite sorts NULL lowest)."""
    expr = term.expression
    if not term.descending:
        if value is None:
            return _cat(expr, " IS NOT NULL")
        return _cat(expr, " > ", _param(value))
    if value is None:
        return None  # nothing sorts after NULL when descending
    if term.nullable:
        return _cat("(", expr, " < ", _param(value), " OR ", expr, " IS NULL)")
    return _cat(expr, " < ", _param(value))


def _same(term: _OrderTerm, value: Any) -> _Sql:
    if value is None:
        return _cat(term.expression, " IS NULL")
    return _cat(term.expression, " = ", _param(value))


def _keyset(terms: Sequence[_OrderTerm], values: Sequence[Any]) -> _Sql:
    """``(k1, k2, …, id)`` strictly after ``values`` in the ORDER BY order.

    A leading range on the first key (``k1 <= ?`` when descending) lets SQLite seek in
    that key's index instead of scanning from the start.
    """
    branches: list[_Sql] = []
    for index, term in enumerate(terms):
        after = _after(term, values[index])
        if after is None:
            continue
        branches.append(_and([*(_same(t, v) for t, v in zip(terms[:index], values)), after]))
    condition = _or(branches)
    first, value = terms[0], values[0]
    bound: Optional[_Sql] = None
    if value is not None and (not first.descending or not first.nullable):
        bound = _cat(first.expression, " >= " if not first.descending else " <= ",
                     _param(value))
    if bound is None or condition == _FALSE or len(terms) == 1:
        return condition
    return _and([bound, condition])


def _is_cursor_scalar(value: Any) -> bool:
    # What SQLite can bind and json_extract can return: 64-bit integers, floats (±inf
    # for numbers beyond a double, never NaN), text, null.
    if isinstance(value, float):
        return not math.isnan(value)
    return value is None or isinstance(value, str) or (
        isinstance(value, int) and not isinstance(value, bool)
        and _INT64_MIN <= value <= _INT64_MAX)


def make_cursor(row_sort_values: Sequence[Any], row_id: str, sort: Sequence[SortKey]) -> str:
    """An opaque cursor for the page after a row (urlsafe base64 of JSON)."""
    values = list(row_sort_values)
    if len(values) != len(sort) or not all(_is_cursor_scalar(v) for v in values):
        raise QueryError("cannot make a cursor: the sort values do not fit the sort keys")
    payload = {"k": [[key.path, key.descending] for key in sort], "v": values, "id": row_id}
    # allow_nan: a sort value beyond a double is ±inf (as SQLite has it); json reads back
    # its own "Infinity", and the cursor is opaque to clients.
    raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=True)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def _read_cursor(cursor: str, sort: Sequence[SortKey]) -> tuple[list[Any], str]:
    bad = QueryError("invalid cursor; start again without one")
    if not isinstance(cursor, str) or not cursor or len(cursor) > 65_536:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(payload, dict) or set(payload) != {"k", "v", "id"}:
        raise bad
    values, row_id = payload["v"], payload["id"]
    if (not isinstance(values, list) or not isinstance(row_id, str)
            or len(values) != len(sort) or not all(_is_cursor_scalar(v) for v in values)):
        raise bad
    if payload["k"] != [[key.path, key.descending] for key in sort]:
        raise QueryError("this cursor belongs to a query with a different sort order")
    return values, row_id


def _json_extract_like_sqlite(text: Optional[str], segments: Sequence[Union[str, int]]) -> Any:
    """What ``json_extract(text, path)`` returns, computed in Python."""
    if text is None:
        return None
    node: Any = json.loads(text)
    for segment in segments:
        if isinstance(segment, int):
            if not isinstance(node, list) or segment >= len(node):
                return None
        elif not isinstance(node, dict) or segment not in node:
            return None
        node = node[segment]
    if isinstance(node, bool):
        return int(node)
    if isinstance(node, int) and not _INT64_MIN <= node <= _INT64_MAX:
        # SQLite reads an integer beyond 64 bits as a double (±inf beyond a double).
        try:
            return float(node)
        except OverflowError:
            return math.inf if node > 0 else -math.inf
    if isinstance(node, (dict, list)):
        return json.dumps(node, ensure_ascii=False, separators=(",", ":"))
    return node


def sort_value(row: Mapping[str, Any], key: SortKey) -> Any:
    """The value a row has for a sort key, as SQLite orders it (for :func:`make_cursor`).

    ``row`` maps column names to raw column values and must hold the key's column.
    """
    field = resolve_field(key.path)
    if field.is_json:
        return _json_extract_like_sqlite(row[field.column], field.segments)
    return row[field.column]


@dataclass(frozen=True)
class SelectPlan:
    """A ready SELECT: run ``sql`` with ``params``; ``sort`` is what cursors are made of."""

    sql: str
    params: list[Any]
    sort: list[SortKey]


def _where(selector: Union[Mapping[str, Any], Node, None],
           resolve_name: Optional[ResolveName]) -> _Sql:
    node = selector if isinstance(selector, Node) else parse_selector(
        selector, resolve_name=resolve_name)
    text, params = to_sql(node)
    if text == "1":
        return _Sql("deleted = 0")
    return _cat("deleted = 0 AND (", _Sql(text, tuple(params)), ")")


def _check_limit(limit: Optional[int]) -> None:
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {limit!r}")


def build_select(selector: Union[Mapping[str, Any], Node, None], *, sort: Any = None,
                 limit: Optional[int] = None, cursor: Optional[str] = None,
                 columns: str = "id",
                 resolve_name: Optional[ResolveName] = None) -> SelectPlan:
    """``SELECT columns FROM datapoints`` for live rows matching ``selector``, one page.

    ``columns`` is trusted SQL from the caller (never user input). Rows come ordered by
    the sort keys, then ``id`` in the direction of the last key; ``cursor`` (from
    :func:`make_cursor`) continues after the row it was made from.
    """
    _check_limit(limit)
    keys = parse_sort(sort)
    where = _where(selector, resolve_name)
    terms = _order_terms(keys)
    if cursor is not None:
        values, row_id = _read_cursor(cursor, keys)
        if len(terms) > len(keys):
            values = [*values, row_id]
        where = _and([where, _keyset(terms, values)])
    order = _cat(*_interleave(
        [_cat(t.expression, " DESC" if t.descending else " ASC") for t in terms], ", "))
    statement = _cat(f"SELECT {columns} FROM datapoints WHERE ", where, " ORDER BY ", order)
    if limit is not None:
        statement = _cat(statement, " LIMIT ", _param(limit))
    return SelectPlan(statement.text, list(statement.params), keys)


def build_count(selector: Union[Mapping[str, Any], Node, None], *,
                resolve_name: Optional[ResolveName] = None) -> tuple[str, list[Any]]:
    """``SELECT COUNT(*)`` of live rows matching ``selector``."""
    where = _where(selector, resolve_name)
    return f"SELECT COUNT(*) FROM datapoints WHERE {where.text}", list(where.params)
