"""Pull, edits and deletions between benches sharing one central store."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pymongo
import pytest
from ulid import ULID

from app.core.errors import NotFoundError
from app.core.models import ValueDataPoint
from app.core.config import save_section
from app.service import BenchService
from sync.engine import SyncEngine



def _sync_all(pairs: list[tuple[BenchService, SyncEngine]], rounds: int = 2) -> None:
    for _ in range(rounds):
        for _service, engine in pairs:
            report = engine.run_pass(force=True)
            assert report.ok, report


def test_other_benches_datapoints_appear_and_files_download_on_request(
        benches: list[tuple[BenchService, SyncEngine]], tmp_path: Path) -> None:
    (a, engine_a), (b, engine_b) = benches
    value = a.capture_value({"x": 1}, label="from-a", ownership=a.ownership(experiment="EXP1"))
    source = tmp_path / "raw.bin"
    data = os.urandom(300_000)
    source.write_bytes(data)
    captured = a.capture_file(source, label="raw")
    _sync_all(benches)
    pulled = b.get(value.datapoint_id)
    assert isinstance(pulled, ValueDataPoint) and pulled.value == {"x": 1}
    assert b.get_stored(value.datapoint_id).origin == "remote"
    assert b.get_stored(value.datapoint_id).sync_state == "confirmed"
    assert b.count({"ownership_info.experiment_id": "EXP1"}) == 1
    remote_file = b.get(captured.datapoint_id)
    assert remote_file.data_type.value == "object_storage"
    with pytest.raises(NotFoundError):
        b.open_file(captured.datapoint_id)  # metadata only until asked
    engine_b.fetch_file(captured.datapoint_id)
    assert b.value(captured.datapoint_id) == data
    engine_b.fetch_file(captured.datapoint_id)  # cached: no second download needed
    assert engine_b.run_pass(force=True).remaining == 0


def test_edits_propagate_last_writer_wins(benches: list[tuple[BenchService, SyncEngine]],
                                          central: Any) -> None:
    (a, engine_a), (b, engine_b) = benches
    dp = a.capture_value(5, label="original")
    _sync_all(benches)
    b.update(dp.datapoint_id, label="edited on b", set_metadata={"note": "b"})
    _sync_all(benches)
    assert a.get(dp.datapoint_id).label == "edited on b"
    assert a.get(dp.datapoint_id).custom_metadata["note"] == "b"
    # Concurrent edits from the same base: the one pushed last wins everywhere.
    a.update(dp.datapoint_id, label="a again")
    b.update(dp.datapoint_id, label="b again")
    assert engine_a.run_pass(force=True).ok
    assert engine_b.run_pass(force=True).ok
    _sync_all(benches)
    assert a.get(dp.datapoint_id).label == b.get(dp.datapoint_id).label == "b again"
    client: Any = pymongo.MongoClient(central.mongo_url.get_secret_value())
    try:
        doc = client[central.mongo_database][central.mongo_collection].find_one(
            {"_id": dp.datapoint_id})
        assert doc["label"] == "b again"
        assert doc["sync_revision"] == a.get_stored(dp.datapoint_id).revision \
            == b.get_stored(dp.datapoint_id).revision
    finally:
        client.close()


def test_deletes_are_tombstones_that_propagate_and_win(
        benches: list[tuple[BenchService, SyncEngine]], central: Any, tmp_path: Path) -> None:
    (a, engine_a), (b, engine_b) = benches
    source = tmp_path / "doomed.txt"
    source.write_bytes(b"doomed")
    doomed = a.capture_file(source, label="doomed")
    kept = a.capture_value(1, label="kept")
    save_section(a.paths, "deleted", {"retention_days": 0})  # not kept for restoring
    _sync_all(benches)
    b.update(doomed.datapoint_id, label="edited while deleted elsewhere")
    a.delete(doomed.datapoint_id)
    assert engine_a.run_pass(force=True).ok
    assert engine_b.run_pass(force=True).ok
    _sync_all(benches)
    for service in (a, b):
        with pytest.raises(NotFoundError):
            service.get(doomed.datapoint_id)
        assert service.get(kept.datapoint_id).value == 1
        assert service.store.get_stored(doomed.datapoint_id, include_deleted=True).deleted
    client: Any = pymongo.MongoClient(central.mongo_url.get_secret_value())
    try:
        database = client[central.mongo_database]
        assert database[central.mongo_collection].find_one({"_id": doomed.datapoint_id}) is None
        assert database[central.tombstone_collection].find_one({"_id": doomed.datapoint_id})
    finally:
        client.close()
    # The file was verified central, so the local copy was freed after the deletion.
    assert not a.files.exists(a.store.get_stored(doomed.datapoint_id, include_deleted=True)
                              .datapoint.sha256)


def test_documents_madsci_wrote_itself_reach_the_benches(
        benches: list[tuple[BenchService, SyncEngine]], central: Any) -> None:
    """MADSci's own Data Manager inserts documents without our bookkeeping fields."""
    (_a, _engine_a), (b, engine_b) = benches
    madsci_id = str(ULID())
    client: Any = pymongo.MongoClient(central.mongo_url.get_secret_value())
    try:
        collection = client[central.mongo_database][central.mongo_collection]
        # Exactly what MADSci 0.8.1 stores (naive local time as text, ids as ULIDs)...
        collection.insert_one({"_id": madsci_id, "label": "from MADSci", "data_type": "json",
                               "ownership_info": {"user_id": "01M857BWZZ2382TVE9NZ9XCV6N"},
                               "data_timestamp": "2026-11-23T22:10:32.072422",
                               "value": {"t": 23.5}})
        # ...and documents this bench cannot hold are skipped, not fatal.
        collection.insert_one({"_id": "../not-a-ulid", "data_type": "json", "value": 1})
        report = engine_b.run_pass(force=True)
        pulled = b.get(madsci_id)
        assert isinstance(pulled, ValueDataPoint) and pulled.value == {"t": 23.5}
        assert pulled.label == "from MADSci"
        assert b.get_stored(madsci_id).origin == "remote"
        assert report.ok and report.pull_skipped == 1  # the bad one, reported
        assert any("not-a-ulid" in error for error in report.errors)
        # MADSci still reads its document (only extra fields were added).
        stored = collection.find_one({"_id": madsci_id})
        assert stored["value"] == {"t": 23.5} and stored["label"] == "from MADSci"

        # An edit on the bench reaches the central record (it used to be "rebased" forever:
        # the document had no revision for the guarded upsert to compare with).
        b.update(madsci_id, label="checked on bench b")
        report = engine_b.run_pass(force=True)
        assert report.ok and report.retrying == 0, report
        assert b.get_stored(madsci_id).sync_state == "confirmed"
        stored = collection.find_one({"_id": madsci_id})
        assert stored["label"] == "checked on bench b" and stored["value"] == {"t": 23.5}
    finally:
        client.close()
