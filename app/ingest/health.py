"""Watched-folder health that every process can read, and "Scan now" from any of them.

The watcher runs in the capture service (``benchdata run``), usually not in the window that
shows it. So the ingest component publishes each folder's status into the store (at most
every couple of seconds, when it changed, plus a heartbeat), and the window, ``watch list``
or ``doctor`` read it from there. A status whose heartbeat is old says so: its watcher is
not running, whatever the last snapshot claimed. A scan request is a row the watcher
picks up on its next beat.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Final, Optional

from app.core.store import LocalStore
from app.ingest.watcher import RuleStatus

log = logging.getLogger(__name__)

#: How often the running watcher looks at its statuses (and at scan requests).
PUBLISH_INTERVAL_S: Final = 2.0
#: An unchanged status is written again this often, so readers can tell it is alive.
HEARTBEAT_S: Final = 20.0
#: A status older than this comes from a watcher that is not running any more.
STALE_AFTER_S: Final = 3 * HEARTBEAT_S


def _v1_health(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE ingest_health (
            rule_id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            published REAL NOT NULL,
            scan_requested REAL
        )
        """
    )


MIGRATIONS: Final = (_v1_health,)


@dataclass(frozen=True)
class PublishedStatus:
    """A folder's status as its watcher last published it."""

    status: RuleStatus
    published: float  # time.time() of the last write

    def age_s(self, now: Optional[float] = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.published)

    @property
    def stale(self) -> bool:
        return self.age_s() > STALE_AFTER_S


class HealthBoard:
    """The ``ingest_health`` table: written by the running watcher, read by anyone."""

    def __init__(self, store: LocalStore) -> None:
        self._store = store
        store.migrate_component("ingest-health", MIGRATIONS)

    def publish(self, statuses: Sequence[RuleStatus]) -> None:
        now = time.time()
        rows = [(s.rule_id, json.dumps(asdict(s), ensure_ascii=False), now) for s in statuses]
        with self._store.transaction() as conn:
            conn.executemany(
                "INSERT INTO ingest_health (rule_id, status, published) VALUES (?, ?, ?) "
                "ON CONFLICT (rule_id) DO UPDATE SET status = excluded.status, "
                "published = excluded.published", rows)
            wanted = [s.rule_id for s in statuses]
            marks = ", ".join("?" for _ in wanted)
            conn.execute(f"DELETE FROM ingest_health WHERE rule_id NOT IN ({marks})"
                         if wanted else "DELETE FROM ingest_health", wanted)

    def read(self) -> dict[str, PublishedStatus]:
        with self._store.reader() as conn:
            rows = conn.execute("SELECT rule_id, status, published FROM ingest_health").fetchall()
        found: dict[str, PublishedStatus] = {}
        for rule_id, text, published in rows:
            try:
                found[rule_id] = PublishedStatus(RuleStatus(**json.loads(text)), float(published))
            except (TypeError, ValueError):  # written by another version: skip it
                log.debug("unreadable status for rule %s", rule_id)
        return found

    def request_scan(self, rule_id: str) -> None:
        with self._store.transaction() as conn:
            conn.execute("INSERT INTO ingest_health (rule_id, status, published, scan_requested) "
                         "VALUES (?, '{}', 0, ?) ON CONFLICT (rule_id) DO UPDATE SET "
                         "scan_requested = excluded.scan_requested", (rule_id, time.time()))

    def take_scan_requests(self) -> list[str]:
        with self._store.reader() as conn:
            if conn.execute("SELECT 1 FROM ingest_health WHERE scan_requested IS NOT NULL "
                            "LIMIT 1").fetchone() is None:
                return []  # the usual case: no write on every beat
        with self._store.transaction() as conn:
            wanted = [row[0] for row in conn.execute(
                "SELECT rule_id FROM ingest_health WHERE scan_requested IS NOT NULL")]
            conn.execute("UPDATE ingest_health SET scan_requested = NULL "
                         "WHERE scan_requested IS NOT NULL")
        return wanted


class HealthPublisher:
    """The running watcher's side: publishes its statuses and runs requested scans."""

    def __init__(self, board: HealthBoard, statuses: Callable[[], list[RuleStatus]],
                 rescan: Callable[[str], None]) -> None:
        self._board = board
        self._statuses = statuses
        self._rescan = rescan
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-health", daemon=True)
        self._last: Optional[list[RuleStatus]] = None
        self._last_written = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10.0)

    def beat(self) -> None:
        """One look: publish what changed (or a heartbeat), start the scans asked for."""
        statuses = sorted(self._statuses(), key=lambda s: s.rule_id)
        now = time.monotonic()
        if statuses != self._last or now - self._last_written >= HEARTBEAT_S:
            self._board.publish(statuses)
            self._last, self._last_written = statuses, now
        for rule_id in self._board.take_scan_requests():
            log.info("scan of rule %s requested", rule_id)
            self._rescan(rule_id)

    def _run(self) -> None:
        while not self._stop.wait(PUBLISH_INTERVAL_S):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a busy or full store: try again next beat
                log.warning("publishing watched-folder health failed", exc_info=True)
