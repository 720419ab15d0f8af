"""The main window's sync part: the status it shows and the requests it passes on.

The engine runs in this window (hosted components) or in the capture service it is
attached to; the status is read off the GUI thread (``sync_status.read_snapshot``) and
shown by the indicator, the Sync panel and the tray.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Optional

from app.ui.attach import sync_runs_in
from app.ui.sync_status import SyncSnapshot, read_snapshot

log = logging.getLogger(__name__)


class SyncControl:
    """Mixed into ``MainWindow``: sync status, pause, sync now, retry."""

    def _refresh_hosted_sync(self) -> None:
        """A sync engine running in this window changes its state without a commit."""
        if not self._closing and self.sync_engine() is not None:
            self.refresh_sync()

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

    def _show_sync(self, snapshot: SyncSnapshot) -> None:
        self.sync_snapshot = snapshot
        self.model.set_central_configured(snapshot.configured)
        self.detail.set_central_configured(snapshot.configured)
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
