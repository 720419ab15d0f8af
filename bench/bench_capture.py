"""Value capture through DataClient vs raw sqlite3 inserts with the same durability.

    python bench/bench_capture.py [--sequential 3000] [--batched 100000]

Sequential: one durable commit per datapoint (WAL, synchronous=FULL), as a script that
captures a reading at a time does. Batched: ``submit_datapoints`` in batches of 5,000.
The raw baseline inserts the very same rows (same columns, same durability, same commit
pattern) with plain ``sqlite3`` into the same schema, in the same run.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import time

from _common import bench_dir, emit, percentiles_ms

from app import DataClient, ValueDataPoint
from app.core.schema import migrate
from app.core.rows import ALL_COLUMNS, INSERT_SQL, datapoint_to_row


def make_datapoints(count: int, ownership) -> list[ValueDataPoint]:
    return [ValueDataPoint(label=f"reading-{i % 50}", ownership_info=ownership,
                           value={"t": 20 + (i % 100) / 10, "unit": "C", "i": i})
            for i in range(count)]


def raw_connection(path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    migrate(conn)
    return conn


def raw_sequential(path, rows) -> list[float]:
    conn = raw_connection(path)
    latencies = []
    for row in rows:
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(INSERT_SQL, [row[c] for c in ALL_COLUMNS])
        conn.execute("COMMIT")
        latencies.append(time.perf_counter() - start)
    conn.close()
    return latencies


def raw_batched(path, rows, batch: int) -> float:
    conn = raw_connection(path)
    start = time.perf_counter()
    for first in range(0, len(rows), batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT_SQL, [[r[c] for c in ALL_COLUMNS] for r in rows[first:first + batch]])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequential", type=int, default=3000)
    parser.add_argument("--batched", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()
    work = bench_dir()
    try:
        with DataClient(data_dir=work / "ours-seq") as client:
            ownership = client.ownership(experiment="EXP42", user="alice")
            points = make_datapoints(args.sequential, ownership)
            latencies = []
            stored = []
            start = time.perf_counter()
            for datapoint in points:
                t0 = time.perf_counter()
                stored.append(client.submit_datapoint(datapoint))
                latencies.append(time.perf_counter() - t0)
            ours_seq_s = time.perf_counter() - start
            # The raw baseline stores the very same rows, into its own database file.
            rows = [datapoint_to_row(dp) for dp in stored]
        raw_lat = raw_sequential(work / "raw-seq.sqlite3", rows)

        with DataClient(data_dir=work / "ours-batch") as client:
            ownership = client.ownership(experiment="EXP42", user="alice")
            points = make_datapoints(args.batched, ownership)
            stored = []
            start = time.perf_counter()
            for first in range(0, len(points), args.batch_size):
                stored.extend(client.submit_datapoints(points[first:first + args.batch_size]))
            ours_batch_s = time.perf_counter() - start
            rows = [datapoint_to_row(dp) for dp in stored]
        raw_batch_s = raw_batched(work / "raw-batch.sqlite3", rows, args.batch_size)

        ours_rate = args.sequential / ours_seq_s
        raw_rate = len(raw_lat) / sum(raw_lat)
        emit({
            "benchmark": "value_capture",
            "sequential": {
                "count": args.sequential,
                "ours_per_s": round(ours_rate, 1),
                "ours_latency": percentiles_ms(latencies),
                "raw_sqlite3_per_s": round(raw_rate, 1),
                "raw_sqlite3_latency": percentiles_ms(raw_lat),
                "ratio_vs_raw": round(ours_rate / raw_rate, 3),
                "goal": ">= 2000/s and >= 0.4x raw",
            },
            "batched": {
                "count": args.batched,
                "batch_size": args.batch_size,
                "ours_per_s": round(args.batched / ours_batch_s, 1),
                "raw_sqlite3_per_s": round(args.batched / raw_batch_s, 1),
                "ratio_vs_raw": round(raw_batch_s / ours_batch_s, 3),
                "goal": ">= 20000/s",
            },
            "durability": "WAL, synchronous=FULL, one commit per datapoint (sequential) or per batch",
        })
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
