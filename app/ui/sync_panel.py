"""Sync at a glance: the status-bar indicator, the tray icon and the Sync panel."""

from __future__ import annotations

from typing import Any, Optional

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSystemTrayIcon,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.ui.formatting import SYNC_STATES, human_age, human_size, local_time, sync_label
from app.ui.resources import icon
from app.ui.sync_status import SyncSnapshot

ENGINE_MISSING = ("Sync is not running (no central store is configured, or it is paused): "
                  "everything is kept safe on this bench and waits. Set the central store "
                  "up in Settings.")


def headline(snapshot: SyncSnapshot) -> tuple[str, str]:
    """(icon name, one line) for the status bar and the tray."""
    waiting = snapshot.backlog_count
    backlog = f"{waiting:,} waiting" + (f" ({human_size(snapshot.backlog_bytes)})"
                                        if snapshot.backlog_bytes else "")
    if snapshot.quarantined:
        return "sync-error", f"{len(snapshot.quarantined)} need attention · {backlog}"
    if not snapshot.configured:
        return "sync-off", f"Local only (no central store set up) · {backlog}"
    if snapshot.paused:
        return "sync-off", f"Sync paused · {backlog}"
    if not snapshot.engine_running:
        return "sync-off", f"Sync not running · {backlog}"
    if snapshot.online is False:
        if snapshot.last_error and "config" in snapshot.last_error.lower():
            return "sync-error", f"Sync stopped: settings need fixing · {backlog}"
        return "sync-offline", f"Offline (will retry) · {backlog}"
    if snapshot.uploading:
        return "sync-busy", f"Uploading · {backlog}"
    if waiting:
        return "sync-busy", f"Syncing · {backlog}"
    return "sync-online", "All synced"


def per_mille(done: int, total: int) -> int:
    return int(1000 * min(done, total) / total) if total > 0 else 0


def show_icon(label: QLabel, name: str, size: int) -> None:
    """Put icon ``name`` on ``label`` unless it is already there: snapshots arrive several
    times a second during an upload, and rendering a pixmap costs the GUI thread."""
    if label.property("iconName") != name:
        label.setPixmap(icon(name).pixmap(size, size))
        label.setProperty("iconName", name)


def mark_error(label: QLabel, error: bool) -> None:
    """Style ``label`` as an error or not; re-polishing (slow) only when that changes."""
    name = "error" if error else ""
    if label.objectName() != name:
        label.setObjectName(name)
        label.style().polish(label)


class SyncIndicator(QWidget):
    """The status bar's sync summary; click opens the Sync panel."""

    clicked = Signal()

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.icon = QLabel(self)
        self.text = QLabel("Sync: …", self)
        self.progress = QProgressBar(self)
        self.progress.setMaximumWidth(120)
        self.progress.setMaximumHeight(14)
        self.progress.setTextVisible(False)
        self.progress.setVisible(False)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.icon)
        layout.addWidget(self.text)
        layout.addWidget(self.progress)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def mousePressEvent(self, _event: Any) -> None:  # noqa: N802
        self.clicked.emit()

    def show_snapshot(self, snapshot: SyncSnapshot) -> None:
        name, line = headline(snapshot)
        show_icon(self.icon, name, 16)
        self.text.setText(line)
        tip = [line]
        if snapshot.oldest_age_s is not None and snapshot.backlog_count:
            tip.append(f"Oldest waiting item: {human_age(snapshot.oldest_age_s)} old")
        if snapshot.last_success:
            tip.append(f"Last successful sync: {local_time(snapshot.last_success)}")
        self.setToolTip("\n".join(tip))
        if snapshot.uploading:
            _label, done, total = snapshot.uploading
            self.progress.setRange(0, 1000)  # per mille: byte counts overflow Qt's int
            self.progress.setValue(per_mille(done, total))
            self.progress.setVisible(True)
        else:
            self.progress.setVisible(False)


