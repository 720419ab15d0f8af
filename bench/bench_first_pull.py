"""A new bench's first pull of a large central collection: one experiment, resumed after a
kill, and (optionally) everything.

Seeds nx-27017 with ``--documents`` datapoints in ``--experiments`` experiments (inserted
as a bench writes them, stamped with the server's write time), then, each in a fresh bench
process:

* ``one_experiment``: a first pull scoped to one experiment — seconds, documents/s, read in
  full, the pulling process's peak RSS (goal at 1,000,000 documents in 100 experiments of
  10,000: <= 30 s and <= 150 MB);
* ``killed_and_resumed``: the same for another experiment, SIGKILLed at a random page and
  started again — what the second run read again (documents in full, window entries), in
  pages (goal: <= 1 page);
* ``everything`` (``--everything``, and by default up to 100,000 documents): the whole
  collection, the baseline the scope is compared with in the same run, with its peak RSS.

    python bench/bench_first_pull.py                       # 20,000 documents (quick)
    python bench/bench_first_pull.py --documents 1000000 --experiments 100 \\
        --keep /var/tmp/first-pull-1m                      # seeded once, reused after

``--keep DIR`` keeps the seeded nx-27017 data in DIR and reuses it when the same
``--documents``/``--experiments`` run again (seeding 1,000,000 takes ~15 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import timezone
from pathlib import Path
from typing import Any, Optional

from _common import ROOT, bench_dir, emit

from tests.support.servers import MongoServer  # noqa: E402
from tests.support.stores import remote_rows  # noqa: E402
from sync.settings import CentralSettings  # noqa: E402

CHILD = """
import json, resource, sys, time
from app.service import BenchService
from sync.engine import SyncEngine
from sync.settings import load_settings
scope = json.loads(sys.argv[2])
with BenchService(sys.argv[1]) as bench:
    settings = load_settings(bench.paths).model_copy(
        update={"pull_scope": scope, "pull_page_size": int(sys.argv[3])})
    with SyncEngine(bench, settings) as engine:
        start = time.perf_counter()
        report = engine.run_pass(force=True)
        seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "pulled": report.pull_fetched - report.pull_skipped,
                  "stored": report.pulled, "ok": report.ok,
                  "read_in_full": report.pull_fetched, "scanned": report.pull_scanned,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

PAGE_SIZE = 1000
#: The pull overlap the children run with (the default setting).
OVERLAP_S = CentralSettings().pull_overlap_s


def seed(url: str, database: str, documents: int, experiments: int) -> list[str]:
    import pymongo
    from ulid import ULID

    from app.core.ids import id_for

    names = experiment_names(experiments)
    ids = {name: id_for("experiment", name) for name in names}
    client: Any = pymongo.MongoClient(url)
    collection = client[database]["datapoints"]
    batch: list[Any] = []
    for index in range(documents):
        name = names[index % experiments]
        batch.append(pymongo.UpdateOne({"_id": str(ULID())}, {
            "$set": {"label": f"v{index}", "data_type": "json", "value": {"i": index},
                     "data_timestamp": "2026-01-01T00:00:00Z",
                     "ownership_info": {"experiment_id": ids[name]},
                     "custom_metadata": {"experiment_name": name},
                     "sync_revision": 1, "sync_bench_id": "01SEEDSEEDSEEDSEEDSEEDSEED"},
            "$currentDate": {"sync_written_at": True}}, upsert=True))
        if len(batch) == 10_000:
            collection.bulk_write(batch, ordered=False)
            batch = []
    if batch:
        collection.bulk_write(batch, ordered=False)
    client.close()
    return names


def experiment_names(experiments: int) -> list[str]:
    return [f"EXP{i}" for i in range(experiments)]


def child_command(folder: Path, scope: Any) -> list[str]:
    return [sys.executable, "-c", CHILD, str(folder), json.dumps(scope), str(PAGE_SIZE)]


