"""The window's one change poll: ``app.core.changes.ChangeWatcher`` on a QTimer.

Every view that shows what is in the store (the rows, the detail pane, the sync status,
the watched folders) listens to :attr:`StoreChanges.changed` instead of running its own
timer. The check runs off the GUI thread (a busy disk must not freeze the window) and
``changed`` is emitted on the GUI thread, once per detected change.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Union

from PySide6.QtCore import QObject, QTimer, Signal

from app.core.changes import ChangeWatcher
from app.ui.tasks import TaskManager

log = logging.getLogger(__name__)

#: How often the window looks for commits made elsewhere.
POLL_MS = 1500


class StoreChanges(QObject):
    """Polls one :class:`ChangeWatcher` and tells the window's views about commits."""

    #: Someone (this window, the watcher, sync, the API, the CLI) committed to the store.
    changed = Signal()
    #: A poll found no change (views showing in-memory state of hosted components, such
    #: as a running sync pass, refresh on this).
    unchanged = Signal()

    def __init__(self, db_path: Union[str, Path], tasks: TaskManager,
                 parent: Optional[QObject] = None, interval_ms: int = POLL_MS) -> None:
        super().__init__(parent)
        self._watcher = ChangeWatcher(db_path)
        self._tasks = tasks
        self._busy = False
        self._closed = False
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.poll)

    def start(self) -> None:
        self.timer.start()

    def poll(self) -> None:
        """Check now (off the GUI thread); a check still running makes this a no-op."""
        if self._busy or self._closed:
            return
        self._busy = True
        self._tasks.run(self._watcher.changed, self._checked, self._failed)

    def _checked(self, changed: bool) -> None:
        self._busy = False
        if self._closed:
            return
        if changed:
            self.changed.emit()
        else:
            self.unchanged.emit()

    def _failed(self, error: BaseException) -> None:
        self._busy = False
        log.warning("checking for changes failed: %s", error)

    def close(self) -> None:
        self._closed = True
        self.timer.stop()
        self._watcher.close()
