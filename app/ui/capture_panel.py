"""The capture queue panel: one row per file being captured, never a modal dialog.

A view over ``app.capture_queue.CaptureQueue`` (Qt-free; its worker thread does the
copying through the service). The queue's listeners fire on its thread for every progress
report and state change; here they only set a flag, and the panel re-reads the queue at
most every ``REFRESH_MS`` on the GUI thread, so a thousand quick captures or a 2 GiB copy
cost the window a few small repaints a second.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Optional

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.capture_queue import (
    FINISHED,
    RETRYABLE,
    CaptureQueue,
    CaptureRequest,
    ItemState,
    QueueItem,
    QueueSummary,
)
from app.ui.formatting import human_size
from app.ui.tasks import TaskManager

log = logging.getLogger(__name__)

#: The panel re-reads the queue at most this often (ms).
REFRESH_MS = 100

NAME, SIZE, PROGRESS, STATE, ACTION = range(5)
HEADERS = ("File", "Size", "Progress", "State", "")
STATE_COLOURS = {ItemState.DONE: "#1e7d32", ItemState.FAILED: "#c62828",
                 ItemState.CANCELLED: "#607d8b", ItemState.CAPTURING: "#1565c0"}


def action_for(item: QueueItem) -> str:
    """What the row's action cell offers: Cancel while waiting, Retry after a failure."""
    if item.state not in FINISHED:
        return "" if item.cancelling else "Cancel"
    return "Retry" if item.state in RETRYABLE else ""


def per_mille(item: QueueItem) -> int:
    if item.state == ItemState.DONE:
        return 1000
    size = item.request.size
    return int(1000 * min(item.done_bytes, size) / size) if size > 0 else 0


class QueueTableModel(QAbstractTableModel):
    """The queue's items as rows, in the order they were handed over."""

    def __init__(self, parent: Optional[Any] = None) -> None:
        super().__init__(parent)
        self._items: list[QueueItem] = []

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._items)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return HEADERS[section]
        return None

    def item_at(self, row: int) -> Optional[QueueItem]:
        return self._items[row] if 0 <= row < len(self._items) else None

    def row_of(self, key: int) -> Optional[int]:
        for row, item in enumerate(self._items):
            if item.key == key:
                return row
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex,
             role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        item = self.item_at(index.row()) if index.isValid() else None
        if item is None:
            return None
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if column == NAME:
                return item.name
            if column == SIZE:
                return human_size(item.request.size)
            if column == PROGRESS:
                return per_mille(item)
            if column == STATE:
                return item.describe_state()
            if column == ACTION:
                return action_for(item)
        elif role == Qt.ItemDataRole.ToolTipRole:
            if column == NAME:
                return str(item.request.path)
            if column == STATE and item.error:
                return item.error
        elif role == Qt.ItemDataRole.ForegroundRole:
            if column == STATE and item.state in STATE_COLOURS:
                return QColor(STATE_COLOURS[item.state])
            if column == ACTION:
                return QColor("#1565c0")
        elif role == Qt.ItemDataRole.TextAlignmentRole and column == SIZE:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def show_items(self, items: list[QueueItem]) -> None:
        """Bring the rows up to date: appended items are inserted, changed rows repainted;
        items the queue forgot (Clear finished) reset the model."""
        old_keys = [i.key for i in self._items]
        new_keys = [i.key for i in items]
        if new_keys[:len(old_keys)] != old_keys:
            self.beginResetModel()
            self._items = items
            self.endResetModel()
            return
        changed = [row for row, (before, after) in enumerate(zip(self._items, items))
                   if before is not after]
        if len(items) > len(old_keys):
            self.beginInsertRows(QModelIndex(), len(old_keys), len(items) - 1)
            self._items = items
            self.endInsertRows()
        else:
            self._items = items
        if changed:
            self.dataChanged.emit(self.index(changed[0], 0),
                                  self.index(changed[-1], len(HEADERS) - 1))


class ProgressDelegate(QStyledItemDelegate):
    """Draws the progress column as a progress bar (per mille)."""

    def paint(self, painter: Any, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        value = index.data(Qt.ItemDataRole.DisplayRole)
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 3, -2, -3)  # type: ignore[attr-defined]
        bar.minimum = 0  # type: ignore[attr-defined]
        bar.maximum = 1000  # type: ignore[attr-defined]
        bar.progress = int(value or 0)  # type: ignore[attr-defined]
        bar.text = f"{int(value or 0) // 10} %"  # type: ignore[attr-defined]
        bar.textVisible = True  # type: ignore[attr-defined]
        bar.state = option.state  # type: ignore[attr-defined]
        style = option.widget.style() if option.widget else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter)


