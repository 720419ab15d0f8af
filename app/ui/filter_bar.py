"""The search box, the quick filters and the advanced query field above the table."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Optional

from PySide6.QtCore import QDate, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDateEdit,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import QueryError
from app.ui.filters import FilterState, parse_advanced
from app.ui.resources import icon

TYPE_CHOICES = (("All types", None), ("Values (JSON)", "json"), ("Files", "file"),
                ("Stored files", "object_storage"))
SYNC_CHOICES = (("Any sync state", None), ("Not yet synced", "unsynced"),
                ("Waiting", "pending"), ("Synced", "confirmed"),
                ("Needs attention", "quarantined"))
DATE_CHOICES = ("Any time", "Today", "Last 7 days", "Last 30 days", "Custom range…")


class FilterBar(QWidget):
    """Emits :attr:`changed` with a :class:`FilterState` (typing is debounced)."""

    changed = Signal(object)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.search = QLineEdit(self)
        self.search.setObjectName("search")
        self.search.setPlaceholderText("Search labels, files, names, metadata, values   (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.search.addAction(icon("search"), QLineEdit.ActionPosition.LeadingPosition)
        self.type_combo = QComboBox(self)
        for text, value in TYPE_CHOICES:
            self.type_combo.addItem(text, value)
        self.experiment = QComboBox(self)
        self.experiment.setEditable(True)
        self.experiment.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.experiment.lineEdit().setPlaceholderText("Any experiment")
        self.experiment.setMinimumWidth(140)
        self.date_combo = QComboBox(self)
        self.date_combo.addItems(DATE_CHOICES)
        today = QDate.currentDate()
        self.since = QDateEdit(today.addDays(-7), self)
        self.until = QDateEdit(today, self)
        for edit in (self.since, self.until):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.setVisible(False)
        self.sync_combo = QComboBox(self)
        for text, value in SYNC_CHOICES:
            self.sync_combo.addItem(text, value)
        self.advanced_toggle = QToolButton(self)
        self.advanced_toggle.setText("Query")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolTip("Filter with the query language (Mongo-style JSON)")
        self.advanced = QLineEdit(self)
        self.advanced.setObjectName("advanced")
        self.advanced.setPlaceholderText(
            'Query, e.g. {"value.temperature": {"$gt": 30}, "label": {"$regex": "^run"}}'
            "  — press Enter")
        self.advanced.setVisible(False)
        self.advanced_error = QLabel("", self)
        self.advanced_error.setObjectName("error")
        self.advanced_error.setWordWrap(True)
        self.advanced_error.setVisible(False)

        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.search, 1)
        top.addWidget(self.advanced_toggle)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.type_combo)
        row.addWidget(self.experiment, 1)
        row.addWidget(self.date_combo)
        row.addWidget(self.since)
        row.addWidget(self.until)
        row.addWidget(self.sync_combo)
        row.addStretch(0)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addLayout(row)
        layout.addWidget(self.advanced)
        layout.addWidget(self.advanced_error)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)
        self._debounce.timeout.connect(self.apply)
        self.search.textChanged.connect(self._debounce.start)
        self.experiment.editTextChanged.connect(self._debounce.start)
        self.experiment.activated.connect(lambda _i: self.apply())
        for combo in (self.type_combo, self.sync_combo):
            combo.currentIndexChanged.connect(lambda _i: self.apply())
        self.date_combo.currentIndexChanged.connect(self._date_mode_changed)
        self.since.dateChanged.connect(lambda _d: self.apply())
        self.until.dateChanged.connect(lambda _d: self.apply())
        self.advanced_toggle.toggled.connect(self._toggle_advanced)
        self.advanced.returnPressed.connect(self.apply)
        self.advanced.textChanged.connect(self._check_advanced)

    def set_experiments(self, names: list[str]) -> None:
        current = self.experiment.currentText()
        self.experiment.blockSignals(True)
        self.experiment.clear()
        self.experiment.addItems(names)
        self.experiment.setCurrentIndex(-1)
        self.experiment.setEditText(current)
        self.experiment.blockSignals(False)

    def _date_mode_changed(self, index: int) -> None:
        custom = index == len(DATE_CHOICES) - 1
        self.since.setVisible(custom)
        self.until.setVisible(custom)
        self.apply()

    def _toggle_advanced(self, on: bool) -> None:
        self.advanced.setVisible(on)
        if on:
            self.advanced.setFocus()
        else:
            self.advanced.clear()
            self.show_query_error(None)
            self.apply()

    def _check_advanced(self, text: str) -> None:
        try:
            parse_advanced(text)
        except QueryError as exc:
            self.show_query_error(str(exc))
        else:
            self.show_query_error(None)

    def show_query_error(self, message: Optional[str]) -> None:
        """Show a query error under the advanced field (``None`` clears it)."""
        self.advanced_error.setText(message or "")
        self.advanced_error.setVisible(bool(message))
        self.advanced.setProperty("invalid", bool(message))
        self.advanced.style().polish(self.advanced)
        if message and not self.advanced.isVisible():
            self.advanced_toggle.setChecked(True)

    def _dates(self) -> tuple[Optional[date], Optional[date]]:
        mode = self.date_combo.currentIndex()
        today = date.today()
        if mode == 1:
            return today, today
        if mode == 2:
            return today - timedelta(days=6), today
        if mode == 3:
            return today - timedelta(days=29), today
        if mode == 4:
            return self.since.date().toPython(), self.until.date().toPython()
        return None, None

    def state(self) -> FilterState:
        since, until = self._dates()
        return FilterState(
            text=self.search.text(),
            data_type=self.type_combo.currentData(),
            experiment=self.experiment.currentText().strip() or None,
            since=since, until=until,
            sync_state=self.sync_combo.currentData(),
            advanced=self.advanced.text() if self.advanced.isVisible() else "",
        )

    def apply(self) -> None:
        """Emit the current state now (skipping the typing delay)."""
        self._debounce.stop()
        try:
            state = self.state()
            parse_advanced(state.advanced)
        except QueryError as exc:
            self.show_query_error(str(exc))
            return
        self.show_query_error(None)
        self.changed.emit(state)

    def clear(self) -> None:
        for widget in (self.search, self.advanced):
            widget.blockSignals(True)
            widget.clear()
            widget.blockSignals(False)
        for combo in (self.type_combo, self.sync_combo, self.date_combo):
            combo.blockSignals(True)
            combo.setCurrentIndex(0)
            combo.blockSignals(False)
        self.experiment.setEditText("")
        self.apply()

