"""A central-only file served by a second bench vs the minio SDK's ``fget_object``, same run.

    python bench/bench_fetch.py [--file-mib 64] [--rounds 3]      # --file-mib 1024: 1 GiB

Starts SeaweedFS and nx-27017 (as the tests do). Bench A captures one file of
``--file-mib`` MiB and syncs it; then, each round, a fresh bench B pulls the record and
asks for the bytes through the one path every front end uses (``BenchService.open_file``:
download into the file store, SHA-256 verified, fsynced, then served), and the baseline
downloads the same object with ``Minio.fget_object`` into a file beside it (no hashing,
no fsync). Order alternates between rounds. Prints JSON:

* ``time_to_first_byte_s``: from the request to the first byte in hand (ours must verify
  the whole file first; the baseline's first byte arrives with the response).
* ``throughput_mib_s``: size / time until the last byte is in hand (ours read back from the
  cache), medians of the rounds; ``ratio`` = ours / baseline, median of per-round ratios.
  Goal >= 0.8. Our cached copy is fsynced (durable, like every blob); the baseline's is
  not, so ``fget_object_then_fsync`` (the same download, then fsync) is reported too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import ROOT, bench_dir, emit

sys.path.insert(0, str(ROOT / "tests"))

from servers import MongoServer, SeaweedServer, central_env, central_settings  # noqa: E402

CHUNK = 1024 * 1024


def _write_file(path: Path, size: int) -> None:
    block = os.urandom(8 * 1024 * 1024)
    with open(path, "wb") as out:
        written = 0
        while written < size:
            chunk = block[: min(len(block), size - written)]
            out.write(chunk)
            written += len(chunk)


def _ours(workdir: Path, settings: Any, ident: str, round_: int) -> tuple[float, float]:
    from app.service import BenchService
    from sync.engine import SyncEngine

    data_dir = workdir / f"b-{round_}"
    with BenchService(data_dir) as bench:
        with SyncEngine(bench, settings) as engine:
            assert engine.run_pass(force=True).ok
        started = time.perf_counter()
        with bench.open_file(ident) as stream:
            stream.read(1)
            first = time.perf_counter() - started
            while stream.read(CHUNK):
                pass
        total = time.perf_counter() - started
    shutil.rmtree(data_dir, ignore_errors=True)
    return first, total


def _baseline(workdir: Path, settings: Any, object_name: str,
              round_: int) -> tuple[float, float, float]:
    """(first byte s, fget_object s, fget_object + fsync s): the file store's copy is
    durable, so the time to make the baseline's copy durable too is reported beside it."""
    from sync.objects import ObjectStore

    target = workdir / f"fget-{round_}.bin"
    with ObjectStore(settings) as objects:
        started = time.perf_counter()
        response = objects.client.get_object(settings.bucket, object_name)
        response.read(1)
        first = time.perf_counter() - started
        response.close()
        response.release_conn()
        started = time.perf_counter()
        objects.client.fget_object(settings.bucket, object_name, str(target))
        total = time.perf_counter() - started
        with open(target, "rb") as written:
            os.fsync(written.fileno())
        durable = time.perf_counter() - started
    target.unlink()
    return first, total, durable


def bench_fetch(workdir: Path, weed: SeaweedServer, mongo: MongoServer, size: int,
                rounds: int) -> dict[str, Any]:
    from app.service import BenchService
    from sync.engine import SyncEngine

    settings = central_settings(weed, mongo, weed.make_bucket(), "madsci_bench_fetch")
    # Configured as an operator configures a bench: bench B's service builds its fetcher.
    os.environ.update(central_env(settings))
    source = workdir / "big.bin"
    _write_file(source, size)
    with BenchService(workdir / "a") as bench, SyncEngine(bench, settings) as engine:
        ident = bench.capture_file(source).datapoint_id
        assert engine.run_pass(force=True).ok
        object_name = engine.outbox.objects_for([ident])[ident]["object_name"]
    source.unlink()
    ours: list[tuple[float, float]] = []
    base: list[tuple[float, float, float]] = []
    for round_ in range(rounds):
        if round_ % 2 == 0:
            ours.append(_ours(workdir, settings, ident, round_))
            base.append(_baseline(workdir, settings, object_name, round_))
        else:
            base.append(_baseline(workdir, settings, object_name, round_))
            ours.append(_ours(workdir, settings, ident, round_))
    mib = size / CHUNK

    def rate(seconds: list[float]) -> float:
        return round(statistics.median(mib / s for s in seconds), 1)

    return {
        "file_mib": round(mib, 1), "rounds": rounds,
        "time_to_first_byte_s": {
            "ours": round(statistics.median(o[0] for o in ours), 3),
            "fget_object_baseline": round(statistics.median(b[0] for b in base), 3)},
        "throughput_mib_s": {"ours": rate([o[1] for o in ours]),
                             "fget_object_baseline": rate([b[1] for b in base]),
                             "fget_object_then_fsync": rate([b[2] for b in base])},
        "ratio": round(statistics.median(b[1] / o[1] for o, b in zip(ours, base)), 3),
        "ratio_vs_fget_object_then_fsync": round(
            statistics.median(b[2] / o[1] for o, b in zip(ours, base)), 3),
        "goal_ratio": 0.8,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file-mib", type=int, default=64, help="1024 for the 1 GiB case.")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    workdir = bench_dir()
    weed = SeaweedServer(workdir / "weed")
    mongo = MongoServer(workdir / "nx")
    weed.start()
    mongo.start()
    try:
        result = {"benchmark": "fetch",
                  "central_only_file": bench_fetch(workdir, weed, mongo,
                                                   args.file_mib * CHUNK, args.rounds)}
    finally:
        weed.stop()
        mongo.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
