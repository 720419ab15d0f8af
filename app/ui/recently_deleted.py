"""View → Recently deleted: datapoints deleted within the retention period, restorable.

The list comes from ``BenchService.recently_deleted`` (app/core/deletions.py): label, type,
when it was deleted and by whom (this bench's operator, or the bench a pulled deletion
came from). *Restore* brings the selection back as a new revision, which sync pushes as an
undelete, also after the deletion reached the central store and other benches.
"""

from __future__ import annotations

import logging
from typing import Optional

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core import deletions
from app.core.timestamps import format_local
from app.ui.context import UiContext
from app.ui.operations import OpChanges, restore_datapoints, run_op
from app.ui.tasks import describe_error

log = logging.getLogger(__name__)

COLUMNS = ("Label", "Type", "Deleted", "By", "Id")


class RecentlyDeleted(QDialog):
    """The recently deleted datapoints with *Restore*. Non-modal."""

    #: Datapoints were restored (their ids): the table shows them again.
    restored = Signal(list)

    def __init__(self, context: UiContext, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.context = context
        self.items: list[deletions.Deleted] = []
        self.setWindowTitle("Recently deleted")
        self.setObjectName("recentlyDeleted")
        self.setModal(False)
        self.resize(820, 360)
        days = deletions.retention_days(context.service.paths)
        self.intro = QLabel(f"Deleted datapoints can be restored for {days:g} days "
                            "(config.json: deleted.retention_days). A restore reaches the "
                            "central store and the other benches like an edit.", self)
        self.intro.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setObjectName("deletedTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.restore_button = QPushButton("Restore", self)
        self.restore_button.setObjectName("restoreDeleted")
        self.message = QLabel("", self)
        self.message.setObjectName("hint")
        self.message.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.close)
        row = QHBoxLayout()
        row.addWidget(self.restore_button)
        row.addStretch(1)
        row.addWidget(buttons)
        layout = QVBoxLayout(self)
        layout.addWidget(self.intro)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.message)
        layout.addLayout(row)
        self.restore_button.clicked.connect(self.restore_selected)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        context.operations.did_execute.connect(self._operation_did_execute)
        self._update_buttons()

    def _operation_did_execute(self, changes: OpChanges, initiator: object) -> None:
        """A delete or restore (here or in the window) changes what is listed."""
        if changes.rows and (self.isVisible() or initiator is self):
            self.reload()

    def reload(self) -> None:
        self.context.tasks.run(self.context.service.recently_deleted, self.show_items,
                               self._failed)

    def show_items(self, items: list[deletions.Deleted]) -> None:
        self.items = list(items)
        self.table.setRowCount(len(self.items))
        for row, item in enumerate(self.items):
            datapoint = item.datapoint
            cells = (datapoint.label or getattr(datapoint, "filename", None) or "",
                     datapoint.data_type.value, format_local(item.deleted_at),
                     item.deleted_by or "unknown", datapoint.datapoint_id)
            for column, text in enumerate(cells):
                cell = QTableWidgetItem(str(text))
                cell.setToolTip(str(text))
                self.table.setItem(row, column, cell)
        if not self.items:
            self.message.setText("Nothing was deleted recently.")
        self._update_buttons()

    def selected_ids(self) -> list[str]:
        return [self.items[index.row()].datapoint.datapoint_id
                for index in self.table.selectionModel().selectedRows()]

    def _update_buttons(self) -> None:
        self.restore_button.setEnabled(bool(self.selected_ids()))

    def restore_selected(self) -> None:
        ids = self.selected_ids()
        if not ids:
            return
        self.restore_button.setEnabled(False)

        def done(changes: OpChanges) -> None:
            self.message.setText(f"Restored {len(changes.written)} datapoint(s).")
            self.restored.emit(list(changes.written))

        run_op(self.context, restore_datapoints(ids), done, self._failed, initiator=self)

    def _failed(self, error: BaseException) -> None:
        log.warning("recently deleted: %s", error)
        self.message.setText(describe_error(error))
        self._update_buttons()
