"""The one change notification: has anyone committed to the store since we last looked?

SQLite's ``PRAGMA data_version`` changes on a connection whenever *another* connection —
in this process or any other (capture, the watcher, sync, the API, the CLI) — commits to
the database. That is the only cross-process change signal the store offers, so every
reader that wants to redraw on changes asks one :class:`ChangeWatcher` instead of polling
its own tables; ``app.ui.changes`` polls it on a timer and fans the news out to the
window's views.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Optional, Union


class ChangeWatcher:
    """Notices commits by anyone with ``PRAGMA data_version``.

    ``data_version`` only means something on one connection, so this keeps its own
    read-only connection. :meth:`changed` may run on any thread (a lock keeps it from
    racing :meth:`close`).
    """

    def __init__(self, db_path: Union[str, Path]) -> None:
        self._conn: Optional[sqlite3.Connection] = sqlite3.connect(
            f"file:{db_path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
        # Closing a connection while another thread reads it crashes the process (seen:
        # a segfault when the window closed during a poll), so both take this lock.
        self._lock = threading.Lock()
        self._version = -1
        self._version = self._read()

    def _read(self) -> int:
        with self._lock:
            if self._conn is None:
                return self._version  # closed: nothing changes any more
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def changed(self) -> bool:
        """True once for each new set of commits since the previous call."""
        version = self._read()
        with self._lock:
            if version == self._version:
                return False
            self._version = version
            return True

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
