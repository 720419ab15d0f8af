"""Selectors in, nodes out: validation, comparand normalisation, name resolution."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any, Final, Optional

from app.core.errors import QueryError, ValidationError
from app.core.ids import is_ulid, name_to_id
from app.core.query.fields import Field, resolve_field
from app.core.query.limits import INT64_MAX, INT64_MIN, MAX_DEPTH, MAX_IN_VALUES, MAX_REGEX_CHARS
from app.core.query.nodes import (
    _COMPARE_OPS,
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
from app.core.query.regex import _compile, _RegexRefused
from app.core.timestamps import to_canonical


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

ResolveName = Callable[[str, str], str]


def default_resolve_name(field: str, name: str) -> str:
    """The deterministic (kind, name) -> ULID mapping every bench shares."""
    return name_to_id(field, name)


def _check_comparand(value: Any, where: str) -> Any:
    """Reject what neither JSON nor a timestamp can be; make ints fit SQLite."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        # SQLite integers are 64-bit; MongoDB would store a larger number as a double.
        if INT64_MIN <= value <= INT64_MAX:
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
        if len(operand) > MAX_IN_VALUES:
            raise QueryError(
                f"field {field.path!r}: {op} lists {len(operand)} values; at most "
                f"{MAX_IN_VALUES} (split the query, or select by a shared field instead)"
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
        if len(pattern) > MAX_REGEX_CHARS:
            raise QueryError(
                f"field {field.path!r}: the $regex pattern is {len(pattern)} characters long; "
                f"at most {MAX_REGEX_CHARS}"
            )
        flag_text = "".join(sorted(flags))
        try:
            _compile(pattern, flag_text)
        except _RegexRefused as exc:
            raise QueryError(f"field {field.path!r}: {exc}") from None
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
