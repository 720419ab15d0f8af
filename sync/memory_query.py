"""MongoDB's query and update language, the part sync uses, over plain dicts.

For ``sync.memory_backend``. Filters: equality, ``$in``, ``$lt``, ``$lte``, ``$gt``,
``$gte``, ``$ne``, ``$exists``, ``$and``, ``$or``, dotted fields. Updates: ``$set``,
``$max``, ``$currentDate``. Values are stored as BSON would keep them: datetimes in UTC
with millisecond precision, tuples as lists. Comparisons across types follow BSON's
order of types (null < numbers < strings < objects < lists < booleans < dates).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Optional

_MISSING = object()
_COMPARISONS = {"$lt": lambda a, b: a < b, "$lte": lambda a, b: a <= b,
                "$gt": lambda a, b: a > b, "$gte": lambda a, b: a >= b}


def _type_rank(value: Any) -> int:
    if value is None or value is _MISSING:
        return 0
    if isinstance(value, bool):
        return 6
    if isinstance(value, (int, float)):
        return 1
    if isinstance(value, str):
        return 2
    if isinstance(value, Mapping):
        return 3
    if isinstance(value, (list, tuple)):
        return 4
    if isinstance(value, datetime):
        return 7
    return 5


def stored(value: Any) -> Any:
    """``value`` as the server would store and return it."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        moment = moment.astimezone(timezone.utc)
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    if isinstance(value, Mapping):
        return {str(k): stored(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [stored(v) for v in value]
    return value


def get_path(document: Mapping[str, Any], path: str) -> Any:
    current: Any = document
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return _MISSING
        current = current[part]
    return current


def _set_path(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    current = document
    for part in parents:
        current = current.setdefault(part, {})
    current[last] = stored(value)


def _equal(found: Any, wanted: Any) -> bool:
    if found is _MISSING:
        return wanted is None
    if isinstance(found, list) and not isinstance(wanted, list):
        return any(_equal(item, wanted) for item in found)
    return _type_rank(found) == _type_rank(wanted) and found == stored(wanted)


def _compare(found: Any, wanted: Any, operator: str) -> bool:
    """MongoDB compares only within a type class; other types never match."""
    if found is _MISSING or _type_rank(found) != _type_rank(wanted):
        return False
    return bool(_COMPARISONS[operator](found, stored(wanted)))


def _condition(found: Any, condition: Any) -> bool:
    if not (isinstance(condition, Mapping) and condition and
            all(str(k).startswith("$") for k in condition)):
        return _equal(found, condition)
    for operator, wanted in condition.items():
        if operator in _COMPARISONS:
            ok = _compare(found, wanted, operator)
        elif operator == "$in":
            ok = any(_equal(found, item) for item in wanted)
        elif operator == "$ne":
            ok = not _equal(found, wanted)
        elif operator == "$exists":
            ok = (found is not _MISSING) == bool(wanted)
        else:
            raise ValueError(f"operator {operator} is not supported by the memory backend")
        if not ok:
            return False
    return True


def matches(document: Mapping[str, Any], selector: Mapping[str, Any]) -> bool:
    for key, condition in selector.items():
        if key == "$and":
            ok = all(matches(document, part) for part in condition)
        elif key == "$or":
            ok = any(matches(document, part) for part in condition)
        else:
            ok = _condition(get_path(document, key), condition)
        if not ok:
            return False
    return True


def project(document: Mapping[str, Any],
            projection: Optional[Mapping[str, int]]) -> dict[str, Any]:
    """A copy with only ``_id`` and the projected (top-level or dotted) fields."""
    if not projection:
        return copy.deepcopy(dict(document))
    result: dict[str, Any] = {"_id": document["_id"]} if projection.get("_id", 1) else {}
    for path, include in projection.items():
        if include and path != "_id":
            value = get_path(document, path)
            if value is not _MISSING:
                _set_path(result, path, copy.deepcopy(value))
    return result


def sort_key(document: Mapping[str, Any], keys: Sequence[tuple[str, int]]) -> tuple[Any, ...]:
    """A key that sorts like MongoDB (ascending fields only: all sync asks for)."""
    parts: list[Any] = []
    for path, direction in keys:
        if direction != 1:
            raise ValueError("the memory backend sorts ascending only")
        value = get_path(document, path)
        parts.append((_type_rank(value), None if value is _MISSING else value))
    return tuple(parts)


def upsert_seed(selector: Mapping[str, Any]) -> dict[str, Any]:
    """The document an upsert starts from: the selector's plain equalities."""
    seed: dict[str, Any] = {}
    for key, condition in selector.items():
        if key.startswith("$") or (isinstance(condition, Mapping) and
                                   any(str(k).startswith("$") for k in condition)):
            continue
        _set_path(seed, key, copy.deepcopy(condition))
    return seed


def apply_update(document: dict[str, Any], update: Mapping[str, Any], now: datetime, *,
                 inserting: bool = False) -> None:
    """Apply ``$set``, ``$max`` and ``$currentDate`` (``now``) to ``document`` in place."""
    for operator, fields in update.items():
        for path, value in fields.items():
            if operator == "$set":
                _set_path(document, path, copy.deepcopy(value))
            elif operator == "$currentDate":
                _set_path(document, path, now)
            elif operator == "$max":
                current = get_path(document, path)
                if current is _MISSING or _compare(stored(value), current, "$gt"):
                    _set_path(document, path, value)
            elif operator == "$setOnInsert":
                if inserting:
                    _set_path(document, path, copy.deepcopy(value))
            else:
                raise ValueError(f"update {operator} is not supported by the memory backend")
