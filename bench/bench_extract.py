"""Header extraction: throughput on mixed instrument files, and what it costs capture.

    python bench/bench_extract.py [--files 1000] [--quick]

Writes ``--files`` files of mixed kinds (OME-TIFF, TIFF, NeXus, HDF5, PNG, JPEG+EXIF,
JCAMP-DX, Bruker acqus, CSV, and an unknown binary). Then, in the same run:

* extraction **off**: captures them one by one (``capture_file``, one durable commit each)
  with no extraction worker; the capture latencies are the baseline;
* extraction **on**: captures the same files into a second store while the worker runs
  and extracts them as they arrive; the capture latencies are compared with the baseline
  (goal: p99 at most 1.1x). Off and on alternate in rounds of 100 files;
* backlog: captures 200 more files while the worker works through a backlog of every
  file (it yields to them);
* throughput: starts the worker on the first store (every file still queued) and times
  until the queue is empty.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from _common import bench_dir, emit, percentiles_ms

from tests.support import extract_samples as samples  # noqa: E402

from app.core import extractqueue  # noqa: E402
from app.extract.component import ExtractComponent  # noqa: E402
from app.extract.worker import ExtractSettings  # noqa: E402
from app.service import BenchService  # noqa: E402

#: Files per round of the off/on comparison.
ROUND = 100
#: Captures measured while the worker works through a backlog of every file.
BACKLOG_CAPTURES = 200
KINDS = ("ome.tif", "tif", "nxs", "h5", "png", "jpg", "jdx", "acqus", "csv", "bin")


def write_files(folder: Path, count: int, start: int = 0) -> list[Path]:
    """``count`` files, each kind in turn, each with distinct bytes (a trailing comment or
    a different size), so no two share a blob."""
    files = []
    for i in range(start, start + count):
        kind = KINDS[i % len(KINDS)]
        sub = folder / f"{i:05d}"
        sub.mkdir(parents=True)
        if kind == "acqus":
            path = samples.write_acqus(sub)
            path.write_text(path.read_text(encoding="latin-1") + f"$$ {i}\n", encoding="latin-1")
        elif kind == "bin":
            path = sub / "blob.bin"
            path.write_bytes(b"\x00\x01" + i.to_bytes(4, "little") * 64)
        else:
            writer = {"ome.tif": samples.write_ome_tiff, "tif": samples.write_tiff,
                      "nxs": samples.write_nexus, "h5": samples.write_hdf5,
                      "png": samples.write_png, "jpg": samples.write_jpeg_with_exif,
                      "jdx": samples.write_jcamp, "csv": samples.write_csv}[kind]
            path = writer(sub / f"sample.{kind}")
            if kind in ("jdx", "csv"):
                with open(path, "a", encoding="utf-8") as out:
                    out.write(f"$$ {i}\n" if kind == "jdx" else f"{i};0;x\n")
            else:
                with open(path, "ab") as out:  # trailing bytes: ignored by the readers
                    out.write(i.to_bytes(4, "little"))
        files.append(path)
    return files


def capture_all(service: BenchService, files: list[Path]) -> list[float]:
    latencies = []
    for path in files:
        start = time.perf_counter()
        service.capture_file(path)
        latencies.append(time.perf_counter() - start)
    return latencies


def settle() -> None:
    """Write back what the previous phase left dirty, so no phase pays for another's
    writes in its fsyncs."""
    if hasattr(os, "sync"):
        os.sync()


def wait_drained(service: BenchService, timeout: float = 3600) -> None:
    deadline = time.monotonic() + timeout
    while extractqueue.count(service.store) and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="200 files")
    args = parser.parse_args()
    count = 200 if args.quick else args.files
    root = bench_dir()
    try:
        files = write_files(root / "source", count)
        extra = write_files(root / "extra", BACKLOG_CAPTURES, start=count)
        settings = ExtractSettings(poll_seconds=0.05)

        off: list[float] = []
        on: list[float] = []
        # Rounds alternate off and on, so a change in the machine's load during the run
        # (other work, disk write-back) falls on both alike.
        with BenchService(root / "off") as off_service, \
                BenchService(root / "on") as on_service:
            for first in range(0, count, ROUND):
                chunk = files[first:first + ROUND]
                settle()
                off += capture_all(off_service, chunk)
                settle()
                worker = ExtractComponent(on_service, settings)
                worker.start()
                on += capture_all(on_service, chunk)
                wait_drained(on_service)
                worker.stop()
        settle()
        with BenchService(root / "off") as service:  # its queue holds every file
            worker = ExtractComponent(service, settings)
            start = time.perf_counter()
            worker.start()
            wait_drained(service)
            elapsed = time.perf_counter() - start
            worker.stop()
            extracted = service.count({"custom_metadata.extracted.format": {"$exists": True}})
            errors = service.count({"custom_metadata.extracted.error": {"$exists": True}})

        # The worker busy with a backlog (every file queued) while captures arrive.
        settle()
        with BenchService(root / "backlog") as service:
            capture_all(service, files)
            settle()
            worker = ExtractComponent(service, settings)
            worker.start()
            during_backlog = capture_all(service, extra)
            worker.stop()

        off_stats, on_stats = percentiles_ms(off), percentiles_ms(on)
        backlog_stats = percentiles_ms(during_backlog)
        emit({
            "files": count,
            "kinds": list(KINDS),
            "extraction": {"seconds": round(elapsed, 3),
                           "files_per_second": round(count / elapsed, 1),
                           "extracted": extracted, "errors": errors,
                           "unknown_kind_left_alone": count - extracted - errors},
            "capture_extraction_off": off_stats,
            "capture_extraction_on": on_stats,
            "capture_during_backlog": backlog_stats,
            "p99_ratio_on_vs_off": round(on_stats["p99_ms"] / off_stats["p99_ms"], 3),
            "p99_ratio_backlog_vs_off": round(backlog_stats["p99_ms"] / off_stats["p99_ms"], 3),
            "p50_ratio_on_vs_off": round(on_stats["p50_ms"] / off_stats["p50_ms"], 3),
            "goal_p99_ratio": 1.1,
        })
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
