"""The main window's actions, toolbar and menus (what each does lives on the window)."""

from __future__ import annotations

from typing import Any, Optional

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence

from app.ui.resources import icon


class WindowActions:
    """Mixed into ``MainWindow``: builds its actions and puts them in toolbar and menus."""

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
