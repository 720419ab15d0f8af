"""The store's SQLite connections: one way to open and configure them, and a reader pool.

Plain ``sqlite3`` connections: a pool of a few connections needs no ORM, and importing
one cost more than the rest of ``benchdata list`` together. Every connection is in
autocommit mode (the store issues ``BEGIN`` itself) and has the query language's
functions installed; a writable one also puts the database in WAL mode with
``synchronous=FULL`` (in WAL mode NORMAL can lose commits that already returned if power
fails).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, Optional

from app.core import query as querylang
from app.core.errors import StoreError

log = logging.getLogger(__name__)

#: How long a statement waits for a lock another connection holds.
BUSY_TIMEOUT_SECONDS: Final[float] = 30.0
#: Idle readers kept open, and how many more may be out at once beyond those.
POOL_SIZE: Final[int] = 4
POOL_OVERFLOW: Final[int] = 8

Connect = Callable[[], sqlite3.Connection]


def open_connection(target: str, *, uri: bool = False,
                    writable: bool = True) -> sqlite3.Connection:
    """A configured connection to ``target`` (a path, or with ``uri`` a SQLite URI).

    ``writable=False``: a read-only URI (``read_only_uris``), which can neither set nor
    needs the journal mode and synchronous level."""
    conn = sqlite3.connect(target, uri=uri, timeout=BUSY_TIMEOUT_SECONDS,
                           check_same_thread=False, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        if writable:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        querylang.register_functions(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def read_only_uris(db_path: Path) -> list[str]:
    """SQLite URIs that read ``db_path`` without writing, best first.

    A WAL database needs its shared-memory index (``-shm``), which cannot be created or
    grown on a full disk. When the WAL is empty (the last writer closed cleanly), the
    database file is complete on its own and can be read as immutable instead."""
    base = f"{db_path.as_uri()}?mode=ro"
    wal = db_path.with_name(db_path.name + "-wal")
    try:
        wal_empty = not wal.exists() or wal.stat().st_size == 0
    except OSError:
        wal_empty = False
    return [base, base + "&immutable=1"] if wal_empty else [base]


class ReaderPool:
    """Read connections shared between threads: up to ``size`` kept open while idle, at
    most ``size + overflow`` out at once (a further reader waits for one to come back)."""

    def __init__(self, connect: Connect, *, size: int = POOL_SIZE,
                 overflow: int = POOL_OVERFLOW,
                 wait_seconds: float = BUSY_TIMEOUT_SECONDS) -> None:
        self._connect = connect
        self._size = size
        self._limit = size + overflow
        self._wait_seconds = wait_seconds
        self._idle: list[sqlite3.Connection] = []
        self._out = 0
        self._closed = False
        self._changed = threading.Condition()

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for the duration of the block, then back to the pool."""
        conn = self._check_out()
        try:
            yield conn
        finally:
            self._check_in(conn)

    def close(self) -> None:
        """Close the idle connections. Ones still out are closed when they come back, and
        a late reader (a thread finishing while the store closes) gets a fresh one."""
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _check_out(self) -> sqlite3.Connection:
        with self._changed:
            if not self._changed.wait_for(lambda: self._out < self._limit,
                                          timeout=self._wait_seconds):
                raise StoreError(f"all {self._limit} read connections to the local store "
                                 f"stayed busy for {self._wait_seconds:g} s")
            self._out += 1
            conn = self._idle.pop() if self._idle else None
        if conn is not None:
            return conn
        try:
            return self._connect()
        except BaseException:
            self._release(None)
            raise

    def _check_in(self, conn: sqlite3.Connection) -> None:
        kept: Optional[sqlite3.Connection] = conn
        try:
            # A transaction left open would pin an old snapshot (and hold back WAL
            # checkpoints) for the next borrower.
            if conn.in_transaction:
                conn.rollback()
        except sqlite3.Error as exc:
            log.debug("dropping a read connection that could not roll back: %s", exc)
            conn.close()
            kept = None
        self._release(kept)

    def _release(self, conn: Optional[sqlite3.Connection]) -> None:
        """One connection is back (``None``: it was closed or never opened)."""
        with self._changed:
            self._out -= 1
            keep = False
            if conn is not None and not self._closed and len(self._idle) < self._size:
                self._idle.append(conn)
                keep = True
            self._changed.notify()
        if conn is not None and not keep:
            conn.close()