def first_pull(workdir: Path, env: dict[str, str], scope: Any,
               folder: Optional[Path] = None) -> dict[str, Any]:
    folder = folder or workdir / f"bench-{time.monotonic_ns()}"
    done = subprocess.run(child_command(folder, scope), env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=4 * 3600)
    if done.returncode != 0:
        raise RuntimeError(f"first pull failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["documents_per_s"] = round(result["pulled"] / result["seconds"], 1)
    result["seconds"] = round(result["seconds"], 2)
    result["peak_rss_mb"] = round(result["peak_rss_mb"], 1)
    return result


def peak_rss_of(pid: int) -> float:
    """A running process's peak RSS (VmHWM) in MB; 0 if it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def wait_past_overlap(url: str, overlap_s: float) -> float:
    """Wait until the newest seeded write is older than the pull overlap (server time), as
    a lab's history is: documents written within it are re-read by any resumed pull, by
    design. Returns the seconds waited."""
    import pymongo

    client: Any = pymongo.MongoClient(url, tz_aware=True)
    start = time.perf_counter()
    try:
        newest = client["madsci_data"]["datapoints"].find_one(
            {}, sort=[("sync_written_at", -1)])["sync_written_at"]
        newest = newest if newest.tzinfo else newest.replace(tzinfo=timezone.utc)
        while True:
            now = client.admin.command("hello")["localTime"]
            now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
            if (now - newest).total_seconds() > overlap_s + 5:
                return time.perf_counter() - start
            time.sleep(1.0)
    finally:
        client.close()


def killed_and_resumed(workdir: Path, env: dict[str, str], scope: Any, total: int,
                       rng: random.Random) -> dict[str, Any]:
    """Kill a first pull at a random page, start it again, and count what the second run
    read again beyond the documents it still had to store."""
    folder = workdir / f"bench-killed-{time.monotonic_ns()}"
    pages = math.ceil(total / PAGE_SIZE)
    kill_page = rng.randrange(1, max(2, pages - 1))
    process = subprocess.Popen(child_command(folder, scope), env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    try:
        while remote_rows(folder) < kill_page * PAGE_SIZE and process.poll() is None:
            peak = max(peak, peak_rss_of(process.pid))
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    held = remote_rows(folder)
    resumed = first_pull(workdir, env, scope, folder)
    missing = total - held
    reread_full = max(0, resumed["read_in_full"] - missing)
    reread_scanned = max(0, resumed["scanned"] - missing)
    return {"killed_after_rows": held, "page_size": PAGE_SIZE,
            "killed_run_peak_rss_mb": round(peak, 1), "resumed": resumed,
            "complete": held + resumed["stored"] == total,
            "reread_in_full": reread_full, "reread_window_entries": reread_scanned,
            "reread_pages": math.ceil(max(reread_full, reread_scanned) / PAGE_SIZE)}


def start_mongo(workdir: Path, documents: int, experiments: int) -> tuple[MongoServer, float]:
    """nx-27017 over ``workdir``'s data, seeded unless it already holds this seed."""
    mongo = MongoServer(workdir / "nx")
    (workdir / "nx").mkdir(parents=True, exist_ok=True)
    mongo.start()
    marker = workdir / "seeded.json"
    wanted = {"documents": documents, "experiments": experiments}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return mongo, 0.0
    start = time.perf_counter()
    seed(mongo.url, "madsci_data", documents, experiments)
    marker.write_text(json.dumps(wanted))
    return mongo, time.perf_counter() - start


def main() -> None:
    global PAGE_SIZE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--experiments", type=int, default=2)
    parser.add_argument("--everything", action=argparse.BooleanOptionalAction, default=None,
                        help="also pull the whole collection (default: up to 100,000)")
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the seeded data here")
    parser.add_argument("--seed", type=int, help="random seed of the kill page")
    parser.add_argument("--seed-only", action="store_true", help="seed --keep and stop")
    parser.add_argument("--page-size", type=int, default=PAGE_SIZE,
                        help="pull_page_size of the pulling benches")
    args = parser.parse_args()
    PAGE_SIZE = args.page_size
    if args.experiments < 2:
        parser.error("--experiments must be at least 2 (one pulled, one killed)")
    workdir = args.keep or bench_dir()
    rng = random.Random(args.seed if args.seed is not None else random.randrange(1 << 30))
    mongo, seeded_s = start_mongo(workdir, args.documents, args.experiments)
    runs = workdir / "runs"
    try:
        if args.seed_only:
            emit({"seeded": args.documents, "seed_s": round(seeded_s, 1)})
            return
        env = {**os.environ, "BENCHDATA_MONGO_URL": mongo.url,
               "BENCHDATA_MONGO_DATABASE": "madsci_data", "PYTHONPATH": str(ROOT),
               "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
               "BENCHDATA_SITE_CONFIG": str(workdir / "no-site-config.json")}
        names = experiment_names(args.experiments)
        per_experiment = args.documents // args.experiments
        result: dict[str, Any] = {
            "benchmark": "first_pull", "documents": args.documents,
            "experiments": args.experiments, "seed_s": round(seeded_s, 1),
            "one_experiment": first_pull(runs, env, {"experiment": [names[0]]})}
        result["waited_past_overlap_s"] = round(wait_past_overlap(mongo.url, OVERLAP_S), 1)
        result["killed_and_resumed"] = killed_and_resumed(
            runs, env, {"experiment": [names[1]]}, per_experiment, rng)
        everything = args.everything if args.everything is not None \
            else args.documents <= 100_000
        if everything:
            result["everything"] = first_pull(runs, env, "everything")
            result["scope_speedup"] = round(result["everything"]["seconds"] /
                                            result["one_experiment"]["seconds"], 2)
        emit(result)
    finally:
        mongo.stop()
        shutil.rmtree(runs, ignore_errors=True)
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
