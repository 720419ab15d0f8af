"""The main window: table, filters, detail pane, capture, and sync at a glance."""

from __future__ import annotations

import logging
from typing import Any, Optional

from PySide6.QtCore import QByteArray, QItemSelectionModel, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QLabel,
    QMainWindow,
    QPushButton,
    QSplitter,
    QSystemTrayIcon,
    QVBoxLayout,
    QWidget,
)

from app.capture_queue import CaptureQueue, service_capture
from app.ui.attach import ServiceAttachment
from app.ui.capture import EditDialog, ValueDialog, confirm_delete
from app.ui.capture_panel import CapturePanel, confirm_close_with_captures
from app.ui.changes import POLL_MS, StoreChanges
from app.ui.context import UiContext
from app.ui.datapoint_table import DatapointTable
from app.ui.detail import DetailPane
from app.ui.drop_overlay import DropOverlay
from app.ui.filter_bar import FilterBar
from app.ui.filters import FilterState, build_selector
from app.ui.operations import OpChanges, delete_datapoints, restore_datapoints, run_op
from app.ui.resources import icon
from app.ui.rowsource import RowSource
from app.ui.sync_panel import SyncIndicator, SyncPanel, TrayIcon
from app.ui.sync_status import SyncSnapshot
from app.ui.table_model import TIME, DatapointTableModel
from app.ui.tasks import describe_error, lower_thread_priority
from app.ui.window_actions import WindowActions
from app.ui.window_capture import CaptureControl
from app.ui.window_dialogs import WindowDialogs
from app.ui.window_service import ServiceControl
from app.ui.window_sync import SyncControl
from app.ui.window_watch import WATCH_HEALTH_MS, WatchControl

log = logging.getLogger(__name__)


