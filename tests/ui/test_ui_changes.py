"""One change notification: a commit by another process reaches every listener once.

``app.core.changes.ChangeWatcher`` reads ``PRAGMA data_version``; ``app.ui.changes``
polls it on the window's timer and fans ``changed`` out to the window's views.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.ui.conftest import wait_idle

from app.core.changes import ChangeWatcher
from app.service import BenchService


def _capture_in_another_process(store: Path, label: str) -> None:
    """A real commit through the service, by a process that is not this one."""
    code = ("import sys; from app.service import BenchService\n"
            "with BenchService(sys.argv[1]) as s: s.capture_value(1.5, label=sys.argv[2])")
    subprocess.run([sys.executable, "-c", code, str(store), label], check=True, timeout=60)


def test_the_watcher_reports_another_process_commit_once(service: BenchService) -> None:
    watcher = ChangeWatcher(service.paths.database)
    try:
        assert not watcher.changed()
        _capture_in_another_process(service.paths.data_dir, "elsewhere")
        assert watcher.changed()
        assert not watcher.changed()  # the same commit is news only once
    finally:
        watcher.close()


def test_a_closed_watcher_reports_nothing(service: BenchService) -> None:
    watcher = ChangeWatcher(service.paths.database)
    watcher.close()
    service.capture_value(2.0, label="after close")
    assert not watcher.changed()


def _commit_once_in_another_process(store: Path) -> None:
    """Exactly one commit (one transaction) by another process."""
    code = ("import sqlite3, sys\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE')\n"
            "db.execute('CREATE TABLE IF NOT EXISTS test_probe (x)')\n"
            "db.execute('INSERT INTO test_probe VALUES (1)')\n"
            "db.execute('COMMIT')\n")
    subprocess.run([sys.executable, "-c", code, str(store)], check=True, timeout=60)


def test_a_commit_elsewhere_reaches_every_listener_once(qtbot: Any, window: Any,
                                                        service: BenchService) -> None:
    from app.ui.changes import StoreChanges

    changes = StoreChanges(service.paths.database, window.context.tasks, interval_ms=50)
    heard = {"rows": 0, "folders": 0}
    quiet = 0

    def count_quiet() -> None:
        nonlocal quiet
        quiet += 1

    changes.changed.connect(lambda: heard.__setitem__("rows", heard["rows"] + 1))
    changes.changed.connect(lambda: heard.__setitem__("folders", heard["folders"] + 1))
    changes.unchanged.connect(count_quiet)
    changes.start()
    try:
        qtbot.waitUntil(lambda: quiet >= 3, timeout=10_000)  # the store is at rest
        heard.update(rows=0, folders=0)
        _commit_once_in_another_process(service.paths.database)
        qtbot.waitUntil(lambda: heard == {"rows": 1, "folders": 1}, timeout=10_000)
        # More polls without a commit: nobody hears about the same commit again.
        quiet = 0
        qtbot.waitUntil(lambda: quiet >= 3, timeout=10_000)
        assert heard == {"rows": 1, "folders": 1}
    finally:
        changes.close()
    wait_idle(qtbot, window)


def test_the_window_shows_a_capture_by_another_process(qtbot: Any, window: Any,
                                                       service: BenchService) -> None:
    """The window's own poll (the same notification) redraws without a refresh."""
    before = window.model.rowCount()
    _capture_in_another_process(service.paths.data_dir, "from the CLI")
    qtbot.waitUntil(lambda: window.model.rowCount() == before + 1, timeout=10_000)
    wait_idle(qtbot, window)


def test_the_window_has_one_change_poll(window: Any) -> None:
    """The views do not run timers of their own to look for changes."""
    from PySide6.QtCore import QTimer

    def repeating(owner: Any) -> list[Any]:
        return [t for t in owner.findChildren(QTimer) if not t.isSingleShot()
                and t.isActive()]

    assert repeating(window.watch_panel) == []
    polls = [t for t in repeating(window) if t.parent() is window.changes]
    assert len(polls) == 1
