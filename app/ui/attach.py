"""The window beside a running capture service: attach to it, take over when it stops.

One service per store (``app.admin.lock``). When ``benchdata run`` already runs on the
store (say, as a systemd unit or a Windows service), the window does not start a second
watcher, API and sync engine: it *attaches*. It reads the same store (SQLite serialises its
captures with the service's), shows what the service publishes in its lock file, and asks
the service's sync engine for a pass through the store (``sync.engine.request_sync``).

Should the service stop while the window is open, the window takes the lock and starts
the components itself, so capture from watched folders and the API never stays orphaned.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from PySide6.QtCore import QObject, QTimer, Signal

from app.admin.lock import ServiceLock, ServiceLockedError, read_holder
from app.service import BenchService
from app.ui.tasks import TaskManager

log = logging.getLogger(__name__)

#: How often an attached window checks whether the service still runs.
CHECK_MS = 3000

COMPONENT_NAMES = {"rest-api": "REST API", "watch": "folder watcher", "sync": "sync"}


def describe_service(holder: dict[str, Any]) -> str:
    """Short, for the status bar: which process this window is attached to."""
    return f"Attached to the capture service (pid {holder.get('pid', '?')})"


def describe_components(holder: dict[str, Any]) -> str:
    """What the service runs, with addresses (the status-bar tooltip, the smoke line)."""
    names = holder.get("components")
    if names is None:
        return "starting"
    addresses = holder.get("addresses") or {}
    parts = [COMPONENT_NAMES.get(n, n) + (f" at {addresses[n]}" if n in addresses else "")
             for n in names]
    return ", ".join(parts) or "no components"


def sync_runs_in(holder: Optional[dict[str, Any]]) -> bool:
    """Whether the attached service says it runs the sync component."""
    return bool(holder) and "sync" in (holder or {}).get("components", [])


def try_lock(service: BenchService) -> tuple[Optional[ServiceLock], Optional[dict[str, Any]]]:
    """(the store's lock, None) if this process got it, else (None, what the holder says)."""
    lock = ServiceLock(service.paths)
    try:
        lock.acquire()
    except ServiceLockedError:
        return None, read_holder(service.paths) or {}
    return lock, None


class ServiceAttachment(QObject):
    """Follows the service this window is attached to; emits ``released`` with the lock
    once the service has stopped and this window holds the store's lock instead."""

    #: The service stopped and this window now holds the lock (argument: ServiceLock).
    released = Signal(object)
    #: What the service publishes changed (argument: its lock-file facts).
    changed = Signal(object)

    def __init__(self, service: BenchService, tasks: TaskManager, holder: dict[str, Any],
                 parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.service = service
        self.tasks = tasks
        self.holder = holder
        self._checking = False
        self.timer = QTimer(self)
        self.timer.setInterval(CHECK_MS)
        self.timer.timeout.connect(self.check)
        self.timer.start()

    def check(self) -> None:
        if self._checking:
            return
        self._checking = True
        service = self.service
        self.tasks.run(lambda: try_lock(service), self._checked, self._failed)

    def _checked(self, outcome: tuple[Optional[ServiceLock], Optional[dict[str, Any]]]) -> None:
        self._checking = False
        lock, holder = outcome
        if lock is not None:
            self.timer.stop()
            log.info("the capture service stopped; this window takes over")
            self.released.emit(lock)
            return
        if holder and holder != self.holder:
            self.holder = holder
            self.changed.emit(holder)

    def _failed(self, error: BaseException) -> None:
        self._checking = False
        log.warning("checking on the capture service failed: %s", error)

    def stop(self) -> None:
        self.timer.stop()
