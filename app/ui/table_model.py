"""The datapoint table: a Qt model that holds row ids and fetches rows lazily.

After anki's browser: the model knows how many rows match (``service.count``) and, once a
background task has read it, the rowid of every row in display order. Row contents live in
a bounded cache and are fetched a block at a time, in the background, for the rows a view
asks about; until they arrive a row shows a placeholder. Every query carries a generation
number, so a result that arrives after the operator changed the filter is dropped.
"""

from __future__ import annotations

import logging
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Optional

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QBrush, QColor

from app.core.syncstate import PROBLEM_STATES, SAFE_STATES
from app.ui.formatting import (
    TYPE_NAMES,
    human_size,
    local_time,
    sync_label,
    sync_tooltip,
)
from app.ui.rowsource import DEFAULT_SORT, Cancelled, RowSource, RowSummary
from app.ui.tasks import TaskManager

log = logging.getLogger(__name__)

AnyIndex = QModelIndex | QPersistentModelIndex

#: Rows fetched with the first page (a full screen on a large monitor; few enough that a
#: sparse filter finds them quickly — the rest come a block at a time).
FIRST_PAGE: Final[int] = 80
#: Rows fetched around a position the view asks about.
BLOCK: Final[int] = 200
#: How many row summaries the cache keeps.
CACHE_ROWS: Final[int] = 20_000


@dataclass(frozen=True)
class Column:
    title: str
    sort_path: str
    tooltip: str


COLUMNS: Final[tuple[Column, ...]] = (
    Column("Time", "data_timestamp", "When the data was taken (local time)"),
    Column("Label", "label", "The datapoint's label"),
    Column("Type", "data_type", "Value (JSON) or file"),
    Column("Size", "size_bytes", "File size"),
    Column("Experiment", "custom_metadata.experiment_name", "The experiment it belongs to"),
    Column("Sync", "sync_state", "Whether it is safe in the central store"),
)
TIME, LABEL, TYPE, SIZE, EXPERIMENT, SYNC = range(len(COLUMNS))

IdRole: Final[int] = Qt.ItemDataRole.UserRole + 1
SummaryRole: Final[int] = Qt.ItemDataRole.UserRole + 2
SyncStateRole: Final[int] = Qt.ItemDataRole.UserRole + 3

_SAFE_BRUSH = QBrush(QColor("#1e7d32"))
_WAITING_BRUSH = QBrush(QColor("#9a6700"))
_PROBLEM_BRUSH = QBrush(QColor("#c62828"))
_PLACEHOLDER_BRUSH = QBrush(QColor("#9e9e9e"))


