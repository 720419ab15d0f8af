"""A new bench's first pull of a large central collection: everything, or one experiment.

Seeds nx-27017 with ``--documents`` datapoints in ``--experiments`` experiments (inserted
as a bench writes them, stamped with the server's write time), then runs a first pull in
a fresh bench process for each scope and reports seconds, documents per second, documents
read in full and the pulling process's peak RSS. The scope run is compared with the
"everything" run on the same collection in the same run.

    python bench/bench_first_pull.py                       # 20,000 documents (quick)
    python bench/bench_first_pull.py --documents 200000 --experiments 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import ROOT, bench_dir, emit

from tests.support.servers import MongoServer  # noqa: E402

CHILD = """
import json, resource, sys, time
from app.service import BenchService
from sync.engine import SyncEngine
from sync.settings import load_settings
scope = json.loads(sys.argv[2])
with BenchService(sys.argv[1]) as bench:
    settings = load_settings(bench.paths).model_copy(update={"pull_scope": scope})
    with SyncEngine(bench, settings) as engine:
        start = time.perf_counter()
        report = engine.run_pass(force=True)
        seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "pulled": report.pulled, "ok": report.ok,
                  "read_in_full": report.pull_fetched,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def seed(url: str, database: str, documents: int, experiments: int) -> list[str]:
    import pymongo
    from ulid import ULID

    from app.core.ids import id_for

    names = [f"EXP{i}" for i in range(experiments)]
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
        if len(batch) == 5000:
            collection.bulk_write(batch, ordered=False)
            batch = []
    if batch:
        collection.bulk_write(batch, ordered=False)
    client.close()
    return names


def first_pull(workdir: Path, env: dict[str, str], scope: Any) -> dict[str, Any]:
    folder = workdir / f"bench-{time.monotonic_ns()}"
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder), json.dumps(scope)],
                          env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True,
                          text=True, timeout=3600, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["documents_per_s"] = round(result["pulled"] / result["seconds"], 1)
    result["seconds"] = round(result["seconds"], 2)
    result["peak_rss_mb"] = round(result["peak_rss_mb"], 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--experiments", type=int, default=10)
    args = parser.parse_args()
    workdir = bench_dir()
    mongo = MongoServer(workdir / "nx")
    mongo.start()
    try:
        env = {**os.environ, "BENCHDATA_MONGO_URL": mongo.url,
               "BENCHDATA_MONGO_DATABASE": "madsci_data",
               "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
               "BENCHDATA_SITE_CONFIG": str(workdir / "no-site-config.json")}
        start = time.perf_counter()
        names = seed(mongo.url, "madsci_data", args.documents, args.experiments)
        seeded_s = time.perf_counter() - start
        everything = first_pull(workdir, env, "everything")
        one = first_pull(workdir, env, {"experiment": [names[0]]})
        emit({"benchmark": "first_pull", "documents": args.documents,
              "experiments": args.experiments, "seed_s": round(seeded_s, 1),
              "everything": everything, "one_experiment": one,
              "scope_speedup": round(everything["seconds"] / one["seconds"], 2)})
    finally:
        mongo.stop()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
