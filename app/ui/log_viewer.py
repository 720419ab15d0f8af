"""Help → Show logs: the end of the service's and the window's log files, and their folder.

Facility staff asked "what happened on this bench last night?" should not need a terminal:
the dialog shows the last lines of ``benchdata.log`` (the capture service) and
``window.log`` (this window), already redacted when they were written, with a button that
opens the log folder in the file manager.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QFont, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.admin.logs import LOG_NAME, WINDOW_LOG_NAME, tail
from app.core.paths import BenchPaths
from app.ui.tasks import TaskManager

#: How much of a log the dialog shows (the whole file is in the folder).
SHOWN_LINES = 1000

#: The window writes window.log, including the capture it hosts (watcher, API, sync) when
#: no service runs; the headless service (``benchdata run``) writes benchdata.log.
LOGS = [(LOG_NAME, "Capture service (benchdata run)"),
        (WINDOW_LOG_NAME, "This window, and the capture it hosts")]


class LogViewer(QDialog):
    """Read-only view of the newest log lines; refreshes on demand (F5)."""

    def __init__(self, paths: BenchPaths, tasks: TaskManager,
                 parent: Optional[QWidget] = None, start_with: str = WINDOW_LOG_NAME) -> None:
        super().__init__(parent)
        self.setObjectName("LogViewer")
        self.setWindowTitle("Logs — Bench Data Manager")
        self.paths = paths
        self.tasks = tasks
        self.which = QComboBox(self)
        for name, description in LOGS:
            self.which.addItem(f"{description} — {name}", name)
        self.which.setCurrentIndex(max(0, self.which.findData(start_with)))
        self.which.currentIndexChanged.connect(self.reload)
        self.location = QLabel(self)
        self.location.setObjectName("hint")
        self.location.setWordWrap(True)
        self.text = QPlainTextEdit(self)
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setFont(QFont("monospace"))
        self.refresh_button = QPushButton("Refresh", self)
        self.refresh_button.clicked.connect(self.reload)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Refresh), self, self.reload)
        self.folder_button = QPushButton("Open log folder", self)
        self.folder_button.clicked.connect(self.open_folder)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(self.which, 1)
        row.addWidget(self.refresh_button)
        row.addWidget(self.folder_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.location)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)
        self.resize(1000, 600)
        self.reload()

    @property
    def current_file(self) -> Path:
        return self.paths.log_dir / str(self.which.currentData())

    def reload(self) -> None:
        path = self.current_file
        self.location.setText(f"{path} — newest {SHOWN_LINES} lines")
        self.tasks.run(lambda: _read(path), lambda text: self._show(path, text),
                       lambda error: self._show(path, f"The log cannot be read: {error}"))

    def _show(self, path: Path, text: str) -> None:
        if path != self.current_file:
            return  # read for a log the operator has since switched away from
        self.text.setPlainText(text)
        bar = self.text.verticalScrollBar()
        bar.setValue(bar.maximum())  # the newest lines matter most

    def open_folder(self) -> None:
        folder = self.paths.log_dir
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


def _read(path: Path) -> str:
    if not path.exists():
        return f"No log yet: {path.name} is written once that process has run."
    return "\n".join(tail(path, SHOWN_LINES))