class MainWindow(WindowActions, WindowDialogs, CaptureControl, SyncControl, ServiceControl,
                 WatchControl, QMainWindow):
    """Browse, search, inspect and capture datapoints; see and steer sync.

    The window holds the views; its parts (actions and menus, dialogs, file capture, sync, the
    capture service, watched folders) are mixed in from ``app/ui/window_*.py``. What it
    changes in the store goes through ``app/ui/operations.py``, and every view redraws on
    ``context.operations.did_execute`` (:meth:`_operation_did_execute`).
    """

    #: Emitted after a capture from this window committed; argument: the new ids.
    captured = Signal(list)
    #: Emitted when a sync snapshot was shown (tests wait on it).
    sync_refreshed = Signal(object)

    def __init__(self, context: UiContext, runner: Any = None) -> None:
        super().__init__()
        self.context = context
        self.runner = runner
        self.setWindowTitle("Bench Data Manager")
        self.setWindowIcon(icon("app"))
        self.setAcceptDrops(True)
        self.drop_overlay = DropOverlay(self)
        self.setObjectName("MainWindow")
        self._filter_state = FilterState()
        self._selected_ids: list[str] = []
        self._restore_id: Optional[str] = None
        self._closing = False
        self._health: Any = None  # app.ingest.health.HealthBoard, built on first use
        #: Set by File → Stop capture… until the service has gone (then no take-over).
        self._capture_stop_requested = False
        #: The options the window's components start with (for Start capture).
        self.component_options: dict[str, Any] = {}
        self.dialog: Optional[QWidget] = None
        self.sync_snapshot: Optional[SyncSnapshot] = None
        self._sync_paused = False
        #: The ids the last delete in this window removed (Ctrl+Z restores them).
        self._just_deleted: list[str] = []
        self._deleted_view: Any = None
        #: Set while this window is attached to a capture service in another process.
        self.attachment: Optional[ServiceAttachment] = None

        self.source = RowSource(context.service.store, context.service.names.name_for)
        self.model = DatapointTableModel(self.source, context.tasks, self)
        self.filter_bar = FilterBar(self)
        self.filter_bar.set_experiments(context.known_names().get("experiment", []))
        self.table = DatapointTable(self)
        self.table.setModel(self.model)
        self.table.horizontalHeader().setSortIndicator(TIME, Qt.SortOrder.DescendingOrder)
        self.table.setSortingEnabled(True)
        self._set_column_widths()
        self.detail = DetailPane(context, self)
        self.empty_hint = QLabel("No datapoints yet. Drop files here to capture them, or press "
                                 "Ctrl+N to type a value.", self)
        self.empty_hint.setObjectName("dropHint")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setVisible(False)

        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(6, 6, 0, 6)
        from app.ui.interrupted import InterruptedBanner

        self.interrupted_banner = InterruptedBanner(context, self)
        self.interrupted_banner.captured.connect(lambda _id: self.refresh())
        left_layout.addWidget(self.interrupted_banner)
        left_layout.addWidget(self.filter_bar)
        left_layout.addWidget(self.table, 1)
        left_layout.addWidget(self.empty_hint)
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.setObjectName("mainSplitter")
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.detail)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.setCentralWidget(self.splitter)

        self.sync_panel = SyncPanel(self)
        self.sync_dock = QDockWidget("Sync", self)
        self.sync_dock.setObjectName("syncDock")
        self.sync_dock.setWidget(self.sync_panel)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.sync_dock)
        self.sync_dock.hide()
        from app.ui.watch_panel import WatchPanel

        self.watch_panel = WatchPanel(context, self)
        self.watch_panel.status_provider = self._watch_statuses
        self.watch_panel.scan_requester = self._request_scan
        self.watch_dock = QDockWidget("Watched folders", self)
        self.watch_dock.setObjectName("watchDock")
        self.watch_dock.setWidget(self.watch_panel)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.watch_dock)
        self.tabifyDockWidget(self.sync_dock, self.watch_dock)
        self.watch_dock.hide()
        # Files dropped or picked are captured here, on the queue's own thread: the window
        # stays usable (app/capture_queue.py; the panel is its view).
        self.capture_queue = CaptureQueue(service_capture(context.service),
                                          thread_initializer=lower_thread_priority,
                                          describe_error=describe_error)
        self.capture_panel = CapturePanel(self.capture_queue, context.tasks, self)
        self.capture_dock = QDockWidget("Captures", self)
        self.capture_dock.setObjectName("captureDock")
        self.capture_dock.setWidget(self.capture_panel)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.capture_dock)
        self.tabifyDockWidget(self.watch_dock, self.capture_dock)
        self.capture_dock.hide()
        self._queue_ids: list[str] = []
        self.capture_refresh = QTimer(self)
        self.capture_refresh.setSingleShot(True)
        self.capture_refresh.setInterval(POLL_MS)
        self.capture_refresh.timeout.connect(self._show_queue_captures)

        self.count_label = QLabel("", self)
        self.busy_label = QLabel("", self)
        self.busy_label.setObjectName("hint")
        self.sync_indicator = SyncIndicator(self)
        self.sync_indicator.clicked.connect(self.show_sync_panel)
        self.service_label = QLabel("", self)
        self.service_label.setObjectName("hint")
        self.service_label.setVisible(False)
        self.statusBar().addWidget(self.count_label)
        self.statusBar().addWidget(self.busy_label)
        self.watch_health = QPushButton("", self)
        self.watch_health.setObjectName("watchHealth")
        self.watch_health.setFlat(True)
        self.watch_health.setVisible(False)
        self.watch_health.clicked.connect(self.toggle_watch_panel)
        self.capture_summary = QPushButton("", self)
        self.capture_summary.setObjectName("captureSummary")
        self.capture_summary.setFlat(True)
        self.capture_summary.setVisible(False)
        self.capture_summary.setToolTip("Show the capture queue")
        self.capture_summary.clicked.connect(self.show_capture_panel)
        self.statusBar().addPermanentWidget(self.capture_summary)
        self.statusBar().addPermanentWidget(self.watch_health)
        self.statusBar().addPermanentWidget(self.service_label)
        self.statusBar().addPermanentWidget(self.sync_indicator)
        self.tray: Optional[TrayIcon] = None
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.tray = TrayIcon(self)
            self.tray.activated.connect(lambda _reason: (self.showNormal(), self.activateWindow()))
            self.tray.show()

        self._make_actions()
        self._connect()
        self._restore_layout()

        # One poll for commits made anywhere; every view that shows the store listens.
        self.changes = StoreChanges(context.service.paths.database, context.tasks, self)
        self.changes.changed.connect(self._store_changed)
        self.changes.unchanged.connect(self._refresh_hosted_sync)
        self.changes.changed.connect(self.check_watch_health)
        self.changes.unchanged.connect(self._check_watch_health_if_due)
        self._health_checked_at = -WATCH_HEALTH_MS / 1000
        self.changes.changed.connect(self.watch_panel.refresh_if_shown)
        self.changes.start()
        # One signal for what this window itself changed: captures, edits, deletions.
        context.operations.did_execute.connect(self._operation_did_execute)
        self.apply_filters(self._filter_state)
        self.refresh_sync()

    # -- setup -----------------------------------------------------------------------------

    def _set_column_widths(self) -> None:
        metrics = self.table.fontMetrics()
        widths = {0: "2026-11-23 14:05:00 CEST  ", 1: "x" * 26, 2: "Stored file  ",
                  3: "1000.0 MB  ", 4: "EXP-2026-0042  ", 5: "Needs attention  "}
        for column, sample in widths.items():
            self.table.setColumnWidth(column, metrics.horizontalAdvance(sample) + 12)

    def _connect(self) -> None:
        self.filter_bar.changed.connect(self.apply_filters)
        self.model.query_failed.connect(self._query_failed)
        self.model.first_rows_shown.connect(self._first_rows_shown)
        self.model.count_known.connect(self._count_known)
        self.model.query_started.connect(lambda: self.busy_label.setText("Searching…"))
        self.model.order_loaded.connect(lambda: self.busy_label.setText(""))
        self.model.modelReset.connect(self._reselect)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.table.doubleClicked.connect(lambda _i: self.detail.open_external())
        self.detail.edit_requested.connect(self.edit_datapoint)
        self.detail.delete_requested.connect(self.delete_ids)
        self.detail.message.connect(self.show_message)
        self.context.tasks.failed.connect(self.show_message)
        self.sync_panel.show_datapoint.connect(self.select_id)
        self.sync_panel.pause_requested.connect(self._pause_sync)
        self.sync_panel.retry_requested.connect(self._retry_sync)
        self.sync_panel.sync_now_requested.connect(self._sync_now)
        self.watch_panel.saved.connect(self.apply_watch_rules)
        self.capture_panel.captured.connect(self._queue_captured)
        self.capture_panel.summary_changed.connect(self._show_capture_summary)
        self.capture_panel.finished.connect(self._queue_finished)

    # -- filters and the table ---------------------------------------------------------------

    def _experiment_id(self, name: str) -> str:
        # The registry's lookup, as queries, the CLI and the API resolve names (pins win).
        return self.context.service.names.lookup("experiment", name)

    def apply_filters(self, state: FilterState) -> None:
        self._filter_state = state
        try:
            selector = build_selector(state, self._experiment_id)
        except Exception as exc:  # noqa: BLE001 - QueryError/ValidationError: say so inline
            self.filter_bar.show_query_error(describe_error(exc))
            return
        self.model.set_query(selector)

    def _query_failed(self, message: str) -> None:
        self.busy_label.setText("")
        if self._filter_state.advanced:
            self.filter_bar.show_query_error(message)
        else:
            self.show_message(f"Search failed: {message}")

    def _first_rows_shown(self, rows: int) -> None:
        if not self.model.count_exact:
            self.count_label.setText(f"{rows:,}+ datapoints (counting…)")
        self._show_empty_hint()

    def _count_known(self, total: int) -> None:
        filtered = not self._filter_state.is_empty()
        self.count_label.setText(f"{total:,} datapoint{'s' if total != 1 else ''}"
                                 + (" match" if filtered else ""))
        self._show_empty_hint()

    def _show_empty_hint(self) -> None:
        empty = self.model.rowCount() == 0 and self._filter_state.is_empty() and \
            self.model.count_exact
        self.empty_hint.setVisible(empty)

    def _selection_changed(self, *_args: Any) -> None:
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        self._update_actions()
        if len(rows) == 1:
            datapoint_id = self.model.id_at(rows[0])
            if datapoint_id and datapoint_id != self.detail.datapoint_id:
                self.detail.show_datapoint(datapoint_id)
            elif datapoint_id is None:
                self.model.resolve_ids(rows, lambda ids: ids and self.detail.show_datapoint(ids[0]))
        elif len(rows) > 1:
            self.detail.show_many(len(rows))
        else:
            self.detail.show_datapoint(None)

    def selected_rows(self) -> list[int]:
        return sorted({index.row() for index in self.table.selectionModel().selectedRows()})

    def _update_actions(self) -> None:
        count = len(self.selected_rows()) if self.table.selectionModel() else 0
        self.edit_action.setEnabled(count == 1)
        self.delete_action.setEnabled(count >= 1)
        self.undo_delete_action.setEnabled(bool(self._just_deleted))

    def _reselect(self) -> None:
        """After a refresh, keep the selected datapoint selected (if still shown)."""
        wanted = self._restore_id or self.detail.datapoint_id
        self._restore_id = None
        self._update_actions()  # a reset clears the selection without selectionChanged
        if not wanted:
            return
        position = self.model.position_of(wanted)
        if position is None:
            self._forget_detail_unless_shown(wanted)
            return
        self.table.selectionModel().select(
            self.model.index(position, 0),
            QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)

    def _forget_detail_unless_shown(self, datapoint_id: str) -> None:
        """The detail pane shows only what the current view holds: a datapoint that a search
        or filter has hidden (or that is gone) must not stay there with Edit and Delete.
        Its row may simply not be loaded yet (a long table), so ask the store."""
        selector, source = self.model.selector, self.source
        probe = {"_id": datapoint_id} if not selector else {"$and": [selector,
                                                                     {"_id": datapoint_id}]}

        def counted(matches: int) -> None:
            if matches == 0 and self.detail.datapoint_id == datapoint_id:
                self.detail.show_datapoint(None)

        self.context.tasks.run(lambda: source.count(probe), counted, lambda _e: None)

    def select_id(self, datapoint_id: str) -> None:
        position = self.model.position_of(datapoint_id)
        if position is None:
            self.detail.show_datapoint(datapoint_id)
            return
        index = self.model.index(position, 0)
        self.table.selectionModel().select(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows)
        self.table.scrollTo(index)

    def refresh(self) -> None:
        self.model.refresh()
        self.detail.reload()
        self.refresh_sync()

    def focus_search(self) -> None:
        self.filter_bar.search.setFocus()
        self.filter_bar.search.selectAll()

    def bring_to_front(self) -> None:
        """Another start on this store asked for this window (one window per store)."""
        if self.isMinimized():
            self.showNormal()
        self.show()
        self.raise_()
        self.activateWindow()
        self.show_message("Bench Data Manager is already open here; this is its window.")

    def toggle_detail(self) -> None:
        self.detail.setVisible(not self.detail.isVisible())

    # -- polling for changes made elsewhere ---------------------------------------------------

    def poll(self) -> None:
        """Look for commits made elsewhere now instead of at the next tick."""
        self.changes.poll()

    def _store_changed(self) -> None:
        """Someone committed (the watcher, sync, the API, the CLI, this window): redraw."""
        if self._closing:
            return
        self.refresh_sync()
        first, last = self.table.visible_rows()
        self.model.refresh_rows(first, last)
        self._recount()
        self.detail.reload()

    def _recount(self) -> None:
        selector, source = self.model.selector, self.source
        shown = self.model.rowCount()

        def counted(total: int) -> None:
            if total != shown and self.model.count_exact:
                self._restore_id = self.detail.datapoint_id
                self.model.refresh()

        self.context.tasks.run(lambda: source.count(selector), counted, lambda _e: None)

    # -- capture, edit, delete ------------------------------------------------------------

    def new_value(self) -> ValueDialog:
        dialog = ValueDialog(self.context, self)
        dialog.captured.connect(self._captured)
        dialog.finished.connect(lambda _r: setattr(self, "dialog", None))
        self.dialog = dialog
        dialog.open()
        return dialog

    def _captured(self, ids: list[str]) -> None:
        if not ids:
            return
        self.show_message(f"Captured {len(ids)} datapoint(s); safe on this bench.")
        self.captured.emit(ids)

    def edit_selected(self) -> None:
        rows = self.selected_rows()
        if len(rows) == 1:
            self.model.resolve_ids(rows, lambda ids: ids and self.edit_datapoint(ids[0]))

    def edit_datapoint(self, datapoint_id: str) -> None:
        service = self.context.service

        def opened(stored: Any) -> None:
            dp = stored.datapoint
            dialog = EditDialog(self.context, datapoint_id, dp.label, dp.custom_metadata, self,
                                ownership=dp.ownership_info.ids() if dp.ownership_info else {})
            dialog.saved.connect(self._edited)
            dialog.finished.connect(lambda _r: setattr(self, "dialog", None))
            self.dialog = dialog
            dialog.open()

        self.context.tasks.run(lambda: service.get_stored(datapoint_id), opened)

    def _edited(self, _datapoint_id: str) -> None:
        self.show_message("Saved; sync will carry the change.")

    def delete_selected(self) -> None:
        rows = self.selected_rows()
        if rows:
            self.model.resolve_ids(rows, self.delete_ids)

    def delete_ids(self, ids: list[str], confirmed: bool = False) -> None:
        if not ids:
            return
        what = f"“{self.detail.title.text()}”" if len(ids) == 1 and \
            self.detail.datapoint_id == ids[0] else "this datapoint"
        if not confirmed and not confirm_delete(self, len(ids), what):
            return
        self._just_deleted = []
        run_op(self.context, delete_datapoints(ids), self._deleted,
               lambda error: self.show_message(f"Not deleted: {describe_error(error)}"), self)

    def _deleted(self, changes: OpChanges) -> None:
        self._just_deleted = list(changes.removed)  # Edit → Undo delete (Ctrl+Z) restores
        self.undo_delete_action.setEnabled(bool(changes.removed))
        self.show_message(f"Deleted {len(changes.removed)} datapoint(s). Ctrl+Z undoes it; "
                          "View → Recently deleted restores later.")

    def undo_delete(self) -> None:
        """Restore what the last delete in this window removed (new revisions)."""
        ids, self._just_deleted = self._just_deleted, []
        self.undo_delete_action.setEnabled(False)
        if ids:
            run_op(self.context, restore_datapoints(ids),
                   lambda changes: self._restored(list(changes.written)),
                   lambda error: self.show_message(f"Not restored: {describe_error(error)}"),
                   self)

    def _restored(self, ids: list[str]) -> None:
        self.show_message(f"Restored {len(ids)} datapoint(s).")

    def _operation_did_execute(self, changes: OpChanges, _initiator: Any) -> None:
        """Something this window did changed the store (``app/ui/operations.py``): each
        view redraws what it shows of it."""
        if self._closing:
            return
        if changes.names:  # a new experiment name belongs in the filter's list
            self.filter_bar.set_experiments(self.context.known_names().get("experiment", []))
        if changes.removed:
            self.table.clearSelection()
            self.detail.show_datapoint(None)
        if changes.show:
            self._restore_id = changes.show  # the refreshed table selects it
            self.detail.show_datapoint(changes.show)
        if changes.rows:
            self.model.refresh()
            self.refresh_sync()

    def show_recently_deleted(self) -> Any:
        from app.ui.recently_deleted import RecentlyDeleted

        if self._deleted_view is None:
            self._deleted_view = RecentlyDeleted(self.context, self)
            self._deleted_view.restored.connect(self._restored)
        self._deleted_view.reload()
        self._deleted_view.show()
        self._deleted_view.raise_()
        return self._deleted_view

    # -- the rest -----------------------------------------------------------------------------

    def show_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    # -- layout memory -----------------------------------------------------------------------

    def _restore_layout(self) -> None:
        settings = self.context.settings
        geometry = settings.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        state = settings.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            self.restoreState(state)
        splitter = settings.value("window/splitter")
        if isinstance(splitter, QByteArray) and not splitter.isEmpty():
            self.splitter.restoreState(splitter)
        else:
            self.splitter.setSizes([760, 520])
        header = settings.value("window/header")
        if isinstance(header, QByteArray) and not header.isEmpty():
            self.table.horizontalHeader().restoreState(header)
            self.table.horizontalHeader().setSortIndicator(TIME, Qt.SortOrder.DescendingOrder)

    def save_layout(self) -> None:
        settings = self.context.settings
        settings.setValue("window/geometry", self.saveGeometry())
        settings.setValue("window/state", self.saveState())
        settings.setValue("window/splitter", self.splitter.saveState())
        settings.setValue("window/header", self.table.horizontalHeader().saveState())
        settings.sync()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self._closing and self.capture_queue.active() and \
                not confirm_close_with_captures(self, self.capture_queue.summary()):
            event.ignore()
            return
        self._closing = True
        # What is still queued is not captured (the dialog said so); the copy in flight
        # stops at its next progress report and leaves nothing behind.
        if not self.capture_queue.close(timeout=30):
            log.warning("a capture was still running when the window closed")
        if self.dialog is not None and not self.dialog.isModal():
            self.dialog.close()  # a modeless one (the first-run welcome) would keep Qt running
        self.save_layout()
        if self.tray is not None:
            self.tray.hide()
        self.changes.close()
        if self.attachment is not None:
            self.attachment.stop()
        event.accept()

