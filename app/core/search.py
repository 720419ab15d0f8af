"""Full-text search: one SQLite FTS5 index over everything a person might type.

Each live datapoint has one entry in ``datapoint_search`` (FTS5, rowid = the datapoint
row's rowid) holding its label, file name, object name, custom metadata keys and values
(the ``<kind>_name`` keys included), every key, string and number anywhere inside its JSON
value (see :func:`_body`), and, for rows without names, the names this bench knows for
their ownership ids (pins included).

The index is kept in step in ONE place, :func:`flush`, which the store's one writer runs
before every commit: it indexes the rows that triggers on ``datapoints`` noted as changed
(edits, tombstones, sync pulls, any process or app version) and new rows (found by rowid;
in batches, and always before a search reads the index), in the same transaction. The tables are a component migration ("search"),
which also builds the entries for rows stored before the index existed.

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
#: Rows edited or deleted since the index was last brought up to date (see :func:`flush`).
PENDING: Final[str] = "datapoint_search_pending"
#: New rows indexed together by an ordinary commit (a search indexes any fewer first).
BATCH_ROWS: Final[int] = 200
#: Up to which rowid new rows are indexed.
STATE: Final[str] = "datapoint_search_state"
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
    """SQL: the names this bench knows for the row's ownership ids (pins included).

    Only for rows that carry no ``<kind>_name`` metadata (written by MADSci itself, say):
    the store keeps the name beside every id whose name the bench knows at capture, and
    the probe costs capture rate."""
    ids = ", ".join(f"{row}.{field}" for field in OWNERSHIP_FIELDS)
    return (f"CASE WHEN instr({row}.custom_metadata, '_name\"') = 0 THEN "
            f"(SELECT group_concat(name, ' ') FROM names WHERE id IN ({ids})) END")


def _body(row: str) -> str:
    """SQL: the text a row is found by (``row`` is a table name or alias).

    The JSON texts of the metadata and the value are indexed as they are: the tokenizer
    splits on JSON's punctuation, so every key and every string (and number) at any depth
    becomes terms, at a fraction of the cost of walking the JSON (capture rate). Escapes
    of control characters (``\\n``) are turned into spaces first so "a\\nb" gives a, b;
    only in texts with a backslash (few have one: the three replaces cost a quarter of
    indexing a row).
    """
    def json_text(column: str) -> str:
        text = f"{row}.{column}"
        spaced = f"replace(replace(replace({text}, '\\n', ' '), '\\t', ' '), '\\r', ' ')"
        return f"CASE WHEN instr({text}, '\\') THEN {spaced} ELSE {text} END"

    parts = [f"{row}.label", f"{row}.filename", f"{row}.object_name",
             json_text("custom_metadata"), json_text("value"), _names_of(row)]
    return " || ' ' || ".join(f"coalesce({part}, '')" for part in parts)


def _v1_index(conn: sqlite3.Connection) -> None:
    """The FTS5 table, its bookkeeping and triggers, and entries for the stored rows."""
    conn.execute(
        f"CREATE VIRTUAL TABLE {TABLE} USING fts5("
        f"body, tokenize = 'unicode61 remove_diacritics 2')"
    )  # as first released; _v2_no_column_sizes replaces it
    conn.execute(f"CREATE TABLE {PENDING} (row INTEGER PRIMARY KEY)")
    # Names by id alone: one probe list per row instead of one query per ownership kind.
    conn.execute("CREATE INDEX IF NOT EXISTS ix_names_id_only ON names (id)")
    conn.execute(f"CREATE TABLE {STATE} (one INTEGER PRIMARY KEY CHECK (one = 1), "
                 f"indexed_upto INTEGER NOT NULL)")
    stale = f"INSERT OR IGNORE INTO {PENDING} (row) VALUES (OLD.rowid);"
    conn.execute(
        f"CREATE TRIGGER {TABLE}_update AFTER UPDATE OF {', '.join(_INDEXED_COLUMNS)} "
        f"ON datapoints BEGIN {stale} END"
    )
    # The app never deletes rows (tombstones are updates), but if something does and the
    # last row goes, SQLite hands its rowid out again: lower the mark so it is indexed.
    conn.execute(
        f"CREATE TRIGGER {TABLE}_delete AFTER DELETE ON datapoints BEGIN {stale} "
        f"UPDATE {STATE} SET indexed_upto = min(indexed_upto, "
        f"(SELECT coalesce(max(rowid), 0) FROM datapoints)); END"
    )
    conn.execute(f"INSERT INTO {STATE} (one, indexed_upto) VALUES (1, 0)")
    flush(conn, force=True)


#: The index as it is now: one column; no per-row sizes (nothing ranks by length).
_CREATE_TABLE: Final[str] = (f"CREATE VIRTUAL TABLE {TABLE} USING fts5("
                             f"body, tokenize = 'unicode61 remove_diacritics 2', columnsize = 0)")


def _v2_no_column_sizes(conn: sqlite3.Connection) -> None:
    """The FTS5 table again with ``columnsize=0``, its entries rebuilt.

    Nothing ranks by length (bm25), and the per-row size record it drops was an eighth
    of what indexing costs capture (issue 12's capture-rate goal)."""
    conn.execute(f"DROP TABLE {TABLE}")
    conn.execute(_CREATE_TABLE)
    rebuild(conn)


MIGRATIONS: Final[tuple[Any, ...]] = (_v1_index, _v2_no_column_sizes)


def _indexed_upto(conn: sqlite3.Connection) -> Optional[tuple[int, int, bool]]:
    """(rows up to this rowid are indexed, the highest rowid, any stale rows) or None
    while the component's tables do not exist yet (the store is being opened)."""
    try:
        row = conn.execute(
            f"SELECT (SELECT indexed_upto FROM {STATE}), "
            f"(SELECT coalesce(max(rowid), 0) FROM datapoints), "
            f"EXISTS (SELECT 1 FROM {PENDING})"
        ).fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row[0] is None else (int(row[0]), int(row[1]), bool(row[2]))


def flush(conn: sqlite3.Connection, *, force: bool = False) -> None:
    """Bring the index up to date with the rows; call inside a write transaction.

    Unless ``force``, new rows wait until :data:`BATCH_ROWS` have gathered: FTS5 writes a
    segment per transaction, which made one-row captures 20% slower. No search ever sees
    the lag: every search first runs a forced flush if anything waits
    (``LocalStore.catch_up_search``).

    New rows are found by rowid (SQLite gives a new row the highest rowid + 1, and the
    app never deletes rows): everything above ``indexed_upto`` is indexed in one set-wise
    statement. Edits and tombstones are noted by triggers in the pending table. Why not
    a trigger per insert: with one, every INSERT needs a statement journal, and FTS5
    flushes its batch at every statement; capture fell to a half (then a third).
    ``LocalStore.transaction`` calls this just before COMMIT, so a row and its entry
    commit together; writes by anything else are indexed by the next flush.
    """
    state = _indexed_upto(conn)
    if state is None:
        return
    upto, top, stale = state
    if not stale and (top == upto or (not force and top - upto < BATCH_ROWS)):
        return
    if stale:
        # One by rowid: FTS5 answers "rowid IN (subquery)" with a scan of the whole index.
        rows = conn.execute(f"SELECT row FROM {PENDING}").fetchall()
        conn.executemany(f"DELETE FROM {TABLE} WHERE rowid = ?", rows)
        # CROSS JOIN keeps the queue as the outer loop (SQLite may otherwise scan datapoints).
        conn.execute(
            f"INSERT INTO {TABLE} (rowid, body) "
            f"SELECT datapoints.rowid, {_body('datapoints')} FROM {PENDING} CROSS JOIN "
            f"datapoints ON datapoints.rowid = {PENDING}.row "
            f"WHERE datapoints.deleted = 0 AND datapoints.rowid <= ?", (upto,)
        )
        conn.execute(f"DELETE FROM {PENDING}")
    if top > upto:
        conn.execute(
            f"INSERT INTO {TABLE} (rowid, body) SELECT datapoints.rowid, "
            f"{_body('datapoints')} FROM datapoints WHERE rowid > ? AND deleted = 0", (upto,)
        )
    conn.execute(f"UPDATE {STATE} SET indexed_upto = ?", (top,))


def reindex_owned_by(conn: sqlite3.Connection, field: str, ident: str) -> None:
    """Queue the rows of one ownership id for re-indexing (a name was pinned to it); call
    inside the write transaction that pins it."""
    if field not in OWNERSHIP_FIELDS:
        raise ValueError(f"not an ownership field: {field!r}")
    try:
        conn.execute(f"INSERT OR IGNORE INTO {PENDING} (row) "
                     f"SELECT rowid FROM datapoints WHERE {field} = ?", (ident,))
    except sqlite3.OperationalError:
        pass  # no index yet: it is built from the rows, names included


def has_pending(conn: sqlite3.Connection) -> bool:
    """Whether rows are waiting to be indexed (only after writers that bypass the store)."""
    state = _indexed_upto(conn)
    return state is not None and (state[1] != state[0] or state[2])


def rebuild(conn: sqlite3.Connection) -> None:
    """Rebuild every entry (inside the caller's write transaction)."""
    conn.execute(f"DELETE FROM {TABLE}")
    conn.execute(f"DELETE FROM {PENDING}")
    conn.execute(f"UPDATE {STATE} SET indexed_upto = 0")
    flush(conn, force=True)


# -- turning what a person typed into FTS5 -----------------------------------------------

_CONTROL: Final[re.Pattern[str]] = re.compile(r"[\x00-\x1f\x7f]")
_WORD: Final[re.Pattern[str]] = re.compile(r"\w", re.UNICODE)
_WORDS: Final[re.Pattern[str]] = re.compile(r"\w+", re.UNICODE)
#: The last word is a prefix only from this length on: "7" or "S1" as a prefix expands to
#: thousands of terms (every number starting with 7), which turns a 3 ms search into a
#: 400 ms one over a million rows, and "label-7" should not find "label-70" anyway.
MIN_PREFIX: Final[int] = 3


def match_expression(text: str) -> Optional[str]:
    """A safe FTS5 MATCH expression for ``text``, or ``None`` if it has nothing to find.

    Every whitespace-separated term becomes a quoted phrase (so ``AND``, ``-``, ``:``,
    ``*`` and quotes are just text), the terms must all occur (in any order), and the last
    one is a prefix if its last word has at least :data:`MIN_PREFIX` characters (``cloud``
    finds ``cloudy`` while typing; ``S1`` finds only ``S1``). Terms without a letter or
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
    last_word = _WORDS.findall(terms[-1])[-1]
    if len(last_word) >= MIN_PREFIX:
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
