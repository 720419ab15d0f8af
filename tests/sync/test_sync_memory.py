"""Push, pull and conflict logic on the in-memory backends (``sync.memory_backend``): fast,
no servers. The same behaviour on SeaweedFS + nx-27017 stays proven end to end by
``test_sync_push.py``, ``test_sync_pull.py`` and the others; the backends themselves are
held to one contract by ``test_backend_contract.py``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ulid import ULID

from app.core.config import save_section
from app.core.errors import NotFoundError
from app.core.models import ValueDataPoint
from app.service import BenchService
from sync.engine import SyncEngine
from sync.faults import CentralConfigError, RejectedError
from sync.memory_backend import MemoryCentral, MemoryObjects
from sync.push import Pusher
from sync.settings import CentralSettings

MIB = 1024 * 1024
BUCKET = "bench"


def memory_settings(**overrides: Any) -> CentralSettings:
    """Settings as a configured bench has them; the memory backends ignore the addresses."""
    values: dict[str, Any] = dict(endpoint="central.invalid:9000", access_key="bench",
                                  secret_key="unused", bucket=BUCKET, region="us-east-1",
                                  mongo_url="mongodb://central.invalid/", part_size=5 * MIB)
    values.update(overrides)
    return CentralSettings(**values)


@pytest.fixture
def central() -> MemoryCentral:
    return MemoryCentral(buckets=[BUCKET])


@pytest.fixture
def benches(tmp_path: Path, central: MemoryCentral
            ) -> Iterator[list[tuple[BenchService, SyncEngine]]]:
    """Two benches (services with their sync engines) on one in-memory central store."""
    pairs = []
    try:
        for name in ("a", "b"):
            service = BenchService(tmp_path / f"bench-{name}")
            pairs.append((service, SyncEngine(service, memory_settings(),
                                              backends=central.backends())))
        yield pairs
    finally:
        for service, engine in pairs:
            engine.close()
            service.close()


@pytest.fixture
def bench(benches: list[tuple[BenchService, SyncEngine]]) -> BenchService:
    return benches[0][0]


@pytest.fixture
def engine(benches: list[tuple[BenchService, SyncEngine]]) -> SyncEngine:
    return benches[0][1]


def _sync_all(pairs: list[tuple[BenchService, SyncEngine]], rounds: int = 2) -> None:
    for _ in range(rounds):
        for _service, engine in pairs:
            report = engine.run_pass(force=True)
            assert report.ok, report


def _record(central: MemoryCentral, datapoint_id: str) -> dict[str, Any]:
    found = central.collections.get("datapoints", {}).get(datapoint_id)
    assert found is not None, f"no central record of {datapoint_id}"
    return found


def _object_bytes(central: MemoryCentral, name: str) -> bytes:
    return central.buckets[BUCKET][name].data


# -- push -------------------------------------------------------------------------------


def test_values_are_pushed_in_madsci_shape_and_confirmed(
        bench: BenchService, engine: SyncEngine, central: MemoryCentral) -> None:
    ownership = bench.ownership(experiment="EXP42", user="alice")
    first = bench.capture_value({"t": 23.5, "ok": True}, label="temp", ownership=ownership)
    second = bench.capture_value([1, 2, None], label="temp")
    report = engine.run_pass()
    assert report.ok and report.confirmed == 2 and report.remaining == 0, report
    doc = _record(central, first.datapoint_id)
    assert doc["data_type"] == "json" and doc["value"] == {"t": 23.5, "ok": True}
    assert doc["label"] == "temp" and doc["ownership_info"]["experiment_id"]
    assert doc["sync_revision"] == 1 and doc["sync_bench_id"] == engine.bench_id
    assert _record(central, second.datapoint_id)["value"] == [1, 2, None]
    for captured in (first, second):
        assert bench.get_stored(captured.datapoint_id).sync_state == "confirmed"
    again = engine.run_pass(force=True)  # exactly once: nothing is written twice
    assert again.ok and again.confirmed == 0
    assert central.calls.get("bulk_write") == 1


@pytest.mark.parametrize("size", [0, 6 * MIB + 123])
def test_files_are_uploaded_verified_and_recorded(
        bench: BenchService, engine: SyncEngine, central: MemoryCentral, tmp_path: Path,
        size: int) -> None:
    source = tmp_path / "spectrum run.csv"
    data = os.urandom(size)
    source.write_bytes(data)
    captured = bench.capture_file(source, label="spectrum")
    report = engine.run_pass()
    assert report.ok and report.confirmed == 1, report
    doc = _record(central, captured.datapoint_id)
    assert doc["data_type"] == "object_storage" and doc["bucket_name"] == BUCKET
    assert captured.datapoint_id in doc["object_name"]
    assert doc["object_name"].endswith("spectrum run.csv")
    assert doc["size_bytes"] == size and doc["sha256"] == hashlib.sha256(data).hexdigest()
    assert doc["content_type"] == "text/csv" and doc["etag"]
    assert _object_bytes(central, doc["object_name"]) == data
    stored = central.buckets[BUCKET][doc["object_name"]]
    assert stored.metadata["sha256"] == doc["sha256"]
    assert stored.metadata["datapoint-id"] == captured.datapoint_id
    assert stored.etag.endswith("-2") == (size > 5 * MIB)  # multipart above one part
    assert bench.get_stored(captured.datapoint_id).sync_state == "confirmed"


def test_a_broken_multipart_upload_resumes_with_the_parts_already_sent(
        bench: BenchService, engine: SyncEngine, central: MemoryCentral, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    data = os.urandom(11 * MIB)  # three parts of 5 MiB
    source.write_bytes(data)
    captured = bench.capture_file(source)
    central.fail_next("complete_multipart", ConnectionResetError("connection reset"))
    report = engine.run_pass(force=True)
    assert report.retrying == 1 and report.confirmed == 0, report
    assert central.calls["upload_part"] == 3
    report = engine.run_pass(force=True)
    assert report.ok and report.confirmed == 1, report
    assert central.calls["upload_part"] == 3  # no part sent twice
    assert _object_bytes(central, _record(central, captured.datapoint_id)["object_name"]) == data
    assert not central.uploads[BUCKET]


def test_same_name_and_label_never_overwrite(bench: BenchService, engine: SyncEngine,
                                             central: MemoryCentral, tmp_path: Path) -> None:
    captured = []
    for index in range(5):
        folder = tmp_path / f"run{index}"
        folder.mkdir()
        path = folder / "result.txt"
        path.write_bytes(f"run {index}\n".encode())
        captured.append((bench.capture_file(path, label="result"), path.read_bytes()))
    report = engine.run_pass()
    assert report.ok and report.confirmed == 5
    names = set()
    for datapoint, data in captured:
        name = _record(central, datapoint.datapoint_id)["object_name"]
        names.add(name)
        assert _object_bytes(central, name) == data
    assert len(names) == 5


@pytest.mark.parametrize("kind, change", [
    ("file", {"sha256": "0" * 64}),           # the record points at other bytes
    ("file", {"object_name": "benchdata/elsewhere/x.csv"}),
    ("value", {"sync_bench_id": "01JOTHERBENCH0000000000000"}),  # another bench's write
    ("value", {"sync_revision": 0}),          # an older revision came back
])
def test_a_record_that_does_not_read_back_as_written_is_not_confirmed(
        bench: BenchService, engine: SyncEngine, central: MemoryCentral, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, kind: str, change: dict[str, Any]) -> None:
    if kind == "file":
        source = tmp_path / "run.csv"
        source.write_bytes(b"a,b\n1,2\n")
        captured = bench.capture_file(source, label="run")
    else:
        captured = bench.capture_value({"t": 1.5}, label="temp")
    neighbour = bench.capture_value({"t": 2.5}, label="temp")  # same batch, untouched
    real = Pusher._find_records

    def tampering(pusher: Pusher, ids: Any, fields: Any) -> Any:
        if captured.datapoint_id in ids:  # between our write and its read-back, once
            _record(central, captured.datapoint_id).update(change)
            monkeypatch.setattr(Pusher, "_find_records", real)
        return real(pusher, ids, fields)

    monkeypatch.setattr(Pusher, "_find_records", tampering)
    report = engine.run_pass(force=True)
    assert report.confirmed == 1 and report.retrying == 1, report
    assert bench.get_stored(captured.datapoint_id).sync_state == "recorded"
    assert bench.get_stored(neighbour.datapoint_id).sync_state == "confirmed"

    report = engine.run_pass(force=True)  # written again, above what is there
    assert report.ok and report.confirmed == 1 and report.remaining == 0, report
    stored = bench.get_stored(captured.datapoint_id)
    assert stored.sync_state == "confirmed"
    doc = _record(central, captured.datapoint_id)
    assert doc["sync_bench_id"] == engine.bench_id and doc["sync_revision"] == stored.revision
    if kind == "file":
        assert doc["sha256"] == captured.sha256
        assert _object_bytes(central, doc["object_name"]) == b"a,b\n1,2\n"
    else:
        assert doc["value"] == {"t": 1.5}


def test_a_failed_record_write_is_retried_and_confirmed_once(
        bench: BenchService, engine: SyncEngine, central: MemoryCentral) -> None:
    captured = bench.capture_value(7, label="flaky")
    central.fail_next("bulk_write", ConnectionResetError("the server went away"))
    report = engine.run_pass(force=True)
    assert report.retrying == 1 and report.confirmed == 0, report
    assert bench.get_stored(captured.datapoint_id).sync_state != "confirmed"
    report = engine.run_pass(force=True)
    assert report.ok and report.confirmed == 1, report
    assert _record(central, captured.datapoint_id)["value"] == 7


def test_a_refused_file_is_quarantined_and_values_go_on(
        bench: BenchService, engine: SyncEngine, central: MemoryCentral, tmp_path: Path) -> None:
    source = tmp_path / "refused.bin"
    source.write_bytes(b"refused")
    refused = bench.capture_file(source)
    value = bench.capture_value(1)
    central.fail_next("put", RejectedError("EntityTooLarge (the bucket policy)"))
    report = engine.run_pass(force=True)
    assert report.quarantined == 1 and report.confirmed == 1, report
    assert bench.get_stored(refused.datapoint_id).sync_state == "quarantined"
    assert _record(central, value.datapoint_id)["value"] == 1


@pytest.mark.allow_error_logs
def test_a_missing_bucket_is_created_and_a_refused_one_holds_files_back(
        tmp_path: Path) -> None:
    central = MemoryCentral()  # no bucket yet: the engine creates it, as MADSci does
    with BenchService(tmp_path / "bench") as bench, \
            SyncEngine(bench, memory_settings(), backends=central.backends()) as engine:
        bench.capture_value(1)
        assert engine.run_pass(force=True).ok
        assert BUCKET in central.buckets
    refusing = MemoryCentral()
    refusing.fail_next("make_bucket", CentralConfigError("may not create the bucket"), times=9)
    with BenchService(tmp_path / "other") as bench, \
            SyncEngine(bench, memory_settings(), backends=refusing.backends()) as engine:
        source = tmp_path / "held.bin"
        source.write_bytes(b"held back")
        held = bench.capture_file(source)
        value = bench.capture_value(2)
        report = engine.run_pass(force=True)
        assert report.config_error and "may not create" in report.config_error
        assert bench.get_stored(value.datapoint_id).sync_state == "confirmed"
        assert bench.get_stored(held.datapoint_id).sync_state != "confirmed"


# -- pull and conflicts -----------------------------------------------------------------


def test_other_benches_datapoints_appear_and_files_download_on_request(
        benches: list[tuple[BenchService, SyncEngine]], tmp_path: Path) -> None:
    (a, _engine_a), (b, engine_b) = benches
    value = a.capture_value({"x": 1}, label="from-a", ownership=a.ownership(experiment="EXP1"))
    source = tmp_path / "raw.bin"
    data = os.urandom(300_000)
    source.write_bytes(data)
    captured = a.capture_file(source, label="raw")
    _sync_all(benches)
    pulled = b.get(value.datapoint_id)
    assert isinstance(pulled, ValueDataPoint) and pulled.value == {"x": 1}
    assert b.get_stored(value.datapoint_id).origin == "remote"
    assert b.count({"ownership_info.experiment_id": "EXP1"}) == 1
    assert b.get(captured.datapoint_id).data_type.value == "object_storage"
    with pytest.raises(NotFoundError):
        b.open_file(captured.datapoint_id)  # metadata only until asked
    engine_b.fetch_file(captured.datapoint_id)
    assert b.value(captured.datapoint_id) == data
    assert engine_b.run_pass(force=True).remaining == 0


def test_late_arrival_with_old_ulid_is_pulled(
        benches: list[tuple[BenchService, SyncEngine]]) -> None:
    (a, _engine_a), (b, _engine_b) = benches
    a.capture_value(1, label="now")
    _sync_all(benches)  # b's cursor is now past everything central
    week_ago = ULID.from_timestamp(ULID().timestamp - 8 * 86400)
    late = a.submit(ValueDataPoint(datapoint_id=str(week_ago), value=2, label="late",
                                   data_timestamp="2020-01-01T00:00:00Z"))
    _sync_all(benches)
    assert b.get(late.datapoint_id).value == 2


def test_edits_propagate_last_writer_wins(benches: list[tuple[BenchService, SyncEngine]],
                                          central: MemoryCentral) -> None:
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
    assert engine_b.run_pass(force=True).ok  # conflicts, is lifted above a's, rewritten
    _sync_all(benches)
    assert a.get(dp.datapoint_id).label == b.get(dp.datapoint_id).label == "b again"
    doc = _record(central, dp.datapoint_id)
    assert doc["label"] == "b again"
    assert doc["sync_revision"] == a.get_stored(dp.datapoint_id).revision \
        == b.get_stored(dp.datapoint_id).revision


def test_deletes_are_tombstones_that_propagate_and_win(
        benches: list[tuple[BenchService, SyncEngine]], central: MemoryCentral,
        tmp_path: Path) -> None:
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
    assert doomed.datapoint_id not in central.collections["datapoints"]
    assert doomed.datapoint_id in central.collections["tombstones"]
    # The file was verified central, so the local copy was freed after the deletion.
    assert not a.files.exists(doomed.sha256)


def test_a_record_written_after_its_deletion_is_removed_by_the_pull(
        benches: list[tuple[BenchService, SyncEngine]], central: MemoryCentral) -> None:
    """A write that raced a deletion on another bench: the deletion wins everywhere."""
    (a, _engine_a), (b, engine_b) = benches
    dp = a.capture_value(1)
    _sync_all(benches)
    b.delete(dp.datapoint_id)
    assert engine_b.run_pass(force=True).ok
    assert dp.datapoint_id not in central.collections["datapoints"]  # the deletion ...
    central.collections["datapoints"][dp.datapoint_id] = {  # ... a late write brings it back
        "_id": dp.datapoint_id, "data_type": "json", "value": 2, "sync_revision": 2,
        "sync_bench_id": "elsewhere", "sync_written_at": central.now()}
    report = engine_b.run_pass(force=True)
    assert report.ok, report
    assert dp.datapoint_id not in central.collections["datapoints"]
    assert _engine_a.run_pass(force=True).ok
    with pytest.raises(NotFoundError):
        a.get(dp.datapoint_id)


def test_a_delete_never_frees_a_file_not_verified_central(
        bench: BenchService, engine: SyncEngine, central: MemoryCentral, tmp_path: Path) -> None:
    source = tmp_path / "unsynced.txt"
    source.write_bytes(b"not yet central")
    dp = bench.capture_file(source)
    bench.delete(dp.datapoint_id)
    assert engine.run_pass(force=True).ok
    assert bench.files.exists(dp.sha256)


def test_documents_madsci_wrote_itself_reach_the_benches(
        benches: list[tuple[BenchService, SyncEngine]], central: MemoryCentral) -> None:
    """MADSci's own Data Manager inserts documents without our bookkeeping fields."""
    (_a, _engine_a), (b, engine_b) = benches
    madsci_id = str(ULID())
    records = MemoryCentral.backends(central).records(memory_settings())
    records.datapoints.insert({"_id": madsci_id, "label": "from MADSci", "data_type": "json",
                               "ownership_info": {"user_id": "01M857BWZZ2382TVE9NZ9XCV6N"},
                               "data_timestamp": "2026-11-23T22:10:32.072422",
                               "value": {"t": 23.5}})
    records.datapoints.insert({"_id": "../not-a-ulid", "data_type": "json", "value": 1})
    report = engine_b.run_pass(force=True)
    pulled = b.get(madsci_id)
    assert isinstance(pulled, ValueDataPoint) and pulled.value == {"t": 23.5}
    assert b.get_stored(madsci_id).origin == "remote"
    assert report.ok and report.pull_skipped == 1, report
    assert any("not-a-ulid" in error for error in report.errors)
    b.update(madsci_id, label="checked on bench b")
    report = engine_b.run_pass(force=True)
    assert report.ok and report.retrying == 0, report
    assert b.get_stored(madsci_id).sync_state == "confirmed"
    stored = _record(central, madsci_id)
    assert stored["label"] == "checked on bench b" and stored["value"] == {"t": 23.5}


