"""Captures a crash cut short: a banner above the table and a non-modal list.

The list comes from ``BenchService.interrupted_captures`` (app/core/capture_notes.py):
source path, size, when, which front end. A capture whose source still exists can be
captured again, as it was meant (same id, label and metadata); any can be dismissed.
Watched-folder captures are not offered again: the watcher's next scan captures them.
"""

from __future__ import annotations

import logging
from typing import Optional

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core import fsnames
from app.core.capture_notes import CaptureNote
from app.core.timestamps import format_local
from app.core.units import human_size
from app.ui.context import UiContext
from app.ui.tasks import describe_error

log = logging.getLogger(__name__)

COLUMNS = ("Source", "Size", "Started", "From", "")


class InterruptedCaptures(QDialog):
    """The interrupted captures, each with Capture again / Dismiss. Non-modal."""

    #: A capture was captured again (its id): the table shows it.
    captured = Signal(str)
    #: The list changed (how many are left).
    changed = Signal(int)

    def __init__(self, context: UiContext, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.context = context
        self.notes: list[CaptureNote] = []
        self.setWindowTitle("Interrupted captures")
        self.setObjectName("interruptedCaptures")
        self.setModal(False)
        self.resize(820, 300)
        intro = QLabel("These captures were cut short when the program stopped unexpectedly "
                       "(a crash or power cut). Nothing of them was stored.", self)
        intro.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setObjectName("interruptedTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideLeft)  # the file name matters most
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.retry_button = QPushButton("Capture again", self)
        self.retry_button.setObjectName("retryInterrupted")
        self.dismiss_button = QPushButton("Dismiss", self)
        self.dismiss_button.setObjectName("dismissInterrupted")
        self.message = QLabel("", self)
        self.message.setObjectName("hint")
        self.message.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.close)
        row = QHBoxLayout()
        row.addWidget(self.retry_button)
        row.addWidget(self.dismiss_button)
        row.addStretch(1)
        row.addWidget(buttons)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.message)
        layout.addLayout(row)
        self.retry_button.clicked.connect(self.retry_selected)
        self.dismiss_button.clicked.connect(self.dismiss_selected)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self._update_buttons()

    # -- the list ----------------------------------------------------------------------------

    def reload(self) -> None:
        self.context.tasks.run(self.context.service.interrupted_captures, self.show_notes,
                               self._failed)

    def show_notes(self, notes: list[CaptureNote]) -> None:
        self.notes = list(notes)
        self.table.setRowCount(len(self.notes))
        for row, note in enumerate(self.notes):
            cells = (fsnames.readable(note.source), human_size(note.size_bytes),
                     format_local(note.started_at), note.front_end, note.retry_hint())
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(row, column, item)
        if self.notes:
            self.table.selectRow(0)
        self._update_buttons()
        self.changed.emit(len(self.notes))

    def selected(self) -> Optional[CaptureNote]:
        rows = self.table.selectionModel().selectedRows()
        return self.notes[rows[0].row()] if rows else None

    def _update_buttons(self) -> None:
        note = self.selected()
        self.retry_button.setEnabled(note is not None and note.can_retry)
        self.dismiss_button.setEnabled(note is not None)

    # -- actions -----------------------------------------------------------------------------

    def retry_selected(self) -> None:
        note = self.selected()
        if note is None or not note.can_retry:
            return
        self.retry_button.setEnabled(False)
        self.message.setText(f"Capturing {fsnames.readable(note.source)} again…")

        def done(datapoint: object) -> None:
            self.message.setText(f"Captured {fsnames.readable(note.source)}.")
            self.captured.emit(str(getattr(datapoint, "datapoint_id", "")))
            self.reload()

        # A reader thread: a large copy must not hold up the window's edits.
        self.context.tasks.run(lambda: self.context.service.retry_interrupted(note.note_id),
                               done, self._failed)

    def dismiss_selected(self) -> None:
        note = self.selected()
        if note is None:
            return
        self.context.tasks.run(lambda: self.context.service.dismiss_interrupted(note.note_id),
                               lambda _none: self.reload(), self._failed, write=True)

    def _failed(self, error: BaseException) -> None:
        log.warning("interrupted captures: %s", error)
        self.message.setText(describe_error(error))
        if self.isVisible():
            self.reload()  # dismissed or captured elsewhere meanwhile: show what is left


class InterruptedBanner(QFrame):
    """"N captures were interrupted" above the table, while there are any."""

    captured = Signal(str)

    def __init__(self, context: UiContext, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("interruptedBanner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.context = context
        self.label = QLabel("", self)
        self.show_button = QPushButton("Show…", self)
        self.show_button.setObjectName("showInterrupted")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.show_button)
        self.dialog = InterruptedCaptures(context, self.window())
        self.dialog.changed.connect(self.show_count)
        self.dialog.captured.connect(self.captured)
        self.show_button.clicked.connect(self.open_list)
        self.setVisible(False)
        QTimer.singleShot(0, self.dialog.reload)

    def show_count(self, count: int) -> None:
        self.label.setText(f"{count} capture(s) were interrupted by a crash and not stored."
                           if count else "")
        self.setVisible(count > 0)

    def open_list(self) -> None:
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()