class CapturePanel(QWidget):
    """The queue's rows, its summary, and Cancel / Retry per item and for all."""

    #: Ids of datapoints captured since the last refresh (GUI thread).
    captured = Signal(list)
    #: The run's summary changed (a ``QueueSummary``).
    summary_changed = Signal(object)
    #: The queue went from capturing to idle (the run's summary).
    finished = Signal(object)
    #: Emitted after every refresh (tests wait on it).
    refreshed = Signal()

    def __init__(self, queue: CaptureQueue, tasks: TaskManager,
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("CapturePanel")
        self.queue = queue
        self._tasks = tasks
        self._dirty = threading.Event()
        self._reported: set[int] = set()
        self._was_active = False
        self.summary = QueueSummary()

        self.headline = QLabel("Nothing to capture", self)
        self.headline.setObjectName("captureHeadline")
        self.cancel_all_button = QPushButton("Cancel all", self)
        self.cancel_all_button.setObjectName("danger")
        self.cancel_all_button.setToolTip("Skip every waiting file and stop the one being "
                                          "copied; nothing half-copied is kept")
        self.cancel_all_button.clicked.connect(queue.cancel_all)
        self.retry_failed_button = QPushButton("Retry failed", self)
        self.retry_failed_button.clicked.connect(self.retry_failed)
        self.clear_button = QPushButton("Clear finished", self)
        self.clear_button.setToolTip("Remove captured, failed and cancelled rows from this "
                                     "list (captured datapoints stay in the store)")
        self.clear_button.clicked.connect(queue.clear_finished)
        self.model = QueueTableModel(self)
        self.table = QTableView(self)
        self.table.setObjectName("captureQueue")
        self.table.setModel(self.model)
        self.table.setItemDelegateForColumn(PROGRESS, ProgressDelegate(self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Stretch)
        metrics = self.fontMetrics()
        for column, sample in ((SIZE, "1023.9 MiB  "), (PROGRESS, "x" * 22),
                               (STATE, "x" * 34), (ACTION, "Cancel  ")):
            self.table.setColumnWidth(column, metrics.horizontalAdvance(sample) + 12)
        self.table.clicked.connect(self._clicked)

        top = QHBoxLayout()
        top.addWidget(self.headline, 1)
        top.addWidget(self.retry_failed_button)
        top.addWidget(self.clear_button)
        top.addWidget(self.cancel_all_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        queue.subscribe(self._queue_changed)
        self._show_summary(self.summary)

    # -- steering ------------------------------------------------------------------------

    def add(self, requests: list[CaptureRequest]) -> list[int]:
        keys = self.queue.add(requests)
        self._was_active = True  # so ``finished`` follows, however quick the captures are
        self.refresh()
        return keys

    def cancel_item(self, key: int) -> None:
        self.queue.cancel(key)

    def retry_item(self, key: int) -> None:
        if self.queue.retry(key):
            self._was_active = True
            self.refresh()

    def retry_failed(self) -> None:
        retried = [self.queue.retry(item.key) for item in self.queue.items()
                   if item.state == ItemState.FAILED]
        if any(retried):
            self._was_active = True
            self.refresh()

    def _clicked(self, index: QModelIndex) -> None:
        item = self.model.item_at(index.row())
        if index.column() != ACTION or item is None:
            return
        action = action_for(item)
        if action == "Cancel":
            self.cancel_item(item.key)
        elif action == "Retry":
            self.retry_item(item.key)

    # -- following the queue -------------------------------------------------------------

    def _queue_changed(self) -> None:
        """Any thread: ask the GUI thread for one refresh soon (coalesced)."""
        if not self._dirty.is_set():
            self._dirty.set()
            self._tasks.call_soon(self._schedule)

    def _schedule(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def refresh(self) -> None:
        """Re-read the queue: rows, summary, and the ids captured since the last look."""
        self._dirty.clear()
        items = self.queue.items()
        self.model.show_items(items)
        new = [i for i in items if i.state == ItemState.DONE and i.key not in self._reported
               and i.datapoint_id]
        self._reported.update(i.key for i in new)
        summary = self.queue.summary()
        if summary != self.summary:
            self._show_summary(summary)
        if new:
            self.captured.emit([i.datapoint_id for i in new])
        if self._was_active and not summary.active:
            self.finished.emit(summary)
        self._was_active = summary.active
        self.refreshed.emit()

    def _show_summary(self, summary: QueueSummary) -> None:
        self.summary = summary
        self.headline.setText(summary.headline() or "Nothing to capture")
        self.cancel_all_button.setEnabled(summary.active)
        self.retry_failed_button.setEnabled(summary.failed > 0 or any(
            i.state == ItemState.FAILED for i in self.queue.items()))
        self.clear_button.setEnabled(self.model.rowCount() > 0)
        self.summary_changed.emit(summary)


def confirm_close_with_captures(parent: QWidget, summary: QueueSummary) -> bool:
    """Ask before closing the window while files wait; says what happens to them."""
    box = QMessageBox(QMessageBox.Icon.Warning, "Captures are still running",
                      f"{summary.waiting} file(s) are not captured yet "
                      f"({human_size(summary.bytes_left)}).", QMessageBox.StandardButton.NoButton,
                      parent)
    box.setInformativeText(
        f"If you close now, they are NOT captured: the file being copied is abandoned "
        f"(nothing half-copied is kept) and the waiting ones are skipped. The originals stay "
        f"where they are; drop them again later to capture them. The {summary.done} file(s) "
        f"already captured are safe.")
    close = box.addButton("Close and cancel them", QMessageBox.ButtonRole.DestructiveRole)
    keep = box.addButton("Keep capturing", QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(keep)
    box.exec()
    return box.clickedButton() is close
