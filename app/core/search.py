"""Full-text search: one SQLite FTS5 index over everything a person might type.

Each live datapoint has one entry in ``datapoint_search`` (FTS5, rowid = the datapoint
row's rowid) holding its label, file name, object name, custom metadata keys and values
(the ``<kind>_name`` keys included), every key and string or number anywhere inside its
JSON value, and the names this bench knows for its ownership ids (pins included).

The index is kept in step by triggers on ``datapoints`` — the ONE place, so every writer
(capture, edits, tombstones, sync pulls, other processes, older app versions) updates it in
the same transaction as the row. The tables are a component migration ("search"), which
also builds the entries for rows stored before the index existed.

Searching never builds SQL from user text: the text becomes a safe FTS5 expression
(:func:`match_expression`: every term quoted, the last one a prefix) passed as a bound
parameter, and the query language's own statement (selector, sort, cursor, limit) is
narrowed to the matching rows (:func:`restrict`). The rowids are implicit, so a VACUUM
(which the app never runs) would renumber them: run :func:`rebuild` after one.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Final, Optional

from app.core.errors import QueryError
from app.core.ids import OWNERSHIP_FIELDS

log = logging.getLogger(__name__)

COMPONENT: Final[str] = "search"
TABLE: Final[str] = "datapoint_search"
#: Longest search text accepted (a search box, not a document).
MAX_TEXT: Final[int] = 1000
#: At most this many terms (each one is an FTS5 phrase).
MAX_TERMS: Final[int] = 32

#: Columns whose change changes what a row is found by.
_INDEXED_COLUMNS: Final[tuple[str, ...]] = (
    "label", "filename", "object_name", "value", "custom_metadata", *OWNERSHIP_FIELDS,
    "deleted",
)


def _names_of(row: str) -> str:
    """SQL: the names this bench knows for the row's ownership ids (one indexed probe each)."""
    probes = " UNION ALL ".join(
        f"SELECT name FROM names WHERE kind = '{field[:-3]}' AND id = {row}.{field}"
        for field in OWNERSHIP_FIELDS
    )
    return f"(SELECT group_concat(name, ' ') FROM ({probes}))"


def _body(row: str) -> str:
    """SQL: the text a row is found by (``row`` is NEW or OLD inside a trigger)."""
    metadata = (f"(SELECT group_concat(key || ' ' || value, ' ') "
                f"FROM json_each(CASE WHEN json_valid({row}.custom_metadata) "
                f"THEN {row}.custom_metadata END))")
    # Keys of objects and string/number leaves, at any depth of the JSON value.
    value = (f"(SELECT group_concat("
             f"CASE WHEN typeof(key) = 'text' THEN key ELSE '' END || ' ' || "
             f"CASE WHEN type IN ('text', 'integer', 'real') THEN atom ELSE '' END, ' ') "
             f"FROM json_tree(CASE WHEN json_valid({row}.value) THEN {row}.value END))")
    parts = [f"{row}.label", f"{row}.filename", f"{row}.object_name", metadata, value,
             _names_of(row)]
    return " || ' ' || ".join(f"coalesce({part}, '')" for part in parts)


def _v1_index(conn: sqlite3.Connection) -> None:
    """The FTS5 table, the triggers that keep it in step, and entries for stored rows."""
    conn.execute(
        f"CREATE VIRTUAL TABLE {TABLE} USING fts5("
        f"body, tokenize = 'unicode61 remove_diacritics 2')"
    )
    conn.execute(
        f"CREATE TRIGGER {TABLE}_insert AFTER INSERT ON datapoints WHEN NEW.deleted = 0 BEGIN "
        f"INSERT INTO {TABLE} (rowid, body) VALUES (NEW.rowid, {_body('NEW')}); END"
    )
    conn.execute(
        f"CREATE TRIGGER {TABLE}_update AFTER UPDATE OF {', '.join(_INDEXED_COLUMNS)} "
        f"ON datapoints BEGIN "
        f"DELETE FROM {TABLE} WHERE rowid = OLD.rowid; "
        f"INSERT INTO {TABLE} (rowid, body) SELECT NEW.rowid, {_body('NEW')} "
        f"WHERE NEW.deleted = 0; END"
    )
    conn.execute(
        f"CREATE TRIGGER {TABLE}_delete AFTER DELETE ON datapoints BEGIN "
        f"DELETE FROM {TABLE} WHERE rowid = OLD.rowid; END"
    )
    _fill(conn)


def _fill(conn: sqlite3.Connection) -> None:
    conn.execute(
        f"INSERT INTO {TABLE} (rowid, body) "
        f"SELECT datapoints.rowid, {_body('datapoints')} FROM datapoints WHERE deleted = 0"
    )


