"""What the datapoint table reads, without Qt: counts, pages, row ids, row summaries.

The table never holds a million datapoints. It holds the SQLite ``rowid`` of each row in
display order (8 bytes a row in an ``array('q')``, loaded in the background) and a small
cache of :class:`RowSummary` for the rows on screen. Until the order is loaded, a position
is answered from the first page, from a page at the end (the reversed sort), or from a
window at an offset. The selector → SQL translation stays in :mod:`app.core.query`; this
module only asks it for plans and adds the columns, paging and rowid lookups it needs.
"""

from __future__ import annotations

import sqlite3
from array import array
from contextlib import contextmanager
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Optional

from app.core import query as querylang
from app.core import search as textsearch
from app.core.errors import QueryError
from app.core.rows import live_rows_by_rowid
from app.core.store import LocalStore

#: Columns of one table row (trusted SQL; no user input reaches it).
_ROW_COLUMNS: Final[str] = (
    "rowid, id, data_timestamp, label, data_type, size_bytes, experiment_id, "
    "json_extract(custom_metadata, '$.experiment_name'), sync_state, filename, content_type"
)
#: The table's default order: newest first (the id breaks ties, as the query API does).
DEFAULT_SORT: Final[str] = "-data_timestamp"

Selector = Optional[Mapping[str, Any]]


@dataclass(frozen=True)
class RowSummary:
    """The few facts one table row shows."""

    rowid: int
    id: str
    timestamp: str
    label: Optional[str]
    data_type: str
    size_bytes: Optional[int]
    experiment_id: Optional[str]
    experiment_name: Optional[str]
    sync_state: str
    filename: Optional[str]
    content_type: Optional[str]

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> "RowSummary":
        return cls(*row)


def reversed_sort(sort: Any) -> list[tuple[str, int]]:
    """The exact reverse of a sort (the id tie-breaker follows the last key's direction)."""
    return [(key.path, 1 if key.descending else -1) for key in querylang.parse_sort(sort)]


class Cancelled(Exception):
    """A read was abandoned because its result is no longer wanted (a newer query)."""


KeepGoing = Callable[[], bool]


def _always() -> bool:
    return True


class RowSource:
    """Reads for the table over one store; every method may run on any thread.

    Long reads take ``keep_going``: SQLite's progress handler asks it every few thousand
    steps, so a count or a scan for a query the operator has already replaced stops at
    once instead of competing with the new one for the disk and the CPU.
    """

    def __init__(self, store: LocalStore,
                 name_for: Optional[Callable[[str, str], Optional[str]]] = None) -> None:
        self._store = store
        #: The name registry's name for an id, for rows that do not carry one.
        self._name_for = name_for

    def _select(self, selector: Selector, **options: Any) -> tuple[str, list[Any]]:
        """The query language's statement (names resolved as every reader does, pins
        included), narrowed to the search box's ``$text`` by the full-text engine."""
        rest, text = textsearch.split_text(selector)
        if text is not None:
            self._store.catch_up_search()
        plan = querylang.build_select(rest, resolve_name=self._store.resolve_name, **options)
        return textsearch.restrict(plan.sql, plan.params, text)

    @contextmanager
    def _reading(self, keep_going: KeepGoing) -> Iterator[sqlite3.Connection]:
        # The store's query reader also stops a read at the query time budget
        # (QueryTimeoutError, shown as the search's message).
        try:
            with self._store.query_reader(keep_going) as conn:
                yield conn
        except sqlite3.OperationalError as exc:
            if not keep_going():
                raise Cancelled(str(exc)) from None
            error: Optional[QueryError] = textsearch.explain_error(exc)
            if error is not None:
                raise error from None
            raise

    def count(self, selector: Selector, keep_going: KeepGoing = _always) -> int:
        rest, text = textsearch.split_text(selector)
        sql, params = textsearch.restrict(
            *querylang.build_count(rest, resolve_name=self._store.resolve_name), text)
        with self._reading(keep_going) as conn:
            return int(conn.execute(sql, tuple(params)).fetchone()[0])

    def first_rows(self, selector: Selector, sort: Any, limit: int,
                   keep_going: KeepGoing = _always) -> list[RowSummary]:
        sql, params = self._select(selector, sort=sort, limit=limit, columns=_ROW_COLUMNS)
        return self._summaries(sql, params, keep_going)

    def last_rows(self, selector: Selector, sort: Any, limit: int,
                  keep_going: KeepGoing = _always) -> list[RowSummary]:
        """The last ``limit`` rows in display order (a first page of the reversed sort)."""
        rows = self.first_rows(selector, reversed_sort(sort), limit, keep_going)
        rows.reverse()
        return rows

    def window(self, selector: Selector, sort: Any, offset: int, limit: int,
               keep_going: KeepGoing = _always) -> list[RowSummary]:
        """Rows ``offset`` … ``offset + limit - 1`` in display order."""
        sql, params = self._select(selector, sort=sort, columns=_ROW_COLUMNS)
        return self._summaries(sql + " LIMIT ? OFFSET ?", [*params, limit, offset],
                               keep_going)

    def iter_rowids(self, selector: Selector, sort: Any, chunk: int = 100_000,
                    keep_going: KeepGoing = _always) -> Iterator[array]:
        """Every matching rowid in display order, in chunks (stops when ``keep_going`` is false)."""
        sql, params = self._select(selector, sort=sort, columns="rowid")
        with self._reading(keep_going) as conn:
            cursor = conn.execute(sql, tuple(params))
            try:
                while keep_going():
                    rows = cursor.fetchmany(chunk)
                    if not rows:
                        return
                    yield array("q", [r[0] for r in rows])
            finally:
                cursor.close()

    def all_rowids(self, selector: Selector, sort: Any,
                   keep_going: KeepGoing = _always) -> Optional[array]:
        """The whole order, or ``None`` if ``keep_going`` turned false meanwhile."""
        order = array("q")
        try:
            for part in self.iter_rowids(selector, sort, keep_going=keep_going):
                order.extend(part)
        except Cancelled:
            return None
        return order if keep_going() else None

    def rows_by_rowid(self, rowids: Sequence[int]) -> dict[int, RowSummary]:
        """Summaries of the given rows (deleted rows are left out)."""
        with self._reading(_always) as conn:
            rows = [RowSummary.from_row(row)
                    for row in live_rows_by_rowid(conn, _ROW_COLUMNS, list(rowids))]
        return {row.rowid: self._named(row) for row in rows}

    def ids_for_rowids(self, rowids: Sequence[int]) -> list[str]:
        return [s.id for s in self.rows_by_rowid(rowids).values()]

    def _summaries(self, sql: str, params: Sequence[Any],
                   keep_going: KeepGoing = _always) -> list[RowSummary]:
        with self._reading(keep_going) as conn:
            rows = [RowSummary.from_row(row) for row in conn.execute(sql, tuple(params))]
        return [self._named(row) for row in rows]

    def _named(self, row: RowSummary) -> RowSummary:
        """The experiment's name from the registry when the row carries none (pins)."""
        if row.experiment_name or not row.experiment_id or self._name_for is None:
            return row
        name = self._name_for("experiment", row.experiment_id)
        return row if name is None else replace(row, experiment_name=name)
