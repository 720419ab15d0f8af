"""A fleet of real benches on one central store: lag, pull cost, idle requests, convergence.

N ``benchdata run`` processes (each its own data folder and REST port) share one nx-27017
and one SeaweedFS, reached through counting TCP proxies (MongoDB messages, S3 HTTP
requests, bytes MongoDB sent back). Each bench captures JSON values over its REST API at
a steady rate; an observer polls every bench's SQLite (read-only) for rows pulled from
elsewhere. Reported per code tree (``--baseline-code`` runs the same scenario with another
checkout, e.g. ``/work/main``, in the same run):

* lag p50/p99: capture (POST answered) → the row is in another bench's store (observer
  polls every 0.25 s, so lags carry up to that much extra);
* MongoDB bytes sent back per new foreign row while capturing (comparable across code
  trees), and — where the engine logs it — documents read in full per new document;
* S3 requests/s and MongoDB requests/s of the whole fleet while idle (after converging);
* convergence: last capture → every bench holds every datapoint;
* duplicates: central documents beyond the captured set (must be 0).

    python bench/bench_fleet.py                      # N=5, 40 s of capture (quick)
    python bench/bench_fleet.py -n 15 --capture-s 60 --baseline-code /work/main

Issue 15's figures, N=100 (run it on a quiet machine: 100 ``benchdata run`` processes,
~80 MB each, so ~8 GB of RAM; start-up alone takes minutes on 2 cores):

    python bench/bench_fleet.py -n 100 --rate 0.2 --capture-s 120 --idle-s 60

Each run's JSON has ``lag_p50_s``/``lag_p99_s``, ``documents_read_in_full_per_new_document``
(documents read per pull pass over the new documents in scope, summed over passes),
``idle_s3_requests_per_bench_per_min``, ``idle_mongo_requests_per_bench_per_s``,
``convergence_s``, ``duplicates``, and ``goals``: each of the issue's goals (read <= 1.5x
new, idle S3 <= 1 per bench per minute, convergence <= 10 s, 0 duplicates) with whether
this run met it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import ROOT, bench_dir, emit

from tests.support.proxy import Relay, Watch  # noqa: E402
from tests.support.servers import (  # noqa: E402
    MongoServer, SeaweedServer, central_env, central_settings, free_port, wait_until)

# -- counting proxies ----------------------------------------------------------------------


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.reply_bytes = 0

    def snapshot(self) -> tuple[int, int]:
        with self.lock:
            return self.requests, self.reply_bytes


def _mongo_messages(buffer: bytearray) -> int:
    """Complete wire-protocol messages at the start of ``buffer`` (consumed)."""
    count = 0
    while len(buffer) >= 4:
        length = int.from_bytes(buffer[:4], "little")
        if len(buffer) < length:
            break
        del buffer[:length]
        count += 1
    return count


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


def _http_requests(buffer: bytearray, state: dict[str, int]) -> int:
    """Complete HTTP requests in ``buffer`` (consumed); a body still owed is in ``state``."""
    count = 0
    while True:
        if state["body"]:
            taken = min(state["body"], len(buffer))
            del buffer[:taken]
            state["body"] -= taken
            if state["body"]:
                return count
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return count
        head = bytes(buffer[:end + 4])
        del buffer[:end + 4]
        found = _CONTENT_LENGTH.search(head)
        state["body"] = int(found.group(1)) if found else 0
        count += 1


class CountingWatch(Watch):
    """Counts one connection's requests (``kind`` mongo or http) and reply bytes."""

    def __init__(self, counter: Counter, kind: str) -> None:
        self.counter, self.kind = counter, kind
        self.buffer, self.state = bytearray(), {"body": 0}

    def requested(self, data: bytes) -> None:
        self.buffer.extend(data)
        n = _mongo_messages(self.buffer) if self.kind == "mongo" else \
            _http_requests(self.buffer, self.state)
        with self.counter.lock:
            self.counter.requests += n

    def replied(self, data: bytes) -> None:
        with self.counter.lock:
            self.counter.reply_bytes += len(data)


class Proxy(Relay):
    """127.0.0.1:port → target, counting what clients ask and the bytes sent back."""

    def __init__(self, target: tuple[str, int], kind: str) -> None:
        self.kind = kind
        self.counter = Counter()
        super().__init__(target)

    def watch(self) -> Watch:
        return CountingWatch(self.counter, self.kind)


# -- benches -------------------------------------------------------------------------------


