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
   identifiers spliced into SQL text come from the fixed column table in ``fields``.

Semantics follow MongoDB where SQLite allows (type bracketing, null matches missing,
``$ne`` matches missing, array element matching); ``docs/query-language.md`` lists where
they differ. Every leaf yields 1 for a match and 0 or NULL otherwise; NULL always means
"no match", so negations (:class:`Not`, :class:`Nor`, ``$ne``, ``$nin``) wrap their operand in
``coalesce(…, 0)`` to stay two-valued, as MongoDB's negations are.

:func:`build_select` adds keyset paging: rows are ordered by the sort keys and then ``id``;
a cursor holds the last row's sort values and id, and the next page starts strictly after
them, so a page costs O(limit) and rows inserted meanwhile neither shift nor repeat pages.

Every query is held to budgets (all in ``limits``, one place): sizes are checked while
parsing, ``$regex`` runs on RE2 (linear time), and :func:`time_budget` stops a statement
that runs too long, so no query can stall capture or ``/health``.

The package's modules, in dependency order: ``limits`` (every budget, and the time
budget on a running statement), ``fields`` (paths to columns), ``nodes``, ``regex`` (RE2
inside SQLite), ``parse`` (selectors to nodes), ``sqlite`` (nodes to SQL) and ``paging``
(sorts, cursors, statements). Import from ``app.core.query``: it re-exports them all.
"""

from __future__ import annotations

from app.core.query.limits import (  # noqa: F401
    DEFAULT_TIME_BUDGET_SECONDS,
    MAX_DEPTH,
    MAX_FIELD_PATH_CHARS,
    MAX_FIELD_PATH_SEGMENTS,
    MAX_IN_VALUES,
    MAX_CENTRAL_RESULTS,
    MAX_LIMIT,
    MAX_PARAMETERS,
    MAX_REGEX_CHARS,
    MAX_REGEX_MEMORY_BYTES,
    MAX_SORT_KEYS,
    time_budget,
    time_budget_setting,
)
from app.core.query.fields import (  # noqa: F401
    Field,
    resolve_field,
)
from app.core.query.nodes import (  # noqa: F401
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
from app.core.query.regex import (  # noqa: F401
    register_functions,
)
from app.core.query.parse import (  # noqa: F401
    FIELD_OPERATORS,
    LOGICAL_OPERATORS,
    ResolveName,
    default_resolve_name,
    parse_selector,
)
from app.core.query.sqlite import (  # noqa: F401
    to_sql,
)
from app.core.query.paging import (  # noqa: F401
    DEFAULT_SORT,
    SelectPlan,
    SortKey,
    build_count,
    build_select,
    make_cursor,
    parse_sort,
    sort_value,
)

__all__ = [
    "And",
    "Compare",
    "DEFAULT_SORT",
    "DEFAULT_TIME_BUDGET_SECONDS",
    "Eq",
    "Exists",
    "FIELD_OPERATORS",
    "Field",
    "In",
    "LOGICAL_OPERATORS",
    "MAX_DEPTH",
    "MAX_FIELD_PATH_CHARS",
    "MAX_FIELD_PATH_SEGMENTS",
    "MAX_IN_VALUES",
    "MAX_CENTRAL_RESULTS",
    "MAX_LIMIT",
    "MAX_PARAMETERS",
    "MAX_REGEX_CHARS",
    "MAX_REGEX_MEMORY_BYTES",
    "MAX_SORT_KEYS",
    "MatchAll",
    "MatchNone",
    "Ne",
    "Nin",
    "Node",
    "Nor",
    "Not",
    "Or",
    "Regex",
    "ResolveName",
    "SelectPlan",
    "SortKey",
    "build_count",
    "build_select",
    "default_resolve_name",
    "make_cursor",
    "parse_selector",
    "parse_sort",
    "register_functions",
    "resolve_field",
    "sort_value",
    "time_budget",
    "time_budget_setting",
    "to_sql",
]
