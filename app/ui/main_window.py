"""The main window: table, filters, detail pane, capture, and sync at a glance."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

from PySide6.QtCore import QByteArray, QItemSelectionModel, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QFileDialog,
    QHeaderView,
    QLabel,
    QMainWindow,
    QPushButton,
    QSplitter,
    QSystemTrayIcon,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app import __version__
from app.ui.attach import (
    ServiceAttachment,
    describe_components,
    describe_service,
    sync_runs_in,
)
from app.capture_queue import CaptureQueue, CaptureRequest, QueueSummary, service_capture
from app.ui.capture import CaptureDialog, EditDialog, ValueDialog, confirm_delete, delete_datapoints
from app.ui.capture_panel import CapturePanel, confirm_close_with_captures
from app.ui.context import UiContext
from app.ui.detail import DetailPane
from app.ui.drop_overlay import DropOverlay
from app.ui.filter_bar import FilterBar
from app.ui.filters import FilterState, build_selector
from app.ui.resources import icon
from app.ui.changes import POLL_MS, StoreChanges
from app.ui.rowsource import RowSource
from app.ui.sync_panel import SyncIndicator, SyncPanel, TrayIcon
from app.ui.sync_status import SyncSnapshot, read_snapshot
from app.ui.table_model import TIME, DatapointTableModel
from app.ui.tasks import describe_error, lower_thread_priority

log = logging.getLogger(__name__)

#: How often, without any commit, the status bar looks at the watched folders' health
#: again: a published status ages into "not running" without anyone writing.
WATCH_HEALTH_MS = 5000


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


class MainWindow(QMainWindow):
    """Browse, search, inspect and capture datapoints; see and steer sync."""

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
        self.apply_filters(self._filter_state)
        self.refresh_sync()

    # -- setup -----------------------------------------------------------------------------

    def _set_column_widths(self) -> None:
        metrics = self.table.fontMetrics()
        widths = {0: "2026-11-23 14:05:00 CEST  ", 1: "x" * 26, 2: "Stored file  ",
                  3: "1000.0 MB  ", 4: "EXP-2026-0042  ", 5: "Needs attention  "}
        for column, sample in widths.items():
            self.table.setColumnWidth(column, metrics.horizontalAdvance(sample) + 12)

    def _action(self, name: str, text: str, shortcut: Any, slot: Any, tip: str = "",
                icon_name: Optional[str] = None) -> QAction:
        action = QAction(text, self)
        action.setObjectName(name)
        if icon_name:
            action.setIcon(icon(icon_name))
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setToolTip(f"{tip or text} ({QKeySequence(shortcut).toString()})" if shortcut
                          else (tip or text))
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _make_actions(self) -> None:
        self.capture_action = self._action("capture", "Capture files…", QKeySequence.StandardKey.Open,
                                           self.capture_files_dialog, "Capture files", "capture")
        self.value_action = self._action("newValue", "New value…", QKeySequence.StandardKey.New,
                                         self.new_value, "Capture a JSON value", "value")
        self.edit_action = self._action("edit", "Edit…", "F2", self.edit_selected,
                                        "Edit label and metadata", "edit")
        self.delete_action = self._action("delete", "Delete", QKeySequence.StandardKey.Delete,
                                          self.delete_selected, "Delete the selection", "delete")
        self.undo_delete_action = self._action(
            "undoDelete", "Undo delete", QKeySequence.StandardKey.Undo, self.undo_delete,
            "Restore what was just deleted")
        self.deleted_action = self._action("recentlyDeleted", "Recently deleted…", None,
                                           self.show_recently_deleted,
                                           "Deleted datapoints that can be restored")
        self.refresh_action = self._action("refresh", "Refresh", QKeySequence.StandardKey.Refresh,
                                           self.refresh, "Read the store again", "refresh")
        self.find_action = self._action("find", "Search", QKeySequence.StandardKey.Find,
                                        self.focus_search)
        self.clear_filters_action = self._action("clearFilters", "Clear filters", "Ctrl+Shift+L",
                                                 self.filter_bar.clear)
        self.sync_action = self._action("syncPanel", "Sync panel", "Ctrl+Shift+S",
                                        self.toggle_sync_panel, "Show sync status", "sync-online")
        self.watch_action = self._action("watchPanel", "Watched folders", "Ctrl+Shift+W",
                                         self.toggle_watch_panel, "Watched folders",
                                         "folder-watch")
        self.capture_queue_action = self._action("captureQueue", "Capture queue", "Ctrl+Shift+C",
                                                 self.toggle_capture_panel,
                                                 "Files being captured")
        self.settings_action = self._action("settings", "Settings…", QKeySequence.StandardKey.Preferences,
                                            self.open_settings, "Settings", "settings")
        if self.settings_action.shortcut().isEmpty():
            self.settings_action.setShortcut(QKeySequence("Ctrl+,"))
        self.detail_action = self._action("toggleDetail", "Detail pane", "Ctrl+D",
                                          self.toggle_detail, "Show or hide the detail pane",
                                          "panel")
        self.quit_action = self._action("quit", "Quit", QKeySequence.StandardKey.Quit, self.close)
        self.stop_capture_action = self._action(
            "stopCapture", "Stop capture…", None, self.stop_capture,
            "Stop watching folders, the REST API and sync on this bench (asks first)")
        self.start_capture_action = self._action(
            "startCapture", "Start capture", None, self.start_capture,
            "Start the capture service: watched folders, the REST API and sync")
        self.stop_capture_action.setEnabled(False)
        self.start_capture_action.setEnabled(False)
        self.delete_action.setShortcuts([QKeySequence(QKeySequence.StandardKey.Delete),
                                         QKeySequence("Ctrl+Backspace")])

        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        toolbar.setMovable(False)
        for action in (self.capture_action, self.value_action, self.edit_action,
                       self.delete_action):
            toolbar.addAction(action)
        toolbar.addSeparator()
        for action in (self.refresh_action, self.sync_action, self.watch_action,
                       self.settings_action):
            toolbar.addAction(action)

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        for action in (self.capture_action, self.value_action):
            file_menu.addAction(action)
        file_menu.addSeparator()
        file_menu.addAction(self.settings_action)
        file_menu.addSeparator()
        file_menu.addAction(self.start_capture_action)
        file_menu.addAction(self.stop_capture_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        edit_menu = menu.addMenu("&Edit")
        for action in (self.undo_delete_action, self.edit_action, self.delete_action,
                       self.find_action, self.clear_filters_action):
            edit_menu.addAction(action)
        view_menu = menu.addMenu("&View")
        for action in (self.refresh_action, self.detail_action, self.sync_action,
                       self.watch_action, self.deleted_action, self.capture_queue_action):
            view_menu.addAction(action)
        self.fleet_action = self._action("fleet", "Fleet…", None, self.show_fleet,
                                         "Every bench on the central store: behind, offline")
        view_menu.addAction(self.fleet_action)
        help_menu = menu.addMenu("&Help")
        self.logs_action = self._action("showLogs", "Show logs", "Ctrl+Shift+G",
                                        self.show_logs, "The service's and the window's logs")
        help_menu.addAction(self.logs_action)
        about = QAction("About Bench Data Manager", self)
        about.triggered.connect(self.about)
        help_menu.addAction(about)
        self._update_actions()

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

    def ask_first_run_questions(self) -> Optional[QWidget]:
        """On a bench that has never been introduced: operator and instrument (skippable)."""
        from app.ui.first_run import FirstRunDialog, should_ask

        if self.dialog is not None or not should_ask(self.context):
            return None
        dialog = FirstRunDialog(self.context, self)
        dialog.finished.connect(lambda _r: setattr(self, "dialog", None))
        dialog.saved.connect(lambda: self.show_message(
            "Saved: new captures belong to these names (Settings → Bench changes them)."))
        self.dialog = dialog
        dialog.setModal(False)  # a welcome, not a gate: drops, capture and closing still work
        dialog.show()
        return dialog

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

    def _refresh_hosted_sync(self) -> None:
        """A sync engine running in this window changes its state without a commit."""
        if not self._closing and self.sync_engine() is not None:
            self.refresh_sync()

    def _recount(self) -> None:
        selector, source = self.model.selector, self.source
        shown = self.model.rowCount()

        def counted(total: int) -> None:
            if total != shown and self.model.count_exact:
                self._restore_id = self.detail.datapoint_id
                self.model.refresh()

        self.context.tasks.run(lambda: source.count(selector), counted, lambda _e: None)

    # -- sync ------------------------------------------------------------------------------

    def component(self, name: str) -> Any:
        """A component the runner hosts ("sync", "watch", "api"), if it runs."""
        if self.runner is None:
            return None
        for component in list(getattr(self.runner, "components", [])):
            if getattr(component, "name", "") == name:
                return component
        return None

    def sync_engine(self) -> Any:
        """The sync engine hosted by the runner, if there is one."""
        component = self.component("sync")
        return getattr(component, "engine", component)

    def refresh_sync(self) -> None:
        self.context.tasks.run_latest("sync status", self._snapshot_reader(), self._show_sync,
                                      lambda error: log.warning("sync status: %s", error))

    def _snapshot_reader(self) -> Callable[[], SyncSnapshot]:
        """Reads the sync status as the window sees it now (call the result off the GUI
        thread): the hosted engine, paused or not, or the attached service's engine."""
        service, engine, paused = self.context.service, self.sync_engine(), self._sync_paused
        elsewhere = self._sync_elsewhere()
        return lambda: read_snapshot(service, engine, paused, elsewhere)

    def _sync_elsewhere(self) -> Optional[str]:
        """"the capture service (pid N)" while sync runs in the service this window is
        attached to; None when it runs here (or nowhere)."""
        if self.attachment is None or not sync_runs_in(self.attachment.holder):
            return None
        return f"the capture service (pid {self.attachment.holder.get('pid', '?')})"

    # -- the capture service ------------------------------------------------------------------

    def host_components(self, hosted: Any) -> None:
        """Run the watcher, API and sync in this window (``HostedComponents``)."""
        self.runner = hosted
        self.start_capture_action.setEnabled(False)
        tasks = self.context.tasks
        hosted.report = lambda message: tasks.call_soon(lambda: self.show_message(message))
        for message in list(hosted.errors):
            self.show_message(message)
        hosted.start()

    def attach_to_service(self, holder: dict[str, Any],
                          make_hosted: Callable[[Any], Any]) -> None:
        """Leave watching, the API and sync to the service that runs on this store; host
        them here (``make_hosted(lock)``) if that service stops while the window is open."""
        attachment = ServiceAttachment(self.context.service, self.context.tasks, holder, self)
        self.attachment = attachment
        attachment.changed.connect(self._show_service)
        attachment.released.connect(lambda lock: self._service_stopped(lock, make_hosted))
        self._show_service(holder)
        self.stop_capture_action.setEnabled(True)
        self.start_capture_action.setEnabled(False)
        self.refresh_sync()

    def _service_stopped(self, lock: Any, make_hosted: Callable[[Any], Any]) -> None:
        """The attached service ended: as asked (File → Stop capture…) — then capture stays
        stopped until started again — or unexpectedly, and this window captures meanwhile."""
        if not self._capture_stop_requested:
            self._take_over(make_hosted(lock))
            return
        lock.release()
        self._capture_stop_requested = False
        if self.attachment is not None:
            self.attachment.stop()
            self.attachment.deleteLater()
            self.attachment = None
        self.service_label.setText("Capture stopped: watched folders wait (File → Start "
                                   "capture)")
        self.service_label.setToolTip("")
        self.service_label.setVisible(True)
        self.stop_capture_action.setEnabled(False)
        self.start_capture_action.setEnabled(True)
        self.show_message("Capture stopped. Files written into watched folders now wait "
                          "until capture starts again.")
        self.refresh_sync()

    def stop_capture(self, confirmed: bool = False) -> None:
        """Stop the capture service this window is attached to, after asking."""
        if self.attachment is None:
            return
        if not confirmed:
            from PySide6.QtWidgets import QMessageBox

            answer = QMessageBox.question(
                self, "Stop capture",
                "Stop capturing on this bench? Watched folders, the REST API and sync stop "
                "until capture is started again (File → Start capture); files the "
                "instruments write meanwhile are captured then.")
            if answer != QMessageBox.StandardButton.Yes:
                return
        from app.ui.service_process import stop_service

        try:
            stop_service(self.attachment.holder)
        except OSError as exc:
            self.show_message(f"The capture service could not be stopped: {exc}")
            return
        self._capture_stop_requested = True
        self.stop_capture_action.setEnabled(False)
        self.show_message("Stopping capture…")
        self.attachment.check()

    def start_capture(self) -> None:
        """Start the capture service again (its own process) and attach to it."""
        from app.ui.application import start_or_attach
        from app.ui.service_process import ensure_service

        self.start_capture_action.setEnabled(False)
        self.show_message("Starting capture…")
        service, given = self.context.service, self.context.data_dir_given
        data_dir = service.paths.data_dir if given else None

        def started(problem: Optional[str]) -> None:
            if problem:
                self.show_message(problem)
            start_or_attach(self, self.component_options)

        self.context.tasks.run(lambda: ensure_service(service.paths, data_dir), started,
                               lambda error: self.show_message(describe_error(error)))

    def _show_service(self, holder: dict[str, Any]) -> None:
        self.service_label.setText(describe_service(holder))
        self.service_label.setToolTip(
            f"It runs: {describe_components(holder)}.\n"
            f"Another process (benchdata run, or another window, started "
            f"{holder.get('started', '?')} on {holder.get('host', 'this PC')}) runs the "
            "watched folders, the REST API and sync for this store. This window shows their "
            "work and captures into the same store; it takes over if that process stops.")
        self.service_label.setVisible(True)
        self.refresh_sync()

    def _take_over(self, hosted: Any) -> None:
        if self.attachment is not None:
            self.attachment.stop()
            self.attachment.deleteLater()
            self.attachment = None
        self.service_label.setVisible(False)
        self.host_components(hosted)
        self.show_message("The capture service stopped; this window now runs the folder "
                          "watcher, the REST API and sync.")
        self.refresh_sync()

    def restart_sync(self) -> None:
        """Apply saved sync settings, off the GUI thread. An attached service's engine
        follows the configuration file by itself."""
        if self.runner is None or not hasattr(self.runner, "reload"):
            return
        runner = self.runner

        def work() -> bool:
            component = runner.reload("sync")
            return component is not None and component.engine is not None

        self._sync_paused = False
        self.context.tasks.run(work, lambda _ok: self.refresh_sync(),
                               lambda error: self.show_message(
                                   f"Sync could not start: {describe_error(error)}"))

    def _watch_statuses(self) -> dict[str, Any]:
        """Each folder's status (call off the GUI thread): from the watcher this window
        hosts, else as the capture service publishes it (``app.ingest.health``), where an
        old heartbeat reads "not running" whatever the last snapshot said."""
        import dataclasses

        component = self.component("watch")
        if component is not None:
            return {status.rule_id: status for status in component.status()}
        published = self._health_board().read()
        return {rule_id: (dataclasses.replace(p.status, state="not running", observer="none")
                          if p.stale else p.status) for rule_id, p in published.items()}

    def _check_watch_health_if_due(self) -> None:
        if time.monotonic() - self._health_checked_at >= WATCH_HEALTH_MS / 1000:
            self.check_watch_health()

    def check_watch_health(self) -> None:
        """Warn in the status bar when a watched folder needs attention (missing, files it
        cannot capture, or no watcher running it while capture should run)."""
        if self._closing:
            return
        self._health_checked_at = time.monotonic()
        from app.ingest.rules import load_rules

        paths, statuses = self.context.service.paths, self._watch_statuses
        capture_runs = self.runner is not None or self.attachment is not None

        def work() -> list[str]:
            found = statuses()
            problems: list[str] = []
            for rule in (r for r in load_rules(paths) if r.enabled):
                status = found.get(rule.id)
                if status is None or status.state == "not running":
                    if capture_runs:
                        problems.append(f"{rule.name}: not watched")
                elif status.state in ("missing", "stopped"):
                    problems.append(f"{rule.name}: {status.state}")
                elif status.problems:
                    problems.append(f"{rule.name}: {len(status.problems)} file(s) not captured")
            return problems

        self.context.tasks.run(work, self._show_watch_health, lambda _e: None)

    def _show_watch_health(self, problems: list[str]) -> None:
        if self.tray is not None:
            self.tray.show_folder_problems(problems)
        self.watch_health.setVisible(bool(problems))
        if problems:
            self.watch_health.setText(f"⚠ {len(problems)} watched folder"
                                      f"{'s' if len(problems) != 1 else ''} need"
                                      f"{'' if len(problems) != 1 else 's'} attention")
            self.watch_health.setToolTip("\n".join(problems))

    def _health_board(self) -> Any:
        """The watched folders' published health (built once: it checks its table)."""
        from app.ingest.health import HealthBoard

        if self._health is None:
            self._health = HealthBoard(self.context.service.store)
        return self._health

    def _request_scan(self, rule_id: str) -> None:
        """Scan now: the hosted watcher directly, the service's through the store."""
        component = self.component("watch")
        if component is not None:
            component.rescan(rule_id)
            return
        self._health_board().request_scan(rule_id)

    def apply_watch_rules(self) -> None:
        """Give the hosted watcher the saved rules (starting it if it was not running)."""
        if self.runner is None or not hasattr(self.runner, "reload"):
            return
        runner = self.runner
        self.context.tasks.run(lambda: runner.reload("watch"), None,
                               lambda error: self.show_message(
                                   f"The watcher could not take the new rules: "
                                   f"{describe_error(error)}"))

    def _show_sync(self, snapshot: SyncSnapshot) -> None:
        self.sync_snapshot = snapshot
        self.model.set_central_configured(snapshot.configured)
        self.sync_indicator.show_snapshot(snapshot)
        self.sync_panel.show_snapshot(snapshot)
        if self.tray is not None:
            self.tray.show_snapshot(snapshot)
        self.sync_refreshed.emit(snapshot)

    def show_sync_panel(self) -> None:
        self.sync_dock.show()
        self.sync_dock.raise_()

    def toggle_sync_panel(self) -> None:
        if self.sync_dock.isVisible():
            self.sync_dock.hide()
        else:
            self.show_sync_panel()

    def toggle_watch_panel(self) -> None:
        if self.watch_dock.isVisible():
            self.watch_dock.hide()
        else:
            self.watch_dock.show()
            self.watch_dock.raise_()
            self.watch_panel.reload()

    def _pause_sync(self, paused: bool) -> None:
        engine = self.sync_engine()
        if engine is None:
            return
        self._sync_paused = paused
        # Stopping waits for the current pass to finish: never on the GUI thread.
        self.context.tasks.run(engine.stop if paused else engine.start,
                               lambda _r: self.refresh_sync())

    def _sync_now(self) -> None:
        engine = self.sync_engine()
        if engine is not None:
            engine.wake()
            self.show_message("Sync asked to run now.")
        elif self._sync_elsewhere():
            service = self.context.service

            def ask() -> None:
                from sync.engine import request_sync

                request_sync(service)

            self.context.tasks.run(ask, lambda _r: self.show_message(
                f"Asked {self._sync_elsewhere()} to sync now."), write=True)

    def _retry_sync(self, ids: list[str]) -> None:
        engine, service = self.sync_engine(), self.context.service

        def work() -> int:
            from sync.outbox import Outbox

            from sync.engine import request_sync

            outbox = engine.outbox if engine is not None else Outbox(service.store)
            count = outbox.retry_quarantined(ids)
            if engine is not None:
                engine.wake()
            else:  # an attached service's engine, if any, picks the request up
                request_sync(service)
            return count

        self.context.tasks.run(work, lambda n: (self.show_message(
            f"{n} item(s) will be synced again."), self.refresh_sync()), write=True)

    # -- capture, edit, delete ------------------------------------------------------------

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
        if not self.selected_rows() and self.detail.datapoint_id is None:
            self._restore_id = ids[0]
            self.detail.show_datapoint(ids[0])
        self.filter_bar.set_experiments(self.context.known_names().get("experiment", []))
        self.model.refresh()
        self.refresh_sync()

    def _queue_finished(self, summary: QueueSummary) -> None:
        self._show_queue_captures()
        ending = ("; safe on this bench." if summary.done else ".") + \
            (" See the Captures panel for why." if summary.failed else "")
        self.show_message(summary.headline() + ending)

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
        self._restore_id = ids[0]
        self.filter_bar.set_experiments(self.context.known_names().get("experiment", []))
        self.model.refresh()
        self.detail.show_datapoint(ids[0])
        self.refresh_sync()
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

    def _edited(self, datapoint_id: str) -> None:
        self.show_message("Saved; sync will carry the change.")
        # A move to another experiment can take the row in or out of the filters: re-run.
        self.filter_bar.set_experiments(self.context.known_names().get("experiment", []))
        self.model.refresh()
        self.detail.show_datapoint(datapoint_id)

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
        delete_datapoints(self.context, ids, lambda count: self._deleted(count, ids),
                          lambda error: self.show_message(f"Not deleted: {describe_error(error)}"))

    def _deleted(self, count: int, ids: Sequence[str] = ()) -> None:
        self._just_deleted = list(ids)  # Edit → Undo delete (Ctrl+Z) brings them back
        self.undo_delete_action.setEnabled(bool(ids))
        self.show_message(f"Deleted {count} datapoint(s). Ctrl+Z undoes it; View → "
                          "Recently deleted restores later.")
        self.table.clearSelection()
        self.detail.show_datapoint(None)
        self.model.refresh()
        self.refresh_sync()

    def undo_delete(self) -> None:
        """Restore what the last delete in this window removed (new revisions)."""
        from app.ui.recently_deleted import restore_datapoints

        ids, self._just_deleted = self._just_deleted, []
        self.undo_delete_action.setEnabled(False)
        if ids:
            restore_datapoints(self.context, ids, self._restored, lambda error: (
                self.show_message(f"Not restored: {describe_error(error)}")))

    def _restored(self, ids: list[str]) -> None:
        self.show_message(f"Restored {len(ids)} datapoint(s).")
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

    # -- settings and the rest ---------------------------------------------------------------

    def open_settings(self) -> Any:
        from app.ui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.context, self)
        dialog.finished.connect(lambda _r: (setattr(self, "dialog", None), self.refresh_sync()))
        dialog.saved.connect(self.restart_sync)
        self.dialog = dialog
        dialog.open()
        return dialog

    def show_logs(self) -> QWidget:
        from app.admin.logs import LOG_NAME, WINDOW_LOG_NAME
        from app.ui.log_viewer import LogViewer

        # The log of the process doing the work: the service this window is attached to,
        # or this window itself (it hosts the watcher, API and sync and logs them).
        working_log = LOG_NAME if self.attachment is not None else WINDOW_LOG_NAME
        viewer = LogViewer(self.context.service.paths, self.context.tasks, self,
                           start_with=working_log)
        viewer.finished.connect(lambda _r: setattr(self, "dialog", None))
        self.dialog = viewer
        viewer.open()
        return viewer

    def show_fleet(self) -> QWidget:
        from app.ui.fleet_dialog import FleetDialog

        dialog = FleetDialog(self.context.service.paths, self.context.tasks, self)
        dialog.finished.connect(lambda _r: setattr(self, "dialog", None))
        self.dialog = dialog
        dialog.open()
        return dialog

    def about(self) -> None:
        from PySide6.QtWidgets import QMessageBox

        paths = self.context.service.paths
        QMessageBox.about(self, "Bench Data Manager",
                          f"<b>Bench Data Manager {__version__}</b><br>Local-first capture of lab "
                          f"data, synced to MADSci's Data Manager.<br><br>Data: {paths.data_dir}"
                          f"<br>Configuration: {paths.config_file}")

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

