"""The store's reads for its callers (issue 17: the store owns its SQL) and the one
chunked ``IN (…)`` helper, across chunk boundaries."""

from __future__ import annotations

import hashlib
from pathlib import Path

from app import ValueDataPoint
from app.core import custody
from app.core.sqlin import IN_CHUNK, in_chunks
from app.core.rows import count_datapoints, live_rows_by_rowid
from app.service import BenchService


def test_in_chunks_covers_every_value_once_in_order() -> None:
    values = list(range(2 * IN_CHUNK + 1))
    chunks = list(in_chunks(values))
    assert [len(chunk) for _, chunk in chunks] == [IN_CHUNK, IN_CHUNK, 1]
    assert [v for _, chunk in chunks for v in chunk] == values
    assert all(marks.count("?") == len(chunk) for marks, chunk in chunks)
    assert list(in_chunks([])) == []


def test_row_reads_across_chunks(tmp_path: Path) -> None:
    with BenchService(tmp_path / "bench") as service:
        store = service.store
        stored = store.insert([ValueDataPoint(label=f"v{i}", value=i)
                               for i in range(IN_CHUNK + 20)])
        ids = [dp.datapoint_id for dp in stored]
        store.delete(ids[0])
        unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
        assert store.existing_ids([*ids, unknown]) == set(ids)  # deleted rows exist
        assert len(store.get_many(ids)) == len(ids) - 1
        with store.reader() as conn:
            assert count_datapoints(conn) == len(ids)
            rowids = [r[0] for r in conn.execute("SELECT rowid FROM datapoints")]
            live = list(live_rows_by_rowid(conn, "id", rowids))
        assert sorted(r[0] for r in live) == sorted(ids[1:])

        count, _size, oldest = store.sync_backlog(["confirmed", "quarantined"])
        assert count == len(ids) and oldest is not None
        assert store.sync_backlog(["pending"])[0] == 0
        with store.transaction() as conn:
            conn.execute("UPDATE datapoints SET sync_state = 'quarantined' WHERE id = ?",
                         (ids[1],))
        assert store.refused_rows() == [(ids[1], "v1")]
        assert store.sync_state_counts() == {"pending": len(ids) - 1, "quarantined": 1}


def test_verified_reads_follow_the_central_custody(tmp_path: Path) -> None:
    with BenchService(tmp_path / "bench") as service:
        custody.install(service.store)
        (tmp_path / "a.bin").write_bytes(b"a" * 100)
        (tmp_path / "b.bin").write_bytes(b"b" * 100)
        a = service.capture_file(tmp_path / "a.bin", label="a").datapoint_id
        b = service.capture_file(tmp_path / "b.bin", label="b").datapoint_id
        sha_a = hashlib.sha256(b"a" * 100).hexdigest()
        custody.note_central_verified(service.store, a, sha_a, "bucket", "object", "read-back")
        assert custody.verified_live_sha256(service.store, [a, b]) == {a: sha_a}
        with service.store.transaction() as conn:
            conn.execute("CREATE TABLE captured_by (who TEXT, datapoint_id TEXT)")
            conn.executemany("INSERT INTO captured_by VALUES (?, ?)", [("x", a), ("x", b)])
        assert custody.verified_counts_by(service.store, "captured_by", "who") == {"x": (1, 2)}
        service.store.delete(a)
        assert custody.verified_live_sha256(service.store, [a, b]) == {}
        assert custody.verified_counts_by(service.store, "captured_by", "who") == {"x": (0, 1)}
