"""View → Fleet: every bench on this bench's central store, from their heartbeats.

A data steward's question — which benches are behind, offline or need someone, and why —
answered without a terminal. The rows come from ``sync.fleet.read_fleet`` (Qt-free) on a
worker thread; benches that need looking at come first and are tinted.
"""

from __future__ import annotations

from typing import Any, Optional

from PySide6.QtGui import QBrush, QColor, QKeySequence, QShortcut
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

from app.core.paths import BenchPaths
from app.core.units import human_size
from app.ui.formatting import human_age
from app.ui.tasks import TaskManager

COLUMNS = ("Bench", "Host", "State", "Backlog", "Oldest change", "Last seen", "Free disk",
           "Last scrub", "Version", "Problems")
#: Row tints: offline (grey-red), behind or needing attention (amber).
TINTS = {"offline": QColor(244, 214, 214), "attention": QColor(252, 236, 200)}


class FleetDialog(QDialog):
    """Read-only table of the fleet; Refresh (F5) reads the heartbeats again."""

    def __init__(self, paths: BenchPaths, tasks: TaskManager,
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("FleetDialog")
        self.setWindowTitle("Fleet — Bench Data Manager")
        self.paths = paths
        self.tasks = tasks
        self.summary = QLabel("Reading the benches' heartbeats…", self)
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.refresh_button = QPushButton("Refresh", self)
        self.refresh_button.clicked.connect(self.reload)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Refresh), self, self.reload)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(self.summary, 1)
        row.addWidget(self.refresh_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self.resize(1100, 420)
        self.rows: list[dict[str, Any]] = []
        self.reload()

    def reload(self) -> None:
        from sync.fleet import read_fleet

        paths = self.paths
        self.tasks.run(lambda: read_fleet(paths), self._show,
                       lambda error: self.summary.setText(f"The fleet cannot be read: {error}"))

    def _show(self, rows: list[dict[str, Any]]) -> None:
        from sync.fleet import describe_state, scrub_state

        self.rows = rows
        self.table.setRowCount(len(rows))
        for index, bench in enumerate(rows):
            values = (bench["bench_id"], bench.get("host") or "-", describe_state(bench),
                      str(bench.get("backlog_count") or 0),
                      human_age(bench.get("backlog_age_s")) if bench.get("backlog_count") else "-",
                      human_age(bench.get("silent_s")),
                      human_size(bench["disk_free_bytes"])
                      if bench.get("disk_free_bytes") is not None else "-",
                      _scrub_text(scrub_state(bench), bench.get("scrub_age_s")),
                      bench.get("version") or "-", "; ".join(bench.get("problems") or []) or "-")
            tint = TINTS["offline"] if bench["offline"] else \
                TINTS["attention"] if bench["behind"] or bench["attention"] else None
            for column, value in enumerate(values):
                item = QTableWidgetItem(str(value))
                if COLUMNS[column] == "Last scrub" and isinstance(bench.get("last_scrub"), dict):
                    item.setToolTip(str(bench["last_scrub"].get("summary") or ""))
                if tint is not None:
                    item.setBackground(QBrush(tint))
                self.table.setItem(index, column, item)
        offline = sum(1 for r in rows if r["offline"])
        behind = sum(1 for r in rows if r["behind"] and not r["offline"])
        attention = sum(1 for r in rows if r["attention"] and not r["offline"])
        self.summary.setText(f"{len(rows)} bench(es): {offline} offline, {behind} behind, "
                             f"{attention} needing attention" if rows else
                             "No bench has sent a heartbeat to this central store yet.")

    def state_of(self, bench_id: str) -> str:
        return self.cell(bench_id, "State")

    def cell(self, bench_id: str, column: str) -> str:
        """The text in ``column`` (a name in COLUMNS) of ``bench_id``'s row; "" if absent."""
        for index in range(self.table.rowCount()):
            item = self.table.item(index, 0)
            if item is not None and item.text() == bench_id:
                found = self.table.item(index, COLUMNS.index(column))
                return found.text() if found is not None else ""
        return ""


def _scrub_text(state: str, age_s: Optional[float]) -> str:
    return state if age_s is None else f"{state}, {human_age(age_s)} ago"
