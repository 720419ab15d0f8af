"""Nodes in, SQLite ``WHERE`` fragments out: one translation function per node type."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Union

from app.core.errors import QueryError
from app.core.query.fields import _ALWAYS_PRESENT, Field
from app.core.query.limits import MAX_PARAMETERS
from app.core.query.nodes import (
    And,
    Compare,
    Eq,
    Exists,
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
)
from app.core.query.parse import _FrozenJSON


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
