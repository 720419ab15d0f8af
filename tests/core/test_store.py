"""The local store: durability settings, migrations, concurrency."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from app import DataClient, ValueDataPoint
from app.core.errors import StoreError
from app.core.schema import SCHEMA_VERSION, migrate, schema_version
from app.core.store import LocalStore


def test_store_uses_wal_and_full_sync(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s.sqlite3")
    with store.reader() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._writer.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert store.integrity_check() == "ok"
    store.close()


def _make_v1_cache(path: Path) -> None:
    """An old cache exactly as schema version 1 wrote it, with data in it."""
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, target=1)
    conn.execute(
        "INSERT INTO datapoints (id, label, data_type, data_timestamp, experiment_id, value, "
        "custom_metadata, extra, created_at, updated_at) VALUES "
        "('01JD3Q9V6X5J8Z0K2M4N6P8R0A', 'old', 'json', '2025-05-01T10:00:00.000000Z', "
        "'01JD3Q9V6X5J8Z0K2M4N6P8R0T', '{\"t\": 21}', '{}', '{}', "
        "'2025-05-01T10:00:00.000000Z', '2025-05-01T10:00:00.000000Z')"
    )
    assert schema_version(conn) == 1
    conn.close()


def test_old_cache_is_migrated_in_place(tmp_path: Path) -> None:
    _make_v1_cache(tmp_path / "store.sqlite3")
    with DataClient(data_dir=tmp_path) as client:
        old = client.get_datapoint("01JD3Q9V6X5J8Z0K2M4N6P8R0A")
        assert old.label == "old" and old.value == {"t": 21}
        # What version 2 added works on the migrated cache.
        ownership = client.ownership(experiment="EXP42")
        client.submit_datapoint(ValueDataPoint(value=1, ownership_info=ownership))
        assert client.query_datapoints({"ownership_info.experiment_id": "EXP42"})
        assert client.query_datapoints({"value.t": 21}).keys() == {"01JD3Q9V6X5J8Z0K2M4N6P8R0A"}
    conn = sqlite3.connect(tmp_path / "store.sqlite3")
    assert schema_version(conn) == SCHEMA_VERSION
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(datapoints)")}
    assert "ix_datapoints_workflow_id" in indexes and "ix_datapoints_replaces" in indexes
    conn.close()


def test_cache_from_a_newer_app_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "store.sqlite3", isolation_level=None)
    migrate(conn)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer Bench Data Manager"):
        LocalStore(tmp_path / "store.sqlite3")


def test_damaged_database_gets_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "store.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the local store"):
        LocalStore(tmp_path / "store.sqlite3")


def test_concurrent_writers_and_readers(client: DataClient) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def write(worker: int) -> None:
        try:
            for i in range(100):
                client.submit_datapoint(ValueDataPoint(label=f"w{worker}", value=i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def read() -> None:
        try:
            while not stop.is_set():
                client.get_datapoints(number=20)
                client.count_datapoints({"label": "w0"})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    writers = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in readers:
        thread.join()
    assert errors == []
    assert client.count_datapoints() == 400
    assert client.count_datapoints({"label": "w3"}) == 100


def test_a_reader_does_not_block_the_writer(client: DataClient) -> None:
    client.submit_datapoints([ValueDataPoint(value=i) for i in range(10)])
    with client.service.store.reader() as conn:
        conn.execute("BEGIN")  # an open read snapshot, as a long export holds
        conn.execute("SELECT COUNT(*) FROM datapoints").fetchone()
        client.submit_datapoint(ValueDataPoint(value="written meanwhile"))
        assert conn.execute("SELECT COUNT(*) FROM datapoints").fetchone()[0] == 10
        conn.execute("COMMIT")
    assert client.count_datapoints() == 11


def test_data_directory_chosen_in_settings_is_used_from_the_next_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core import paths

    monkeypatch.delenv("BENCHDATA_HOME")
    monkeypatch.setattr(paths, "_platform_config_dir", lambda: tmp_path / "config")
    monkeypatch.setattr(paths, "_platform_data_dir", lambda: tmp_path / "default-data")
    assert paths.bench_paths().data_dir == tmp_path / "default-data"
    chosen = paths.choose_data_dir(tmp_path / "big disk" / "bench")
    assert chosen.is_dir()
    resolved = paths.bench_paths()
    assert resolved.data_dir == chosen and resolved.config_dir == tmp_path / "config"
    with DataClient() as client:  # the default location now lands on the chosen disk
        client.submit_datapoint(ValueDataPoint(value=1))
    assert (chosen / "store.sqlite3").exists()
    # An explicit folder and BENCHDATA_HOME still win; None goes back to the default.
    assert paths.bench_paths(tmp_path / "x").data_dir == (tmp_path / "x").resolve()
    monkeypatch.setenv("BENCHDATA_HOME", str(tmp_path / "home"))
    assert paths.bench_paths().data_dir == (tmp_path / "home" / "data").resolve()
    monkeypatch.delenv("BENCHDATA_HOME")
    assert paths.choose_data_dir(None) == tmp_path / "default-data"
    assert paths.bench_paths().data_dir == tmp_path / "default-data"


def test_a_damaged_location_pointer_falls_back_to_the_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core import paths

    monkeypatch.delenv("BENCHDATA_HOME")
    monkeypatch.setattr(paths, "_platform_config_dir", lambda: tmp_path / "config")
    monkeypatch.setattr(paths, "_platform_data_dir", lambda: tmp_path / "default-data")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "data-location.json").write_text("{not json")
    assert paths.bench_paths().data_dir == tmp_path / "default-data"