class Bench:
    #: API ports handed out in this run: ``free_port`` asked 100 times in a row can hand the
    #: same port to two benches, and then one answers (health, captures) for both.
    ports_taken: set[int] = set()

    def __init__(self, folder: Path, env: dict[str, str], code: Path) -> None:
        self.folder, self.env, self.code = folder, env, code
        self.start()
        self.seen: set[str] = set()
        self.last_rowid = 0

    def start(self) -> None:
        self.port = free_port()
        while self.port in Bench.ports_taken:
            self.port = free_port()
        Bench.ports_taken.add(self.port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app", "--data-dir", str(self.folder), "run", "--no-watch",
             "--api-port", str(self.port), "--log-level", "INFO"],
            env={**self.env, "PYTHONPATH": str(self.code),
                 "BENCHDATA_HOME": str(self.folder / "home")},
            cwd=self.code, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def healthy(self) -> bool:
        import httpx

        if self.process.poll() is not None:  # it lost its port to another process: again
            self.start()
            return False
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def new_remote_ids(self) -> list[str]:
        database = self.folder / "store.sqlite3"
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute("SELECT rowid, id FROM datapoints WHERE rowid > ? AND "
                                "origin = 'remote'", (self.last_rowid,)).fetchall()
        except sqlite3.OperationalError:
            return []
        finally:
            conn.close()
        if rows:
            self.last_rowid = max(r[0] for r in rows)
        fresh = [r[1] for r in rows if r[1] not in self.seen]
        self.seen.update(fresh)
        return fresh

    def pull_log(self) -> tuple[int, int, int]:
        """(pulled, read in full, stamped again) summed over the engine's log lines, where
        it logs them."""
        pulled = fetched = restamped = 0
        for path in (self.folder / "logs").glob("benchdata.log*"):
            for line in path.read_text(errors="replace").splitlines():
                found = re.search(r"pulled (\d+) \((\d+) read in full", line)
                if found:
                    pulled += int(found.group(1))
                    fetched += int(found.group(2))
                found = re.search(r"(\d+) record\(s\) stamped again", line)
                if found:
                    restamped += int(found.group(1))
        return pulled, fetched, restamped

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _post_value(bench: Bench, client: Any, index: int) -> str:
    from ulid import ULID

    ident = str(ULID())
    document = {"label": f"v{index}", "ownership_info": {}, "data_type": "json",
                "datapoint_id": ident, "value": {"i": index, "pad": "x" * 200},
                "data_timestamp": datetime.now().isoformat()}
    response = client.post(f"{bench.url}/datapoint", data={"datapoint": json.dumps(document)})
    response.raise_for_status()
    return ident


