"""Pull, edits and deletions between benches sharing one central store; on the in-memory
central store and on SeaweedFS + nx-27017 (the ``sync_backend`` fixture)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.sync.central_stores import CentralStore, sync_all
from ulid import ULID

from app.core.config import save_section
from app.core.errors import NotFoundError
from app.core.models import ValueDataPoint
from app.service import BenchService
from sync.engine import SyncEngine


def test_other_benches_datapoints_appear_and_files_download_on_request(
        benches: list[tuple[BenchService, SyncEngine]], tmp_path: Path) -> None:
    (a, _engine_a), (b, engine_b) = benches
    value = a.capture_value({"x": 1}, label="from-a", ownership=a.ownership(experiment="EXP1"))
    source = tmp_path / "raw.bin"
    data = os.urandom(300_000)
    source.write_bytes(data)
    captured = a.capture_file(source, label="raw")
    sync_all(benches)
    pulled = b.get(value.datapoint_id)
    assert isinstance(pulled, ValueDataPoint) and pulled.value == {"x": 1}
    assert b.get_stored(value.datapoint_id).origin == "remote"
    assert b.get_stored(value.datapoint_id).sync_state == "confirmed"
    assert b.count({"ownership_info.experiment_id": "EXP1"}) == 1
    assert b.get(captured.datapoint_id).data_type.value == "object_storage"
    with pytest.raises(NotFoundError):
        b.open_file(captured.datapoint_id)  # metadata only until asked
    engine_b.fetch_file(captured.datapoint_id)
    assert b.value(captured.datapoint_id) == data
    engine_b.fetch_file(captured.datapoint_id)  # cached: no second download needed
    assert engine_b.run_pass(force=True).remaining == 0


def test_late_arrival_with_old_ulid_is_pulled(
        benches: list[tuple[BenchService, SyncEngine]]) -> None:
    (a, _engine_a), (b, _engine_b) = benches
    a.capture_value(1, label="now")
    sync_all(benches)  # b's cursor is now past everything central
    week_ago = ULID.from_timestamp(ULID().timestamp - 8 * 86400)
    late = a.submit(ValueDataPoint(datapoint_id=str(week_ago), value=2, label="late",
                                   data_timestamp="2020-01-01T00:00:00Z"))
    sync_all(benches)
    assert b.get(late.datapoint_id).value == 2


def test_edits_propagate_last_writer_wins(benches: list[tuple[BenchService, SyncEngine]],
                                          sync_backend: CentralStore) -> None:
    (a, engine_a), (b, engine_b) = benches
    dp = a.capture_value(5, label="original")
    sync_all(benches)
    b.update(dp.datapoint_id, label="edited on b", set_metadata={"note": "b"})
    sync_all(benches)
    assert a.get(dp.datapoint_id).label == "edited on b"
    assert a.get(dp.datapoint_id).custom_metadata["note"] == "b"
    # Concurrent edits from the same base: the one pushed last wins everywhere.
    a.update(dp.datapoint_id, label="a again")
    b.update(dp.datapoint_id, label="b again")
    assert engine_a.run_pass(force=True).ok
    assert engine_b.run_pass(force=True).ok  # conflicts, is lifted above a's, rewritten
    sync_all(benches)
    assert a.get(dp.datapoint_id).label == b.get(dp.datapoint_id).label == "b again"
    doc = sync_backend.written(dp.datapoint_id)
    assert doc["label"] == "b again"
    assert doc["sync_revision"] == a.get_stored(dp.datapoint_id).revision \
        == b.get_stored(dp.datapoint_id).revision


# -- deletions --------------------------------------------------------------------------


def test_deletes_are_tombstones_that_propagate_and_win(
        benches: list[tuple[BenchService, SyncEngine]], sync_backend: CentralStore,
        tmp_path: Path) -> None:
    (a, engine_a), (b, engine_b) = benches
    source = tmp_path / "doomed.txt"
    source.write_bytes(b"doomed")
    doomed = a.capture_file(source, label="doomed")
    kept = a.capture_value(1, label="kept")
    save_section(a.paths, "deleted", {"retention_days": 0})  # not kept for restoring
    sync_all(benches)
    b.update(doomed.datapoint_id, label="edited while deleted elsewhere")
    a.delete(doomed.datapoint_id)
    assert engine_a.run_pass(force=True).ok
    assert engine_b.run_pass(force=True).ok
    sync_all(benches)
    for service in (a, b):
        with pytest.raises(NotFoundError):
            service.get(doomed.datapoint_id)
        assert service.get(kept.datapoint_id).value == 1
        assert service.store.get_stored(doomed.datapoint_id, include_deleted=True).deleted
    assert sync_backend.record(doomed.datapoint_id) is None
    assert sync_backend.tombstone(doomed.datapoint_id) is not None
    # The file was verified central, so the local copy was freed after the deletion.
    assert not a.files.exists(doomed.sha256)


def test_a_record_written_after_its_deletion_is_removed_by_the_pull(
        benches: list[tuple[BenchService, SyncEngine]], sync_backend: CentralStore) -> None:
    """A write that raced a deletion on another bench: the deletion wins everywhere."""
    (a, engine_a), (b, engine_b) = benches
    dp = a.capture_value(1)
    sync_all(benches)
    b.delete(dp.datapoint_id)
    assert engine_b.run_pass(force=True).ok
    assert sync_backend.record(dp.datapoint_id) is None  # the deletion ...
    sync_backend.records.datapoints.update_one(  # ... a late write brings it back
        {"_id": dp.datapoint_id},
        {"$set": {"data_type": "json", "value": 2, "sync_revision": 2,
                  "sync_bench_id": "elsewhere"},
         "$currentDate": {"sync_written_at": True}}, upsert=True)
    report = engine_b.run_pass(force=True)
    assert report.ok, report
    assert sync_backend.record(dp.datapoint_id) is None
    assert engine_a.run_pass(force=True).ok
    with pytest.raises(NotFoundError):
        a.get(dp.datapoint_id)


def test_a_delete_never_frees_a_file_not_verified_central(
        bench: BenchService, engine: SyncEngine, tmp_path: Path) -> None:
    source = tmp_path / "unsynced.txt"
    source.write_bytes(b"not yet central")
    dp = bench.capture_file(source)
    bench.delete(dp.datapoint_id)
    assert engine.run_pass(force=True).ok
    assert bench.files.exists(dp.sha256)


def test_files_of_deletions_past_the_retention_period_are_freed(
        bench: BenchService, engine: SyncEngine, tmp_path: Path) -> None:
    source = tmp_path / "old.txt"
    source.write_bytes(b"old run")
    dp = bench.capture_file(source)
    assert engine.run_pass(force=True).ok
    bench.delete(dp.datapoint_id)
    assert engine.run_pass(force=True).ok
    assert bench.files.exists(str(dp.sha256))  # restorable: kept
    save_section(bench.paths, "deleted", {"retention_days": 0})
    assert engine.run_pass(force=True).freed_files == 1
    assert not bench.files.exists(str(dp.sha256))
    assert bench.recently_deleted() == []


# -- what MADSci wrote ------------------------------------------------------------------


def test_documents_madsci_wrote_itself_reach_the_benches(
        benches: list[tuple[BenchService, SyncEngine]], sync_backend: CentralStore) -> None:
    """MADSci's own Data Manager inserts documents without our bookkeeping fields."""
    (_a, _engine_a), (b, engine_b) = benches
    madsci_id = str(ULID())
    # Exactly what MADSci 0.8.1 stores (naive local time as text, ids as ULIDs)...
    sync_backend.insert({"_id": madsci_id, "label": "from MADSci", "data_type": "json",
                         "ownership_info": {"user_id": "01M857BWZZ2382TVE9NZ9XCV6N"},
                         "data_timestamp": "2026-11-23T22:10:32.072422",
                         "value": {"t": 23.5}})
    # ...and documents this bench cannot hold are skipped, not fatal.
    sync_backend.insert({"_id": "../not-a-ulid", "data_type": "json", "value": 1})
    report = engine_b.run_pass(force=True)
    pulled = b.get(madsci_id)
    assert isinstance(pulled, ValueDataPoint) and pulled.value == {"t": 23.5}
    assert pulled.label == "from MADSci"
    assert b.get_stored(madsci_id).origin == "remote"
    assert report.ok and report.pull_skipped == 1, report  # the bad one, reported
    assert any("not-a-ulid" in error for error in report.errors)
    # MADSci still reads its document (only extra fields were added).
    stored = sync_backend.written(madsci_id)
    assert stored["value"] == {"t": 23.5} and stored["label"] == "from MADSci"

    # An edit on the bench reaches the central record (it used to be "rebased" forever:
    # the document had no revision for the guarded upsert to compare with).
    b.update(madsci_id, label="checked on bench b")
    report = engine_b.run_pass(force=True)
    assert report.ok and report.retrying == 0, report
    assert b.get_stored(madsci_id).sync_state == "confirmed"
    stored = sync_backend.written(madsci_id)
    assert stored["label"] == "checked on bench b" and stored["value"] == {"t": 23.5}
