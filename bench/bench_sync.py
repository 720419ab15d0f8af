"""Sync throughput and latency against real servers, each beside a baseline from the same run.

    python bench/bench_sync.py [--values 10000] [--value-rounds 5] [--file-mib 1024]
                               [--file-rounds 3] [--latency-samples 20]

Starts SeaweedFS and nx-27017 (as the tests do) and prints JSON:

* ``push_values``: N value datapoints pushed by the engine (upsert, read-back, local
  bookkeeping) vs a raw pymongo bulk upsert of the same documents, in batches of the
  engine's batch size, unordered. Goal ratio >= 0.7.
* ``push_file``: one large file pushed by ``benchdata sync --once`` in its own process
  (multipart, SHA-256, verification) vs the minio SDK's ``fput_object`` of the same file,
  also in its own process (both pay an interpreter start), with the same part size and
  its default 3 parts in flight; each upload into a fresh bucket (so neither finds volumes
  the other grew); peak RSS of the sync process. Goals: ratio >= 0.8, RSS <= 300 MB.
* ``capture_to_confirmed``: with the engine's background loop running (as in
  ``benchdata run``), time from capturing one small value to its row reading
  ``confirmed``. Goal p50 <= 2 s.

The machine may be shared and noisy: each throughput figure is the median of several
rounds, and each ratio the median of per-round ratios (engine and baseline of one round
run back to back, their order alternating between rounds).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import ROOT, bench_dir, emit, percentiles_ms

from tests.support.servers import MongoServer, SeaweedServer, central_env, central_settings  # noqa: E402


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
    """One round: the engine's push and a raw bulk upsert of the same documents (order
    alternating between rounds); (engine s, raw s)."""
    from app.core.models import ValueDataPoint
    from app.service import BenchService
    from sync import localrows
    from sync.documents import central_document
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

        def engine_push() -> float:
            started = time.perf_counter()
            report = engine.run_pass(force=True, pull=False)
            assert report.ok and report.confirmed == count, report
            return time.perf_counter() - started

        if round_ % 2:
            raw_s = _raw_bulk_upsert(mongo, f"bench_values_raw_{round_}", documents,
                                     settings.batch_size)
            engine_s = engine_push()
        else:
            engine_s = engine_push()
            raw_s = _raw_bulk_upsert(mongo, f"bench_values_raw_{round_}", documents,
                                     settings.batch_size)
    return engine_s, raw_s


def _raw_bulk_upsert(mongo: MongoServer, database: str, documents: list[dict[str, Any]],
                     batch: int) -> float:
    """pymongo's unordered bulk upserts of ``documents`` in the engine's batch size (so both
    make as many round trips), with the same server-side write time; seconds."""
    import pymongo
    from pymongo import UpdateOne

    from sync.documents import WRITTEN_AT

    client: Any = pymongo.MongoClient(mongo.url)
    try:
        coll = client[database]["datapoints"]
        coll.create_index([(WRITTEN_AT, 1)])
        started = time.perf_counter()
        for start in range(0, len(documents), batch):
            coll.bulk_write([UpdateOne({"_id": d["_id"]},
                                       {"$set": {k: v for k, v in d.items() if k != "_id"},
                                        "$currentDate": {WRITTEN_AT: True}}, upsert=True)
                             for d in documents[start:start + batch]], ordered=False)
        seconds = time.perf_counter() - started
        assert coll.count_documents({}) == len(documents)
    finally:
        client.close()
    return seconds


def _median_summary(count: float, timings: list[tuple[float, float]]) -> dict[str, float]:
    """Median rates of (engine, baseline) seconds per round, and the median per-round ratio."""
    return {"engine_per_s": count / statistics.median(t[0] for t in timings),
            "baseline_per_s": count / statistics.median(t[1] for t in timings),
            "ratio": statistics.median(t[1] / t[0] for t in timings)}


def bench_push_values(workdir: Path, weed: SeaweedServer, mongo: MongoServer,
                      count: int, rounds: int) -> dict[str, Any]:
    timings = [_push_values_once(workdir, weed, mongo, count, r) for r in range(rounds)]
    summary = _median_summary(count, timings)
    return {"datapoints": count, "rounds": rounds,
            "engine_datapoints_per_s": round(summary["engine_per_s"], 1),
            "raw_pymongo_bulk_upsert_per_s": round(summary["baseline_per_s"], 1),
            "ratio": round(summary["ratio"], 3), "goal_ratio": 0.7,
            "round_ratios": [round(b / e, 3) for e, b in timings]}


#: The baseline upload: minio's own fput_object, in a process of its own like the engine's.
_FPUT_OBJECT = """
import os, sys, urllib3
from minio import Minio
pool = urllib3.PoolManager(retries=urllib3.Retry(total=0),
                           timeout=urllib3.Timeout(connect=2, read=30))
