"""Reading a bench's store from outside, as another process would while the bench writes."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def remote_rows(data_dir: Path) -> int:
    """Rows the bench in ``data_dir`` has pulled and committed (0 before its store exists
    or is migrated); read-only, so the bench may be writing meanwhile."""
    database = data_dir / "store.sqlite3"
    if not database.exists():
        return 0
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute("SELECT count(*) FROM datapoints WHERE origin = 'remote'")
                   .fetchone()[0])
    except sqlite3.OperationalError:  # not migrated yet
        return 0
    finally:
        conn.close()
