"""Queries over a large local store, through DataClient vs hand-written SQL on the same file.

    python bench/bench_query.py [--rows 1000000] [--repeat 30]

Populates a store with ``--rows`` value datapoints (1,000 experiments, 200 labels, a year
of timestamps, value {"t": float, "i": int}) through ``submit_datapoints``, then times:
equality on label, equality on ownership_info.experiment_id, a data_timestamp range with
sort and limit 100, and a range on a JSON path inside value (both the first page and a full
count, which scans every row). Each is paired with the equivalent hand-written SQL run by
plain sqlite3 on the same database in the same run (the baseline: what the query language
costs on top of SQLite). Returned rows are turned into datapoints in our figures.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import time
from datetime import datetime, timedelta, timezone

from _common import bench_dir, emit, percentiles_ms

from app import DataClient, OwnershipInfo, ValueDataPoint
from app.core.ids import name_to_id
from app.core.timestamps import to_canonical

EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


def populate(client: DataClient, rows: int) -> float:
    rng = random.Random(7)
    start = time.perf_counter()
    batch: list[ValueDataPoint] = []
    for i in range(rows):
        experiment = name_to_id("experiment", f"EXP{i % 1000}")
        batch.append(ValueDataPoint(
            label=f"label-{i % 200}",
            value={"t": round(rng.uniform(0, 100), 3), "i": i},
            data_timestamp=EPOCH + timedelta(seconds=rng.randrange(365 * 86400)),
            ownership_info=OwnershipInfo(experiment_id=experiment),
        ))
        if len(batch) == 10_000:
            client.submit_datapoints(batch)
            batch = []
    if batch:
        client.submit_datapoints(batch)
    return time.perf_counter() - start


def timed(fn, repeat: int) -> list[float]:
    samples = []
    for n in range(repeat):
        t0 = time.perf_counter()
        fn(n)
        samples.append(time.perf_counter() - t0)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    work = bench_dir()
    try:
        with DataClient(data_dir=work) as client:
            populate_s = populate(client, args.rows)
            raw = sqlite3.connect(work / "store.sqlite3")
            cols = "*"

            def window(n: int) -> tuple[str, str]:
                lo = EPOCH + timedelta(days=(n * 11) % 300)
                return to_canonical(lo), to_canonical(lo + timedelta(days=7))

            cases = {
                "label_equality": (
                    lambda n: client.query_page({"label": f"label-{n % 200}"}, limit=100),
                    lambda n: raw.execute(f"SELECT {cols} FROM datapoints WHERE deleted = 0 AND label = ? "
                                          "ORDER BY data_timestamp DESC, id DESC LIMIT 100",
                                          (f"label-{n % 200}",)).fetchall(),
                    "<= 10 ms p50"),
                "experiment_equality": (
                    lambda n: client.query_page({"ownership_info.experiment_id": name_to_id("experiment", f"EXP{n}")}, limit=100),
                    lambda n: raw.execute(f"SELECT {cols} FROM datapoints WHERE deleted = 0 AND experiment_id = ? "
                                          "ORDER BY data_timestamp DESC, id DESC LIMIT 100",
                                          (name_to_id("experiment", f"EXP{n}"),)).fetchall(),
                    "<= 10 ms p50"),
                "time_range_sorted_page": (
                    lambda n: client.query_page({"data_timestamp": {"$gte": window(n)[0], "$lt": window(n)[1]}},
                                                sort="-data_timestamp", limit=100),
                    lambda n: raw.execute(f"SELECT {cols} FROM datapoints WHERE deleted = 0 AND data_timestamp >= ? "
                                          "AND data_timestamp < ? ORDER BY data_timestamp DESC, id DESC LIMIT 100",
                                          window(n)).fetchall(),
                    "<= 10 ms p50"),
                "json_range_first_page": (
                    lambda n: client.query_page({"value.t": {"$gt": 99.0 - n % 5}}, limit=100),
                    lambda n: raw.execute(f"SELECT {cols} FROM datapoints WHERE deleted = 0 AND "
                                          "json_type(value, '$.t') IN ('integer','real') AND json_extract(value, '$.t') > ? "
                                          "ORDER BY data_timestamp DESC, id DESC LIMIT 100", (99.0 - n % 5,)).fetchall(),
                    "<= 1 s"),
                "json_range_full_count": (
                    lambda n: client.count_datapoints({"value.t": {"$gt": 99.0 - n % 5}}),
                    lambda n: raw.execute("SELECT COUNT(*) FROM datapoints WHERE deleted = 0 AND "
                                          "json_type(value, '$.t') IN ('integer','real') AND json_extract(value, '$.t') > ?",
                                          (99.0 - n % 5,)).fetchone(),
                    "<= 1 s"),
            }
            results = {}
            for name, (ours, baseline, goal) in cases.items():
                repeat = args.repeat if "count" not in name else max(3, args.repeat // 6)
                ours(0), baseline(0)  # warm the page cache for both
                results[name] = {"ours": percentiles_ms(timed(ours, repeat)),
                                 "raw_sql": percentiles_ms(timed(baseline, repeat)),
                                 "goal": goal}
            raw.close()
            emit({"benchmark": "queries", "rows": args.rows,
                  "populate_s": round(populate_s, 1),
                  "populate_per_s": round(args.rows / populate_s, 1),
                  "cases": results})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
