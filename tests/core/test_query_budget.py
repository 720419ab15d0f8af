"""Query budgets: the regex engine (RE2), the structural limits and the time budget.

Issue #14, defect 3: ``{"label": {"$regex": "^(a+)+$"}}`` against a 33-character label
froze the whole service (Python's ``re`` backtracked inside SQLite, holding the GIL).
Table-driven where the cases are data (datasette's ``test_filters.py`` style).
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from app.core import query as querylang
from app.core.errors import QueryError, QueryTimeoutError, ValidationError
from app.core.models import ValueDataPoint
from app.core.query import (
    MAX_FIELD_PATH_CHARS,
    MAX_FIELD_PATH_SEGMENTS,
    MAX_IN_VALUES,
    MAX_REGEX_CHARS,
    MAX_SORT_KEYS,
    parse_selector,
    parse_sort,
    register_functions,
    time_budget,
    time_budget_setting,
)
from app.service import BenchService

#: Catastrophic for a backtracking engine: 2**32 ways to split 32 a's, none ends the text.
EVIL_LABEL = "a" * 32 + "b"
#: (pattern, labels it matches among EVIL_LABEL, "aaaa" and "label")
EVIL_PATTERNS = [
    ("^(a+)+$", {"aaaa"}),
    ("^(a|a)*$", {"aaaa"}),
    ("^(a|aa)+$", {"aaaa"}),
    ("(a*)*c", set()),
    ("^(\\w+\\s?)*!$", set()),
]


@pytest.fixture
def service(tmp_path: Path) -> Any:
    with BenchService(tmp_path / "bench") as bench:
        yield bench


def _labels(service: BenchService, labels: list[str]) -> None:
    service.submit_many([ValueDataPoint(label=label, value=index)
                         for index, label in enumerate(labels)])


# -- RE2: linear time -------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "matches"), EVIL_PATTERNS)
def test_catastrophic_patterns_finish_at_once(service: BenchService, pattern: str,
                                              matches: set[str]) -> None:
    # Before RE2 these never returned (and held the GIL, so nothing else ran either).
    _labels(service, [EVIL_LABEL, "aaaa", "label"])
    found = {dp.label for dp in service.query({"label": {"$regex": pattern}}).items}
    assert found == matches


# -- RE2: what it refuses, and how it says so -------------------------------------------

REFUSED = [
    # (pattern, words the message must contain)
    (r"(a)\1", "uses a backreference"),
    (r"(?P<x>a)(?P=x)", "uses a named backreference"),
    (r"(?<x>a)\k<x>", "uses a named backreference"),
    (r"a(?=b)", "uses a lookahead"),
    (r"a(?!b)", "uses a negative lookahead"),
    (r"(?<=a)b", "uses a lookbehind"),
    (r"(?<!a)b", "uses a negative lookbehind"),
    (r"(?>a+)b", "uses an atomic group"),
    (r"a++b", "uses a possessive quantifier"),
    (r"(?(1)a|b)", "uses a conditional group"),
    (r"(a(?R)?b)", "uses a recursive pattern"),
    (r"(?x) a", "uses the inline x flag (give it in $options instead)"),
    (r"end\Z", r"uses \Z (use \z, or $ without the m option)"),
    (r"a{1001}", "uses a repetition count above 1000"),
    ("(", "invalid $regex '(': missing ): ("),
    ("((((a{100}){100}){100}){100})", "uses a repetition count above 1000"),
]


@pytest.mark.parametrize(("pattern", "words"), REFUSED, ids=[p for p, _ in REFUSED])
def test_patterns_re2_cannot_run_are_refused_by_name(pattern: str, words: str) -> None:
    with pytest.raises(QueryError) as refused:
        parse_selector({"label": {"$regex": pattern}})
    message = str(refused.value)
    assert message.startswith("field 'label': ")
    assert words in message
    assert "RE2 syntax" in message or "invalid $regex" in message


def test_a_pattern_too_big_for_the_memory_budget_is_refused() -> None:
    # A counted repetition of a large class blows up the compiled program.
    with pytest.raises(QueryError, match="too complex"):
        parse_selector({"label": {"$regex": r"\pL{1000}"}})


# -- RE2: MongoDB's $options ------------------------------------------------------------

OPTIONS = [
    # (pattern, $options, text, matches)
    ("^temp", "", "Temperature", False),
    ("^temp", "i", "Temperature", True),
    ("^b$", "", "a\nb\nc", False),
    ("^b$", "m", "a\nb\nc", True),
    ("a.c", "", "a\nc", False),
    ("a.c", "s", "a\nc", True),
    ("ä", "i", "Ä", True),  # Unicode case folding
    ("^a b c$", "x", "abc", True),
    ("^a b c$", "x", "a b c", False),
    ("^a\\ b$", "x", "a b", True),  # an escaped space stays
    ("^a[ ]b$", "x", "a b", True),  # so does a space in a class
    ("^a[] ]b$", "x", "a b", True),  # ] first in a class is a literal
    ("^a[^] ]b$", "x", "a b", False),
    ("^a[[:space:]]b$", "x", "a b", True),
    ("^a # a comment\n b$", "x", "ab", True),
    ("^a\\Q # b\\E$", "x", "a # b", True),  # \Q…\E is literal, x or not
    ("^t.*$", "imsx", "T\nX", True),
]


@pytest.mark.parametrize(("pattern", "options", "text", "matches"), OPTIONS)
def test_regex_options(pattern: str, options: str, text: str, matches: bool) -> None:
    conn = sqlite3.connect(":memory:")
    register_functions(conn)
    parse_selector({"label": {"$regex": pattern, "$options": options}})  # accepted
    assert conn.execute("SELECT regexp(?, ?, ?)", (pattern, options, text)).fetchone() == \
        (int(matches),)
    conn.close()


def test_compiled_python_patterns_keep_their_flags() -> None:
    node = parse_selector({"label": re.compile("^a b$", re.I | re.X)})
    assert (node.pattern, node.flags) == ("^a b$", "ix")  # type: ignore[attr-defined]


# -- structural budgets -----------------------------------------------------------------

TOO_BIG = [
    # (selector, sort, message)
    ({"label": {"$in": ["x"] * (MAX_IN_VALUES + 1)}}, None,
     f"$in lists {MAX_IN_VALUES + 1} values; at most {MAX_IN_VALUES}"),
    ({"label": {"$nin": list(range(MAX_IN_VALUES + 1))}}, None, "$nin lists"),
    ({"label": {"$regex": "a" * (MAX_REGEX_CHARS + 1)}}, None,
     f"the $regex pattern is {MAX_REGEX_CHARS + 1} characters long; at most"),
    ({"value." + "a" * MAX_FIELD_PATH_CHARS: 1}, None,
     f"characters long; at most {MAX_FIELD_PATH_CHARS}"),
    ({"value" + ".a" * MAX_FIELD_PATH_SEGMENTS: 1}, None,
     f"segments; at most {MAX_FIELD_PATH_SEGMENTS}"),
    ({}, ",".join(f"value.k{i}" for i in range(MAX_SORT_KEYS + 1)),
     f"at most {MAX_SORT_KEYS} sort keys, got {MAX_SORT_KEYS + 1}"),
    ({}, [(f"value.k{i}", 1) for i in range(10_000)], "at most 8 sort keys, got 10000"),
    ({}, "value" + ".a" * MAX_FIELD_PATH_SEGMENTS, "segments; at most"),
    ({"$and": [{"$or": [{"label": "x"}]}] * 2}, None, None),  # fine: not deep
]


@pytest.mark.parametrize(("selector", "sort", "message"), TOO_BIG)
def test_structural_budgets(selector: Any, sort: Any, message: Any) -> None:
    def run() -> None:
        parse_selector(selector)
        parse_sort(sort)

    if message is None:
        run()
        return
    with pytest.raises(QueryError) as refused:
        run()
    assert message in str(refused.value)


# -- the time budget --------------------------------------------------------------------


def test_a_query_over_its_time_budget_is_stopped_with_a_sentence(service: BenchService) -> None:
    _labels(service, [f"label-{i}" for i in range(3000)])
    service.store.query_seconds = 1e-9  # spent by the first look at the clock
    scanning = {"value": {"$gte": 0}, "label": {"$regex": "^label-"}}
    with pytest.raises(QueryTimeoutError) as stopped:
        service.query(scanning, limit=10)
    assert str(stopped.value).startswith(
        "the query ran longer than its 1e-09-second budget and was stopped; narrow")
    with pytest.raises(QueryTimeoutError):
        service.count(scanning)
    # The reader goes back to the pool clean: with the budget back, the same query runs.
    service.store.query_seconds = querylang.DEFAULT_TIME_BUDGET_SECONDS
    assert service.count(scanning) == 3000
    assert len(service.query(scanning, limit=10).items) == 10


def test_keep_going_still_cancels_without_a_timeout(service: BenchService) -> None:
    _labels(service, [f"label-{i}" for i in range(3000)])
    with service.store.reader() as conn:
        with pytest.raises(sqlite3.OperationalError, match="interrupted"):
            with time_budget(conn, 60.0, keep_going=lambda: False):
                conn.execute("SELECT COUNT(*) FROM datapoints WHERE regexp('x', '', label)"
                             ).fetchone()


BUDGET_SETTINGS = [
    (None, querylang.DEFAULT_TIME_BUDGET_SECONDS),
    ({}, querylang.DEFAULT_TIME_BUDGET_SECONDS),
    ({"time_budget_seconds": 2}, 2.0),
    ({"time_budget_seconds": 0.5}, 0.5),
    ({"time_budget_seconds": 0}, ValidationError),
    ({"time_budget_seconds": -1}, ValidationError),
    ({"time_budget_seconds": "5"}, ValidationError),
    ({"time_budget_seconds": True}, ValidationError),
]


@pytest.mark.parametrize(("section", "expected"), BUDGET_SETTINGS)
def test_time_budget_setting(section: Any, expected: Any) -> None:
    if expected is ValidationError:
        with pytest.raises(ValidationError, match="query.time_budget_seconds must be"):
            time_budget_setting(section)
    else:
        assert time_budget_setting(section) == expected


def test_the_service_takes_the_budget_from_config(tmp_path: Path) -> None:
    with BenchService(tmp_path / "a") as bench:
        bench.paths.config_file.parent.mkdir(parents=True, exist_ok=True)
        bench.paths.config_file.write_text(json.dumps({"query": {"time_budget_seconds": 3}}))
    with BenchService(tmp_path / "a") as bench:
        assert bench.store.query_seconds == 3.0


CLI_REFUSALS = [
    # (config.json's query section, selector, the one line the CLI prints)
    (None, {"label": {"$regex": r"(a)\1"}},
     r"error: field 'label': $regex '(a)\\1' uses a backreference, which the bench cannot "
     "run: $regex uses RE2 syntax, which runs in linear time and has no backtracking "
     "(see docs/query-language.md)"),
    ({"time_budget_seconds": 1e-9}, {"value": {"$gte": 0}},
     "error: the query ran longer than its 1e-09-second budget and was stopped; narrow the "
     "selector (an exact label, an experiment, a time range) or ask for a page with a "
     "limit"),
]


@pytest.mark.parametrize(("section", "selector", "line"), CLI_REFUSALS)
def test_the_cli_says_why_in_one_sentence(section: Any, selector: Any, line: str) -> None:
    from click.testing import CliRunner

    from app.cli import cli
    from app.core.config import save_section
    from app.core.paths import bench_paths

    with BenchService() as bench:
        _labels(bench, [f"label-{i}" for i in range(3000)])
    save_section(bench_paths(), "query", section)
    for args in (["query", json.dumps(selector)], ["query", "--count", json.dumps(selector)]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1
        assert result.stderr.splitlines() == [line]
