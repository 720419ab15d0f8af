"""Three benches, three processes, one central store: they converge, with no duplicates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pymongo
import pytest

from app.service import BenchService
from tests.support.servers import central_env

ROOT = Path(__file__).resolve().parents[2]

WORKER = r"""
import json, os, sys, time
from datetime import datetime, timedelta, timezone
args = json.loads(sys.argv[1])
skew = args.get("clock_skew_s", 0)
if skew:  # this bench's clock is set back: its ULIDs and timestamps are days old
    real_time, real_time_ns = time.time, time.time_ns
    time.time = lambda: real_time() - skew
    time.time_ns = lambda: real_time_ns() - int(skew * 1e9)
from ulid import ULID
from app.core.models import FileDataPoint, ValueDataPoint
from app.service import BenchService
from sync.engine import SyncEngine
from sync.settings import load_settings
ids = []
with BenchService(args["data_dir"]) as bench:
    settings = load_settings(bench.paths)
    with SyncEngine(bench, settings) as engine:
        for index in range(args["count"]):
            now = datetime.now(timezone.utc) - timedelta(seconds=skew)
            ident = str(ULID.from_timestamp(time.time()))
            if index % 5 == 0:
                source = os.path.join(args["data_dir"], f"..", f"{args['name']}-{index}.txt")
                with open(source, "w") as out:
                    out.write(f"{args['name']} {index}\n")
                dp = bench.submit(FileDataPoint(datapoint_id=ident, path=source, label="same",
                                                data_timestamp=now))
            else:
                dp = bench.submit(ValueDataPoint(datapoint_id=ident, value=index, label="same",
                                                 data_timestamp=now))
            ids.append(dp.datapoint_id)
            if args["sync_every"] and index % args["sync_every"] == 0:
                engine.run_pass()
        for _ in range(args.get("final_passes", 1)):
            report = engine.run_pass(force=True)
print(json.dumps({"ids": ids, "ok": report.ok, "remaining": report.remaining}))
"""


def _start(name: str, data_dir: Path, env: dict[str, str], **options: Any) -> subprocess.Popen[str]:
    args = {"name": name, "data_dir": str(data_dir), "count": 40, "sync_every": 7, **options}
    return subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(args)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen[str]) -> dict[str, Any]:
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 0, stderr[-4000:]
    return dict(json.loads(stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_three_benches_converge_one_offline_with_clock_set_back(tmp_path: Path,
                                                                central: Any) -> None:
    env = {**os.environ, **central_env(central), "PYTHONPATH": str(ROOT)}
    offline_env = {**env, "BENCHDATA_MONGO_URL": "mongodb://127.0.0.1:9/",
                   "OBJECT_STORAGE_ENDPOINT": "127.0.0.1:9"}
    dirs = {name: tmp_path / name / "data" for name in ("a", "b", "c")}
    for path in dirs.values():
        path.mkdir(parents=True)
    a = _start("a", dirs["a"], env)
    b = _start("b", dirs["b"], env)
    c = _start("c", dirs["c"], offline_env, clock_skew_s=3 * 86400, final_passes=1)
    results = {"a": _finish(a), "b": _finish(b), "c_offline": _finish(c)}
    assert not results["c_offline"]["ok"] and results["c_offline"]["remaining"] == 40
    # c comes back online; everybody syncs again (concurrently) until converged.
    # Round one pushes c's backlog while the others pull; round two starts after it, so
    # every bench pulls once more after the last push.
    for _round in range(2):
        processes = {name: _start(name, dirs[name], env, count=0, sync_every=0, final_passes=2)
                     for name in ("a", "b", "c")}
        for process in processes.values():
            assert _finish(process)["ok"]
    everything = set(results["a"]["ids"]) | set(results["b"]["ids"]) | \
        set(results["c_offline"]["ids"])
    assert len(everything) == 120
    client: Any = pymongo.MongoClient(central.mongo_url.get_secret_value())
    try:
        coll = client[central.mongo_database][central.mongo_collection]
        central_ids = [d["_id"] for d in coll.find({}, {"_id": 1})]
    finally:
        client.close()
    assert len(central_ids) == len(set(central_ids)) == 120
    assert set(central_ids) == everything
    for name, data_dir in dirs.items():
        with BenchService(data_dir) as bench:
            local = {dp.datapoint_id for dp in bench.iter_query({})}
            assert local == everything, name
            assert bench.store.sync_state_counts() == {"confirmed": 120}, name