class SyncPanel(QWidget):
    """Counts per state, the backlog, quarantined items (with reasons) and controls."""

    retry_requested = Signal(list)
    pause_requested = Signal(bool)
    sync_now_requested = Signal()
    show_datapoint = Signal(str)

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setObjectName("SyncPanel")
        self.state_icon = QLabel(self)
        self.headline = QLabel("…", self)
        self.headline.setObjectName("title")
        self.engine_note = QLabel(ENGINE_MISSING, self)
        self.engine_note.setObjectName("placeholder")
        self.engine_note.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(self.state_icon)
        top.addWidget(self.headline, 1)
        self.pause_button = QPushButton(icon("pause"), "Pause sync", self)
        self.pause_button.setCheckable(True)
        self.pause_button.toggled.connect(self._pause_toggled)
        top.addWidget(self.pause_button)
        self.sync_now_button = QPushButton(icon("refresh"), "Sync now", self)
        self.sync_now_button.clicked.connect(self.sync_now_requested)
        top.addWidget(self.sync_now_button)

        facts = QGroupBox("Backlog", self)
        form = QFormLayout(facts)
        self.backlog = QLabel(self)
        self.oldest = QLabel(self)
        self.last_success = QLabel(self)
        self.last_error = QLabel(self)
        self.last_scrub = QLabel(self)
        self.last_scrub.setWordWrap(True)
        self.last_error.setObjectName("error")
        self.last_error.setWordWrap(True)
        self.upload = QProgressBar(self)
        self.upload.setVisible(False)
        self.upload_label = QLabel("", self)
        form.addRow("Waiting:", self.backlog)
        form.addRow("Oldest waiting:", self.oldest)
        form.addRow("Last successful sync:", self.last_success)
        form.addRow("Last problem:", self.last_error)
        form.addRow("Last verified:", self.last_scrub)
        form.addRow(self.upload_label, self.upload)

        self.counts = QTableWidget(0, 2, self)
        self.counts.setHorizontalHeaderLabels(["State", "Datapoints"])
        self.counts.verticalHeader().setVisible(False)
        self.counts.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.counts.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.counts.setMaximumHeight(150)

        quarantine_box = QGroupBox("Needs attention (refused by the central store)", self)
        self.quarantine = QTableWidget(0, 3, self)
        self.quarantine.setHorizontalHeaderLabels(["Label", "Reason", "Id"])
        self.quarantine.verticalHeader().setVisible(False)
        self.quarantine.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.quarantine.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.quarantine.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.quarantine.doubleClicked.connect(self._open_quarantined)
        self.retry_button = QPushButton("Retry selected", self)
        self.retry_button.clicked.connect(self._retry)
        self.quarantine_empty = QLabel("Nothing needs attention.", self)
        self.quarantine_empty.setObjectName("ok")
        q_layout = QVBoxLayout(quarantine_box)
        q_layout.addWidget(self.quarantine_empty)
        q_layout.addWidget(self.quarantine)
        q_layout.addWidget(self.retry_button, 0, Qt.AlignmentFlag.AlignRight)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.engine_note)
        row = QHBoxLayout()
        row.addWidget(facts, 1)
        row.addWidget(self.counts, 1)
        layout.addLayout(row)
        layout.addWidget(quarantine_box, 1)
        self.snapshot: Optional[SyncSnapshot] = None

    def _pause_toggled(self, paused: bool) -> None:
        self.pause_button.setText("Resume sync" if paused else "Pause sync")
        self.pause_button.setIcon(icon("play" if paused else "pause"))
        self.pause_requested.emit(paused)

    def _retry(self) -> None:
        rows = sorted({i.row() for i in self.quarantine.selectedIndexes()})
        ids = [self.quarantine.item(r, 2).text() for r in rows if self.quarantine.item(r, 2)]
        if ids:
            self.retry_requested.emit(ids)

    def _open_quarantined(self, index: Any) -> None:
        item = self.quarantine.item(index.row(), 2)
        if item:
            self.show_datapoint.emit(item.text())

    def show_snapshot(self, snapshot: SyncSnapshot) -> None:
        previous, self.snapshot = self.snapshot, snapshot
        name, line = headline(snapshot)
        show_icon(self.state_icon, name, 24)
        self.headline.setText(line)
        self.engine_note.setVisible(not snapshot.engine_running and not snapshot.paused)
        # Pausing stops an engine thread, which only works for the engine in this window.
        self.pause_button.setEnabled((snapshot.engine_running or snapshot.paused)
                                     and snapshot.runs_in is None)
        self.pause_button.setToolTip(
            f"Sync runs in {snapshot.runs_in}; stop that service to pause it."
            if snapshot.runs_in else "Stop syncing until resumed (capture goes on)")
        self.sync_now_button.setEnabled(snapshot.engine_running)
        self.last_error.setText(snapshot.last_error or "—")
        mark_error(self.last_error, bool(snapshot.last_error))
        self.retry_button.setEnabled(bool(snapshot.quarantined))
        self.backlog.setText(f"{snapshot.backlog_count:,} datapoint(s), "
                             f"{human_size(snapshot.backlog_bytes) or '0 B'} of files")
        self.oldest.setText(human_age(snapshot.oldest_age_s) + " old"
                            if snapshot.backlog_count and snapshot.oldest_age_s is not None
                            else "—")
        self.last_success.setText(local_time(snapshot.last_success) if snapshot.last_success
                                  else ("never" if snapshot.engine_running else "—"))
        self.last_scrub.setText(snapshot.last_scrub)
        mark_error(self.last_scrub, not snapshot.last_scrub_ok)
        if snapshot.uploading:
            label, done, total = snapshot.uploading
            self.upload_label.setText(f"Uploading {label}:")
            self.upload.setRange(0, 1000)
            self.upload.setValue(per_mille(done, total))
            self.upload.setFormat(f"{human_size(done)} of {human_size(total)}")
            self.upload.setVisible(True)
        else:
            self.upload_label.setText("")
            self.upload.setVisible(False)
        # The tables are rebuilt only when their contents change (not on each progress step).
        if previous is None or previous.counts != snapshot.counts:
            self._show_counts(snapshot)
        if previous is None or previous.quarantined != snapshot.quarantined:
            self._show_quarantined(snapshot)

    def _show_counts(self, snapshot: SyncSnapshot) -> None:
        order = list(SYNC_STATES)
        states = sorted(snapshot.counts, key=lambda s: order.index(s) if s in order else 99)
        self.counts.setRowCount(len(states))
        for row, state in enumerate(states):
            self.counts.setItem(row, 0, QTableWidgetItem(f"{sync_label(state)} ({state})"))
            count = QTableWidgetItem(f"{snapshot.counts[state]:,}")
            count.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.counts.setItem(row, 1, count)

    def _show_quarantined(self, snapshot: SyncSnapshot) -> None:
        self.quarantine.setRowCount(len(snapshot.quarantined))
        for row, item in enumerate(snapshot.quarantined):
            self.quarantine.setItem(row, 0, QTableWidgetItem(item.label))
            self.quarantine.setItem(row, 1, QTableWidgetItem(
                item.reason or "(the reason is recorded by the sync engine)"))
            self.quarantine.setItem(row, 2, QTableWidgetItem(item.datapoint_id))
        self.quarantine.setVisible(bool(snapshot.quarantined))
        self.quarantine_empty.setVisible(not snapshot.quarantined)