def test_abandoned_uploads_of_this_bench_are_aborted(
        bench: BenchService, engine: SyncEngine, central: MemoryCentral, tmp_path: Path) -> None:
    from datetime import timedelta

    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(6 * MIB))
    dp = bench.capture_file(source)
    central.fail_next("upload_part", ConnectionResetError("reset"), times=2)
    engine.run_pass(force=True)
    assert central.uploads[BUCKET]
    bench.delete(dp.datapoint_id)  # nobody will resume it now
    objects = MemoryObjects(central, BUCKET)
    objects.age_uploads(timedelta(days=30))
    assert engine.run_pass(force=True).ok
    assert not central.uploads[BUCKET]


# -- fetch ------------------------------------------------------------------------------


def _fetch(service: BenchService, central: MemoryCentral, ident: str) -> str:
    """The one download-and-verify step, over the memory bucket."""
    from sync.fetch import fetch_verified
    from sync.objects import ObjectStore

    objects = ObjectStore(memory_settings(), backend=MemoryObjects(central, BUCKET))
    return fetch_verified(service, objects, service.get(ident))


def _madsci_write(central: MemoryCentral, data: bytes, label: str) -> str:
    """An object_storage datapoint as MADSci 0.8.1's server writes one: the object, then
    a record with its size and ETag but no SHA-256."""
    ident = str(ULID())
    name = f"{ident}_{label}"
    objects = MemoryObjects(central, BUCKET)
    objects.put(name, data, content_type="application/octet-stream",
                metadata={"original_datapoint_id": ident})
    info = objects.stat(name)
    assert info is not None
    records = central.backends().records(memory_settings())
    records.datapoints.insert({
        "_id": ident, "label": label, "data_type": "object_storage",
        "data_timestamp": "2026-11-23T22:10:32.072422", "ownership_info": {},
        "custom_metadata": {}, "path": f"/tmp/tmpabc_{label}", "bucket_name": BUCKET,
        "object_name": name, "etag": info.etag, "size_bytes": len(data),
        "content_type": "application/octet-stream", "storage_endpoint": "central.invalid:9000",
        "public_endpoint": "central.invalid:9000",
        "url": f"http://central.invalid:9000/{BUCKET}/{name}"})
    return ident


