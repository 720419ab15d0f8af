"""The worst-case regex selector over a large store, while the bench keeps capturing.

    python bench/bench_query_budget.py [--rows 1000000] [--captures 300] [--quick]

Issue #14: ``{"label": {"$regex": "^(a+)+$"}}`` against 33-character labels (32 ``a`` and a
``b``: 2**32 ways to fail for a backtracking engine) froze the whole service. This fills a
store with ``--rows`` such labels (batches of 10,000 through ``submit_datapoints``, as
``bench_query.py`` does), then in the same run:

1. idle: times ``--captures`` single durable captures (``submit_datapoint``) — the baseline;
2. busy: on a second thread, runs two selectors, each as a page of 100 (which scans every
   label, because none matches) and as a count: the backtracking worst case above, and a
   pattern on RE2's own slow path (``.{0,1000}.{0,1000}z``: its DFA gives up and the
   NFA takes ~50 us a label, far past the budget at 1M rows). Captures are timed the
   same way until every query has finished or been stopped by the time budget.

Goals: each query finishes or is refused (QueryTimeoutError) within the budget plus a
small margin, and capture p99 while it runs is at most 2x the idle p99.
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from _common import bench_dir, emit, percentiles_ms

from app import DataClient, ValueDataPoint
from app.core import query as querylang
from app.core.errors import QueryTimeoutError

EVIL_LABEL = "a" * 32 + "b"
#: (name, selector): the backtracking worst case, and a slow pattern for RE2 itself.
SELECTORS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("backtracking_worst_case", {"label": {"$regex": "^(a+)+$"}}),
    ("re2_slow_path", {"label": {"$regex": ".{0,1000}.{0,1000}z"}}),
)
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)
#: Time past the budget a stopped query may take to return (the clock is read every
#: thousand SQLite steps, then the statement unwinds).
MARGIN_S = 0.5


def populate(client: DataClient, rows: int) -> float:
    start = time.perf_counter()
    for first in range(0, rows, 10_000):
        client.submit_datapoints([
            ValueDataPoint(label=EVIL_LABEL, value={"i": i},
                           data_timestamp=EPOCH + timedelta(seconds=i))
            for i in range(first, min(rows, first + 10_000))])
    return time.perf_counter() - start


def capture_latencies(client: DataClient, count: int, until: threading.Event | None = None,
                      ) -> list[float]:
    """``count`` captures one after another (more while ``until`` is not yet set)."""
    samples: list[float] = []
    n = 0
    while n < count or (until is not None and not until.is_set()):
        datapoint = ValueDataPoint(label=f"capture-{n}", value={"n": n})
        t0 = time.perf_counter()
        client.submit_datapoint(datapoint)
        samples.append(time.perf_counter() - t0)
        n += 1
    return samples


def run_query(client: DataClient, selector: dict[str, Any], what: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        if what == "page":
            found: Any = len(client.query_page(selector, limit=100).items)
        else:
            found = client.count_datapoints(selector)
        outcome = "finished"
    except QueryTimeoutError:
        found, outcome = None, "refused: over the time budget"
    return {"outcome": outcome, "seconds": round(time.perf_counter() - t0, 3),
            "matches": found}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--captures", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 100 captures")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.captures = 100_000, 100
    work = bench_dir()
    try:
        with DataClient(data_dir=work) as client:
            populate_s = populate(client, args.rows)
            budget = client.service.store.query_seconds
            capture_latencies(client, 20)  # warm up
            idle = capture_latencies(client, args.captures)
            queries: dict[str, Any] = {}
            finished = threading.Event()

            def querier() -> None:
                try:
                    for name, selector in SELECTORS:
                        queries[name] = {"selector": selector, **{
                            what: run_query(client, selector, what)
                            for what in ("page", "count")}}
                finally:
                    finished.set()

            thread = threading.Thread(target=querier)
            thread.start()
            busy = capture_latencies(client, args.captures, until=finished)
            thread.join()
            idle_p = percentiles_ms(idle)
            busy_p = percentiles_ms(busy)
            ratio = busy_p["p99_ms"] / idle_p["p99_ms"]
            within = all(q[what]["seconds"] <= budget + MARGIN_S
                         for q in queries.values() for what in ("page", "count"))
            emit({"benchmark": "query_budget", "rows": args.rows,
                  "label": EVIL_LABEL,
                  "populate_s": round(populate_s, 1),
                  "time_budget_s": budget, "queries": queries,
                  "queries_within_budget": within,
                  "capture_idle": {**idle_p, "n": len(idle)},
                  "capture_during_query": {**busy_p, "n": len(busy)},
                  "capture_p99_ratio": round(ratio, 2),
                  "goal": "queries finish or are refused within the budget; capture p99 "
                          "during the query <= 2x idle",
                  "goal_met": within and ratio <= 2.0,
                  "default_budget_s": querylang.DEFAULT_TIME_BUDGET_SECONDS})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
