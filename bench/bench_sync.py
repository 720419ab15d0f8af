"""Sync throughput and latency against real servers, each beside a baseline from the same run.

    python bench/bench_sync.py [--values 10000] [--file-mib 1024] [--latency-samples 20]

Starts SeaweedFS and nx-27017 (as the tests do) and prints JSON:

* ``push_values``: N value datapoints pushed by the engine (upsert, read-back, local
  bookkeeping) vs a raw pymongo bulk upsert of the same documents. Goal ratio >= 0.7.
* ``push_file``: one large file pushed by ``benchdata sync --once`` in its own process
  (multipart, SHA-256, verification) vs the minio SDK's ``fput_object`` of the same file;
  peak RSS of the sync process. Goals: ratio >= 0.8, RSS <= 300 MB.
* ``capture_to_confirmed``: with the engine's background loop running (as in
  ``benchdata run``), time from capturing one small value to its row reading
  ``confirmed``. Goal p50 <= 2 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import ROOT, bench_dir, emit, percentiles_ms

sys.path.insert(0, str(ROOT / "tests"))

from servers import MongoServer, SeaweedServer, central_env, central_settings  # noqa: E402


def _write_file(path: Path, size: int) -> None:
    block = os.urandom(8 * 1024 * 1024)
    with open(path, "wb") as out:
        written = 0
        while written < size:
            chunk = block[: min(len(block), size - written)]
            out.write(chunk)
            written += len(chunk)


def _push_values_once(workdir: Path, weed: SeaweedServer, mongo: MongoServer, count: int,
                      round_: int) -> tuple[float, float]:
    """One round: the engine's push, then a raw bulk upsert of the same documents."""
    import pymongo
    from pymongo import UpdateOne

    from app.core.models import ValueDataPoint
    from app.service import BenchService
    from sync import localrows
    from sync.documents import WRITTEN_AT, central_document
    from sync.engine import SyncEngine

    settings = central_settings(weed, mongo, weed.make_bucket(), f"bench_values_{round_}")
    with BenchService(workdir / f"values-{round_}") as bench, \
            SyncEngine(bench, settings) as engine:
        engine.run_pass(force=True, pull=False)  # connect, create indexes: not timed
        datapoints = [ValueDataPoint(value={"i": i, "t": 20.0 + i / 100, "tags": ["a", "b"]},
                                     label=f"value-{i % 10}") for i in range(count)]
        for start in range(0, count, 1000):
            bench.submit_many(datapoints[start:start + 1000])
        rows = localrows.fetch_rows(bench.store, [d.datapoint_id for d in datapoints])
        documents = [central_document(r, bench_id="baseline", stored_object=None,
                                      settings=settings) for r in rows.values()]
        started = time.perf_counter()
        report = engine.run_pass(force=True, pull=False)
        engine_s = time.perf_counter() - started
        assert report.ok and report.confirmed == count, report
    client: Any = pymongo.MongoClient(mongo.url)
    try:
        coll = client[f"bench_values_raw_{round_}"]["datapoints"]
        coll.create_index([(WRITTEN_AT, 1)])
        started = time.perf_counter()
        for start in range(0, len(documents), 1000):
            coll.bulk_write([UpdateOne({"_id": d["_id"]},
                                       {"$set": {k: v for k, v in d.items() if k != "_id"},
                                        "$currentDate": {WRITTEN_AT: True}}, upsert=True)
                             for d in documents[start:start + 1000]], ordered=False)
        raw_s = time.perf_counter() - started
        assert coll.count_documents({}) == count
    finally:
        client.close()
    return engine_s, raw_s


def bench_push_values(workdir: Path, weed: SeaweedServer, mongo: MongoServer,
                      count: int, rounds: int = 3) -> dict[str, Any]:
    """Best of ``rounds`` interleaved rounds each (the machine may be shared and noisy)."""
    timings = [_push_values_once(workdir, weed, mongo, count, r) for r in range(rounds)]
    engine_s = min(t[0] for t in timings)
    raw_s = min(t[1] for t in timings)
    return {"datapoints": count, "rounds": rounds,
            "engine_datapoints_per_s": round(count / engine_s, 1),
            "raw_pymongo_bulk_upsert_per_s": round(count / raw_s, 1),
            "ratio": round(raw_s / engine_s, 3), "goal_ratio": 0.7}


def bench_push_file(workdir: Path, weed: SeaweedServer, mongo: MongoServer,
                    size: int) -> dict[str, Any]:
    from app.service import BenchService

    settings = central_settings(weed, mongo, weed.make_bucket(), "bench_file")
    source = workdir / "big.raw"
    _write_file(source, size)
    data_dir = workdir / "file-bench"
    with BenchService(data_dir) as bench:
        bench.capture_file(source)
    env = {**os.environ, **central_env(settings), "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", "from app.cli import main; main()",
                                "--data-dir", str(data_dir), "sync", "--once", "--no-pull"],
                               env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(process.pid, 0)
    engine_s = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = process.communicate()
    assert process.returncode == 0, stderr.decode()[-2000:]
    client, pool = weed.client()
    try:
        started = time.perf_counter()
        client.fput_object(settings.bucket, "baseline/big.raw", str(source),
                           part_size=16 * 1024 * 1024)
        baseline_s = time.perf_counter() - started
    finally:
        pool.clear()
    mb = size / 1e6
    return {"bytes": size, "engine_mb_per_s": round(mb / engine_s, 1),
            "minio_fput_object_mb_per_s": round(mb / baseline_s, 1),
            "ratio": round(baseline_s / engine_s, 3), "goal_ratio": 0.8,
            "engine_includes_process_start": True,
            "sync_process_peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "goal_rss_mb": 300}


def bench_latency(workdir: Path, weed: SeaweedServer, mongo: MongoServer,
                  samples: int) -> dict[str, Any]:
    from app.service import BenchService
    from sync.engine import SyncEngine

    settings = central_settings(weed, mongo, weed.make_bucket(), "bench_latency")
    timings: list[float] = []
    with BenchService(workdir / "latency") as bench, SyncEngine(bench, settings) as engine:
        engine.start()
        engine.run_pass(force=True)  # connections warm, as in a running service
        for index in range(samples):
            started = time.perf_counter()
            dp = bench.capture_value({"sample": index}, label="latency")
            deadline = started + 30
            while bench.get_stored(dp.datapoint_id).sync_state != "confirmed":
                if time.perf_counter() > deadline:
                    raise TimeoutError("a datapoint was not confirmed within 30 s")
                time.sleep(0.005)
            timings.append(time.perf_counter() - started)
    return {"samples": samples, **percentiles_ms(timings), "goal_p50_ms": 2000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=10_000)
    parser.add_argument("--file-mib", type=int, default=1024, help="0 skips the file push.")
    parser.add_argument("--latency-samples", type=int, default=20)
    args = parser.parse_args()
    workdir = bench_dir()
    weed = SeaweedServer(workdir / "weed")
    mongo = MongoServer(workdir / "nx")
    weed.start()
    mongo.start()
    try:
        result = {
            "benchmark": "sync",
            "push_values": bench_push_values(workdir, weed, mongo, args.values),
            "capture_to_confirmed": bench_latency(workdir, weed, mongo, args.latency_samples),
            "push_file": (bench_push_file(workdir, weed, mongo, args.file_mib * 1024 * 1024)
                          if args.file_mib > 0 else None),
            "bench_process_peak_rss_mb": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    finally:
        weed.stop()
        mongo.stop()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