class DatapointTableModel(QAbstractTableModel):
    """Rows of the datapoints matching a selector, in a sort order, fetched lazily."""

    #: A new query started (the view may show a busy hint).
    query_started = Signal()
    #: The first rows of a query are shown; argument: rows known so far.
    first_rows_shown = Signal(int)
    #: The number of matching rows is known.
    count_known = Signal(int)
    #: The whole display order is loaded (jumping anywhere is instant from now on).
    order_loaded = Signal()
    #: A query failed (a QueryError from the advanced field, a locked store ...).
    query_failed = Signal(str)
    #: Row contents arrived (tests wait on it).
    rows_fetched = Signal()

    def __init__(self, source: RowSource, tasks: TaskManager,
                 parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._source = source
        #: Whether a central store is configured; without one, waiting rows read "Local only".
        self._central_configured = True
        self._tasks = tasks
        self._selector: Optional[Mapping[str, Any]] = None
        self._sort: Any = DEFAULT_SORT
        self._generation = 0
        self._total = 0
        self._count_exact = False
        self._order: Optional[array] = None
        self._known: dict[int, int] = {}
        self._cache: OrderedDict[int, RowSummary] = OrderedDict()
        self._wanted: set[int] = set()
        self._in_flight: set[int] = set()
        self._pending_count: Optional[int] = None
        self._first_shown = False
        self._loading = False
        self._fetch_timer = QTimer(self)
        self._fetch_timer.setSingleShot(True)
        self._fetch_timer.setInterval(0)
        self._fetch_timer.timeout.connect(self._fetch_wanted)

    # -- the query -------------------------------------------------------------------------

    @property
    def selector(self) -> Optional[Mapping[str, Any]]:
        return self._selector

    @property
    def sort_order(self) -> Any:
        return self._sort

    @property
    def loading(self) -> bool:
        return self._loading

    @property
    def count_exact(self) -> bool:
        return self._count_exact

    @property
    def order_complete(self) -> bool:
        return self._order is not None

    def set_query(self, selector: Optional[Mapping[str, Any]], sort: Any = None) -> None:
        """Show the rows matching ``selector`` (``None``: all) in ``sort`` order."""
        self._selector = selector
        if sort is not None:
            self._sort = sort
        self.refresh()

    def refresh(self) -> None:
        """Run the current query again (rows added, removed or edited elsewhere)."""
        self._generation += 1
        generation = self._generation
        selector, sort = self._selector, self._sort
        self._pending_count = None
        self._first_shown = False
        self._loading = True
        self.query_started.emit()
        source = self._source
        current = self._still_wanted(generation)
        # The first page first: it is what the operator waits for. The count (a scan for
        # most filters) starts when the page is shown, so the two do not compete.
        self._tasks.run(lambda: source.first_rows(selector, sort, FIRST_PAGE, current),
                        lambda rows: self._show_first(generation, rows),
                        lambda error: self._failed(generation, error))

    def _still_wanted(self, generation: int) -> Callable[[], bool]:
        return lambda: self._generation == generation

    def _current(self, generation: int) -> bool:
        return generation == self._generation

    def _failed(self, generation: int, error: BaseException) -> None:
        if not self._current(generation) or isinstance(error, Cancelled):
            return
        self._generation += 1  # drop the other half of this query
        self._loading = False
        self.query_failed.emit(str(error) or type(error).__name__)

    def _show_first(self, generation: int, rows: list[RowSummary]) -> None:
        if not self._current(generation):
            return
        self.beginResetModel()
        self._order = None
        self._known = {position: row.rowid for position, row in enumerate(rows)}
        self._wanted.clear()
        self._in_flight.clear()
        self._remember(rows)
        if self._pending_count is not None:
            self._total, self._count_exact = self._pending_count, True
        elif len(rows) < FIRST_PAGE:
            self._total, self._count_exact = len(rows), True
        else:
            self._total, self._count_exact = len(rows), False
        self._first_shown = True
        self.endResetModel()
        self.first_rows_shown.emit(self._total)
        if self._count_exact:
            self._count_done(generation)
            return
        selector, source = self._selector, self._source
        current = self._still_wanted(generation)
        self._tasks.run(lambda: source.count(selector, current),
                        lambda total: self._count_arrived(generation, total),
                        lambda error: self._failed(generation, error))

    def _count_arrived(self, generation: int, total: int) -> None:
        if not self._current(generation):
            return
        if not self._first_shown:
            self._pending_count = total
            return
        if self._count_exact:  # the first page already said how many there are
            return
        self._resize(total)
        self._count_exact = True
        self._count_done(generation)

    def _count_done(self, generation: int) -> None:
        self.count_known.emit(self._total)
        if self._total <= FIRST_PAGE and len(self._known) >= self._total:
            self._order = array("q", (self._known[p] for p in range(self._total)))
            self._known = {}
            self._loading = False
            self.order_loaded.emit()
            return
        selector, sort, source = self._selector, self._sort, self._source
        self._tasks.run(
            lambda: source.all_rowids(selector, sort, keep_going=self._still_wanted(generation)),
            lambda order: self._order_arrived(generation, order),
            lambda error: self._failed(generation, error))

    def _order_arrived(self, generation: int, order: Optional[array]) -> None:
        if order is None or not self._current(generation):
            return
        self._order = order
        self._known = {}
        self._resize(len(order))
        self._loading = False
        self.order_loaded.emit()
        self._request_visible_again()

    def _resize(self, total: int) -> None:
        if total > self._total:
            self.beginInsertRows(QModelIndex(), self._total, total - 1)
            self._total = total
            self.endInsertRows()
        elif total < self._total:
            self.beginRemoveRows(QModelIndex(), total, self._total - 1)
            self._total = total
            self.endRemoveRows()

    def _request_visible_again(self) -> None:
        # Rows shown as placeholders asked before the order arrived; ask the views again.
        if self._total:
            self.dataChanged.emit(self.index(0, 0), self.index(self._total - 1, len(COLUMNS) - 1))

    # -- Qt's model interface -----------------------------------------------------------

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else self._total

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section].title
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMNS[section].tooltip
        return None

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= self._total:
            return None
        summary = self.summary(index.row())
        column = index.column()
        if summary is None:
            if role == Qt.ItemDataRole.DisplayRole:
                self._want(index.row())
                return "…" if column == LABEL else ""
            if role == Qt.ItemDataRole.ForegroundRole:
                return _PLACEHOLDER_BRUSH
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            if column == SYNC:
                return sync_label(summary.sync_state, self._central_configured)
            return _display(summary, column)
        if role == IdRole:
            return summary.id
        if role == SummaryRole:
            return summary
        if role == SyncStateRole:
            return summary.sync_state
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == SYNC:
                return sync_tooltip(summary.sync_state, self._central_configured)
            if column == EXPERIMENT and summary.experiment_id:
                return f"experiment id {summary.experiment_id}"
            if column == LABEL:
                return summary.filename or summary.label
            return None
        if role == Qt.ItemDataRole.ForegroundRole and column == SYNC:
            if summary.sync_state in SAFE_STATES:
                return _SAFE_BRUSH
            if summary.sync_state in PROBLEM_STATES:
                return _PROBLEM_BRUSH
            return _WAITING_BRUSH if self._central_configured else None
        if role == Qt.ItemDataRole.TextAlignmentRole and column == SIZE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def set_central_configured(self, configured: bool) -> None:
        """Whether sync has somewhere to go (from the sync status); redraws the Sync column."""
        if configured == self._central_configured:
            return
        self._central_configured = configured
        if self.rowCount():
            self.dataChanged.emit(self.index(0, SYNC), self.index(self.rowCount() - 1, SYNC))

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if not 0 <= column < len(COLUMNS):
            return
        path = COLUMNS[column].sort_path
        wanted = f"-{path}" if order == Qt.SortOrder.DescendingOrder else path
        if wanted != self._sort:
            self.set_query(self._selector, wanted)

    # -- rows ------------------------------------------------------------------------------

    def rowid_at(self, position: int) -> Optional[int]:
        if self._order is not None:
            return self._order[position] if 0 <= position < len(self._order) else None
        return self._known.get(position)

    def summary(self, position: int) -> Optional[RowSummary]:
        rowid = self.rowid_at(position)
        return self._cache.get(rowid) if rowid is not None else None

    def id_at(self, position: int) -> Optional[str]:
        summary = self.summary(position)
        return summary.id if summary is not None else None

    def position_of(self, datapoint_id: str) -> Optional[int]:
        """Where a datapoint is shown, if its row is known (for keeping a selection)."""
        rowid = next((r.rowid for r in self._cache.values() if r.id == datapoint_id), None)
        if rowid is None:
            return None
        if self._order is not None:
            try:
                return self._order.index(rowid)
            except ValueError:
                return None
        return next((p for p, r in self._known.items() if r == rowid), None)

    def resolve_ids(self, positions: Iterable[int], on_done: Callable[[list[str]], None]) -> None:
        """The ids of rows (fetching the ones not in the cache in the background)."""
        ids: list[str] = []
        missing: list[int] = []
        for position in sorted(set(positions)):
            rowid = self.rowid_at(position)
            if rowid is None:
                continue
            summary = self._cache.get(rowid)
            if summary is not None:
                ids.append(summary.id)
            else:
                missing.append(rowid)
        if not missing:
            on_done(ids)
            return
        source = self._source
        self._tasks.run(lambda: source.ids_for_rowids(missing),
                        lambda more: on_done(ids + more))

    def _remember(self, rows: Iterable[RowSummary]) -> None:
        for row in rows:
            self._cache[row.rowid] = row
        while len(self._cache) > CACHE_ROWS:
            self._cache.popitem(last=False)

    def _want(self, position: int) -> None:
        if position in self._in_flight:
            return
        self._wanted.add(position)
        if not self._fetch_timer.isActive():
            self._fetch_timer.start()

    def _fetch_wanted(self) -> None:
        wanted = sorted(p for p in self._wanted if p < self._total and p not in self._in_flight)
        self._wanted.clear()
        if not wanted:
            return
        generation = self._generation
        by_rowid = {p: self.rowid_at(p) for p in wanted}
        known = [p for p, r in by_rowid.items() if r is not None]
        unknown = [p for p, r in by_rowid.items() if r is None]
        if known:
            self._fetch_known(generation, known)
        if unknown:
            self._fetch_window(generation, unknown[0], unknown[-1])

    def _fetch_known(self, generation: int, positions: list[int]) -> None:
        low = max(0, positions[0] - BLOCK // 4)
        high = min(self._total - 1, positions[-1] + BLOCK // 4)
        block = [p for p in range(low, high + 1) if p in positions or (
            self.rowid_at(p) is not None and self.rowid_at(p) not in self._cache)]
        rowids = [r for r in (self.rowid_at(p) for p in block) if r is not None]
        self._in_flight.update(block)
        source = self._source
        self._tasks.run(lambda: source.rows_by_rowid(rowids),
                        lambda found: self._rows_arrived(generation, block, list(found.values())),
                        lambda error: self._fetch_failed(generation, block, error))

    def _fetch_window(self, generation: int, first: int, last: int) -> None:
        low = max(0, first - BLOCK // 4)
        high = min(self._total - 1, max(last, low + BLOCK - 1))
        limit = high - low + 1
        selector, sort, source, total = self._selector, self._sort, self._source, self._total
        near_end = self._count_exact and total - low <= 4 * BLOCK + limit
        current = self._still_wanted(generation)
        block = list(range(low, high + 1))
        self._in_flight.update(block)

        def fetch() -> list[RowSummary]:
            if near_end:
                rows = source.last_rows(selector, sort, total - low, current)
                return rows[:limit]
            return source.window(selector, sort, low, limit, current)

        def arrived(rows: list[RowSummary]) -> None:
            if not self._current(generation):
                return
            if self._order is None:
                for offset, row in enumerate(rows):
                    self._known[low + offset] = row.rowid
            self._rows_arrived(generation, block, rows)

        self._tasks.run(fetch, arrived, lambda error: self._fetch_failed(generation, block, error))

    def _fetch_failed(self, generation: int, block: list[int], error: BaseException) -> None:
        self._in_flight.difference_update(block)
        if self._current(generation) and not isinstance(error, Cancelled):
            log.warning("fetching rows failed: %s", error)

    def _rows_arrived(self, generation: int, block: list[int], rows: list[RowSummary]) -> None:
        self._in_flight.difference_update(block)
        if not self._current(generation):
            return
        self._remember(rows)
        if block:
            self.dataChanged.emit(self.index(block[0], 0),
                                  self.index(min(block[-1], self._total - 1), len(COLUMNS) - 1))
        self.rows_fetched.emit()

    def refresh_rows(self, first: int, last: int) -> None:
        """Fetch rows ``first``…``last`` again (their sync state or label may have changed)."""
        first, last = max(0, first), min(self._total - 1, last)
        if last < first:
            return
        positions = [p for p in range(first, last + 1) if self.rowid_at(p) is not None]
        if not positions:
            return
        generation = self._generation
        rowids = [self.rowid_at(p) for p in positions]
        source = self._source

        def arrived(found: dict[int, RowSummary]) -> None:
            if not self._current(generation):
                return
            changed = [p for p, r in zip(positions, rowids)
                       if r is not None and found.get(r) != self._cache.get(r)]
            self._remember(found.values())
            if changed:
                self.dataChanged.emit(self.index(changed[0], 0),
                                      self.index(changed[-1], len(COLUMNS) - 1))
            self.rows_fetched.emit()

        self._tasks.run(lambda: source.rows_by_rowid([r for r in rowids if r is not None]),
                        arrived)


def _display(summary: RowSummary, column: int) -> str:
    if column == TIME:
        return local_time(summary.timestamp)
    if column == LABEL:
        return summary.label or summary.filename or ""
    if column == TYPE:
        return TYPE_NAMES.get(summary.data_type, summary.data_type)
    if column == SIZE:
        return human_size(summary.size_bytes)
    if column == EXPERIMENT:
        return summary.experiment_name or (summary.experiment_id or "")
    return ""
