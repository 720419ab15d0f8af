"""``benchdata verify`` (local scrub) throughput vs plain hashlib SHA-256 of the same files.

    python bench/bench_verify.py [--files 64] [--size-mib 4] [--repeat 3] [--dir DIR]

Captures ``--files`` random files of ``--size-mib`` MiB into a fresh bench, then times,
``--repeat`` times and interleaved, in the same run:

* ``hashlib``: read each blob file in 1 MiB chunks and hash it with ``hashlib.sha256``
  (the baseline: nothing but reading and hashing);
* ``verify``: ``sync.verify.Scrubber`` at rate 0 (unlimited) over the same blobs: custody
  look-ups, re-hashing, scrub marks written and the run recorded.

The files are read once beforehand, so both read from the page cache. Prints one JSON
object with the best time of each and ``ratio`` = verify throughput / hashlib throughput
(the goal is >= 0.8). Removes its files.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import time
from pathlib import Path

from _common import bench_dir, emit

from app.service import BenchService
from sync.verify import CHUNK_SIZE, MIB, Scrubber


def hash_all(paths: list[Path]) -> int:
    total = 0
    buffer = bytearray(CHUNK_SIZE)
    with memoryview(buffer) as view:
        for path in paths:
            digest = hashlib.sha256()
            with open(path, "rb", buffering=0) as blob:
                while length := blob.readinto(buffer):
                    digest.update(view[:length])
                    total += length
            digest.hexdigest()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--size-mib", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    root = bench_dir(args.dir)
    try:
        with BenchService(root / "store") as service:
            source = root / "src"
            source.mkdir()
            size = int(args.size_mib * MIB)
            for n in range(args.files):
                path = source / f"f{n}.bin"
                path.write_bytes(os.urandom(size))
                service.capture_file(path)
            shutil.rmtree(source)
            blobs = sorted(service.files.blobs_dir.rglob("*"))
            blobs = [p for p in blobs if p.is_file()]
            total = hash_all(blobs)  # warm the page cache
            times: dict[str, list[float]] = {"hashlib": [], "verify": []}
            for _ in range(args.repeat):
                start = time.perf_counter()
                hash_all(blobs)
                times["hashlib"].append(time.perf_counter() - start)
                start = time.perf_counter()
                report = Scrubber(service, rate_mib_s=0).run()
                times["verify"].append(time.perf_counter() - start)
                assert report.ok and report.bytes_hashed == total, report
        best = {name: min(samples) for name, samples in times.items()}
        mib = total / MIB
        emit({
            "benchmark": "verify_local_throughput",
            "files": args.files, "file_mib": args.size_mib, "total_mib": round(mib, 1),
            "repeat": args.repeat, "rate_mib_s_setting": 0,
            "hashlib_s": round(best["hashlib"], 4), "verify_s": round(best["verify"], 4),
            "hashlib_mib_s": round(mib / best["hashlib"], 1),
            "verify_mib_s": round(mib / best["verify"], 1),
            "ratio": round(best["hashlib"] / best["verify"], 3),
            "goal_ratio": 0.8,
            "python": platform.python_version(),
        })
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
