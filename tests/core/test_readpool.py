"""The store's reader pool (app/core/readpool.py): plain sqlite3 connections, configured
as the store needs, shared between threads."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from app.core.errors import StoreError
from app.core.readpool import ReaderPool, open_connection, read_only_uris
from app.core.store import LocalStore


def _pool(path: Path, size: int = 4, overflow: int = 8,
          wait_seconds: float = 30.0) -> ReaderPool:
    return ReaderPool(lambda: open_connection(str(path)), size=size, overflow=overflow,
                      wait_seconds=wait_seconds)


def test_each_reader_is_configured_like_the_writer(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s.sqlite3")
    try:
        with store.reader() as conn:
            assert conn.isolation_level is None  # the store issues BEGIN itself
            assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
            # The query language's functions ($regex) are installed on every reader.
            assert conn.execute("SELECT 'abc' REGEXP 'b'").fetchone()[0] == 1
        assert store._writer is not None
        assert store._writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._writer.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY
    finally:
        store.close()


def test_a_transaction_left_open_is_rolled_back_on_return(tmp_path: Path) -> None:
    """The next borrower must not inherit an old snapshot (nor hold back checkpoints)."""
    path = tmp_path / "s.sqlite3"
    LocalStore(path).close()
    pool = _pool(path, size=1, overflow=0)
    with pool.connection() as conn:
        conn.execute("BEGIN")
        conn.execute("SELECT COUNT(*) FROM datapoints").fetchone()
        first = conn
    with pool.connection() as conn:
        assert conn is first  # kept and reused
        assert not conn.in_transaction
    pool.close()


def test_at_most_size_plus_overflow_readers_are_out(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    LocalStore(path).close()
    pool = _pool(path, size=1, overflow=1, wait_seconds=0.05)
    with pool.connection(), pool.connection():
        with pytest.raises(StoreError, match="2 read connections"):
            with pool.connection():
                pass
    # A reader that waits gets the connection another thread returns.
    released = threading.Event()
    got: list[sqlite3.Connection] = []
    pool = _pool(path, size=1, overflow=0, wait_seconds=30.0)
    with pool.connection() as held:
        waiter = threading.Thread(target=lambda: _borrow(pool, got, released))
        waiter.start()
    assert released.wait(30.0)
    waiter.join(30.0)
    assert got == [held]
    pool.close()


def _borrow(pool: ReaderPool, got: list[sqlite3.Connection], done: threading.Event) -> None:
    with pool.connection() as conn:
        got.append(conn)
    done.set()


def test_close_closes_idle_readers_and_later_returns(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    LocalStore(path).close()
    pool = _pool(path)
    with pool.connection() as out:
        with pool.connection() as idle:
            pass
        pool.close()
        with pytest.raises(sqlite3.ProgrammingError):
            idle.execute("SELECT 1")
        assert out.execute("SELECT 1").fetchone() == (1,)  # still usable while out
    with pytest.raises(sqlite3.ProgrammingError):
        out.execute("SELECT 1")


def test_a_failed_connect_frees_its_slot(tmp_path: Path) -> None:
    def refuse() -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    pool = ReaderPool(refuse, size=1, overflow=0, wait_seconds=0.05)
    for _ in range(3):  # would time out (StoreError) if a failure kept its slot
        with pytest.raises(sqlite3.OperationalError):
            with pool.connection():
                pass


def test_read_only_uris_offer_immutable_only_without_a_wal(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    LocalStore(path).close()
    assert read_only_uris(path)[-1].endswith("?mode=ro&immutable=1")
    (tmp_path / "s.sqlite3-wal").write_bytes(b"x")
    assert read_only_uris(path) == [f"{path.as_uri()}?mode=ro"]