class TrayIcon(QSystemTrayIcon):
    """The tray icon mirrors the status bar; failures that need a person pop up once."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(icon("sync-off"), parent)
        self._notified: set[str] = set()
        self._last_error: Optional[str] = None
        self._sync_line = ""
        self._icon_name = "sync-off"
        self._folder_problems: list[str] = []

    def _show_tooltip(self) -> None:
        lines = [f"Bench Data Manager — {self._sync_line}", *self._folder_problems[:5]]
        self.setToolTip("\n".join(lines))

    def show_folder_problems(self, problems: list[str]) -> None:
        """Watched folders that need attention: in the tooltip, and a message when new."""
        new = [p for p in problems if p not in self._folder_problems]
        self._folder_problems = list(problems)
        self._show_tooltip()
        if new and self.supportsMessages():
            self.showMessage("Bench Data Manager: a watched folder needs attention",
                             "\n".join(new[:3]), QSystemTrayIcon.MessageIcon.Warning, 10_000)

    def show_snapshot(self, snapshot: SyncSnapshot) -> None:
        name, line = headline(snapshot)
        if name != self._icon_name:
            self.setIcon(icon(name))
            self._icon_name = name
        self._sync_line = line
        self._show_tooltip()
        new = [q for q in snapshot.quarantined if q.datapoint_id not in self._notified]
        if new and self.supportsMessages():
            self.showMessage("Bench Data Manager: sync needs attention",
                             f"{len(new)} datapoint(s) were refused by the central store. "
                             "Open the Sync panel to see why.",
                             QSystemTrayIcon.MessageIcon.Warning, 10_000)
        self._notified.update(q.datapoint_id for q in new)
        error = snapshot.last_error if snapshot.online is False else None
        if error and error != self._last_error and self.supportsMessages():
            self.showMessage("Bench Data Manager: sync cannot reach the central store",
                             error, QSystemTrayIcon.MessageIcon.Warning, 10_000)
        self._last_error = error
