"""The main window's table view of datapoints (the rows come from ``table_model``)."""

from __future__ import annotations

from typing import Optional

from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget


class DatapointTable(QTableView):
    """The table view, tuned for a million rows (fixed row heights, no word wrap)."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("datapoints")
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setAlternatingRowColors(True)
        self.setShowGrid(False)
        self.setWordWrap(False)
        self.setCornerButtonEnabled(False)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        vertical = self.verticalHeader()
        vertical.setVisible(False)
        vertical.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vertical.setDefaultSectionSize(self.fontMetrics().height() + 8)
        horizontal = self.horizontalHeader()
        horizontal.setHighlightSections(False)
        horizontal.setStretchLastSection(False)
        horizontal.setSectionsMovable(True)

    def visible_rows(self) -> tuple[int, int]:
        first = self.rowAt(0)
        last = self.rowAt(self.viewport().height() - 1)
        if first < 0:
            return 0, -1
        if last < 0:
            last = (self.model().rowCount() - 1) if self.model() else -1
        return first, last
