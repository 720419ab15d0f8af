"""A document MongoDB refuses in the middle of a batch: the rest go through, it waits.

The refusal is a real one from the server: the lab's data steward put a unique index on
the central collection (one record per instrument run), and one of fifty values names a
run that is already recorded. The bulk write then fails for that one document only
(``BulkWriteError`` with one write error, code 11000 on *that* index — not on ``_id``,
which would be a revision conflict between benches).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest
from click.testing import CliRunner

from app.cli import cli
from app.core.ids import new_ulid
from app.core.timestamps import now_canonical
from app.service import BenchService
from sync.engine import SyncEngine
from sync.faults import duplicate_key_on_id

BAD = 25


@pytest.fixture
def collection(central: Any) -> Iterator[Any]:
    client: Any = pymongo.MongoClient(central.mongo_url.get_secret_value(),
                                      serverSelectionTimeoutMS=5000)
    try:
        yield client[central.mongo_database][central.mongo_collection]
    finally:
        client.close()


def test_one_refused_document_in_a_batch_of_fifty(tmp_path: Path, central: Any,
                                                  collection: Any) -> None:
    collection.create_index([("custom_metadata.run_id", 1)], unique=True, sparse=True,
                            name="one_record_per_run")
    collection.insert_one({  # what the instrument's own PC recorded, MADSci-shaped
        "_id": new_ulid(), "label": "run", "data_type": "json", "value": {"i": -1},
        "data_timestamp": now_canonical(), "ownership_info": {},
        "custom_metadata": {"run_id": f"RUN-{BAD:04d}"}})
    data_dir = tmp_path / "bench"
    with BenchService(data_dir) as bench, SyncEngine(bench, central) as engine:
        captured = [bench.capture_value({"i": i}, label=f"v{i}",
                                        metadata={"run_id": f"RUN-{i:04d}"}) for i in range(50)]
        bad = captured[BAD]
        good = [dp.datapoint_id for dp in captured if dp is not bad]

        report = engine.run_pass(force=True)
        assert report.confirmed == 49 and report.quarantined == 1, report
        assert report.retrying == 0  # not mistaken for a conflict with another bench
        central_ids = [d["_id"] for d in collection.find({"_id": {"$in": good}}, {"_id": 1})]
        assert sorted(central_ids) == sorted(good)  # each of the 49 once
        assert collection.count_documents({"_id": bad.datapoint_id}) == 0
        for ident in good:
            assert bench.get_stored(ident).sync_state == "confirmed"
        assert bench.get_stored(bad.datapoint_id).sync_state == "quarantined"

        status = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "sync", "status"],
                                    catch_exceptions=False)
        assert status.exit_code == 0, status.output
        line = next(row for row in status.output.splitlines() if bad.datapoint_id in row)
        assert "v25" in line and "unique index" in line and "11000" in line
        facts = json.loads(CliRunner().invoke(
            cli, ["--data-dir", str(data_dir), "sync", "status", "--json"]).output)
        assert [q["datapoint_id"] for q in facts["quarantined"]] == [bad.datapoint_id]

        again = engine.run_pass(force=True)  # quarantined items wait for a person
        assert again.quarantined == 0 and again.confirmed == 0

        # The operator fixes the run id; the edit is pushed on the next pass.
        bench.update(bad.datapoint_id, set_metadata={"run_id": "RUN-0025-repeat"})
        fixed = engine.run_pass(force=True)
        assert fixed.ok and fixed.confirmed == 1 and fixed.remaining == 0, fixed
        assert engine.status()["quarantined"] == []
        doc = collection.find_one({"_id": bad.datapoint_id})
        assert doc is not None and doc["custom_metadata"]["run_id"] == "RUN-0025-repeat"
        assert doc["value"] == {"i": BAD}
        assert collection.count_documents({}) == 51  # 50 from the bench + the other record


def test_a_value_the_driver_cannot_encode_is_isolated_from_its_batch(
        tmp_path: Path, central: Any, collection: Any) -> None:
    """Strict JSON allows a NUL in a key; BSON does not, so pymongo refuses the whole
    batch before sending it. The engine then writes one by one to find the culprit."""
    with BenchService(tmp_path / "bench") as bench, SyncEngine(bench, central) as engine:
        captured = [bench.capture_value({"i": i}, label=f"v{i}") for i in range(10)]
        bad = bench.capture_value({"a\u0000b": 1}, label="nul key")
        report = engine.run_pass(force=True)
        assert report.confirmed == 10 and report.quarantined == 1 and report.retrying == 0
        ids = sorted(dp.datapoint_id for dp in captured)
        assert sorted(d["_id"] for d in collection.find({}, {"_id": 1})) == ids
        (item,) = engine.status()["quarantined"]
        assert item["datapoint_id"] == bad.datapoint_id and "NULL" in item["reason"]


@pytest.mark.parametrize(("error", "on_id"), [
    ({"code": 11000, "keyPattern": {"_id": 1}, "errmsg": "E11000 duplicate key"}, True),
    ({"code": 11000, "keyPattern": {"custom_metadata.run_id": 1}}, False),
    ({"code": 11000, "errmsg": "E11000 duplicate key error collection: db.c index: _id_ "
                               "dup key: { _id: \"01J\" }"}, True),
    ({"code": 11000, "errmsg": "E11000 duplicate key error collection: db.c index: "
                               "one_record_per_run dup key: { custom_metadata.run_id: 1 }"},
     False),
    ({"code": 11000, "errmsg": "UNIQUE constraint failed: datapoints._id"}, True),  # nx-27017
    ({"code": 11000, "errmsg": "UNIQUE constraint failed: index 'idx_datapoints_run'"}, False),
    ({"code": 11000, "errmsg": "duplicate"}, True),  # unreadable: the old assumption
])
def test_which_duplicate_keys_are_revision_conflicts(error: dict[str, Any], on_id: bool) -> None:
    assert duplicate_key_on_id(error) is on_id