def run_fleet(code: Path, n: int, rate: float, capture_s: float, idle_s: float,
              workdir: Path) -> dict[str, Any]:
    import httpx

    weed, mongo = SeaweedServer(workdir / "weed"), MongoServer(workdir / "nx")
    weed.start()
    mongo.start()
    benches: list[Bench] = []
    try:
        bucket = weed.make_bucket()
        s3_proxy = Proxy(("127.0.0.1", int(weed.endpoint.rsplit(":", 1)[1])), "http")
        mongo_proxy = Proxy(("127.0.0.1", int(mongo.port or 0)), "mongo")
        settings = central_settings(weed, mongo, bucket, "madsci_data").model_copy(update={
            "endpoint": f"127.0.0.1:{s3_proxy.port}"})
        env = {**os.environ, **central_env(settings),
               "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
               "BENCHDATA_SITE_CONFIG": str(workdir / "no-site-config.json"),
               "BENCHDATA_MONGO_URL": f"mongodb://127.0.0.1:{mongo_proxy.port}/"}
        benches = [Bench(workdir / f"bench-{i:03d}", env, code) for i in range(n)]
        wait_until(lambda: all(b.healthy() for b in benches), 300, "benches up", 0.5)
        captured: dict[str, tuple[float, int]] = {}  # id -> (time, bench index)
        lags: list[float] = []
        stop_observer = threading.Event()
        lock = threading.Lock()

        def observe() -> None:
            while not stop_observer.is_set():
                now = time.monotonic()
                for bench in benches:
                    for ident in bench.new_remote_ids():
                        with lock:
                            if ident in captured:
                                lags.append(now - captured[ident][0])
                stop_observer.wait(0.25)

        observer = threading.Thread(target=observe, daemon=True)
        observer.start()
        interval = 1.0 / (rate * n)
        start = time.monotonic()
        mongo_before = mongo_proxy.counter.snapshot()
        index = 0
        with httpx.Client(timeout=30) as client:
            while time.monotonic() - start < capture_s:
                bench = benches[index % n]
                ident = _post_value(bench, client, index)
                with lock:
                    captured[ident] = (time.monotonic(), index % n)
                index += 1
                time.sleep(max(0.0, start + index * interval - time.monotonic()))
        last_capture = time.monotonic()
        wanted = set(captured)

        def converged() -> bool:
            return all(b.seen | {i for i, (_t, o) in captured.items() if benches[o] is b}
                       >= wanted for b in benches)

        wait_until(converged, 600, "every bench holds every datapoint", 0.25)
        convergence_s = time.monotonic() - last_capture
        mongo_after = mongo_proxy.counter.snapshot()
        # Idle: a few passes after everything has settled.
        time.sleep(min(10.0, idle_s / 3))
        s3_0, mongo_0 = s3_proxy.counter.snapshot(), mongo_proxy.counter.snapshot()
        idle_start = time.monotonic()
        time.sleep(idle_s)
        idle_elapsed = time.monotonic() - idle_start
        s3_1, mongo_1 = s3_proxy.counter.snapshot(), mongo_proxy.counter.snapshot()
        stop_observer.set()
        observer.join()
        import pymongo

        central: Any = pymongo.MongoClient(mongo.url)
        try:
            documents = central["madsci_data"]["datapoints"].count_documents({})
        finally:
            central.close()
        foreign_rows = len(wanted) * (n - 1)
        logged = [b.pull_log() for b in benches]
        pulled_logged = sum(entry[0] for entry in logged)
        fetched_logged = sum(entry[1] for entry in logged)
        ordered = sorted(lags)
        run: dict[str, Any] = {
            "code": str(code), "benches": n, "rate_per_bench": rate,
            "captured": len(wanted),
            "lag_p50_s": round(statistics.median(ordered), 2) if ordered else None,
            "lag_p99_s": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2)
            if ordered else None,
            "mongo_reply_bytes_per_new_foreign_row": round(
                (mongo_after[1] - mongo_before[1]) / max(1, foreign_rows), 1),
            "documents_read_in_full_per_new_document": round(
                fetched_logged / pulled_logged, 3) if pulled_logged else None,
            "idle_s3_requests_per_s": round((s3_1[0] - s3_0[0]) / idle_elapsed, 3),
            "idle_s3_requests_per_bench_per_min": round(
                (s3_1[0] - s3_0[0]) / idle_elapsed * 60 / n, 3),
            "idle_mongo_requests_per_s": round((mongo_1[0] - mongo_0[0]) / idle_elapsed, 2),
            "idle_mongo_requests_per_bench_per_s": round(
                (mongo_1[0] - mongo_0[0]) / idle_elapsed / n, 3),
            "convergence_s": round(convergence_s, 2),
            # Records written slower than the write bound and stamped again (sync.stamps).
            "records_stamped_again": sum(entry[2] for entry in logged),
            "duplicates": documents - len(wanted),
        }
        run["goals"] = goals(run)
        return run
    finally:
        for bench in benches:
            bench.stop()
        weed.stop()
        mongo.stop()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def goals(run: dict[str, Any]) -> dict[str, Any]:
    """Issue 15's goals (set for N=100 on a 2-core machine) and whether this run met them."""
    read = run["documents_read_in_full_per_new_document"]
    return {
        "documents_read_per_new_document_le_1_5": read is not None and read <= 1.5,
        "idle_s3_per_bench_per_min_le_1": run["idle_s3_requests_per_bench_per_min"] <= 1,
        "convergence_le_10_s": run["convergence_s"] <= 10,
        "no_duplicates": run["duplicates"] == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("-n", "--benches", type=int, default=5, help="benches (processes)")
    parser.add_argument("--rate", type=float, default=0.2, help="captures/s per bench")
    parser.add_argument("--capture-s", type=float, default=40.0, help="seconds of capture")
    parser.add_argument("--idle-s", type=float, default=30.0,
                        help="seconds of idle measured after convergence")
    parser.add_argument("--baseline-code", type=Path,
                        help="another checkout to run the same scenario with first")
    args = parser.parse_args()
    results = []
    for code in ([args.baseline_code] if args.baseline_code else []) + [ROOT]:
        results.append(run_fleet(code.resolve(), args.benches, args.rate, args.capture_s,
                                 args.idle_s, bench_dir()))
    emit({"benchmark": "fleet", "runs": results})


if __name__ == "__main__":
    main()