client = Minio(os.environ["OBJECT_STORAGE_ENDPOINT"], os.environ["OBJECT_STORAGE_ACCESS_KEY"],
               os.environ["OBJECT_STORAGE_SECRET_KEY"], secure=False,
               region=os.environ["OBJECT_STORAGE_REGION"], http_client=pool)
client.fput_object(os.environ["OBJECT_STORAGE_DEFAULT_BUCKET"], "baseline/big.raw", sys.argv[1],
                   part_size=int(sys.argv[2]))
"""


def _timed_process(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds from start to exit, and the process's peak RSS in MB."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    _stdout, stderr = process.communicate()
    assert process.returncode == 0, stderr.decode()[-2000:]
    return seconds, usage.ru_maxrss / 1024


def _push_file_once(workdir: Path, weed: SeaweedServer, mongo: MongoServer, source: Path,
                    round_: int) -> tuple[float, float, float]:
    """One round: a new capture of ``source`` pushed by the engine, and fput_object of it;
    (engine s, baseline s, engine peak RSS MB)."""
    from app.service import BenchService

    data_dir = workdir / "file-bench"
    with BenchService(data_dir) as bench:
        bench.capture_file(source)  # a new datapoint; the blob is stored once
    engine_settings = central_settings(weed, mongo, weed.make_bucket(), "bench_file")
    baseline_settings = engine_settings.model_copy(update={"bucket": weed.make_bucket()})
    python = [sys.executable, "-c"]
    engine = (python + ["from app.cli import main; main()", "--data-dir", str(data_dir),
                        "sync", "--once", "--no-pull"],
              {**os.environ, **central_env(engine_settings), "PYTHONPATH": str(ROOT)})
    baseline = (python + [_FPUT_OBJECT, str(source), str(engine_settings.part_size)],
                {**os.environ, **central_env(baseline_settings)})
    if round_ % 2:
        baseline_s, _rss = _timed_process(*baseline)
        engine_s, rss = _timed_process(*engine)
    else:
        engine_s, rss = _timed_process(*engine)
        baseline_s, _rss = _timed_process(*baseline)
    return engine_s, baseline_s, rss


def bench_push_file(workdir: Path, weed: SeaweedServer, mongo: MongoServer,
                    size: int, rounds: int) -> dict[str, Any]:
    source = workdir / "big.raw"
    _write_file(source, size)
    runs = [_push_file_once(workdir, weed, mongo, source, r) for r in range(rounds)]
    mb = size / 1e6
    summary = _median_summary(mb, [(e, b) for e, b, _rss in runs])
    return {"bytes": size, "rounds": rounds,
            "engine_mb_per_s": round(summary["engine_per_s"], 1),
            "minio_fput_object_mb_per_s": round(summary["baseline_per_s"], 1),
            "ratio": round(summary["ratio"], 3), "goal_ratio": 0.8,
            "round_ratios": [round(b / e, 3) for e, b, _rss in runs],
            "both_include_process_start": True,
            "sync_process_peak_rss_mb": round(max(rss for _e, _b, rss in runs), 1),
            "goal_rss_mb": 300}


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
    parser.add_argument("--value-rounds", type=int, default=5)
    parser.add_argument("--file-mib", type=int, default=1024, help="0 skips the file push.")
    parser.add_argument("--file-rounds", type=int, default=3)
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
            "push_values": bench_push_values(workdir, weed, mongo, args.values,
                                             args.value_rounds),
            "capture_to_confirmed": bench_latency(workdir, weed, mongo, args.latency_samples),
            "push_file": (bench_push_file(workdir, weed, mongo, args.file_mib * 1024 * 1024,
                                          args.file_rounds) if args.file_mib > 0 else None),
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