MIGRATIONS: Final[tuple[Any, ...]] = (_v1_index,)


def rebuild(conn: sqlite3.Connection) -> None:
    """Rebuild every entry (inside the caller's write transaction)."""
    conn.execute(f"DELETE FROM {TABLE}")
    _fill(conn)


# -- turning what a person typed into FTS5 -----------------------------------------------

_CONTROL: Final[re.Pattern[str]] = re.compile(r"[\x00-\x1f\x7f]")
_WORD: Final[re.Pattern[str]] = re.compile(r"\w", re.UNICODE)


def match_expression(text: str) -> Optional[str]:
    """A safe FTS5 MATCH expression for ``text``, or ``None`` if it has nothing to find.

    Every whitespace-separated term becomes a quoted phrase (so ``AND``, ``-``, ``:``,
    ``*`` and quotes are just text), the terms must all occur (in any order), and the last
    one is a prefix (``cloud`` finds ``cloudy`` while typing). Terms without a letter or
    digit are dropped: the tokenizer would ignore them anyway.
    """
    if not isinstance(text, str):
        raise QueryError(f"search text must be text, got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise QueryError(f"search text is too long ({len(text)} characters; at most {MAX_TEXT})")
    terms = [t for t in _CONTROL.sub(" ", text).split() if _WORD.search(t)]
    if not terms:
        return None
    if len(terms) > MAX_TERMS:
        raise QueryError(f"too many search terms ({len(terms)}; at most {MAX_TERMS})")
    quoted = ['"' + term.replace('"', '""') + '"' for term in terms]
    quoted[-1] += "*"
    return " ".join(quoted)


def split_text(selector: Optional[Mapping[str, Any]],
               ) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """Take MongoDB's ``{"$text": {"$search": "words"}}`` out of a selector.

    ``$text`` may stand at the top level or as a member of a top-level ``$and`` (how the
    window combines its search box with the quick filters); what remains goes to the query
    language. Returns (the rest or ``None``, the search text or ``None``).
    """
    if selector is None or not isinstance(selector, Mapping):
        return selector, None  # type: ignore[return-value]
    texts: list[str] = []
    rest = dict(selector)
    if "$text" in rest:
        texts.append(_search_text(rest.pop("$text")))
    members = rest.get("$and")
    if isinstance(members, list):
        kept = []
        for member in members:
            if isinstance(member, Mapping) and set(member) == {"$text"}:
                texts.append(_search_text(member["$text"]))
            else:
                kept.append(member)
        if len(kept) != len(members):
            if kept:
                rest["$and"] = kept
            else:
                del rest["$and"]
    if not texts:
        return dict(selector), None
    return (rest or None), " ".join(texts)


def _search_text(operand: Any) -> str:
    if not isinstance(operand, Mapping) or not isinstance(operand.get("$search"), str):
        raise QueryError('$text takes {"$search": "words to find"}')
    unknown = sorted(set(operand) - {"$search", "$caseSensitive", "$diacriticSensitive",
                                     "$language"})
    if unknown:
        raise QueryError(f"$text does not support {', '.join(unknown)}")
    if operand.get("$caseSensitive") or operand.get("$diacriticSensitive"):
        raise QueryError("$text searches ignore case and accents; "
                         "use $regex for an exact match")
    return str(operand["$search"])


def join_texts(*texts: Optional[str]) -> Optional[str]:
    """Several search texts as one (all their words must occur)."""
    given = [text for text in texts if text is not None]
    return " ".join(given) if given else None


def restrict(sql: str, params: Sequence[Any], text: Optional[str]) -> tuple[str, list[Any]]:
    """Narrow a query-language statement over ``datapoints`` to rows matching ``text``.

    ``sql`` is what :func:`app.core.query.build_select` or ``build_count`` made; it reads
    ``... FROM datapoints WHERE <selector>`` and the match is added in front of the
    selector, so sort, cursor and limit work unchanged. Empty text restricts nothing.
    """
    expression = match_expression(text) if text is not None else None
    if expression is None:
        return sql, list(params)
    anchor = " FROM datapoints WHERE "
    head, found, tail = sql.partition(anchor)
    if not found or "?" in head:
        raise AssertionError(f"unexpected statement from the query language: {sql[:80]!r}")
    narrowed = (f"{head}{anchor}rowid IN (SELECT rowid FROM {TABLE} WHERE {TABLE} MATCH ?) "
                f"AND {tail}")
    return narrowed, [expression, *params]


def explain_error(exc: sqlite3.OperationalError) -> Optional[QueryError]:
    """A 4xx-style error for an FTS5 complaint about a search expression, else ``None``."""
    message = str(exc)
    if "fts5" in message.lower() or "MATCH" in message:
        return QueryError(f"cannot search for that text ({message}); try plain words")
    return None
