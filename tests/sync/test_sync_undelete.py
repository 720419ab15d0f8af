"""Restoring a deleted datapoint after its deletion synced: a new revision that syncs as an
undelete, on the real SeaweedFS + nx-27017 servers, with MADSci's own server reading it."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path
from typing import Any

import pymongo
import pytest

from app.core.config import save_section
from app.core.errors import NotFoundError
from app.service import BenchService
from sync.engine import SyncEngine
from tests.sync.test_sync_madsci import madsci_server  # noqa: F401  (fixture)


def _sync_all(pairs: list[tuple[BenchService, SyncEngine]], rounds: int = 2) -> None:
    for _ in range(rounds):
        for _service, engine in pairs:
            report = engine.run_pass(force=True)
            assert report.ok and report.retrying == 0, report


def _central(central: Any) -> tuple[Any, Any, Any]:
    client: Any = pymongo.MongoClient(central.mongo_url.get_secret_value())
    database = client[central.mongo_database]
    return client, database[central.mongo_collection], database[central.tombstone_collection]


@pytest.mark.slow
def test_a_restore_after_the_delete_synced_brings_it_back_everywhere(
        benches: list[tuple[BenchService, SyncEngine]], central: Any, tmp_path: Path,
        madsci_server: str) -> None:  # noqa: F811
    (a, engine_a), (b, engine_b) = benches
    data = b"spectrum 7\n" * 1000
    source = tmp_path / "spectrum-7.csv"
    source.write_bytes(data)
    doomed = a.capture_file(source, label="spectrum 7")
    _sync_all(benches)
    assert b.get(doomed.datapoint_id).label == "spectrum 7"

    a.delete(doomed.datapoint_id, by="alice on UV-Vis 2")
    _sync_all(benches)
    client, records, tombstones = _central(central)
    try:
        assert records.find_one({"_id": doomed.datapoint_id}) is None
        assert tombstones.find_one({"_id": doomed.datapoint_id})["sync_deleted_by"] == \
            "alice on UV-Vis 2"
        with pytest.raises(NotFoundError):
            b.get(doomed.datapoint_id)
        # Within the retention period the local copy stays (verified central or not).
        assert a.files.exists(str(doomed.sha256))
        [seen] = b.recently_deleted()
        assert seen.datapoint.datapoint_id == doomed.datapoint_id
        assert seen.deleted_by == "alice on UV-Vis 2"

        # Bench b restores what bench a deleted, after the deletion reached everyone.
        restored = b.restore(doomed.datapoint_id)
        assert restored.label == "spectrum 7" and b.recently_deleted() == []
        _sync_all(benches)
        record = records.find_one({"_id": doomed.datapoint_id})
        assert record is not None and record["data_type"] == "object_storage"
        assert record["sync_undeletes"] == seen.revision
        assert record["sync_revision"] == seen.revision + 1
        assert tombstones.find_one({"_id": doomed.datapoint_id}) is None
        # Bench a pulls it back, bytes included; nothing is waiting anywhere.
        assert a.get(doomed.datapoint_id).label == "spectrum 7"
        assert a.value(doomed.datapoint_id) == data  # its copy, kept while restorable
        engine_b.fetch_file(doomed.datapoint_id)  # bench b never held the bytes
        assert b.value(doomed.datapoint_id) == data
        assert a.recently_deleted() == []
        for service in (a, b):
            assert service.get_stored(doomed.datapoint_id).sync_state == "confirmed"

        # MADSci's own server serves the restored datapoint and its file.
        with urllib.request.urlopen(f"{madsci_server}datapoint/{doomed.datapoint_id}",
                                    timeout=30) as response:
            assert json.loads(response.read())["label"] == "spectrum 7"
        with urllib.request.urlopen(
                f"{madsci_server}datapoint/{doomed.datapoint_id}/value", timeout=30) as response:
            assert hashlib.sha256(response.read()).digest() == hashlib.sha256(data).digest()

        # A later deletion wins over the restore again (a higher revision).
        a.delete(doomed.datapoint_id)
        _sync_all(benches)
        for service in (a, b):
            with pytest.raises(NotFoundError):
                service.get(doomed.datapoint_id)
        assert records.find_one({"_id": doomed.datapoint_id}) is None
    finally:
        client.close()


def test_files_of_deletions_past_the_retention_period_are_freed(
        benches: list[tuple[BenchService, SyncEngine]], tmp_path: Path) -> None:
    (a, engine_a), _b = benches
    source = tmp_path / "old.txt"
    source.write_bytes(b"old run")
    dp = a.capture_file(source)
    assert engine_a.run_pass(force=True).ok
    a.delete(dp.datapoint_id)
    assert engine_a.run_pass(force=True).ok
    assert a.files.exists(str(dp.sha256))  # restorable: kept
    save_section(a.paths, "deleted", {"retention_days": 0})
    assert engine_a.run_pass(force=True).freed_files == 1
    assert not a.files.exists(str(dp.sha256))
    assert a.recently_deleted() == []
