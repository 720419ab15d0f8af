"""What the interrupted-capture notes (app/core/capture_notes.py) cost small-file capture.

    python bench/bench_capture_notes.py [--files 300] [--rounds 3]

Captures the same number of 1 KB files through ``BenchService.capture_file`` with and
without notes (the baseline replaces ``StagedBlobs._note`` with a no-op), alternating, in
the same run; per-capture median of the rounds. Small files are the worst case: a note is
written, locked and removed per capture (fsynced only from 8 MiB up).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

from _common import bench_dir, emit

from app.service import BenchService
from app.staging import StagedBlobs


def capture_all(root: Path, files: int, with_notes: bool) -> float:
    """Milliseconds per capture of ``files`` 1 KB files into a fresh store."""
    sources = root / "sources"
    sources.mkdir(parents=True)
    for index in range(files):
        (sources / f"f{index}.txt").write_bytes(b"x" * 1000 + str(index).encode())
    original = StagedBlobs._note
    if not with_notes:
        StagedBlobs._note = lambda self, *args, **kwargs: None  # type: ignore[method-assign]
    try:
        with BenchService(root / "bench") as bench:
            started = time.perf_counter()
            for index in range(files):
                bench.capture_file(sources / f"f{index}.txt")
            return (time.perf_counter() - started) / files * 1000
    finally:
        StagedBlobs._note = original  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = bench_dir()
    try:
        without, with_notes = [], []
        for round_ in range(args.rounds):
            without.append(capture_all(base / f"without-{round_}", args.files, False))
            with_notes.append(capture_all(base / f"with-{round_}", args.files, True))
        baseline, measured = statistics.median(without), statistics.median(with_notes)
        emit({"files": args.files, "rounds": args.rounds,
              "baseline_ms_per_capture_without_notes": round(baseline, 3),
              "ms_per_capture_with_notes": round(measured, 3),
              "overhead_ratio": round(measured / baseline, 3)})
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
