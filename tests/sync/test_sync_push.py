"""Push: values and files reach MongoDB and the bucket, verified, exactly once."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from app.service import BenchService
from sync.engine import SyncEngine
from sync.objects import ObjectStore
from sync.push import Pusher, read_back_fields, reads_back, signature


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[BenchService]:
    with BenchService(tmp_path / "bench") as service:
        yield service


@pytest.fixture
def engine(bench: BenchService, central: Any) -> Iterator[SyncEngine]:
    with SyncEngine(bench, central) as sync_engine:
        yield sync_engine


def _collection(settings: Any) -> tuple[Any, Any]:
    client: Any = pymongo.MongoClient(settings.mongo_url.get_secret_value(),
                                      serverSelectionTimeoutMS=5000)
    return client, client[settings.mongo_database][settings.mongo_collection]


def _object_bytes(settings: Any, name: str) -> bytes:
    with ObjectStore(settings) as objects:
        response = objects.client.get_object(settings.bucket, name)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()


def test_values_are_pushed_in_madsci_shape_and_confirmed(bench: BenchService,
                                                          engine: SyncEngine, central: Any) -> None:
    ownership = bench.ownership(experiment="EXP42", user="alice")
    first = bench.capture_value({"t": 23.5, "ok": True}, label="temp", ownership=ownership)
    second = bench.capture_value([1, 2, None], label="temp")
    report = engine.run_pass()
    assert report.ok, report
    assert report.confirmed == 2 and report.remaining == 0
    client, coll = _collection(central)
    try:
        doc = coll.find_one({"_id": first.datapoint_id})
        assert doc is not None
        assert doc["data_type"] == "json" and doc["value"] == {"t": 23.5, "ok": True}
        assert doc["label"] == "temp"
        assert doc["ownership_info"] == {"user_id": ownership.user_id,
                                         "experiment_id": ownership.experiment_id}
        assert doc["data_timestamp"] == first.to_document()["data_timestamp"]
        assert doc["custom_metadata"]["experiment_name"] == "EXP42"
        assert doc["sync_revision"] == 1 and doc["sync_written_at"] is not None
        assert coll.count_documents({}) == 2
        assert coll.find_one({"_id": second.datapoint_id})["value"] == [1, 2, None]
    finally:
        client.close()
    assert bench.get_stored(first.datapoint_id).sync_state == "confirmed"
    again = engine.run_pass()
    assert again.ok and again.confirmed == 0


@pytest.mark.parametrize("size", [0, 5 * 1024 * 1024])
def test_files_are_uploaded_verified_and_recorded(bench: BenchService, engine: SyncEngine,
                                                 central: Any, tmp_path: Path, size: int) -> None:
    source = tmp_path / "spectrum run.csv"
    data = os.urandom(size)
    source.write_bytes(data)
    captured = bench.capture_file(source, label="spectrum")
    report = engine.run_pass()
    assert report.ok and report.confirmed == 1, report
    client, coll = _collection(central)
    try:
        doc = coll.find_one({"_id": captured.datapoint_id})
    finally:
        client.close()
    assert doc["data_type"] == "object_storage"
    assert doc["bucket_name"] == central.bucket
    assert captured.datapoint_id in doc["object_name"]
    assert doc["object_name"].endswith("spectrum run.csv")
    assert doc["size_bytes"] == size and doc["sha256"] == hashlib.sha256(data).hexdigest()
    assert doc["storage_endpoint"] == central.endpoint and doc["url"].startswith("http://")
    assert doc["content_type"] == "text/csv" and doc["etag"]
    assert doc["path"] == str(source.absolute())
    assert _object_bytes(central, doc["object_name"]) == data
    with ObjectStore(central) as objects:
        stat = objects.stat(doc["object_name"])
        assert stat is not None and stat.metadata["sha256"] == doc["sha256"]
        assert stat.metadata["datapoint-id"] == captured.datapoint_id
    assert bench.get_stored(captured.datapoint_id).sync_state == "confirmed"


# -- read-back: confirmed only as written -----------------------------------------------------


_WROTE_FILE = {"_id": "X", "data_type": "object_storage", "sync_revision": 3,
               "sync_bench_id": "ME", "object_name": "benchdata/X/a.csv", "size_bytes": 8,
               "sha256": "a", "label": "not compared"}
_FILE = {k: _WROTE_FILE[k] for k in ("sync_revision", "sync_bench_id", "object_name",
                                      "size_bytes", "sha256")}


@pytest.mark.parametrize("found, confirmed", [
    (None, False),                                                      # not there
    (_FILE, True),                                                      # ours as written
    ({**_FILE, "label": "other"}, True),                                # not compared
    ({"sync_revision": 4, "sync_bench_id": "OTHER"}, True),  # superseded by a later writer
    ({**_FILE, "sync_revision": 2}, False),                             # an older revision
    ({**_FILE, "sync_revision": None}, False),                          # no revision
    ({**_FILE, "sync_bench_id": "OTHER"}, False),                       # not our write
    ({**_FILE, "sha256": "b"}, False),                                  # other bytes
    ({**_FILE, "size_bytes": 9}, False),
    ({**_FILE, "object_name": "benchdata/Y/a.csv"}, False),             # another object
    ({"sync_revision": 3, "sync_bench_id": "ME"}, False),               # object fields gone
])
def test_read_back_rule(found: Any, confirmed: bool) -> None:
    fields = read_back_fields([_WROTE_FILE, {"data_type": "json"}])
    assert fields[0] == "sync_revision" and "sha256" in fields
    found_signature = None if found is None else signature(found, fields)
    assert reads_back(found_signature, signature(_WROTE_FILE, fields)) is confirmed


def test_values_are_read_back_by_revision_and_bench_only() -> None:
    fields = read_back_fields([{"data_type": "json", "sync_revision": 1}])
    assert fields == ("sync_revision", "sync_bench_id")


def _tamper_after_write(monkeypatch: pytest.MonkeyPatch, settings: Any, datapoint_id: str,
                        change: dict[str, Any]) -> None:
    """Change the central record between our write and its read-back (as another writer
    or a damaged store would), once."""
    real = Pusher._find_records

    def tampering(pusher: Pusher, ids: Any, fields: Any) -> Any:
        if datapoint_id in ids:
            client, coll = _collection(settings)
            try:
                coll.update_one({"_id": datapoint_id}, {"$set": change})
            finally:
                client.close()
            monkeypatch.setattr(Pusher, "_find_records", real)
        return real(pusher, ids, fields)

    monkeypatch.setattr(Pusher, "_find_records", tampering)


@pytest.mark.parametrize("kind, change", [
    # End to end on the real servers for one case; every case runs on the memory
    # backends (test_sync_memory.py).
    ("file", {"sha256": "0" * 64}),           # the record points at other bytes
])
def test_a_record_that_does_not_read_back_as_written_is_not_confirmed(
        bench: BenchService, engine: SyncEngine, central: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, kind: str, change: dict[str, Any]) -> None:
    if kind == "file":
        source = tmp_path / "run.csv"
        source.write_bytes(b"a,b\n1,2\n")
        captured = bench.capture_file(source, label="run")
    else:
        captured = bench.capture_value({"t": 1.5}, label="temp")
    neighbour = bench.capture_value({"t": 2.5}, label="temp")  # same batch, untouched
    _tamper_after_write(monkeypatch, central, captured.datapoint_id, change)

    report = engine.run_pass(force=True)
    assert report.confirmed == 1 and report.retrying == 1, report
    assert bench.get_stored(captured.datapoint_id).sync_state == "recorded"
    assert bench.get_stored(neighbour.datapoint_id).sync_state == "confirmed"
    assert engine.status()["backlog"]["count"] == 1

    report = engine.run_pass(force=True)  # written again, above what is there
    assert report.ok and report.confirmed == 1 and report.remaining == 0, report
    stored = bench.get_stored(captured.datapoint_id)
    assert stored.sync_state == "confirmed"
    client, coll = _collection(central)
    try:
        doc = coll.find_one({"_id": captured.datapoint_id})
    finally:
        client.close()
    assert doc["sync_bench_id"] == engine.bench_id
    assert doc["sync_revision"] == stored.revision
    if kind == "file":
        assert doc["sha256"] == captured.sha256
        assert captured.datapoint_id in doc["object_name"]
        assert _object_bytes(central, doc["object_name"]) == b"a,b\n1,2\n"
    else:
        assert doc["value"] == {"t": 1.5}
