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
        meta = {k.lower(): v for k, v in stat.metadata.items()}
        assert meta["x-amz-meta-sha256"] == doc["sha256"]
        assert meta["x-amz-meta-datapoint-id"] == captured.datapoint_id
    assert bench.get_stored(captured.datapoint_id).sync_state == "confirmed"


def test_same_name_and_label_never_overwrite(bench: BenchService, engine: SyncEngine,
                                             central: Any, tmp_path: Path) -> None:
    captured = []
    for index in range(5):
        folder = tmp_path / f"run{index}"
        folder.mkdir()
        path = folder / "result.txt"
        path.write_bytes(f"run {index}\n".encode())
        captured.append((bench.capture_file(path, label="result"), path.read_bytes()))
    report = engine.run_pass()
    assert report.ok and report.confirmed == 5
    client, coll = _collection(central)
    try:
        names = set()
        for datapoint, data in captured:
            doc = coll.find_one({"_id": datapoint.datapoint_id})
            names.add(doc["object_name"])
            assert _object_bytes(central, doc["object_name"]) == data
        assert len(names) == 5
    finally:
        client.close()
