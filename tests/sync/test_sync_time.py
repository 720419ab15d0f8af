"""After sync, MADSci's own server (0.8.1) lists bench- and MADSci-written records in true
time order, and ``sorted()`` over their timestamps works: bench, MADSci's server and
MADSci's client all in America/Chicago, records on both sides of the spring DST change.

The MADSci processes get ``TZ`` in their environment; the bench's zone follows ``TZ``
(``app.core.timestamps.bench_zone``), set here with monkeypatch, which restores it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pymongo
import pytest

from app.core.models import ValueDataPoint
from app.core.timestamps import INSTANT_FIELD
from app.service import BenchService
from tests.support.madsci_env import run_madsci
from sync.engine import SyncEngine
from tests.sync.test_sync_madsci import madsci_server  # noqa: F401  (fixture, started after TZ is set)

CHICAGO = "America/Chicago"
UTC = timezone.utc

WRITE_SCRIPT = r"""
import json, sys, warnings
from datetime import datetime
warnings.simplefilter("ignore")
from madsci.client.data_client import DataClient
from madsci.common.types.datapoint_types import ValueDataPoint
client = DataClient(data_server_url=sys.argv[1])
ids = {}
for label, when in (("madsci 01:00 CST", datetime(2026, 3, 8, 1, 0)),
                    ("madsci 04:00 CDT", datetime(2026, 3, 8, 4, 0, 0, 250000))):
    ids[label] = client.submit_datapoint(
        ValueDataPoint(label=label, value=1, data_timestamp=when)).datapoint_id
print(json.dumps(ids))
"""

READ_SCRIPT = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
from madsci.client.data_client import DataClient
client = DataClient(data_server_url=sys.argv[1])
listed = client.get_datapoints(number=0)
stamps = [d.data_timestamp for d in listed]
print(json.dumps({
    "listed": [d.label for d in listed],
    "naive": [t.tzinfo is None for t in stamps],
    "sorted": [d.label for d in sorted(listed, key=lambda d: d.data_timestamp)],
    "stamps": {d.label: d.data_timestamp.isoformat() for d in listed}}))
"""


@pytest.mark.slow
def test_madsci_lists_bench_and_madsci_records_in_true_time_order_after_sync(
        madsci_python: Path, central: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    monkeypatch.setenv("TZ", CHICAGO)
    url = request.getfixturevalue("madsci_server")  # its process inherits TZ
    env = {"TZ": CHICAGO}
    madsci_ids = json.loads(run_madsci(madsci_python, WRITE_SCRIPT, url, env=env)
                            .stdout.strip().splitlines()[-1])
    with BenchService(tmp_path / "bench") as bench, SyncEngine(bench, central) as engine:
        bench_ids = {dp.label: dp.datapoint_id for dp in bench.submit_many([
            ValueDataPoint(label="bench 23:00 CST", value=1, data_timestamp="2026-03-07T23:00:00"),
            ValueDataPoint(label="bench 03:30 CDT", value=1, data_timestamp="2026-03-08T03:30:00"),
            ValueDataPoint(label="bench now", value=1),  # MADSci's default: naive local now
        ])}
        report = engine.run_pass(force=True)
        assert report.ok and report.remaining == 0, report
        # The bench read MADSci's naive times in the lab's zone (default: its own).
        instants = {label: bench.get(ident).data_instant
                    for label, ident in {**madsci_ids, **bench_ids}.items()}
        assert instants["madsci 01:00 CST"] == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
        assert instants["madsci 04:00 CDT"] == datetime(2026, 3, 8, 9, 0, 0, 250000, tzinfo=UTC)
        assert instants["bench 03:30 CDT"] == datetime(2026, 3, 8, 8, 30, tzinfo=UTC)
        assert bench.get(madsci_ids["madsci 01:00 CST"]).data_timestamp == datetime(2026, 3, 8, 1)
        true_order = sorted(instants, key=instants.__getitem__, reverse=True)
        assert [dp.label for dp in bench.latest(0)] == true_order
    client: Any = pymongo.MongoClient(central.mongo_url.get_secret_value())
    try:
        document = client[central.mongo_database][central.mongo_collection].find_one(
            {"_id": bench_ids["bench 03:30 CDT"]})
    finally:
        client.close()
    assert document["data_timestamp"] == "2026-03-08T03:30:00"
    assert document[INSTANT_FIELD] == "2026-03-08T08:30:00.000000Z"
    seen = json.loads(run_madsci(madsci_python, READ_SCRIPT, url, env=env)
                      .stdout.strip().splitlines()[-1])
    assert seen["listed"] == true_order
    assert all(seen["naive"]) and seen["sorted"] == true_order[::-1]
    assert seen["stamps"]["bench 03:30 CDT"] == "2026-03-08T03:30:00"
