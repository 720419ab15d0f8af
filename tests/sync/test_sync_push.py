"""Push: values and files reach MongoDB and the bucket, verified, exactly once; on the
in-memory central store and on SeaweedFS + nx-27017 (the ``sync_backend`` fixture)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from tests.sync.central_stores import MIB, CentralStore

from app.service import BenchService
from sync.engine import SyncEngine
from sync.push import Pusher, read_back_fields, reads_back, signature


def test_values_are_pushed_in_madsci_shape_and_confirmed(
        bench: BenchService, engine: SyncEngine, sync_backend: CentralStore) -> None:
    ownership = bench.ownership(experiment="EXP42", user="alice")
    first = bench.capture_value({"t": 23.5, "ok": True}, label="temp", ownership=ownership)
    second = bench.capture_value([1, 2, None], label="temp")
    report = engine.run_pass()
    assert report.ok and report.confirmed == 2 and report.remaining == 0, report
    doc = sync_backend.written(first.datapoint_id)
    assert doc["data_type"] == "json" and doc["value"] == {"t": 23.5, "ok": True}
    assert doc["label"] == "temp"
    assert doc["ownership_info"] == {"user_id": ownership.user_id,
                                     "experiment_id": ownership.experiment_id}
    assert doc["data_timestamp"] == first.to_document()["data_timestamp"]
    assert doc["custom_metadata"]["experiment_name"] == "EXP42"
    assert doc["sync_revision"] == 1 and doc["sync_bench_id"] == engine.bench_id
    assert doc["sync_written_at"] is not None
    assert len(list(sync_backend.records.datapoints.find({}, {"_id": 1}))) == 2
    assert sync_backend.written(second.datapoint_id)["value"] == [1, 2, None]
    for captured in (first, second):
        assert bench.get_stored(captured.datapoint_id).sync_state == "confirmed"
    again = engine.run_pass(force=True)  # exactly once: nothing is written twice
    assert again.ok and again.confirmed == 0
    assert sync_backend.written(first.datapoint_id)["sync_written_at"] == doc["sync_written_at"]
    if sync_backend.memory is not None:  # and the one batch write, counted
        assert sync_backend.memory.calls.get("bulk_write") == 1


@pytest.mark.parametrize("size", [0, 5 * MIB, 6 * MIB + 123])
def test_files_are_uploaded_verified_and_recorded(
        bench: BenchService, sync_backend: CentralStore, tmp_path: Path, size: int) -> None:
    source = tmp_path / "spectrum run.csv"
    data = os.urandom(size)
    source.write_bytes(data)
    captured = bench.capture_file(source, label="spectrum")
    with sync_backend.engine(bench, part_size=5 * MIB) as engine:  # multipart above 5 MiB
        report = engine.run_pass()
    assert report.ok and report.confirmed == 1, report
    doc = sync_backend.written(captured.datapoint_id)
    settings = sync_backend.settings
    assert doc["data_type"] == "object_storage" and doc["bucket_name"] == settings.bucket
    assert captured.datapoint_id in doc["object_name"]
    assert doc["object_name"].endswith("spectrum run.csv")
    assert doc["size_bytes"] == size and doc["sha256"] == hashlib.sha256(data).hexdigest()
    assert doc["storage_endpoint"] == settings.endpoint and doc["url"].startswith("http://")
    assert doc["content_type"] == "text/csv" and doc["etag"]
    assert doc["path"] == str(source.absolute())
    assert sync_backend.object_bytes(doc["object_name"]) == data
    stat = sync_backend.objects.stat(doc["object_name"])
    assert stat is not None and stat.metadata["sha256"] == doc["sha256"]
    assert stat.metadata["datapoint-id"] == captured.datapoint_id
    assert stat.etag.endswith("-2") == (size > 5 * MIB)  # two parts above one
    assert bench.get_stored(captured.datapoint_id).sync_state == "confirmed"


def test_same_name_and_label_never_overwrite(bench: BenchService, engine: SyncEngine,
                                             sync_backend: CentralStore,
                                             tmp_path: Path) -> None:
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
        name = sync_backend.written(datapoint.datapoint_id)["object_name"]
        names.add(name)
        assert sync_backend.object_bytes(name) == data
    assert len(names) == 5


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


def _tamper_after_write(monkeypatch: pytest.MonkeyPatch, central: CentralStore,
                        datapoint_id: str, change: dict[str, Any]) -> None:
    """Change the central record between our write and its read-back (as another writer
    or a damaged store would), once."""
    real = Pusher._find_records

    def tampering(pusher: Pusher, ids: Any, fields: Any) -> Any:
        if datapoint_id in ids:
            central.change(datapoint_id, change)
            monkeypatch.setattr(Pusher, "_find_records", real)
        return real(pusher, ids, fields)

    monkeypatch.setattr(Pusher, "_find_records", tampering)


@pytest.mark.parametrize("kind, change", [
    ("file", {"sha256": "0" * 64}),           # the record points at other bytes
    ("file", {"object_name": "benchdata/elsewhere/x.csv"}),
    ("value", {"sync_bench_id": "01JOTHERBENCH0000000000000"}),  # another bench's write
    ("value", {"sync_revision": 0}),          # an older revision came back
])
def test_a_record_that_does_not_read_back_as_written_is_not_confirmed(
        bench: BenchService, engine: SyncEngine, sync_backend: CentralStore, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, kind: str, change: dict[str, Any]) -> None:
    if kind == "file":
        source = tmp_path / "run.csv"
        source.write_bytes(b"a,b\n1,2\n")
        captured = bench.capture_file(source, label="run")
    else:
        captured = bench.capture_value({"t": 1.5}, label="temp")
    neighbour = bench.capture_value({"t": 2.5}, label="temp")  # same batch, untouched
    _tamper_after_write(monkeypatch, sync_backend, captured.datapoint_id, change)

    report = engine.run_pass(force=True)
    assert report.confirmed == 1 and report.retrying == 1, report
    assert bench.get_stored(captured.datapoint_id).sync_state == "recorded"
    assert bench.get_stored(neighbour.datapoint_id).sync_state == "confirmed"
    assert engine.status()["backlog"]["count"] == 1

    report = engine.run_pass(force=True)  # written again, above what is there
    assert report.ok and report.confirmed == 1 and report.remaining == 0, report
    stored = bench.get_stored(captured.datapoint_id)
    assert stored.sync_state == "confirmed"
    doc = sync_backend.written(captured.datapoint_id)
    assert doc["sync_bench_id"] == engine.bench_id
    assert doc["sync_revision"] == stored.revision
    if kind == "file":
        assert doc["sha256"] == captured.sha256
        assert captured.datapoint_id in doc["object_name"]
        assert sync_backend.object_bytes(doc["object_name"]) == b"a,b\n1,2\n"
    else:
        assert doc["value"] == {"t": 1.5}
