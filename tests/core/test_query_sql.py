"""The query language: selectors in, SQL out (table-driven); then the same against SQLite.

The first half pins the translation (datasette's ``test_filters.py`` style): every operator
and path kind, the exact ``WHERE`` fragment and its bound parameters, and the errors. The
second half runs selectors against a real in-memory database built by the real migrations,
with rows of every shape (numbers, strings, booleans, nulls, missing fields, arrays, nested
objects, file rows without a value, a deleted row), and checks which rows come back —
including the cases where we knowingly differ from MongoDB (docs/query-language.md).
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import pytest

from app.core.errors import QueryError
from app.core.ids import name_to_id
from app.core.query import (
    MAX_LIMIT,
    And,
    Compare,
    Eq,
    SelectPlan,
    SortKey,
    build_count,
    build_select,
    make_cursor,
    parse_selector,
    parse_sort,
    register_functions,
    resolve_field,
    sort_value,
    to_sql,
)
from app.core.schema import migrate

ULID_A = "01JD3Q9V6X5J8Z0K2M4N6P8R0T"
EXP42 = name_to_id("experiment", "EXP42")
EXP7 = name_to_id("experiment", "EXP7")
ALICE = name_to_id("user", "alice")


def sql_of(selector: Any) -> tuple[str, list[Any]]:
    return to_sql(parse_selector(selector))


# -- translation: selector in, SQL fragment and parameters out -------------------------

# Shorthands for the JSON CASE expressions, so the table below stays readable.
T = '$."t"'


def _num_eq_case(col: str, path: str) -> str:
    return (
        f"CASE json_type({col}, ?) WHEN 'integer' THEN json_extract({col}, ?) = ? "
        f"WHEN 'real' THEN json_extract({col}, ?) = ? "
        f"WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(datapoints.{col}, ?) AS je "
        f"WHERE CASE je.type WHEN 'integer' THEN je.value = ? WHEN 'real' THEN je.value = ? "
        f"ELSE 0 END) ELSE 0 END"
    )


COLUMN_CASES: list[tuple[str, Any, str, list[Any]]] = [
    ("text column", {"label": "temp"}, "label = ?", ["temp"]),
    ("$eq", {"label": {"$eq": "temp"}}, "label = ?", ["temp"]),
    ("_id upper-cases a ULID", {"_id": ULID_A.lower()}, "id = ?", [ULID_A]),
    ("datapoint_id is _id", {"datapoint_id": ULID_A}, "id = ?", [ULID_A]),
    ("_id that is not a ULID", {"_id": "abc"}, "id = ?", ["abc"]),
    ("replaces upper-cases", {"replaces": ULID_A.lower()}, "replaces = ?", [ULID_A]),
    ("null matches null column", {"label": None}, "label IS NULL", []),
    ("number never equals text column", {"label": 5}, "0", []),
    ("object never equals a column", {"label": {"a": 1}}, "0", []),
    ("$ne", {"label": {"$ne": "temp"}}, "label IS NOT ?", ["temp"]),
    ("$ne null", {"label": {"$ne": None}}, "label IS NOT NULL", []),
    ("$ne other type", {"size_bytes": {"$ne": "10"}}, "1", []),
    ("$gt text", {"label": {"$gt": "m"}}, "label > ?", ["m"]),
    ("range on integer column", {"size_bytes": {"$gte": 10, "$lt": 20.5}},
     "size_bytes >= ? AND size_bytes < ?", [10, 20.5]),
    ("integer column vs text", {"size_bytes": "10"}, "0", []),
    ("bool is not a number", {"revision": {"$gt": True}}, "0", []),
    ("$gte null is equality", {"label": {"$gte": None}}, "label IS NULL", []),
    ("$gt null matches nothing", {"label": {"$gt": None}}, "0", []),
    ("$in", {"label": {"$in": ["a", "b"]}}, "label IN (?, ?)", ["a", "b"]),
    ("$in one", {"label": {"$in": ["a"]}}, "label = ?", ["a"]),
    ("$in with null", {"label": {"$in": ["a", None]}}, "(label = ? OR label IS NULL)", ["a"]),
    ("$in drops other types", {"label": {"$in": ["a", 1, True]}}, "label = ?", ["a"]),
    ("$in empty", {"label": {"$in": []}}, "0", []),
    ("$nin", {"label": {"$nin": ["a", "b"]}}, "(label IS NULL OR label NOT IN (?, ?))",
     ["a", "b"]),
    ("$nin one", {"label": {"$nin": ["a"]}}, "(label IS NULL OR label <> ?)", ["a"]),
    ("$nin with null", {"label": {"$nin": ["a", None]}}, "label IS NOT NULL AND label <> ?",
     ["a"]),
    ("$nin only null", {"label": {"$nin": [None]}}, "label IS NOT NULL", []),
    ("$nin empty", {"label": {"$nin": []}}, "1", []),
    ("$exists on an always-present field", {"label": {"$exists": True}}, "1", []),
    ("$exists false on an always-present field", {"_id": {"$exists": False}}, "0", []),
    ("$exists", {"url": {"$exists": True}}, "url IS NOT NULL", []),
    ("$exists 0", {"url": {"$exists": 0}}, "url IS NULL", []),
    ("$regex", {"label": {"$regex": "^temp", "$options": "i"}}, "regexp(?, ?, label)",
     ["^temp", "i"]),
    ("$regex options sorted", {"label": {"$regex": "a", "$options": "xsmi"}},
     "regexp(?, ?, label)", ["a", "imsx"]),
    ("compiled pattern", {"label": re.compile("^t", re.I | re.M)}, "regexp(?, ?, label)",
     ["^t", "im"]),
    ("$regex on integer column", {"size_bytes": {"$regex": "1"}}, "0", []),
    ("$not regex", {"label": {"$not": {"$regex": "^t"}}},
     "NOT coalesce(regexp(?, ?, label), 0)", ["^t", ""]),
    ("$not compiled", {"label": {"$not": re.compile("x")}},
     "NOT coalesce(regexp(?, ?, label), 0)", ["x", ""]),
    ("$not range", {"size_bytes": {"$not": {"$gt": 5, "$lt": 9}}},
     "NOT coalesce(size_bytes > ? AND size_bytes < ?, 0)", [5, 9]),
    ("$in with a compiled pattern", {"label": {"$in": ["a", re.compile("^b")]}},
     "(label = ? OR regexp(?, ?, label))", ["a", "^b", ""]),
    ("$nin with a compiled pattern", {"label": {"$nin": ["a", re.compile("^b")]}},
     "NOT coalesce((label = ? OR regexp(?, ?, label)), 0)", ["a", "^b", ""]),
    ("huge int fits SQLite as a float", {"size_bytes": 2**70}, "size_bytes = ?",
     [float(2**70)]),
]

OWNERSHIP_CASES: list[tuple[str, Any, str, list[Any]]] = [
    ("name resolves", {"ownership_info.experiment_id": "EXP42"}, "experiment_id = ?", [EXP42]),
    ("names are case-folded", {"ownership_info.experiment_id": " exp42 "},
     "experiment_id = ?", [EXP42]),
    ("ULID upper-cased", {"ownership_info.experiment_id": ULID_A.lower()},
     "experiment_id = ?", [ULID_A]),
    ("$in mixes names and ids", {"ownership_info.user_id": {"$in": ["alice", ULID_A]}},
     "user_id IN (?, ?)", [ALICE, ULID_A]),
    ("$ne name", {"ownership_info.user_id": {"$ne": "alice"}}, "user_id IS NOT ?", [ALICE]),
    ("null", {"ownership_info.step_id": None}, "step_id IS NULL", []),
    ("$exists", {"ownership_info.lab_id": {"$exists": True}}, "lab_id IS NOT NULL", []),
]

TIMESTAMP_CASES: list[tuple[str, Any, str, list[Any]]] = [
    ("Z text", {"data_timestamp": "2026-01-01T00:00:00Z"}, "data_timestamp = ?",
     ["2026-01-01T00:00:00.000000Z"]),
    ("offset text", {"data_timestamp": "2026-01-01T01:30:00.5+01:00"}, "data_timestamp = ?",
     ["2026-01-01T00:30:00.500000Z"]),
    ("naive text is UTC", {"data_timestamp": "2026-01-01 12:00"}, "data_timestamp = ?",
     ["2026-01-01T12:00:00.000000Z"]),
    ("date only", {"data_timestamp": {"$gte": "2026-01-01"}}, "data_timestamp >= ?",
     ["2026-01-01T00:00:00.000000Z"]),
    ("datetimes", {"data_timestamp": {
        "$gte": datetime(2026, 1, 1, 5, tzinfo=timezone(timedelta(hours=5))),
        "$lt": datetime(2026, 2, 1)}},
     "data_timestamp >= ? AND data_timestamp < ?",
     ["2026-01-01T00:00:00.000000Z", "2026-02-01T00:00:00.000000Z"]),
    ("$in normalises each", {"data_timestamp": {"$in": ["2026-01-01", "2026-01-02T00:00Z"]}},
     "data_timestamp IN (?, ?)", ["2026-01-01T00:00:00.000000Z", "2026-01-02T00:00:00.000000Z"]),
    ("$exists", {"data_timestamp": {"$exists": True}}, "1", []),
]

JSON_CASES: list[tuple[str, Any, str, list[Any]]] = [
    ("number equality, array elements too", {"value.t": 20}, _num_eq_case("value", T),
     [T, T, 20, T, 20, T, 20, 20]),
    ("text equality in an extra field", {"bench_id": "b1"},
     "CASE json_type(extra, ?) WHEN 'text' THEN json_extract(extra, ?) = ? "
     "WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(datapoints.extra, ?) AS je "
     "WHERE CASE je.type WHEN 'text' THEN je.value = ? ELSE 0 END) ELSE 0 END",
     ['$."bench_id"', '$."bench_id"', "b1", '$."bench_id"', "b1"]),
    ("boolean equality is by JSON type", {"value.ok": True},
     "CASE json_type(value, ?) WHEN 'true' THEN 1 "
     "WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(datapoints.value, ?) AS je "
     "WHERE CASE je.type WHEN 'true' THEN 1 ELSE 0 END) ELSE 0 END",
     ['$."ok"', '$."ok"']),
    ("null matches null and missing", {"value": None},
     "CASE coalesce(json_type(value, ?), 'missing') WHEN 'null' THEN 1 "
     "WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(datapoints.value, ?) AS je "
     "WHERE CASE je.type WHEN 'null' THEN 1 ELSE 0 END) WHEN 'missing' THEN 1 ELSE 0 END",
     ["$", "$"]),
    ("object equality is canonical JSON text", {"custom_metadata.n": {"x": 1, "y": [1, 2]}},
     "CASE json_type(custom_metadata, ?) WHEN 'object' THEN json_extract(custom_metadata, ?) "
     "= json(?) WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(datapoints.custom_metadata, "
     "?) AS je WHERE CASE je.type WHEN 'object' THEN je.value = json(?) ELSE 0 END) "
     "ELSE 0 END",
     ['$."n"', '$."n"', '{"x":1,"y":[1,2]}', '$."n"', '{"x":1,"y":[1,2]}']),
    ("array equality: whole array or an element", {"value.y": [1, None]},
     "CASE json_type(value, ?) WHEN 'array' THEN (json_extract(value, ?) = json(?) OR "
     "EXISTS (SELECT 1 FROM json_each(datapoints.value, ?) AS je WHERE CASE je.type "
     "WHEN 'array' THEN je.value = json(?) ELSE 0 END)) ELSE 0 END",
     ['$."y"', '$."y"', "[1,null]", '$."y"', "[1,null]"]),
    ("$gt is type-bracketed", {"value.t": {"$gt": 20}},
     "CASE json_type(value, ?) WHEN 'integer' THEN json_extract(value, ?) > ? "
     "WHEN 'real' THEN json_extract(value, ?) > ? "
     "WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(datapoints.value, ?) AS je "
     "WHERE CASE je.type WHEN 'integer' THEN je.value > ? WHEN 'real' THEN je.value > ? "
     "ELSE 0 END) ELSE 0 END",
     [T, T, 20, T, 20, T, 20, 20]),
    ("$lt text", {"value.s": {"$lt": "b"}},
     "CASE json_type(value, ?) WHEN 'text' THEN json_extract(value, ?) < ? "
     "WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(datapoints.value, ?) AS je "
     "WHERE CASE je.type WHEN 'text' THEN je.value < ? ELSE 0 END) ELSE 0 END",
     ['$."s"', '$."s"', "b", '$."s"', "b"]),
    ("$gt false: only true", {"value.ok": {"$gt": False}},
     "CASE json_type(value, ?) WHEN 'true' THEN 1 "
     "WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(datapoints.value, ?) AS je "
     "WHERE CASE je.type WHEN 'true' THEN 1 ELSE 0 END) ELSE 0 END",
     ['$."ok"', '$."ok"']),
    ("$gt true: nothing", {"value.ok": {"$gt": True}}, "0", []),
    ("datetime on a JSON field compares as canonical text",
     {"value.when": {"$gte": datetime(2026, 1, 1)}},
     "CASE json_type(value, ?) WHEN 'text' THEN json_extract(value, ?) >= ? "
     "WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(datapoints.value, ?) AS je "
     "WHERE CASE je.type WHEN 'text' THEN je.value >= ? ELSE 0 END) ELSE 0 END",
     ['$."when"', '$."when"', "2026-01-01T00:00:00.000000Z", '$."when"',
      "2026-01-01T00:00:00.000000Z"]),
    ("$exists", {"value.t": {"$exists": True}}, "json_type(value, ?) IS NOT NULL", [T]),
    ("$exists false", {"custom_metadata.k": {"$exists": False}},
     "json_type(custom_metadata, ?) IS NULL", ['$."k"']),
    ("numeric segment is an array index", {"value.items.0.k": {"$exists": True}},
     "json_type(value, ?) IS NOT NULL", ['$."items"[0]."k"']),
    ("keys with spaces and dashes", {"value.a b-c": {"$exists": True}},
     "json_type(value, ?) IS NOT NULL", ['$."a b-c"']),
    ("$regex matches text only", {"value.s": {"$regex": "^a"}},
     "CASE json_type(value, ?) WHEN 'text' THEN regexp(?, ?, json_extract(value, ?)) "
     "WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(datapoints.value, ?) AS je "
     "WHERE CASE je.type WHEN 'text' THEN regexp(?, ?, je.value) ELSE 0 END) ELSE 0 END",
     ['$."s"', "^a", "", '$."s"', '$."s"', "^a", ""]),
    ("$ne negates equality (missing matches)", {"value.s": {"$ne": "a"}},
     "NOT coalesce(CASE json_type(value, ?) WHEN 'text' THEN json_extract(value, ?) = ? "
     "WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(datapoints.value, ?) AS je "
     "WHERE CASE je.type WHEN 'text' THEN je.value = ? ELSE 0 END) ELSE 0 END, 0)",
     ['$."s"', '$."s"', "a", '$."s"', "a"]),
    ("$in groups values by JSON type", {"value.s": {"$in": ["a", "b", 1, False]}},
     "CASE json_type(value, ?) WHEN 'integer' THEN json_extract(value, ?) = ? "
     "WHEN 'real' THEN json_extract(value, ?) = ? "
     "WHEN 'text' THEN json_extract(value, ?) IN (?, ?) WHEN 'false' THEN 1 "
     "WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(datapoints.value, ?) AS je "
     "WHERE CASE je.type WHEN 'integer' THEN je.value = ? WHEN 'real' THEN je.value = ? "
     "WHEN 'text' THEN je.value IN (?, ?) WHEN 'false' THEN 1 ELSE 0 END) ELSE 0 END",
     ['$."s"', '$."s"', 1, '$."s"', 1, '$."s"', "a", "b", '$."s"', 1, 1, "a", "b"]),
    ("$in empty", {"value.s": {"$in": []}}, "0", []),
    ("$nin empty", {"value.s": {"$nin": []}}, "1", []),
]

LOGICAL_CASES: list[tuple[str, Any, str, list[Any]]] = [
    ("empty selector", {}, "1", []),
    ("implicit and", {"label": "a", "data_type": "json"}, "label = ? AND data_type = ?",
     ["a", "json"]),
    ("nested $and flattens", {"$and": [{"label": "a"}, {"$and": [{"data_type": "json"}]}]},
     "label = ? AND data_type = ?", ["a", "json"]),
    ("$or", {"$or": [{"label": "a"}, {"data_type": "file"}]}, "(label = ? OR data_type = ?)",
     ["a", "file"]),
    ("$or of ands", {"$or": [{"label": "a", "size_bytes": 1}, {"data_type": "file"}]},
     "((label = ? AND size_bytes = ?) OR data_type = ?)", ["a", 1, "file"]),
    ("$or inside and", {"label": "a", "$or": [{"url": None}, {"size_bytes": {"$gt": 1}}]},
     "label = ? AND (url IS NULL OR size_bytes > ?)", ["a", 1]),
    ("$nor", {"$nor": [{"label": "a"}, {"data_type": "file"}]},
     "NOT coalesce((label = ? OR data_type = ?), 0)", ["a", "file"]),
    ("constant branches fold", {"$or": [{"label": 5}, {"label": "a"}]}, "label = ?", ["a"]),
    ("a false conjunct folds the and", {"label": "a", "size_bytes": "x"}, "0", []),
    ("$or with one branch", {"$or": [{"label": "a"}]}, "label = ?", ["a"]),
    ("the brief's mixed example", {"$or": [{"data_type": "file"}, {"value": {"$exists": True}}]},
     "(data_type = ? OR json_type(value, ?) IS NOT NULL)", ["file", "$"]),
]


@pytest.mark.parametrize(
    ("selector", "expected_sql", "expected_params"),
    [pytest.param(s, q, p, id=name) for name, s, q, p in
     COLUMN_CASES + OWNERSHIP_CASES + TIMESTAMP_CASES + JSON_CASES + LOGICAL_CASES],
)
def test_selector_translates_to_sql(selector: Any, expected_sql: str,
                                    expected_params: list[Any]) -> None:
    sql, params = sql_of(selector)
    assert sql == expected_sql
    assert params == expected_params
    assert sql.count("?") == len(params)


FIELD_CASES = [
    ("label", "label", "text", None),
    ("_id", "id", "id", None),
    ("datapoint_id", "id", "id", None),
    ("size_bytes", "size_bytes", "integer", None),
    ("data_timestamp", "data_timestamp", "timestamp", None),
    ("ownership_info.workflow_id", "workflow_id", "ownership", None),
    ("value", "value", "json", "$"),
    ("value.a.b", "value", "json", '$."a"."b"'),
    ("value.items.10", "value", "json", '$."items"[10]'),
    ("value.items.01", "value", "json", '$."items"."01"'),
    ("custom_metadata.experiment_name", "custom_metadata", "json", '$."experiment_name"'),
    ("bench_id", "extra", "json", '$."bench_id"'),
    ("created_at", "extra", "json", '$."created_at"'),
    ("id", "extra", "json", '$."id"'),
    ("sync.revision", "extra", "json", '$."sync"."revision"'),
]


@pytest.mark.parametrize(("path", "column", "kind", "json_path"), FIELD_CASES)
def test_field_paths_map_onto_the_schema(path: str, column: str, kind: str,
                                         json_path: Optional[str]) -> None:
    field = resolve_field(path)
    assert (field.column, field.kind, field.json_path) == (column, kind, json_path)


def test_nodes_are_typed_and_values_normalised() -> None:
    node = parse_selector({"ownership_info.experiment_id": "EXP42", "value.t": {"$gt": 20}})
    assert node == And((Eq(resolve_field("ownership_info.experiment_id"), EXP42),
                        Compare(resolve_field("value.t"), ">", 20)))
    assert hash(node)  # frozen, usable as a cache key


def test_resolver_is_used_for_names_only() -> None:
    calls: list[tuple[str, str]] = []

    def resolve(field: str, name: str) -> str:
        calls.append((field, name))
        return ULID_A.lower()

    node = parse_selector({"ownership_info.user_id": {"$in": ["bob", EXP7]}},
                          resolve_name=resolve)
    assert to_sql(node) == ("user_id IN (?, ?)", [ULID_A, EXP7])
    assert calls == [("user_id", "bob")]


def _nested(depth: int) -> dict[str, Any]:
    selector: dict[str, Any] = {"label": "a"}
    for _ in range(depth):
        selector = {"$or": [selector]}
    return selector


ERROR_CASES: list[tuple[str, Any, str]] = [
    ("selector is a list", [1, 2], r"selector must be a JSON object.*list"),
    ("selector is text", "label", r"selector must be a JSON object.*str"),
    ("non-text key", {1: "a"}, r"keys must be text"),
    ("empty segment", {"value..x": 1}, r"'value\.\.x' has an empty segment"),
    ("leading dot", {".value": 1}, r"empty segment"),
    ("trailing dot", {"value.": 1}, r"empty segment"),
    ("empty key", {"": 1}, r"non-empty"),
    ("$ in a segment", {"value.$x": 1}, r"segment '\$x' contains '\$'"),
    ("$ inside a segment", {"value.a$b": 1}, r"contains '\$'"),
    ("quote in a segment", {'value.a"b': 1}, r"quote or backslash"),
    ("NUL in a segment", {"value.a\x00b": 1}, r"NUL character"),
    ("$where", {"$where": "this.a == 1"},
     r"unsupported query operator \$where: server-side JavaScript.*supported operators: \$eq"),
    ("$expr", {"$expr": {"$gt": ["$a", 1]}}, r"\$expr.*supported operators"),
    ("$text", {"$text": {"$search": "x"}}, r"unsupported query operator \$text"),
    ("$function in a field", {"value": {"$function": {}}},
     r"\$function \(field 'value'\).*JavaScript"),
    ("unknown field operator", {"label": {"$foo": 1}},
     r"unsupported query operator \$foo \(field 'label'\): unknown operator; supported"),
    ("$elemMatch", {"value.a": {"$elemMatch": {"x": 1}}}, r"\$elemMatch"),
    ("$size", {"value.a": {"$size": 2}}, r"\$size"),
    ("$not at the top", {"$not": {"label": "a"}}, r"\$not applies to a field"),
    ("$and not a list", {"$and": {"label": "a"}}, r"\$and needs a non-empty list"),
    ("$and empty", {"$and": []}, r"\$and needs a non-empty list"),
    ("$or of non-objects", {"$or": [1]}, r"selector must be a JSON object"),
    ("$nor not a list", {"$nor": "x"}, r"\$nor needs a non-empty list"),
    ("$in not a list", {"label": {"$in": "a"}}, r"\$in needs a list"),
    ("$nin not a list", {"label": {"$nin": 5}}, r"\$nin needs a list"),
    ("$regex not text", {"label": {"$regex": 5}}, r"\$regex needs a pattern string"),
    ("invalid regex", {"label": {"$regex": "("}}, r"invalid \$regex '\('"),
    ("bad option", {"label": {"$regex": "a", "$options": "ig"}}, r"unsupported \$options 'g'"),
    ("$options alone", {"label": {"$options": "i"}}, r"\$options needs a \$regex"),
    ("$exists not bool", {"label": {"$exists": "yes"}}, r"\$exists needs true or false"),
    ("$exists null", {"label": {"$exists": None}}, r"\$exists needs true or false"),
    ("$not text", {"label": {"$not": "a"}}, r"\$not needs an operator object"),
    ("$not empty", {"label": {"$not": {}}}, r"\$not needs an operator object"),
    ("$not plain object", {"label": {"$not": {"a": 1}}}, r"\$not needs an operator object"),
    ("operators mixed with keys", {"value": {"$gt": 1, "x": 2}}, r"cannot mix operators"),
    ("ownership_info alone", {"ownership_info": {"user_id": ULID_A}},
     r"ownership_info\.<field>.*user_id, experiment_id"),
    ("unknown ownership field", {"ownership_info.foo_id": "x"}, r"one of user_id"),
    ("ownership sub-path", {"ownership_info.user_id.x": 1}, r"ownership_info\.<field>"),
    ("column sub-path", {"label.x": 1}, r"label is not an object"),
    ("empty name", {"ownership_info.user_id": "  "}, r"must not be empty"),
    ("unparsable timestamp", {"data_timestamp": "yesterday"}, r"not a timestamp: 'yesterday'"),
    ("timestamp vs number", {"data_timestamp": {"$gt": 5}}, r"ISO-8601 text or a datetime"),
    ("range on an object", {"value.t": {"$gt": {"a": 1}}}, r"not objects or arrays"),
    ("NaN", {"value.t": float("nan")}, r"not a JSON number"),
    ("a set", {"value.t": {1, 2}}, r"cannot compare with a set"),
    ("bytes in a list", {"value.t": {"$in": [b"x"]}}, r"cannot compare with a bytes"),
    ("NaN inside an object", {"value": {"a": float("inf")}}, r"not JSON"),
    ("regex as $eq", {"label": {"$eq": re.compile("a")}}, r"use \$regex"),
    ("too deep", _nested(40), r"nests deeper than 32"),
]


@pytest.mark.parametrize(("selector", "message"),
                         [pytest.param(s, m, id=name) for name, s, m in ERROR_CASES])
def test_bad_selectors_raise_query_error(selector: Any, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_selector(selector)


def test_query_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_selector({"$where": "1"})


def test_too_many_parameters_is_refused() -> None:
    node = parse_selector({"value.t": {"$in": list(range(10_000))}})
    with pytest.raises(QueryError, match="too large"):
        to_sql(node)


# -- sort keys, statements, cursors ------------------------------------------------------

SORT_CASES = [
    ("default", None, [SortKey("data_timestamp", True)]),
    ("empty text", "", [SortKey("data_timestamp", True)]),
    ("descending text", "-data_timestamp", [SortKey("data_timestamp", True)]),
    ("several", "label, -value.t", [SortKey("label", False), SortKey("value.t", True)]),
    ("plus", "+label", [SortKey("label", False)]),
    ("pairs", [("label", 1), ("size_bytes", -1)],
     [SortKey("label", False), SortKey("size_bytes", True)]),
    ("words", [("label", "DESC")], [SortKey("label", True)]),
    ("mapping", {"ownership_info.user_id": -1}, [SortKey("ownership_info.user_id", True)]),
    ("list of text", ["-label", "_id"], [SortKey("label", True), SortKey("_id", False)]),
]


@pytest.mark.parametrize(("sort", "expected"),
                         [pytest.param(s, e, id=name) for name, s, e in SORT_CASES])
def test_parse_sort(sort: Any, expected: list[SortKey]) -> None:
    assert parse_sort(sort) == expected


@pytest.mark.parametrize(("sort", "message"), [
    ([("label", 2)], r"must be 1 \(ascending\) or -1"),
    ([("label", True)], r"must be 1 \(ascending\) or -1"),
    ("label,label", r"given twice"),
    ("_id,datapoint_id", r"given twice"),
    ("ownership_info", r"ownership_info\.<field>"),
    ("value..t", r"empty segment"),
    ("label,-", r"empty sort key"),
    ([3], r"a sort key is a field path"),
    (5, r"sort must be text"),
    (",".join(f"value.k{i}" for i in range(9)), r"at most 8 sort keys"),
])
def test_bad_sorts_raise_query_error(sort: Any, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        parse_sort(sort)


DEFAULT_CURSOR = make_cursor(["2026-01-02T00:00:00.000000Z"], ULID_A,
                             [SortKey("data_timestamp", True)])

SELECT_CASES: list[tuple[str, dict[str, Any], str, list[Any]]] = [
    ("everything, newest first", {},
     "SELECT id FROM datapoints WHERE deleted = 0 ORDER BY data_timestamp DESC, id DESC", []),
    ("selector and limit", {"selector": {"label": "a"}, "limit": 10},
     "SELECT id FROM datapoints WHERE deleted = 0 AND (label = ?) "
     "ORDER BY data_timestamp DESC, id DESC LIMIT ?", ["a", 10]),
    ("columns", {"columns": "id, label", "limit": 1},
     "SELECT id, label FROM datapoints WHERE deleted = 0 "
     "ORDER BY data_timestamp DESC, id DESC LIMIT ?", [1]),
    ("ascending: id follows the last key", {"sort": "label"},
     "SELECT id FROM datapoints WHERE deleted = 0 ORDER BY label ASC, id ASC", []),
    ("JSON sort key", {"sort": [("value.t", -1)], "limit": 5},
     "SELECT id FROM datapoints WHERE deleted = 0 "
     "ORDER BY json_extract(value, ?) DESC, id DESC LIMIT ?", [T, 5]),
    ("sorting by id needs no tie-breaker", {"sort": "-_id"},
     "SELECT id FROM datapoints WHERE deleted = 0 ORDER BY id DESC", []),
    ("cursor on the default sort seeks in the timestamp index",
     {"selector": {"label": "a"}, "limit": 10, "cursor": DEFAULT_CURSOR},
     "SELECT id FROM datapoints WHERE deleted = 0 AND (label = ?) "
     "AND data_timestamp <= ? AND (data_timestamp < ? OR (data_timestamp = ? AND id < ?)) "
     "ORDER BY data_timestamp DESC, id DESC LIMIT ?",
     ["a", "2026-01-02T00:00:00.000000Z", "2026-01-02T00:00:00.000000Z",
      "2026-01-02T00:00:00.000000Z", ULID_A, 10]),
    ("cursor on a nullable ascending key",
     {"sort": "size_bytes", "cursor": make_cursor([100], ULID_A, [SortKey("size_bytes", False)])},
     "SELECT id FROM datapoints WHERE deleted = 0 AND size_bytes >= ? AND "
     "(size_bytes > ? OR (size_bytes = ? AND id > ?)) ORDER BY size_bytes ASC, id ASC",
     [100, 100, 100, ULID_A]),
    ("cursor after a NULL, ascending",
     {"sort": "size_bytes", "cursor": make_cursor([None], ULID_A, [SortKey("size_bytes", False)])},
     "SELECT id FROM datapoints WHERE deleted = 0 AND "
     "(size_bytes IS NOT NULL OR (size_bytes IS NULL AND id > ?)) "
     "ORDER BY size_bytes ASC, id ASC", [ULID_A]),
    ("cursor on a nullable descending key",
     {"sort": "-size_bytes", "cursor": make_cursor([100], ULID_A, [SortKey("size_bytes", True)])},
     "SELECT id FROM datapoints WHERE deleted = 0 AND "
     "((size_bytes < ? OR size_bytes IS NULL) OR (size_bytes = ? AND id < ?)) "
     "ORDER BY size_bytes DESC, id DESC", [100, 100, ULID_A]),
    ("cursor after a NULL, descending: only NULLs remain",
     {"sort": "-value.t", "cursor": make_cursor([None], ULID_A, [SortKey("value.t", True)])},
     "SELECT id FROM datapoints WHERE deleted = 0 AND json_extract(value, ?) IS NULL AND "
     "id < ? ORDER BY json_extract(value, ?) DESC, id DESC",
     [T, ULID_A, T]),
]


@pytest.mark.parametrize(("kwargs", "expected_sql", "expected_params"),
                         [pytest.param(k, q, p, id=name) for name, k, q, p in SELECT_CASES])
def test_build_select(kwargs: dict[str, Any], expected_sql: str,
                      expected_params: list[Any]) -> None:
    kwargs = dict(kwargs)
    plan = build_select(kwargs.pop("selector", None), **kwargs)
    assert isinstance(plan, SelectPlan)
    assert (plan.sql, plan.params) == (expected_sql, expected_params)
    assert plan.sql.count("?") == len(plan.params)


def test_build_select_accepts_a_parsed_node() -> None:
    node = parse_selector({"label": "a"})
    assert build_select(node).sql == build_select({"label": "a"}).sql


def test_build_count() -> None:
    assert build_count({"label": "a"}) == (
        "SELECT COUNT(*) FROM datapoints WHERE deleted = 0 AND (label = ?)", ["a"])
    assert build_count(None) == ("SELECT COUNT(*) FROM datapoints WHERE deleted = 0", [])


@pytest.mark.parametrize("limit", [0, -1, MAX_LIMIT + 1, True, 1.5, "10"])
def test_bad_limits_raise_query_error(limit: Any) -> None:
    with pytest.raises(QueryError, match="limit must be a whole number"):
        build_select({}, limit=limit)


def _b64(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(("cursor", "message"), [
    ("not a cursor!", "invalid cursor"),
    ("", "invalid cursor"),
    (_b64([1, 2]), "invalid cursor"),
    (base64.urlsafe_b64encode(b"\xff\xfe").decode(), "invalid cursor"),
    (_b64({"k": [["data_timestamp", True]], "v": [], "id": ULID_A}), "invalid cursor"),
    (_b64({"k": [["data_timestamp", True]], "v": [{"a": 1}], "id": ULID_A}), "invalid cursor"),
    (_b64({"k": [["data_timestamp", True]], "v": ["x"], "id": 5}), "invalid cursor"),
    (_b64({"k": [["label", False]], "v": ["x"], "id": ULID_A}), "different sort order"),
])
def test_bad_cursors_raise_query_error(cursor: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        build_select({}, cursor=cursor)


def test_cursor_is_opaque_urlsafe_text() -> None:
    cursor = make_cursor(["a/b+c?", 1.5, None], ULID_A,
                         [SortKey("label", False), SortKey("value.t", True),
                          SortKey("size_bytes", False)])
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)
    with pytest.raises(QueryError):
        make_cursor([b"x"], ULID_A, [SortKey("label", False)])
    with pytest.raises(QueryError):
        make_cursor([], ULID_A, [SortKey("label", False)])


# -- end to end against SQLite -----------------------------------------------------------

ID = {
    "int20": "01JQ00000000000000000000A1",
    "real25": "01JQ00000000000000000000A2",
    "text30": "01JQ00000000000000000000A3",
    "true": "01JQ00000000000000000000A4",
    "one": "01JQ00000000000000000000A5",
    "tnull": "01JQ00000000000000000000A6",
    "tmissing": "01JQ00000000000000000000A7",
    "array": "01JQ00000000000000000000A8",
    "object": "01JQ00000000000000000000A9",
    "scalar": "01JQ00000000000000000000B1",
    "vnull": "01JQ00000000000000000000B2",
    "file": "01JQ00000000000000000000B3",
    "s3": "01JQ00000000000000000000B4",
    "deleted": "01JQ00000000000000000000B5",
}
KEY = {ident: key for key, ident in ID.items()}
LIVE = set(ID) - {"deleted"}
JSON_ROWS = LIVE - {"file", "s3"}

# key: (label, data_type, data_timestamp, value, extra columns)
ROWS: dict[str, tuple[Optional[str], str, str, Optional[Any], dict[str, Any]]] = {
    "int20": ("temp-a", "json", "2026-01-01T00:00:00.000000Z",
              {"t": 20, "tags": ["a", "b"], "n": {"x": 1, "y": [1, 2]}, "s": "abc"},
              {"experiment_id": EXP42, "user_id": ALICE}),
    "real25": ("Temp-b", "json", "2026-01-02T00:00:00.000000Z",
               {"t": 25.5, "tags": ["b"], "s": "Abd"}, {"experiment_id": EXP42}),
    "text30": ("pressure", "json", "2026-01-03T00:00:00.000000Z",
               {"t": "30", "tags": "a", "s": "line1\nline2"}, {"experiment_id": EXP7}),
    "true": ("flag", "json", "2026-01-03T00:00:00.000000Z", {"t": True, "ok": True}, {}),
    "one": ("one", "json", "2026-01-03T00:00:00.000000Z", {"t": 1, "ok": False}, {}),
    "tnull": ("nothing", "json", "2026-01-04T00:00:00.000000Z", {"t": None}, {}),
    "tmissing": ("no-t", "json", "2026-01-05T00:00:00.000000Z", {"other": 1}, {}),
    "array": ("arr", "json", "2026-01-06T00:00:00.000000Z",
              {"t": [5, 30], "tags": [["a"], "c"], "items": [{"k": "first"}, {"k": "second"}]},
              {}),
    "object": (None, "json", "2026-01-07T00:00:00.000000Z",
               {"t": {"a": 1, "b": [1, 2]}, "y": [1, None]}, {}),
    "scalar": ("answer", "json", "2026-01-08T00:00:00.000000Z", 42, {}),
    "vnull": ("null value", "json", "2026-01-09T00:00:00.000000Z", None, {}),
    "file": ("log.txt", "file", "2026-01-10T00:00:00.000000Z", None,
             {"path": "/data/log.txt", "filename": "log.txt", "size_bytes": 1000,
              "sha256": "ab" * 32, "custom_metadata": {"experiment_name": "EXP42"},
              "experiment_id": EXP42}),
    "s3": ("image.tif", "object_storage", "2026-01-10T00:00:00.000000Z", None,
           {"size_bytes": 5000, "bucket_name": "lab", "object_name": "k/image.tif",
            "storage_endpoint": "localhost:9000", "url": "http://localhost:9000/lab/k",
            "extra": {"bench_id": "bench-1", "sync": {"revision": 3}}}),
    "deleted": ("temp-deleted", "json", "2026-01-11T00:00:00.000000Z", {"t": 100},
                {"deleted": 1, "experiment_id": EXP42}),
}


def _insert(conn: sqlite3.Connection, key: str) -> None:
    label, data_type, stamp, value, extra = ROWS[key]
    extra = dict(extra)
    row: dict[str, Any] = {
        "id": ID[key], "label": label, "data_type": data_type, "data_timestamp": stamp,
        "value": json.dumps(value, separators=(",", ":")) if data_type == "json" else None,
        "custom_metadata": json.dumps(extra.pop("custom_metadata", {}), sort_keys=True),
        "extra": json.dumps(extra.pop("extra", {}), sort_keys=True),
        "created_at": stamp, "updated_at": stamp, **extra,
    }
    columns = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    conn.execute(f"INSERT INTO datapoints ({columns}) VALUES ({marks})", list(row.values()))


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    register_functions(conn)
    for key in ROWS:
        _insert(conn, key)
    yield conn
    conn.close()


def matching(conn: sqlite3.Connection, selector: Any, **kwargs: Any) -> set[str]:
    plan = build_select(selector, **kwargs)
    return {KEY[row[0]] for row in conn.execute(plan.sql, plan.params)}


E2E_CASES: list[tuple[str, Any, set[str]]] = [
    # columns
    ("everything live", {}, LIVE),
    ("label", {"label": "temp-a"}, {"int20"}),
    ("label null", {"label": None}, {"object"}),
    ("label $ne (null labels included)", {"label": {"$ne": "temp-a"}}, LIVE - {"int20"}),
    ("number vs text column", {"label": 5}, set()),
    ("data_type", {"data_type": {"$in": ["file", "object_storage"]}}, {"file", "s3"}),
    ("_id", {"_id": ID["int20"].lower()}, {"int20"}),
    ("datapoint_id", {"datapoint_id": ID["s3"]}, {"s3"}),
    ("size_bytes range", {"size_bytes": {"$gt": 999, "$lt": 5000}}, {"file"}),
    ("size_bytes $nin matches missing", {"size_bytes": {"$nin": [1000]}}, LIVE - {"file"}),
    ("url exists", {"url": {"$exists": True}}, {"s3"}),
    ("label regex, case-insensitive", {"label": {"$regex": "^temp", "$options": "i"}},
     {"int20", "real25"}),
    ("label regex, case-sensitive", {"label": {"$regex": "^temp"}}, {"int20"}),
    ("label $not regex (null label matches)", {"label": {"$not": {"$regex": "^temp"}}},
     LIVE - {"int20"}),
    ("sha256", {"sha256": "ab" * 32}, {"file"}),
    ("revision default", {"revision": 1}, LIVE),
    ("sync_state", {"sync_state": "pending"}, LIVE),
    # ownership, names resolved
    ("experiment by name", {"ownership_info.experiment_id": "EXP42"},
     {"int20", "real25", "file"}),
    ("experiment by other-cased name", {"ownership_info.experiment_id": "exp42"},
     {"int20", "real25", "file"}),
    ("experiment by lower-case ULID", {"ownership_info.experiment_id": EXP7.lower()},
     {"text30"}),
    ("experiment $in names", {"ownership_info.experiment_id": {"$in": ["EXP7", "EXP42"]}},
     {"int20", "real25", "file", "text30"}),
    ("experiment $ne name", {"ownership_info.experiment_id": {"$ne": "EXP42"}},
     LIVE - {"int20", "real25", "file"}),
    ("user and experiment", {"ownership_info.user_id": "Alice",
                             "ownership_info.experiment_id": "EXP42"}, {"int20"}),
    ("unknown name matches nothing", {"ownership_info.experiment_id": "EXP999"}, set()),
    # timestamps, any zone
    ("timestamp range with zones",
     {"data_timestamp": {"$gte": "2026-01-02T05:00:00+05:00", "$lt": "2026-01-04"}},
     {"real25", "text30", "true", "one"}),
    ("timestamp equality from an offset", {"data_timestamp": "2026-01-02T01:00:00+01:00"},
     {"real25"}),
    ("timestamp datetime", {"data_timestamp": {"$gte": datetime(2026, 1, 10)}},
     {"file", "s3"}),
    ("timestamp aware datetime",
     {"data_timestamp": {"$lt": datetime(2026, 1, 1, 19, tzinfo=timezone(timedelta(hours=-5)))}},
     {"int20"}),
    # JSON: type bracketing
    ("number equality", {"value.t": 20}, {"int20"}),
    ("20.0 equals 20", {"value.t": 20.0}, {"int20"}),
    ("1 is not true", {"value.t": 1}, {"one"}),
    ("true is not 1", {"value.t": True}, {"true"}),
    ("false", {"value.ok": False}, {"one"}),
    ("text is not a number", {"value.t": "30"}, {"text30"}),
    ("$gt numbers only (array element too)", {"value.t": {"$gt": 20}}, {"real25", "array"}),
    ("$gte", {"value.t": {"$gte": 20}}, {"int20", "real25", "array"}),
    ("$lt numbers only (no true, no null)", {"value.t": {"$lt": 10}}, {"one", "array"}),
    ("$gt text only", {"value.t": {"$gt": "2"}}, {"text30"}),
    ("$gt false", {"value.t": {"$gt": False}}, {"true"}),
    ("$lte true: both booleans", {"value.ok": {"$lte": True}}, {"true", "one"}),
    # JSON: null and missing
    ("null matches null and missing", {"value.t": None},
     {"tnull", "tmissing", "scalar", "vnull", "file", "s3"}),
    ("$ne null: present and not null", {"value.t": {"$ne": None}},
     {"int20", "real25", "text30", "true", "one", "array", "object"}),
    ("$exists", {"value.t": {"$exists": True}},
     {"int20", "real25", "text30", "true", "one", "tnull", "array", "object"}),
    ("$exists false", {"value.t": {"$exists": False}},
     {"tmissing", "scalar", "vnull", "file", "s3"}),
    ("value null: json null and file rows", {"value": None}, {"vnull", "file", "s3"}),
    ("value exists: every json row", {"value": {"$exists": True}}, JSON_ROWS),
    ("top-level scalar value", {"value": 42}, {"scalar"}),
    ("$gte null is null equality", {"value.t": {"$gte": None}},
     {"tnull", "tmissing", "scalar", "vnull", "file", "s3"}),
    ("$gt null matches nothing", {"value.t": {"$gt": None}}, set()),
    # JSON: $ne / $nin match missing
    ("$ne matches missing", {"value.t": {"$ne": 20}}, LIVE - {"int20"}),
    ("$nin matches missing", {"value.t": {"$nin": [20, "30", True]}},
     LIVE - {"int20", "text30", "true"}),
    ("$ne on an array member excludes the array", {"value.t": {"$ne": 5}}, LIVE - {"array"}),
    # JSON: arrays
    ("array contains", {"value.tags": "a"}, {"int20", "text30"}),
    ("array contains, $in", {"value.tags": {"$in": ["b", "c"]}}, {"int20", "real25", "array"}),
    ("whole-array equality", {"value.tags": ["a", "b"]}, {"int20"}),
    ("array element that is an array", {"value.tags": ["a"]}, {"array"}),
    ("array order matters", {"value.tags": ["b", "a"]}, set()),
    ("array with null", {"value.y": [1, None]}, {"object"}),
    ("array index (an array found there is searched too)", {"value.tags.0": "a"},
     {"int20", "array"}),
    ("array index into objects", {"value.items.1.k": "second"}, {"array"}),
    ("array element $gt", {"value.t": {"$gt": 25.5}}, {"array"}),
    # JSON: objects
    ("object equality", {"value.n": {"x": 1, "y": [1, 2]}}, {"int20"}),
    ("object equality: key order matters", {"value.n": {"y": [1, 2], "x": 1}}, set()),
    ("object equality: 1.0 is not 1 inside objects", {"value.n": {"x": 1.0, "y": [1, 2]}},
     set()),
    ("nested path", {"value.n.y": 2}, {"int20"}),
    ("object is not matched by member", {"value.t": {"a": 1}}, set()),
    ("object with nested array", {"value.t": {"a": 1, "b": [1, 2]}}, {"object"}),
    ("dotted into an object", {"value.t.b": 1}, {"object"}),
    # JSON: regex
    ("value regex", {"value.s": {"$regex": "^ab"}}, {"int20"}),
    ("value regex i", {"value.s": {"$regex": "^ab", "$options": "i"}}, {"int20", "real25"}),
    ("value regex m", {"value.s": {"$regex": "^line2$", "$options": "m"}}, {"text30"}),
    ("value regex without m", {"value.s": {"$regex": "^line2$"}}, set()),
    ("regex only matches text", {"value.t": {"$regex": "3"}}, {"text30"}),
    ("regex on array elements", {"value.tags": {"$regex": "^c$"}}, {"array"}),
    ("compiled regex", {"value.s": re.compile("B", re.I)}, {"int20", "real25"}),
    # extra fields and custom metadata
    ("extra field", {"bench_id": "bench-1"}, {"s3"}),
    ("nested extra field", {"sync.revision": {"$gte": 3}}, {"s3"}),
    ("extra field missing", {"bench_id": {"$exists": False}}, LIVE - {"s3"}),
    ("custom metadata", {"custom_metadata.experiment_name": "EXP42"}, {"file"}),
    ("custom metadata regex",
     {"custom_metadata.experiment_name": {"$regex": "exp", "$options": "i"}}, {"file"}),
    # logic
    ("$or", {"$or": [{"data_type": "file"}, {"value.t": True}]}, {"file", "true"}),
    ("the brief's $or", {"$or": [{"data_type": "file"}, {"value": {"$exists": True}}]},
     JSON_ROWS | {"file"}),
    ("$and", {"$and": [{"value.t": {"$gte": 1}}, {"value.t": {"$lt": 21}}]},
     {"int20", "one", "array"}),
    ("$nor", {"$nor": [{"value.t": {"$exists": True}}, {"data_type": "file"}]},
     {"tmissing", "scalar", "vnull", "s3"}),
    ("$not on JSON includes missing", {"value.t": {"$not": {"$gt": 10}}},
     LIVE - {"int20", "real25", "array"}),
    ("$not of $in", {"value.tags": {"$not": {"$in": ["a"]}}}, LIVE - {"int20", "text30"}),
    ("$not of null equality", {"label": {"$not": {"$eq": None}}}, LIVE - {"object"}),
    ("deleted rows never match", {"label": "temp-deleted"}, set()),
    ("the brief's first example",
     {"ownership_info.experiment_id": EXP42, "value.t": {"$gt": 20}}, {"real25"}),
]


@pytest.mark.parametrize(("selector", "expected"),
                         [pytest.param(s, e, id=name) for name, s, e in E2E_CASES])
def test_selectors_find_the_right_rows(db: sqlite3.Connection, selector: Any,
                                       expected: set[str]) -> None:
    assert matching(db, selector) == expected
    sql, params = build_count(selector)
    assert db.execute(sql, params).fetchone()[0] == len(expected)


def test_name_resolution_uses_the_given_resolver(db: sqlite3.Connection) -> None:
    pinned = {("experiment_id", "Q-2026"): EXP7}
    found = matching(db, {"ownership_info.experiment_id": "Q-2026"},
                     resolve_name=lambda field, name: pinned[(field, name)])
    assert found == {"text30"}
    sql, params = build_count({"ownership_info.experiment_id": "Q-2026"},
                              resolve_name=lambda field, name: pinned[(field, name)])
    assert db.execute(sql, params).fetchone()[0] == 1


def test_regexp_function() -> None:
    conn = sqlite3.connect(":memory:")
    register_functions(conn)
    assert conn.execute("SELECT regexp('^a', 'i', 'Abc'), regexp('^a', '', 'Abc'), "
                        "regexp('a', '', 5), regexp('a', '', NULL), 'xay' REGEXP 'a'"
                        ).fetchone() == (1, 0, 0, 0, 1)
    conn.close()


# -- paging ------------------------------------------------------------------------------


def _rows(conn: sqlite3.Connection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, values)) for values in cursor.fetchall()]


def page(conn: sqlite3.Connection, selector: Any, *, sort: Any, limit: int,
         cursor: Optional[str]) -> tuple[list[str], Optional[str]]:
    """What the store does: one page of rows and the cursor made from its last row."""
    plan = build_select(selector, sort=sort, limit=limit, cursor=cursor, columns="*")
    rows = _rows(conn, plan.sql, plan.params)
    next_cursor = None
    if len(rows) == limit:
        last = rows[-1]
        next_cursor = make_cursor([sort_value(last, key) for key in plan.sort], last["id"],
                                  plan.sort)
    return [KEY[row["id"]] for row in rows], next_cursor


def all_pages(conn: sqlite3.Connection, selector: Any, sort: Any, limit: int) -> list[str]:
    seen: list[str] = []
    cursor: Optional[str] = None
    for _ in range(100):
        keys, cursor = page(conn, selector, sort=sort, limit=limit, cursor=cursor)
        seen += keys
        if cursor is None:
            return seen
    raise AssertionError("paging did not end")


SORTS = [
    None,
    "data_timestamp",
    "label",
    "-label",
    "value.t",
    "-value.t",
    "-size_bytes",
    "size_bytes",
    [("data_type", 1), ("label", -1)],
    [("value.tags", 1), ("data_timestamp", -1)],
    "-value",
    "custom_metadata.experiment_name,-_id",
    "_id",
    "bench_id",
]


@pytest.mark.parametrize("sort", SORTS, ids=[str(s) for s in SORTS])
@pytest.mark.parametrize("limit", [1, 2, 3, 5])
def test_paging_visits_every_row_once_in_order(db: sqlite3.Connection, sort: Any,
                                               limit: int) -> None:
    plan = build_select({}, sort=sort)
    full = [KEY[row[0]] for row in db.execute(plan.sql, plan.params)]
    assert set(full) == LIVE and len(full) == len(LIVE)
    assert all_pages(db, {}, sort, limit) == full


def test_paging_with_a_selector(db: sqlite3.Connection) -> None:
    selector = {"value.t": {"$exists": True}}
    assert all_pages(db, selector, "-value.t", 2) == [
        KEY[row[0]] for row in db.execute(*_sql_params(build_select(selector, sort="-value.t")))]


def _sql_params(plan: SelectPlan) -> tuple[str, list[Any]]:
    return plan.sql, plan.params


def test_default_order_is_newest_first_then_id(db: sqlite3.Connection) -> None:
    plan = build_select({"data_timestamp": "2026-01-03"})
    assert [KEY[r[0]] for r in db.execute(plan.sql, plan.params)] == ["one", "true", "text30"]


def test_sort_value_matches_sqlite(db: sqlite3.Connection) -> None:
    for path in ("value", "value.t", "value.n", "value.tags.0", "value.items.1.k", "label",
                 "size_bytes", "bench_id", "sync.revision", "custom_metadata.experiment_name"):
        key = SortKey(path, False)
        plan = build_select({}, sort=[(path, 1)], columns="*")
        field = resolve_field(path)
        expression = f"json_extract({field.column}, ?)" if field.is_json else field.column
        extra = [field.json_path] if field.is_json else []
        for row in _rows(db, plan.sql, plan.params):
            expected = db.execute(f"SELECT {expression} FROM datapoints WHERE id = ?",
                                  [*extra, row["id"]]).fetchone()[0]
            assert sort_value(row, key) == expected, (path, KEY[row["id"]])
            assert type(sort_value(row, key)) is type(expected)


def test_pages_are_stable_when_new_rows_arrive(db: sqlite3.Connection) -> None:
    first, cursor = page(db, {}, sort=None, limit=4, cursor=None)
    # A capture newer than everything, and one in the middle of the next page.
    db.execute("INSERT INTO datapoints (id, label, data_type, data_timestamp, value, "
               "created_at, updated_at) VALUES (?, 'new', 'json', ?, '1', ?, ?)",
               ["01JQ00000000000000000000Z1", "2027-01-01T00:00:00.000000Z", "x", "x"])
    KEY["01JQ00000000000000000000Z1"] = "newest"
    try:
        second, _ = page(db, {}, sort=None, limit=4, cursor=cursor)
    finally:
        del KEY["01JQ00000000000000000000Z1"]
    assert not set(first) & set(second)
    assert "newest" not in second
    assert first == ["s3", "file", "vnull", "scalar"]
    assert second == ["object", "array", "tmissing", "tnull"]


def test_a_cursor_from_another_sort_is_refused(db: sqlite3.Connection) -> None:
    _, cursor = page(db, {}, sort="label", limit=2, cursor=None)
    assert cursor is not None
    with pytest.raises(QueryError, match="different sort order"):
        build_select({}, sort="-label", cursor=cursor)


# -- the indexes are used ------------------------------------------------------------------


def plan_of(conn: sqlite3.Connection, selector: Mapping[str, Any], **kwargs: Any) -> str:
    plan = build_select(selector, **kwargs)
    steps = conn.execute("EXPLAIN QUERY PLAN " + plan.sql, plan.params).fetchall()
    return " | ".join(step[3] for step in steps)


# Equality lookups sort their (few) matches; whatever is driven by the timestamp index
# must not sort at all beyond the id tie-break ("RIGHT PART OF ORDER BY").
@pytest.mark.parametrize(("selector", "kwargs", "index", "may_sort"), [
    # Label, experiment and user equality read (field, data_timestamp) indexes in order.
    ({"label": "temp-a"}, {"limit": 100}, "USING INDEX ix_datapoints_label_time (label=?)", False),
    ({"ownership_info.experiment_id": "EXP42"}, {"limit": 100},
     "USING INDEX ix_datapoints_experiment_id_time (experiment_id=?)", False),
    ({"ownership_info.user_id": "alice"}, {"limit": 100},
     "USING INDEX ix_datapoints_user_id_time (user_id=?)", False),
    ({"ownership_info.workflow_id": ULID_A}, {},
     "USING INDEX ix_datapoints_workflow_id (workflow_id=?)", True),
    ({"_id": ULID_A}, {}, "USING INDEX sqlite_autoindex_datapoints_1 (id=?)", True),
    ({"data_timestamp": {"$gte": "2026-01-02", "$lt": "2026-01-05"}},
     {"sort": "-data_timestamp", "limit": 100},
     "USING INDEX ix_datapoints_data_timestamp (data_timestamp>? AND data_timestamp<?)", False),
    ({"data_timestamp": {"$gte": "2026-01-02"}}, {"limit": 100},
     "USING INDEX ix_datapoints_data_timestamp (data_timestamp>?)", False),
    ({}, {"limit": 100}, "SCAN datapoints USING INDEX ix_datapoints_data_timestamp", False),
    ({}, {"limit": 100, "cursor": DEFAULT_CURSOR},
     "USING INDEX ix_datapoints_data_timestamp (data_timestamp<?)", False),
    ({"value.t": {"$gt": 20}}, {"limit": 100},
     "SCAN datapoints USING INDEX ix_datapoints_data_timestamp", False),
])
def test_indexes_are_used(db: sqlite3.Connection, selector: Mapping[str, Any],
                          kwargs: dict[str, Any], index: str, may_sort: bool) -> None:
    text = plan_of(db, selector, **kwargs)
    assert index in text
    if not may_sort:
        assert "USE TEMP B-TREE FOR ORDER BY" not in text
