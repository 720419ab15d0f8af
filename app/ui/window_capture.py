"""The main window's file capture part: drops and picks go to the capture queue.

The queue (``app/capture_queue.py``) captures on its own thread and the Captures panel is
its view; what it committed reaches the table at most every ``POLL_MS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog

from app.capture_queue import CaptureRequest, QueueSummary
from app.ui.capture import CaptureDialog
from app.ui.operations import OpChanges


class CaptureControl:
    """Mixed into ``MainWindow``: drag and drop, Capture files…, the capture queue."""

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        local = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if local:
            event.acceptProposedAction()
            self.drop_overlay.show_for(len(local), sum(1 for p in local if p.is_dir()))
        else:
            event.ignore()

    def dragLeaveEvent(self, event: Any) -> None:  # noqa: N802
        self.drop_overlay.hide()
        super().dragLeaveEvent(event)

    def dragMoveEvent(self, event: Any) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        self.drop_overlay.hide()
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        # Open the dialog after the drop returns, so the source application is not blocked.
        QTimer.singleShot(0, lambda: self.capture_files(paths))

    def capture_files_dialog(self) -> None:
        paths, _filter = QFileDialog.getOpenFileNames(self, "Capture files")
        if paths:
            self.capture_files(paths)

    def capture_files(self, paths: Sequence[str | Path]) -> CaptureDialog:
        dialog = CaptureDialog(self.context, paths, self)
        dialog.submitted.connect(self.enqueue_captures)
        dialog.finished.connect(lambda _r: setattr(self, "dialog", None))
        self.dialog = dialog
        dialog.open()
        return dialog

    def enqueue_captures(self, requests: list[CaptureRequest]) -> list[int]:
        """Hand files to the capture queue and show its panel (the window stays usable)."""
        keys = self.capture_panel.add(requests)
        self.show_capture_panel()
        return keys

    def show_capture_panel(self) -> None:
        self.capture_dock.show()
        self.capture_dock.raise_()

    def toggle_capture_panel(self) -> None:
        if self.capture_dock.isVisible():
            self.capture_dock.hide()
        else:
            self.show_capture_panel()

    def _show_capture_summary(self, summary: QueueSummary) -> None:
        self.capture_summary.setVisible(summary.active)
        self.capture_summary.setText(summary.headline())

    def _queue_captured(self, ids: list[str]) -> None:
        """Rows the queue committed: into the table at most every POLL_MS (a thousand
        small files must not re-run the table's query a thousand times)."""
        self._queue_ids.extend(ids)
        self.captured.emit(ids)
        if not self.capture_refresh.isActive():
            self._show_queue_captures()
            self.capture_refresh.start()

    def _show_queue_captures(self) -> None:
        ids, self._queue_ids = self._queue_ids, []
        if not ids:
            return
        # Never take the selection away from what the operator is working on.
        idle = not self.selected_rows() and self.detail.datapoint_id is None
        self.context.operations.announce(
            OpChanges(written=tuple(ids), show=ids[0] if idle else None, names=True),
            self.capture_panel)

    def _queue_finished(self, summary: QueueSummary) -> None:
        self._show_queue_captures()
        ending = ("; safe on this bench." if summary.done else ".") + \
            (" See the Captures panel for why." if summary.failed else "")
        self.show_message(summary.headline() + ending)
