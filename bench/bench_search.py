"""Full-text search over a large store, and what keeping its index in step costs capture.

    python bench/bench_search.py [--rows 1000000] [--repeat 30] [--sequential 2000]
                                 [--batched 50000] [--quick]

Search: populates a store with ``--rows`` value datapoints through ``submit_datapoints``
(200 labels, 1,000 experiments by name, 5,000 samples as metadata, a note of two words from
a 2,000-word vocabulary inside the JSON value, a year of timestamps) and times
``benchdata search``'s engine (``BenchService.search``: first page of 50, newest first) for
terms of different selectivity. Baselines in the same run on the same file: the same FTS5
match as hand-written SQL, and the search box's previous engine (a case-insensitive regex
over label, file name and value) for the same words.

Capture: value datapoints captured one durable commit each (sequential) and in batches of
5,000, into a store with the index and into one without (its triggers and bookkeeping
dropped, so nothing indexes), both open at once with chunks alternating between them
(goal: rate with the index >= 0.85x the rate without).
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

from _common import bench_dir, emit, percentiles_ms

from app import DataClient, ValueDataPoint
from app.core.search import STATE, TABLE, match_expression

EPOCH_S = 1_767_225_600  # 2026-01-01T00:00:00Z


def vocabulary(size: int = 2000) -> list[str]:
    rng = random.Random(3)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(5, 9))))
    return sorted(words)


def populate(client: DataClient, rows: int, words: list[str]) -> float:
    from datetime import datetime, timezone

    rng = random.Random(7)
    experiments = [client.ownership(experiment=f"EXP{n}") for n in range(1000)]
    start = time.perf_counter()
    batch: list[ValueDataPoint] = []
    for i in range(rows):
        note = f"{rng.choice(words)} {rng.choice(words)}"
        batch.append(ValueDataPoint(
            label=f"label-{i % 200}",
            value={"t": round(rng.uniform(0, 100), 3), "i": i, "meta": {"note": note}},
            data_timestamp=datetime.fromtimestamp(EPOCH_S + rng.randrange(365 * 86400),
                                                  tz=timezone.utc),
            ownership_info=experiments[i % 1000],
            custom_metadata={"sample": f"S{i % 5000}"},
        ))
        if len(batch) == 10_000:
            client.submit_datapoints(batch)
            batch = []
    if batch:
        client.submit_datapoints(batch)
    return time.perf_counter() - start


def timed(fn: Callable[[int], Any], repeat: int) -> list[float]:
    samples = []
    for n in range(repeat):
        t0 = time.perf_counter()
        fn(n)
        samples.append(time.perf_counter() - t0)
    return samples


def search_cases(words: list[str], rows: int) -> dict[str, Callable[[int], str]]:
    """Search texts by how many rows they match (of ``rows``)."""
    return {
        f"sample_value (~{rows // 5000} matches)": lambda n: f"S{(n * 37) % 5000}",
        f"experiment_name (~{rows // 1000} matches)": lambda n: f"EXP{(n * 13) % 1000}",
        f"word_in_value (~{rows // 1000} matches)": lambda n: words[(n * 17) % len(words)],
        "two_words (few matches)":
            lambda n: f"{words[n % len(words)]} {words[(n * 7 + 1) % len(words)]}",
        f"prefix_while_typing (~{rows // 200} matches)": lambda n: words[(n * 11) % len(words)][:4],
        f"typed_label (~{rows // 200} matches)": lambda n: f"label-{(n * 7) % 200}",
        f"label_everywhere ({rows} matches)": lambda n: "label",
    }


def bench_search(rows: int, repeat: int) -> dict[str, Any]:
    work = bench_dir()
    words = vocabulary()
    try:
        with DataClient(data_dir=work) as client:
            populate_s = populate(client, rows, words)
            service = client.service
            raw = sqlite3.connect(work / "store.sqlite3")
            raw_sql = (f"SELECT * FROM datapoints WHERE rowid IN (SELECT rowid FROM {TABLE} "
                       f"WHERE {TABLE} MATCH ?) AND deleted = 0 "
                       f"ORDER BY data_timestamp DESC, id DESC LIMIT 50")
            results: dict[str, Any] = {}
            all_ours: list[float] = []
            for name, text_of in search_cases(words, rows).items():
                ours = lambda n, t=text_of: service.search(t(n), limit=50)  # noqa: E731
                base = lambda n, t=text_of: raw.execute(  # noqa: E731
                    raw_sql, (match_expression(t(n)),)).fetchall()
                ours(0), base(0)  # warm the page cache for both
                samples = timed(ours, repeat)
                all_ours.extend(samples)
                results[name] = {"ours": percentiles_ms(samples),
                                 "raw_fts5_sql": percentiles_ms(timed(base, repeat)),
                                 "first_page_rows": len(ours(0).items)}
            # The search box's engine before: a regex over three fields (a full scan).
            old_repeat = max(2, repeat // 10)
            regex = lambda n: service.query(  # noqa: E731
                {"$or": [{f: {"$regex": re.escape(f"S{(n * 37) % 5000}"), "$options": "i"}}
                         for f in ("label", "filename", "value")]}, limit=50)
            regex(0)
            raw.close()
            return {"rows": rows, "populate_s": round(populate_s, 1),
                    "populate_per_s": round(rows / populate_s, 1),
                    "first_page_50_all_cases": percentiles_ms(all_ours),
                    "cases": results,
                    "previous_search_box_regex_scan": percentiles_ms(timed(regex, old_repeat)),
                    "goal": "p50 <= 50 ms (first page)"}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def drop_index(data_dir: Path) -> None:
    """A store whose writes do not touch the index (the baseline)."""
    conn = sqlite3.connect(data_dir / "store.sqlite3", isolation_level=None)
    for trigger in ("update", "delete"):
        conn.execute(f"DROP TRIGGER {TABLE}_{trigger}")
    conn.execute(f"DROP TABLE {STATE}")  # flush() then has nothing to do
    conn.close()


def _open(work: Path, indexed: bool) -> DataClient:
    folder = work / ("indexed" if indexed else "no-index")
    DataClient(data_dir=folder).close()
    if not indexed:
        drop_index(folder)
    return DataClient(data_dir=folder)


def bench_capture(sequential: int, batched: int, batch_size: int = 5000) -> dict[str, Any]:
    """Both stores open at once; chunks of captures alternate between them, so a change
    in the machine's load (other processes) hits both modes alike."""
    work = bench_dir()
    rng = random.Random(5)
    words = vocabulary()
    try:
        clients = {True: _open(work, True), False: _open(work, False)}
        owners = {mode: client.ownership(experiment="EXP42", user="alice")
                  for mode, client in clients.items()}

        def points(indexed: bool, first: int, count: int) -> list[ValueDataPoint]:
            return [ValueDataPoint(label=f"reading-{i % 50}", ownership_info=owners[indexed],
                                   value={"t": 20 + (i % 100) / 10, "unit": "C", "i": i,
                                          "note": f"{rng.choice(words)} {rng.choice(words)}"},
                                   custom_metadata={"sample": f"S{i % 500}"})
                    for i in range(first, first + count)]

        seq_s = {True: 0.0, False: 0.0}
        cpu_s = {("sequential", True): 0.0, ("sequential", False): 0.0,
                 ("batched", True): 0.0, ("batched", False): 0.0}
        chunk = 100
        for n, first in enumerate(range(0, sequential, chunk)):
            for indexed in ((True, False) if n % 2 else (False, True)):
                todo = points(indexed, first, min(chunk, sequential - first))
                start, cpu = time.perf_counter(), time.process_time()
                for datapoint in todo:
                    clients[indexed].submit_datapoint(datapoint)
                seq_s[indexed] += time.perf_counter() - start
                cpu_s["sequential", indexed] += time.process_time() - cpu
        batch_s = {True: 0.0, False: 0.0}
        for n, first in enumerate(range(0, batched, batch_size)):
            for indexed in ((True, False) if n % 2 else (False, True)):
                todo = points(indexed, sequential + first, min(batch_size, batched - first))
                start, cpu = time.perf_counter(), time.process_time()
                clients[indexed].submit_datapoints(todo)
                batch_s[indexed] += time.perf_counter() - start
                cpu_s["batched", indexed] += time.process_time() - cpu
        for client in clients.values():
            client.close()
        out: dict[str, Any] = {}
        for mode, count, spent in (("sequential", sequential, seq_s),
                                   ("batched", batched, batch_s)):
            out[mode] = {"count": count,
                         "with_index_per_s": round(count / spent[True], 1),
                         "without_index_per_s": round(count / spent[False], 1),
                         "ratio": round(spent[False] / spent[True], 3),
                         # CPU seconds of this process: what the index costs, less
                         # disturbed by other processes on a shared machine.
                         "cpu_ratio": round(cpu_s[mode, False] / cpu_s[mode, True], 3),
                         "goal": ">= 0.85x"}
        out["batch_size"] = batch_size
        out["durability"] = "WAL, synchronous=FULL; one commit per datapoint or per batch"
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--sequential", type=int, default=2000)
    parser.add_argument("--batched", type=int, default=50_000)
    parser.add_argument("--quick", action="store_true",
                        help="100,000 rows, 10 repeats, 500 + 10,000 captures")
    parser.add_argument("--skip-capture", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeat, args.sequential, args.batched = 100_000, 10, 500, 10_000
    result: dict[str, Any] = {"benchmark": "search"}
    if not args.skip_capture:
        result["capture_with_index_vs_without"] = bench_capture(args.sequential, args.batched)
    result["search"] = bench_search(args.rows, args.repeat)
    emit(result)


if __name__ == "__main__":
    main()