def test_a_central_copy_that_does_not_hash_to_its_record_is_refused(
        benches: list[tuple[BenchService, SyncEngine]], central: MemoryCentral,
        tmp_path: Path) -> None:
    from app.core import custody
    from app.core.errors import FileDamagedError

    (a, _engine_a), (b, _engine_b) = benches
    source = tmp_path / "data.bin"
    data = os.urandom(200_000)
    source.write_bytes(data)
    ident = a.capture_file(source).datapoint_id
    _sync_all(benches)
    stored = central.buckets[BUCKET][_record(central, ident)["object_name"]]
    forged = bytearray(data)
    forged[-1] ^= 0xFF  # same size and metadata: only the bytes tell
    stored.data = bytes(forged)
    with pytest.raises(FileDamagedError, match="does not match its record"):
        _fetch(b, central, ident)
    assert custody.custody_of(b.store, ident) is None
    assert not b.files.exists(hashlib.sha256(forged).hexdigest())
    stored.data = data
    assert _fetch(b, central, ident) == hashlib.sha256(data).hexdigest()
    assert b.value(ident) == data


@pytest.mark.allow_error_logs  # the refused fetch is logged
def test_objects_madsci_wrote_are_verified_by_size_and_etag(
        benches: list[tuple[BenchService, SyncEngine]], central: MemoryCentral) -> None:
    from app.core import custody
    from app.core.errors import FileDamagedError

    (b, engine_b) = benches[1]
    good = _madsci_write(central, b"original bytes", "good.bin")
    tampered = _madsci_write(central, b"original bytes", "tampered.bin")
    MemoryObjects(central, BUCKET).put(f"{tampered}_tampered.bin", b"modified bytes",
                                       content_type="application/octet-stream", metadata={})
    assert engine_b.run_pass(force=True).ok
    _fetch(b, central, good)
    assert b.value(good) == b"original bytes"
    record = custody.custody_of(b.store, good)
    assert record is not None and record.how == "etag"
    with pytest.raises(FileDamagedError, match="has changed since it was recorded"):
        _fetch(b, central, tampered)
    assert custody.custody_of(b.store, tampered) is None


