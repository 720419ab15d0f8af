"""The main window's other dialogs: first run, settings, logs, the fleet, about."""

from __future__ import annotations

from typing import Any, Optional

from PySide6.QtWidgets import QWidget

from app import __version__


class WindowDialogs:
    """Mixed into ``MainWindow``: opens its dialogs (one at a time, in ``self.dialog``)."""

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
