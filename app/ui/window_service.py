"""The main window's capture service part: host the components, or attach to the service.

``python -m app`` runs capture in its own process and the window attaches to it
(``app/ui/attach.py``); when it stops unexpectedly the window takes over, and File →
Stop capture… / Start capture steer it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from app.ui.attach import ServiceAttachment, describe_components, describe_service
from app.ui.tasks import describe_error


class ServiceControl:
    """Mixed into ``MainWindow``: who runs watching, the REST API and sync for this store."""

    def component(self, name: str) -> Any:
        """A component the runner hosts ("sync", "watch", "api"), if it runs."""
        if self.runner is None:
            return None
        for component in list(getattr(self.runner, "components", [])):
            if getattr(component, "name", "") == name:
                return component
        return None

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