# -- deletions and restores -------------------------------------------------------------


def test_a_restore_after_the_delete_synced_brings_it_back_everywhere(
        benches: list[tuple[BenchService, SyncEngine]], central: MemoryCentral,
        tmp_path: Path) -> None:
    """The logic of the real-server test (test_sync_undelete.py, which also has MADSci's
    own server read the restored datapoint)."""
    (a, _engine_a), (b, engine_b) = benches
    data = b"spectrum 7\n" * 1000
    source = tmp_path / "spectrum-7.csv"
    source.write_bytes(data)
    doomed = a.capture_file(source, label="spectrum 7")
    ident = doomed.datapoint_id
    _sync_all(benches)
    a.delete(ident, by="alice on UV-Vis 2")
    _sync_all(benches)
    assert ident not in central.collections["datapoints"]
    assert central.collections["tombstones"][ident]["sync_deleted_by"] == "alice on UV-Vis 2"
    with pytest.raises(NotFoundError):
        b.get(ident)
    [seen] = b.recently_deleted()
    assert seen.deleted_by == "alice on UV-Vis 2"

    b.restore(ident)  # bench b restores what bench a deleted
    _sync_all(benches)
    record = _record(central, ident)
    assert record["sync_undeletes"] == seen.revision
    assert record["sync_revision"] == seen.revision + 1
    assert ident not in central.collections["tombstones"]
    assert a.value(ident) == data  # its copy, kept while restorable
    engine_b.fetch_file(ident)
    assert b.value(ident) == data
    for service in (a, b):
        assert service.get_stored(ident).sync_state == "confirmed"

    a.delete(ident)  # a later deletion wins over the restore again
    _sync_all(benches)
    for service in (a, b):
        with pytest.raises(NotFoundError):
            service.get(ident)
    assert ident not in central.collections["datapoints"]


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


def test_an_error_a_backend_sorted_itself_is_not_made_its_own_cause(
        central: MemoryCentral) -> None:
    """``raise classify(exc) from exc`` over an error the backend raised already sorted
    once made it its own cause: ``doctor``, walking the causes, hung on a wrong secret."""
    from sync.objects import ObjectStore

    central.fail_next("bucket_exists", CentralConfigError("access denied to the bucket"))
    store = ObjectStore(memory_settings(), backend=MemoryObjects(central, BUCKET))
    with pytest.raises(CentralConfigError, match="access denied") as raised:
        store.check_access()
    chain: list[BaseException] = []
    current: Any = raised.value
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__
    assert len(chain) == 2  # the error raised, caused by the one the backend raised
