"""Sort keys, keyset cursors and the finished SELECT / COUNT statements."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Optional, Union

from app.core.errors import QueryError
from app.core.query.fields import _NOT_NULL, Field, resolve_field
from app.core.query.limits import INT64_MAX, INT64_MIN, MAX_LIMIT, MAX_SORT_KEYS
from app.core.query.nodes import Node
from app.core.query.parse import ResolveName, parse_selector
from app.core.query.sqlite import (
    _FALSE,
    _and,
    _cat,
    _interleave,
    _or,
    _param,
    _Sql,
    to_sql,
)


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
    if isinstance(sort, (Mapping, Sequence)) and not isinstance(sort, str) \
            and len(sort) > MAX_SORT_KEYS:
        raise QueryError(f"at most {MAX_SORT_KEYS} sort keys, got {len(sort)}")
    keys: list[SortKey] = []
    if isinstance(sort, str):
        if sort.count(",") >= MAX_SORT_KEYS:
            raise QueryError(f"at most {MAX_SORT_KEYS} sort keys, got {sort.count(',') + 1}")
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
        and INT64_MIN <= value <= INT64_MAX)


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
    if isinstance(node, int) and not INT64_MIN <= node <= INT64_MAX:
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
